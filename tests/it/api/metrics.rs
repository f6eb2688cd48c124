//! Metrics: create, read, update, delete, and recorded observations.

use crate::common::*;
use plumbline::proto as pb;
use tonic::Code;

#[tokio::test]
async fn metrics_crud_and_observations() {
    let s = TestServer::start().await;
    let conv = create_metric(&s, metric("conv", 2.1, 3.5)).await;
    assert_eq!(conv.direction, pb::MetricDirection::HigherIsBetter as i32);
    assert_eq!(conv.gap, 1.0);
    assert_eq!(conv.current_value, None);
    assert_eq!(conv.observation_count, 0);
    assert!(!conv.stale, "no cadence: never stale");
    let lead = create_metric(&s, metric("lead", 10.0, 4.0)).await;
    assert_eq!(lead.direction, pb::MetricDirection::LowerIsBetter as i32);

    assert_invalid(
        s.model()
            .create_metric(pb::CreateMetricRequest {
                metric: Some(metric("flat", 2.0, 2.0)),
            })
            .await,
        &["metric.target"],
    );
    assert_invalid(
        s.model()
            .create_metric(pb::CreateMetricRequest {
                metric: Some(pb::Metric {
                    direction: pb::MetricDirection::HigherIsBetter as i32,
                    ..metric("odd", 10.0, 4.0)
                }),
            })
            .await,
        &["metric.direction"],
    );
    assert_invalid(
        s.model()
            .create_metric(pb::CreateMetricRequest {
                metric: Some(pb::Metric {
                    cadence: Some(prost_types::Duration {
                        seconds: -5,
                        nanos: 0,
                    }),
                    ..metric("neg", 0.0, 1.0)
                }),
            })
            .await,
        &["metric.cadence"],
    );
    assert_code(
        s.model()
            .create_metric(pb::CreateMetricRequest {
                metric: Some(metric("conv", 1.0, 2.0)),
            })
            .await,
        Code::AlreadyExists,
    );

    // Observations move current value and gap.
    let t0 = days_ago(2);
    let r = record(&s, vec![observation("conv", 2.8, Some(t0))]).await;
    assert_eq!(r.recorded_count, 1);
    assert_eq!(r.metrics.len(), 1);
    let m = &r.metrics[0];
    assert_eq!(m.id, "conv");
    assert_eq!(m.current_value, Some(2.8));
    assert!((m.gap - 0.5).abs() < 1e-9, "gap {}", m.gap);
    assert_eq!(m.observation_count, 1);
    assert_eq!(m.last_observe_time, Some(t0));
    let get = |id: &'static str| {
        let mut c = s.model();
        async move {
            c.get_metric(pb::GetMetricRequest { id: id.into() })
                .await
                .map(|r| r.into_inner().metric.unwrap())
        }
    };
    let got = get("conv").await.unwrap();
    assert_eq!(got.current_value, Some(2.8));
    assert!((got.gap - 0.5).abs() < 1e-9);

    // All or nothing: an unknown metric fails the whole batch.
    assert_code(
        s.model()
            .record_observations(pb::RecordObservationsRequest {
                observations: vec![
                    observation("conv", 3.0, None),
                    observation("missing", 1.0, None),
                ],
            })
            .await,
        Code::NotFound,
    );
    let got = get("conv").await.unwrap();
    assert_eq!(got.current_value, Some(2.8));
    assert_eq!(got.observation_count, 1);

    // The latest by time wins, whatever the request order; the same time
    // replaces the value.
    let r = record(
        &s,
        vec![
            observation("conv", 3.2, Some(days_ago(1))),
            observation("conv", 2.5, Some(days_ago(3))),
            observation("lead", 7.0, None),
        ],
    )
    .await;
    assert_eq!(r.recorded_count, 3);
    let ids: Vec<&str> = r.metrics.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["conv", "lead"]);
    assert_eq!(r.metrics[0].current_value, Some(3.2));
    assert_eq!(r.metrics[0].observation_count, 3);
    assert!((r.metrics[1].gap - 0.5).abs() < 1e-9, "lower is better");
    let r = record(&s, vec![observation("conv", 2.8, Some(t0))]).await;
    assert_eq!(r.metrics[0].observation_count, 3, "same time replaces");
    assert_eq!(r.metrics[0].current_value, Some(3.2));

    assert_invalid(
        s.model()
            .record_observations(pb::RecordObservationsRequest {
                observations: vec![
                    observation("conv", f64::NAN, None),
                    observation("", 1.0, None),
                ],
            })
            .await,
        &["observations[0].value", "observations[1].metric_id"],
    );
    assert_invalid(
        s.model()
            .record_observations(pb::RecordObservationsRequest::default())
            .await,
        &["observations"],
    );

    // Update: the masked field only; gap follows the new target.
    let updated = s
        .model()
        .update_metric(pb::UpdateMetricRequest {
            metric: Some(pb::Metric {
                name: "ignored".into(),
                ..metric("conv", 0.0, 4.9)
            }),
            update_mask: mask(&["target"]),
        })
        .await
        .unwrap()
        .into_inner()
        .metric
        .unwrap();
    assert_eq!(updated.target, 4.9);
    assert_eq!(updated.baseline, 2.1);
    assert_eq!(updated.name, "Metric conv");
    assert_eq!(updated.current_value, Some(3.2));
    assert_eq!(updated.observation_count, 3, "observations kept");
    assert!((updated.gap - (4.9 - 3.2) / (4.9 - 2.1)).abs() < 1e-9);
    assert_invalid(
        s.model()
            .update_metric(pb::UpdateMetricRequest {
                metric: Some(metric("conv", 0.0, 2.1)),
                update_mask: mask(&["target"]),
            })
            .await,
        &["metric.target"],
    );
    assert_invalid(
        s.model()
            .update_metric(pb::UpdateMetricRequest {
                metric: Some(metric("conv", 0.0, 2.1)),
                update_mask: mask(&["observation_count"]),
            })
            .await,
        &["update_mask"],
    );

    // List, page by page.
    create_metric(&s, metric("arr", 100.0, 200.0)).await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = s
            .model()
            .list_metrics(pb::ListMetricsRequest {
                page_size: 1,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.metrics.len() <= 1);
        seen.extend(page.metrics.into_iter().map(|m| m.id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen, ["arr", "conv", "lead"]);

    // Delete takes the observations with it.
    s.model()
        .delete_metric(pb::DeleteMetricRequest { id: "lead".into() })
        .await
        .unwrap();
    assert_code(get("lead").await, Code::NotFound);
    assert_code(
        s.model()
            .delete_metric(pb::DeleteMetricRequest { id: "lead".into() })
            .await,
        Code::NotFound,
    );
    let again = create_metric(&s, metric("lead", 10.0, 4.0)).await;
    assert_eq!(again.observation_count, 0);
    assert_eq!(again.current_value, None);
}
