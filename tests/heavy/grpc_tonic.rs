//! `HttpDrainLayer` in a real tonic 0.14 server with `tonic-health`, driven by tonic's own
//! client over HTTP/2 on 127.0.0.1. Every wait is bounded by a timeout only a bug can reach.
#![cfg(feature = "http")]

#[path = "../support/mod.rs"]
mod support;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Server};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::filter::AsyncFilterLayer;
use tower_drain::Drain;

use support::bounded;

struct Grpc {
    drain: Drain,
    client: HealthClient<Channel>,
    reporter: tonic_health::server::HealthReporter,
    /// Unary calls wait here, inside the drain layer, until the test releases them.
    gate: Arc<Notify>,
    shutdown_gate: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(gated: bool) -> Grpc {
    let drain = Drain::new();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let gate = Arc::new(Notify::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown_gate = Arc::new(Notify::new());
    let signal = {
        let (drain, gate) = (drain.clone(), shutdown_gate.clone());
        async move {
            let gate = gate.notified();
            drain.draining().await;
            gate.await;
        }
    };
    let hold = gate.clone();
    let drain_layer = drain.http_layer();
    let task = tokio::spawn(async move {
        Server::builder()
            .layer(drain_layer)
            .layer(AsyncFilterLayer::new(move |request: http::Request<_>| {
                let hold = hold.clone();
                async move {
                    let unary = request.uri().path().ends_with("/Check");
                    if gated && unary {
                        hold.notified().await;
                    }
                    Ok::<_, tower::BoxError>(request)
                }
            }))
            .add_service(health)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal)
            .await
            .unwrap();
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Grpc {
        drain,
        client: HealthClient::new(channel),
        reporter,
        gate,
        shutdown_gate,
        task,
    }
}

fn check() -> HealthCheckRequest {
    HealthCheckRequest {
        service: String::new(),
    }
}

#[tokio::test]
async fn unary_calls_in_flight_finish_and_new_ones_get_unavailable() {
    let grpc = start(true).await;
    let drain = grpc.drain.clone();

    let calls: Vec<_> = (0..3)
        .map(|_| {
            let mut client = grpc.client.clone();
            tokio::spawn(async move { client.check(check()).await })
        })
        .collect();
    bounded("3 in flight", drain.until(|s| s.in_flight == 3)).await;
    assert!(drain.start_draining());
    let empty = tokio::spawn(drain.until_empty());

    // A new call on the same HTTP/2 connection: trailers-only UNAVAILABLE.
    let status = grpc.client.clone().check(check()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "service is draining");
    assert_eq!(drain.snapshot().rejected, 1);

    assert!(!empty.is_finished());
    grpc.gate.notify_waiters();
    for call in calls {
        let response = bounded("a check", call).await.unwrap().unwrap();
        assert_eq!(response.into_inner().status(), ServingStatus::Serving);
    }
    bounded("until_empty", empty).await.unwrap();
    let s = drain.snapshot();
    assert_eq!((s.completed, s.cancelled, s.in_flight), (3, 0, 0));

    grpc.shutdown_gate.notify_one();
    bounded("the server exits", grpc.task).await.unwrap();
}

#[tokio::test]
async fn a_server_stream_is_counted_until_it_ends_or_the_client_leaves() {
    let grpc = start(false).await;
    let drain = grpc.drain.clone();

    let mut stream = grpc
        .client
        .clone()
        .watch(check())
        .await
        .unwrap()
        .into_inner();
    let first = bounded("first status", stream.message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    assert_eq!(drain.in_flight(), 1, "the open stream is in flight");

    drain.start_draining();
    // The stream goes on while draining: an update still reaches the client.
    grpc.reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let second = bounded("second status", stream.message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.status(), ServingStatus::NotServing);
    assert_eq!(drain.in_flight(), 1);

    // A new stream is refused.
    let status = grpc.client.clone().watch(check()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);

    // The client goes away: the stream's slot is released as cancelled.
    drop(stream);
    bounded("until_empty", drain.until_empty()).await;
    assert_eq!(drain.snapshot().cancelled, 1);

    grpc.shutdown_gate.notify_one();
    bounded("the server exits", grpc.task).await.unwrap();
}
