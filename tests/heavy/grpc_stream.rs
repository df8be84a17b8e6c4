//! A gRPC server stream that ends with `UNAVAILABLE` when draining begins, through
//! `DrainWatch`, on a real tonic 0.14 server with tonic's client. The service implements
//! tonic-health's generated `Health` trait by hand, so no protoc is needed.
#![cfg(feature = "http")]

#[path = "../support/mod.rs"]
mod support;

use std::future::IntoFuture;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower_drain::{Drain, DrainWatch};

use support::bounded;

/// `Watch` sends `SERVING`, then, when the server drains, `NOT_SERVING` and the status
/// `UNAVAILABLE`, so the client reconnects elsewhere instead of being cut at the deadline.
struct Draining;

#[tonic::async_trait]
impl Health for Draining {
    async fn check(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        Err(Status::unimplemented("watch only"))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let signal = request
            .extensions()
            .get::<DrainWatch>()
            .cloned()
            .ok_or_else(|| Status::internal("no DrainWatch: use with_request_signal()"))?;
        let status = |status: ServingStatus| {
            Ok(HealthCheckResponse {
                status: status.into(),
            })
        };
        let serving = futures::stream::iter([status(ServingStatus::Serving)]);
        let end = futures::stream::once(async move {
            signal.draining().await;
            status(ServingStatus::NotServing)
        });
        let unavailable = futures::stream::iter([Err(Status::unavailable("server draining"))]);
        Ok(Response::new(Box::pin(
            serving.chain(end).chain(unavailable),
        )))
    }
}

#[tokio::test]
async fn a_server_stream_ends_with_unavailable_when_draining_begins() {
    let drain = Drain::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn({
        let layer = drain.http_layer().with_request_signal();
        let draining = drain.draining();
        Server::builder()
            .layer(layer)
            .add_service(HealthServer::new(Draining))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), draining)
            .into_future()
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);

    let mut stream = client
        .watch(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = bounded("the first message", stream.message())
        .await
        .unwrap();
    assert_eq!(first.unwrap().status(), ServingStatus::Serving);
    assert_eq!(drain.in_flight(), 1);

    let shutdown = tokio::spawn(drain.shutdown().into_future());
    let last = bounded("the last message", stream.message()).await.unwrap();
    assert_eq!(last.unwrap().status(), ServingStatus::NotServing);
    let end = bounded("the end of the stream", stream.message())
        .await
        .unwrap_err();
    assert_eq!(end.code(), Code::Unavailable);
    assert_eq!(end.message(), "server draining");

    let report = bounded("the shutdown", shutdown).await.unwrap();
    assert!(!report.timed_out());
    assert_eq!(report.completed, 1);
    assert_eq!(drain.snapshot().cancelled, 0);
    drop(client);
    bounded("the server exits", server).await.unwrap().unwrap();
}
