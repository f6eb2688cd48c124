//! Server reflection (v1) and the standard health service, as generic gRPC
//! tools (grpcurl, grpc-health-probe, Kubernetes probes) use them.

use crate::common::TestServer;
use prost::Message;
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

const PLUMBLINE_SERVICES: [&str; 13] = [
    "plumbline.v1.BacklogService",
    "plumbline.v1.CustomerService",
    "plumbline.v1.HistoryService",
    "plumbline.v1.InsightService",
    "plumbline.v1.ModelFileService",
    "plumbline.v1.RollupService",
    "plumbline.v1.ScoringService",
    "plumbline.v1.SourceService",
    "plumbline.v1.SplitService",
    "plumbline.v1.SyncService",
    "plumbline.v1.TokenService",
    "plumbline.v1.ValidationService",
    "plumbline.v1.ValueModelService",
];

/// One request on the bidirectional reflection stream, one response back.
async fn try_reflect(s: &TestServer, request: MessageRequest) -> Result<MessageResponse, Status> {
    let mut client = ServerReflectionClient::new(s.channel.clone());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await?
        .into_inner();
    let resp: ServerReflectionResponse = stream.message().await?.expect("one message");
    Ok(resp.message_response.expect("a message response"))
}

async fn reflect(s: &TestServer, request: MessageRequest) -> MessageResponse {
    try_reflect(s, request).await.expect("ServerReflectionInfo")
}

#[tokio::test]
async fn reflection_v1_lists_the_plumbline_services_and_health() {
    let s = TestServer::start().await;
    let MessageResponse::ListServicesResponse(list) =
        reflect(&s, MessageRequest::ListServices(String::new())).await
    else {
        panic!("expected a list of services");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    for want in PLUMBLINE_SERVICES.iter().chain(&["grpc.health.v1.Health"]) {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing in {names:?}"
        );
    }
    let plumbline: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| n.starts_with("plumbline."))
        .collect();
    assert_eq!(plumbline, PLUMBLINE_SERVICES, "exactly these services");
    s.stop().await;
}

#[tokio::test]
async fn reflection_v1_serves_the_file_of_a_symbol() {
    let s = TestServer::start().await;
    let MessageResponse::FileDescriptorResponse(files) = reflect(
        &s,
        MessageRequest::FileContainingSymbol("plumbline.v1.ScoringService".into()),
    )
    .await
    else {
        panic!("expected file descriptors");
    };
    let decoded: Vec<prost_types::FileDescriptorProto> = files
        .file_descriptor_proto
        .iter()
        .map(|b| prost_types::FileDescriptorProto::decode(b.as_slice()).expect("descriptor"))
        .collect();
    let scoring = decoded
        .iter()
        .find(|f| f.name() == "plumbline/v1/scoring.proto")
        .expect("scoring.proto served");
    assert_eq!(scoring.package(), "plumbline.v1");
    let methods: Vec<&str> = scoring.service[0].method.iter().map(|m| m.name()).collect();
    assert_eq!(methods, ["GetItemScore", "RankItems", "WatchRanking"]);

    // An unknown symbol is NOT_FOUND (tonic-reflection ends the stream with
    // that status; an in-stream error response would do as well).
    match try_reflect(
        &s,
        MessageRequest::FileContainingSymbol("plumbline.v1.Nope".into()),
    )
    .await
    {
        Err(status) => assert_eq!(status.code(), Code::NotFound, "{status:?}"),
        Ok(MessageResponse::ErrorResponse(e)) => {
            assert_eq!(e.error_code, Code::NotFound as i32, "{e:?}")
        }
        Ok(other) => panic!("expected NOT_FOUND, got {other:?}"),
    }
    s.stop().await;
}

#[tokio::test]
async fn health_reports_serving_for_the_server_and_each_service() {
    let s = TestServer::start().await;
    let mut health = HealthClient::new(s.channel.clone());
    for service in std::iter::once("").chain(PLUMBLINE_SERVICES) {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("health check of {service:?}: {e:?}"))
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "plumbline.v1.Nope".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(unknown.code(), Code::NotFound);
    s.stop().await;
}

#[tokio::test]
async fn reflection_v1alpha_lists_the_same_services() {
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;
    let s = TestServer::start().await;
    let mut client = AlphaClient::new(s.channel.clone());
    let req = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .expect("v1alpha reflection")
        .into_inner();
    let resp = stream.message().await.unwrap().expect("one message");
    let Some(AlphaResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("expected a list of services");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    for want in PLUMBLINE_SERVICES.iter().chain(&["grpc.health.v1.Health"]) {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing in {names:?}"
        );
    }
    s.stop().await;
}
