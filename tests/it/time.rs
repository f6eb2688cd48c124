//! Time, over gRPC: observations dated in the future beyond the allowed clock
//! skew are refused with nothing written, and `ValidateReleases` replays an
//! imported history at an `as_of` time, deciding what the server would have
//! decided then.

use crate::common::*;
use chrono::{Duration, Utc};
use pb::validation_service_client::ValidationServiceClient;
use plumbline::domain::MAX_CLOCK_SKEW;
use plumbline::proto as pb;
use tonic::Code;
use tonic::transport::Channel;

fn validation(s: &TestServer) -> ValidationServiceClient<Channel> {
    ValidationServiceClient::new(s.channel.clone())
}

async fn get_metric(s: &TestServer, id: &str) -> pb::Metric {
    s.model()
        .get_metric(pb::GetMetricRequest { id: id.into() })
        .await
        .expect("GetMetric")
        .into_inner()
        .metric
        .expect("metric")
}

#[tokio::test]
async fn an_observation_from_the_future_is_refused_and_nothing_of_the_call_is_written() {
    let s = TestServer::start().await;
    create_metric(&s, metric("conv", 2.0, 3.0)).await;
    let next_year = ts(Utc::now() + Duration::days(365));
    let r = s
        .model()
        .record_observations(pb::RecordObservationsRequest {
            observations: vec![
                observation("conv", 2.2, Some(days_ago(14))),
                observation("conv", 2.3, Some(days_ago(7))),
                observation("conv", 2.4, None),
                observation("conv", 2.9, Some(next_year)),
            ],
        })
        .await;
    let status = assert_code(r, Code::InvalidArgument);
    assert_eq!(bad_fields(&status), ["observations[3].observe_time"]);
    let message = status.message();
    assert!(
        message.contains("is in the future")
            && message.contains("the server's clock is")
            && message.contains(&format!(
                "at most {} s of clock skew",
                MAX_CLOCK_SKEW.num_seconds()
            )),
        "{message}"
    );
    // All or nothing: the three good observations of the call are not
    // written either, and the metric's current value is untouched.
    let m = get_metric(&s, "conv").await;
    assert_eq!((m.current_value, m.observation_count), (None, 0));

    // Within the skew a client's clock may run ahead: accepted.
    let ahead = ts(Utc::now() + MAX_CLOCK_SKEW / 2);
    record(&s, vec![observation("conv", 2.5, Some(ahead))]).await;
    let m = get_metric(&s, "conv").await;
    assert_eq!((m.current_value, m.observation_count), (Some(2.5), 1));
    // Just past it: refused.
    let beyond = ts(Utc::now() + MAX_CLOCK_SKEW + Duration::minutes(1));
    assert_invalid(
        s.model()
            .record_observations(pb::RecordObservationsRequest {
                observations: vec![observation("conv", 2.9, Some(beyond))],
            })
            .await,
        &["observations[0].observe_time"],
    );
    assert_eq!(get_metric(&s, "conv").await.observation_count, 1);
}
