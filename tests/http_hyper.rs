//! `HttpDrainLayer` under hyper 1 + hyper-util: `TowerToHyperService`, the `auto` builder
//! serving HTTP/1.1 and HTTP/2 (h2c prior knowledge) on one port, `GracefulShutdown`, and
//! hyper-util's legacy client. Every wait is bounded by a timeout only a bug can reach.
#![cfg(feature = "http")]

mod support;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::{service_fn, ServiceBuilder};
use tower_drain::Drain;

use support::{bounded, http2_connection};

/// The accept loop of `examples/hyper.rs`: stops accepting when `shutdown` resolves, then
/// lets hyper-util close every connection gracefully.
async fn serve(
    listener: TcpListener,
    drain: Drain,
    release: Arc<Notify>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let service = ServiceBuilder::new()
        .layer(drain.http_layer())
        .service(service_fn(move |_: Request<Incoming>| {
            let release = release.clone();
            async move {
                release.notified().await;
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"done"))))
            }
        }));
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, _) = accepted.unwrap();
                let connection = builder
                    .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service.clone()))
                    .into_owned();
                tokio::spawn(graceful.watch(connection));
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

#[tokio::test]
async fn http1_and_http2_drain_together_and_the_server_exits() {
    let drain = Drain::new();
    let release = Arc::new(Notify::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown_gate = Arc::new(Notify::new());
    let server = tokio::spawn(serve(listener, drain.clone(), release.clone(), {
        let (drain, gate) = (drain.clone(), shutdown_gate.clone());
        async move {
            let gate = gate.notified();
            drain.draining().await;
            gate.await;
        }
    }));

    // Two HTTP/1.1 requests through hyper-util's pooled client, two HTTP/2 streams on one
    // h2c connection.
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let url = format!("http://{addr}/");
    let mut requests = Vec::new();
    for _ in 0..2 {
        let (client, url) = (client.clone(), url.clone());
        requests.push(tokio::spawn(async move {
            client.get(url.parse().unwrap()).await.unwrap()
        }));
    }
    let h2 = http2_connection(addr).await;
    for _ in 0..2 {
        let mut h2 = h2.clone();
        requests.push(tokio::spawn(async move {
            h2.send_request(
                Request::get("http://localhost/")
                    .body(Empty::new())
                    .unwrap(),
            )
            .await
            .unwrap()
        }));
    }
    bounded("4 in flight", drain.until(|s| s.in_flight == 4)).await;
    drain.start_draining();

    // New work on each protocol is refused with 503.
    let refused = h2
        .clone()
        .send_request(
            Request::get("http://localhost/")
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().get(header::CONNECTION).is_none());

    let empty = tokio::spawn(drain.until_empty());
    release.notify_waiters();
    let (mut http1, mut http2) = (0, 0);
    for request in requests {
        let response = bounded("a response", request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        match response.version() {
            Version::HTTP_11 => {
                http1 += 1;
                assert_eq!(response.headers()[header::CONNECTION], "close");
            }
            Version::HTTP_2 => {
                http2 += 1;
                assert!(response.headers().get(header::CONNECTION).is_none());
            }
            other => panic!("unexpected {other:?}"),
        }
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "done");
    }
    assert_eq!((http1, http2), (2, 2));
    bounded("until_empty", empty).await.unwrap();
    let s = drain.snapshot();
    assert_eq!((s.completed, s.rejected, s.in_flight), (4, 1, 0));

    shutdown_gate.notify_one();
    bounded("graceful shutdown", server).await.unwrap();
}
