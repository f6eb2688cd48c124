//! What one client may consume (`[limits]`): streams per connection,
//! connections, idle connections, refused requests' codes, response bytes
//! and watchers that never read. Hostile clients are raw HTTP/2 (h2) or TCP
//! on loopback, since tonic's client behaves too well.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use plumbline::proto as pb;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tonic::Code;
use tonic::codegen::http;

use crate::common::*;

/// Generous bound on what must happen soon; a test that hits it fails.
const SOON: Duration = Duration::from_secs(10);

/// An HTTP/2 connection with the given initial stream window, driven in
/// the background.
async fn h2_client(addr: SocketAddr, window: u32) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(window)
        .handshake(tcp)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send.ready().await.unwrap()
}

fn grpc_request(addr: SocketAddr, method: &str) -> http::Request<()> {
    http::Request::post(format!("http://{addr}/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap()
}

/// One gRPC frame: no compression, the stated length, then `payload`.
fn frame(stated_len: u32, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(0);
    b.put_u32(stated_len);
    b.put_slice(payload);
    b.freeze()
}

/// Sends one raw request message and returns the gRPC status it got.
async fn raw_unary(addr: SocketAddr, method: &str, body: Bytes) -> tonic::Status {
    let mut send = h2_client(addr, 65_535).await;
    let (response, mut stream) = send
        .send_request(grpc_request(addr, method), false)
        .unwrap();
    stream.send_data(body, true).unwrap();
    let response = tokio::time::timeout(SOON, response)
        .await
        .expect("an answer")
        .unwrap();
    if let Some(s) = tonic::Status::from_header_map(response.headers()) {
        return s;
    }
    let mut body = response.into_body();
    while let Some(d) = body.data().await {
        d.unwrap();
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    tonic::Status::from_header_map(&trailers).expect("a status")
}

#[tokio::test]
async fn an_over_size_request_is_resource_exhausted() {
    let s = TestServer::start().await;
    let status = raw_unary(
        s.server().local_addr(),
        "plumbline.v1.BacklogService/GetItem",
        frame(5 << 20, b""),
    )
    .await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}

#[tokio::test]
async fn an_undecodable_request_is_invalid_argument() {
    let s = TestServer::start().await;
    let status = raw_unary(
        s.server().local_addr(),
        "plumbline.v1.BacklogService/GetItem",
        frame(3, &[0xff, 0xff, 0xff]),
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("not a valid message"),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_connection_may_open_only_the_configured_number_of_streams() {
    let s = TestServer::start_with_config(|c| c.limits.max_concurrent_streams = 2).await;
    let addr = s.server().local_addr();
    // The server advertises SETTINGS_MAX_CONCURRENT_STREAMS (it did not
    // before), which h2's client honours by holding the third stream back.
    let send = h2_client(addr, 65_535).await;
    let watch = || {
        let mut b = BytesMut::new();
        b.put_u8(0);
        b.put_u32(0);
        b.freeze()
    };
    let mut open = Vec::new();
    let mut send = send;
    for _ in 0..2 {
        let (response, mut stream) = send
            .send_request(
                grpc_request(addr, "plumbline.v1.ScoringService/WatchRanking"),
                false,
            )
            .unwrap();
        stream.send_data(watch(), true).unwrap();
        let response = tokio::time::timeout(SOON, response).await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        open.push((response, stream));
        send = send.ready().await.unwrap();
    }
    // A third stream on this connection is held back (h2's client queues
    // it, as the server's setting says) until one of the two ends.
    let (response, mut stream) = send
        .send_request(
            grpc_request(addr, "plumbline.v1.ScoringService/WatchRanking"),
            false,
        )
        .unwrap();
    stream.send_data(watch(), true).unwrap();
    let third = tokio::spawn(response);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!third.is_finished(), "a third stream was allowed");
    open.pop();
    let response = tokio::time::timeout(SOON, third)
        .await
        .expect("the third stream starts once one ended")
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_idle_timeout() {
    let s = TestServer::start_with_config(|c| c.limits.idle_timeout_ms = 200).await;
    let mut tcp = TcpStream::connect(s.server().local_addr()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let closed = tokio::time::timeout(SOON, async {
        // The server's SETTINGS arrive first; then the end of the stream.
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle connection stayed open");
}

#[tokio::test]
async fn connections_past_the_limit_wait_while_existing_clients_keep_working() {
    let s = TestServer::start_with_config(|c| c.limits.max_connections = 2).await;
    let addr = s.server().local_addr();
    // The test's channel is the first connection; this raw one the second.
    let hog = TcpStream::connect(addr).await.unwrap();
    // A third client's call waits (its connection sits in the backlog).
    let url = s.server().url();
    let third = tokio::spawn(async move {
        let channel = tonic::transport::Channel::from_shared(url)
            .unwrap()
            .connect_lazy();
        pb::backlog_service_client::BacklogServiceClient::new(channel)
            .get_item(pb::GetItemRequest {
                key: "web/1".into(),
            })
            .await
    });
    // Meanwhile the existing client is served.
    create_source(&s, github_source("web")).await;
    upsert(&s, vec![item("web", "1", "Served")]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !third.is_finished(),
        "a connection past the limit was served"
    );
    drop(hog);
    let got = tokio::time::timeout(SOON, third)
        .await
        .expect("the waiting client is served once a connection closed")
        .unwrap()
        .unwrap();
    assert_eq!(got.into_inner().item.unwrap().title, "Served");
}

#[tokio::test]
async fn a_watcher_that_does_not_read_is_ended_and_frees_its_place() {
    let s = TestServer::start_with_config(|c| {
        c.limits.max_watchers = 1;
        c.limits.watch_unread_timeout_ms = 1000;
    })
    .await;
    build_fixture(&s).await;
    let addr = s.server().local_addr();
    // A client that gives the server no window to send in: the first
    // update waits unread.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, mut conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    let (open_window, opened) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        tokio::select! {
            _ = &mut conn => return,
            _ = opened => conn.set_initial_window_size(1 << 20).unwrap(),
        }
        let _ = conn.await;
    });
    let mut send = send.ready().await.unwrap();
    let (response, mut stream) = send
        .send_request(
            grpc_request(addr, "plumbline.v1.ScoringService/WatchRanking"),
            false,
        )
        .unwrap();
    stream.send_data(frame(0, b""), true).unwrap();
    let response = tokio::time::timeout(SOON, response).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);

    // It holds the one place: another watch is refused.
    let refused = s
        .scoring()
        .watch_ranking(pb::WatchRankingRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    // Writes that change the ranking meanwhile cost it nothing.
    record(&s, vec![observation("lead", 4.0, Some(days_ago(0)))]).await;

    // Past the unread timeout its place is free again.
    let watch = tokio::time::timeout(SOON, async {
        loop {
            match s
                .scoring()
                .watch_ranking(pb::WatchRankingRequest::default())
                .await
            {
                Ok(w) => return w.into_inner(),
                Err(e) => {
                    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
    .await
    .expect("the unread watch is ended");
    drop(watch);

    // When the client reads at last, it gets at most the update the server
    // had already handed to HTTP/2 (none of the later ones: they were
    // never computed), then why its watch ended.
    open_window.send(()).unwrap();
    let mut body = response.into_body();
    let mut received = BytesMut::new();
    while let Some(d) = tokio::time::timeout(SOON, body.data()).await.unwrap() {
        let d = d.unwrap();
        let _ = body.flow_control().release_capacity(d.len());
        received.put_slice(&d);
    }
    let mut messages = 0;
    let mut rest = &received[..];
    while rest.len() >= 5 {
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        rest = &rest[(5 + len).min(rest.len())..];
        messages += 1;
    }
    assert!(
        messages <= 1,
        "{messages} updates were kept for a client that did not read"
    );
    let trailers = body.trailers().await.unwrap().expect("trailers");
    let status = tonic::Status::from_header_map(&trailers).unwrap();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("unread"), "{status:?}");
}

#[tokio::test]
async fn list_items_is_bounded_by_bytes_and_pages_through_every_item() {
    use prost::Message;
    const BOUND: usize = 100_000;
    let s = TestServer::start_with_config(|c| c.limits.max_response_bytes = BOUND).await;
    create_source(&s, github_source("web")).await;
    let mut items: Vec<pb::Item> = (0..12)
        .map(|i| {
            let mut it = item("web", &format!("{i:02}"), "Big body");
            it.body = "x".repeat(30_000);
            it
        })
        .collect();
    // One item larger than the bound by itself still comes, alone.
    items[5].body = "y".repeat(150_000);
    upsert(&s, items).await;

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = s
            .backlog()
            .list_items(pb::ListItemsRequest {
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(
            page.encoded_len() <= BOUND || page.items.len() == 1,
            "a page of {} items is {} bytes",
            page.items.len(),
            page.encoded_len()
        );
        seen.extend(page.items.iter().map(|i| i.external_id.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        assert!(pages < 20, "paging does not end");
    }
    let want: Vec<String> = (0..12).map(|i| format!("{i:02}")).collect();
    assert_eq!(seen, want, "every item once, in order");
    assert!(pages >= 4, "{pages} pages");
}

#[tokio::test]
async fn a_watch_whose_connection_closes_frees_its_place() {
    let s = TestServer::start_with_config(|c| c.limits.max_watchers = 1).await;
    build_fixture(&s).await;
    let addr = s.server().local_addr();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut send = send.ready().await.unwrap();
    let (response, mut stream) = send
        .send_request(
            grpc_request(addr, "plumbline.v1.ScoringService/WatchRanking"),
            false,
        )
        .unwrap();
    stream.send_data(frame(0, b""), true).unwrap();
    let response = tokio::time::timeout(SOON, response).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let refused = s
        .scoring()
        .watch_ranking(pb::WatchRankingRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");

    // The client goes away without reading: its watch ends with it.
    driver.abort();
    drop((send, stream, response));
    tokio::time::timeout(SOON, async {
        while s
            .scoring()
            .watch_ranking(pb::WatchRankingRequest::default())
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the place of a closed watch is freed");
}

#[tokio::test]
async fn a_quiet_watcher_outlives_the_idle_timeout_by_answering_keepalive_pings() {
    let s = TestServer::start_with_config(|c| {
        c.limits.keepalive_interval_secs = 1;
        c.limits.idle_timeout_ms = 2500;
    })
    .await;
    build_fixture(&s).await;
    let mut watch = s
        .scoring()
        .watch_ranking(pb::WatchRankingRequest {
            page_size: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    watch.message().await.unwrap().unwrap();
    // Longer than the idle timeout without a call: only pings flow.
    tokio::time::sleep(Duration::from_millis(4000)).await;
    record(&s, vec![observation("lead", 4.0, Some(days_ago(0)))]).await;
    let update = tokio::time::timeout(SOON, watch.message())
        .await
        .expect("an update")
        .expect("the watch is still open");
    assert!(update.is_some());
}

#[tokio::test]
async fn batch_get_items_past_the_byte_bound_is_resource_exhausted() {
    const BOUND: usize = 100_000;
    let s = TestServer::start_with_config(|c| c.limits.max_response_bytes = BOUND).await;
    create_source(&s, github_source("web")).await;
    let big = |id: &str| {
        let mut it = item("web", id, "Big body");
        it.body = "x".repeat(60_000);
        it
    };
    upsert(&s, vec![big("1"), big("2")]).await;
    let both = s
        .backlog()
        .batch_get_items(pb::BatchGetItemsRequest {
            keys: vec!["web/1".into(), "web/2".into()],
        })
        .await;
    let status = assert_code(both, Code::ResourceExhausted);
    assert!(status.message().contains("fewer keys"), "{status:?}");
    let one = s
        .backlog()
        .batch_get_items(pb::BatchGetItemsRequest {
            keys: vec!["web/2".into()],
        })
        .await
        .unwrap();
    assert_eq!(one.into_inner().items.len(), 1);
}
