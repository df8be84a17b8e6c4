//! Faults on a real server (axum 0.8 or hyper 1 on 127.0.0.1, hyper clients): a panicking
//! handler, inner errors, clients that leave or never read, bodies that fail, a connection that
//! outlives the unready period. Each must leave the pool's counts right and the shutdown
//! finishing. Every wait is bounded by a timeout that only a bug can reach.
#![cfg(feature = "http")]

#[path = "../support/mod.rs"]
mod support;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tower::Layer;
use tower_drain::{Drain, Phase};
use tower_http::catch_panic::CatchPanicLayer;

use support::{bounded, get_request, http1_connection as http1, huge_body, request_and_never_read};

/// The handlers the fault tests need: one that panics, one that never answers until told,
/// a body that fails mid-stream, and a body far larger than any socket buffer.
fn routes(release: Arc<Notify>) -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("handler panicked on purpose");
                }
                "unreachable"
            }),
        )
        .route(
            "/slow",
            get(move || async move {
                release.notified().await;
                "slow"
            }),
        )
        .route(
            "/body-error",
            get(|| async {
                let chunks: [Result<Bytes, std::io::Error>; 2] = [
                    Ok(Bytes::from_static(b"first")),
                    Err(std::io::Error::other("the body failed mid-stream")),
                ];
                Body::from_stream(futures::stream::iter(chunks))
            }),
        )
        .route("/huge", get(|| async { huge_body() }))
}

/// Serves `app` with axum; its graceful shutdown follows `drain.draining()`.
async fn serve_axum(app: Router, drain: &Drain) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let draining = drain.draining();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(draining)
            .await
            .unwrap();
    });
    (addr, task)
}

/// Serves any Tower service over HTTP/1.1 with hyper, one task per connection.
async fn serve_hyper<S, B>(service: S) -> SocketAddr
where
    S: tower::Service<Request<hyper::body::Incoming>, Response = Response<B>>,
    S: Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service),
            );
        }
    });
    addr
}

/// Runs a shutdown with a grace period only a bug can reach, and waits for the server to exit.
async fn shuts_down_in_time(drain: &Drain, server: Option<tokio::task::JoinHandle<()>>) {
    let shutdown = drain.shutdown().grace(Duration::from_secs(5));
    let report = bounded("shutdown", shutdown.into_future()).await;
    assert!(!report.timed_out(), "{report}");
    if let Some(server) = server {
        bounded("the server exits", server).await.unwrap();
    }
}

/// The counts that matter, in one tuple: (started, completed, cancelled, rejected, in flight).
fn counts(drain: &Drain) -> (u64, u64, u64, u64, usize) {
    let s = drain.snapshot();
    (s.started, s.completed, s.cancelled, s.rejected, s.in_flight)
}

#[tokio::test]
async fn a_panicking_handler_without_catch_panic_counts_as_cancelled() {
    let drain = Drain::new();
    let app = routes(Arc::new(Notify::new())).layer(drain.http_layer());
    let (addr, server) = serve_axum(app, &drain).await;

    // hyper drops the connection when its task unwinds: the client sees an error, not a 500.
    let mut conn = http1(addr).await;
    let result = bounded(
        "the panicking request",
        conn.send_request(get_request("/panic")),
    )
    .await;
    assert!(result.is_err(), "a panic kills the connection: {result:?}");
    bounded("the pool empties", drain.until_empty()).await;
    assert_eq!(counts(&drain), (1, 0, 1, 0, 0));

    // The server still serves, and still shuts down.
    let ok = http1(addr)
        .await
        .send_request(get_request("/ok"))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    shuts_down_in_time(&drain, Some(server)).await;
}

#[tokio::test]
async fn a_panicking_handler_inside_catch_panic_completes_with_a_500() {
    // CatchPanic inside the drain layer: the layer sees an ordinary 500 response.
    let drain = Drain::new();
    let app = routes(Arc::new(Notify::new()))
        .layer(CatchPanicLayer::new())
        .layer(drain.http_layer());
    let (addr, _server) = serve_axum(app, &drain).await;
    let response = http1(addr)
        .await
        .send_request(get_request("/panic"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    response.into_body().collect().await.unwrap();
    bounded("the pool empties", drain.until_empty()).await;
    assert_eq!(counts(&drain), (1, 1, 0, 0, 0));
}

#[tokio::test]
async fn a_panicking_handler_outside_catch_panic_counts_as_cancelled_with_a_500() {
    // CatchPanic outside the drain layer: the panic unwinds through the drain's future, which
    // is dropped, and the client still gets a 500.
    let drain = Drain::new();
    let app = routes(Arc::new(Notify::new()))
        .layer(drain.http_layer())
        .layer(CatchPanicLayer::new());
    let (addr, _server) = serve_axum(app, &drain).await;
    let response = http1(addr)
        .await
        .send_request(get_request("/panic"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    bounded("the pool empties", drain.until_empty()).await;
    assert_eq!(counts(&drain), (1, 0, 1, 0, 0));
}

#[tokio::test]
async fn an_inner_error_completes_the_request_and_hyper_closes_the_connection() {
    let drain = Drain::new();
    let failing = tower::service_fn(|_: Request<hyper::body::Incoming>| async {
        Err::<Response<Full<Bytes>>, _>(std::io::Error::other("the inner service failed"))
    });
    let service = drain.http_layer().layer(failing);
    let addr = serve_hyper(service).await;
    let result = http1(addr).await.send_request(get_request("/")).await;
    assert!(result.is_err(), "hyper answers a service error by closing");
    bounded("the pool empties", drain.until_empty()).await;
    assert_eq!(counts(&drain), (1, 1, 0, 0, 0));
}

/// A service whose `poll_ready` fails: the layer must pass the error on without counting.
#[derive(Clone)]
struct NeverReady;

impl<R> tower::Service<R> for NeverReady {
    type Response = Response<Full<Bytes>>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Err(std::io::Error::other("not ready, ever")))
    }

    fn call(&mut self, _: R) -> Self::Future {
        unreachable!("a service whose poll_ready failed is never called")
    }
}

#[tokio::test]
async fn an_inner_poll_ready_error_counts_nothing() {
    let drain = Drain::new();
    let service = drain.http_layer().layer(NeverReady);
    let addr = serve_hyper(service).await;
    let result = http1(addr).await.send_request(get_request("/")).await;
    assert!(result.is_err());
    assert_eq!(counts(&drain), (0, 0, 0, 0, 0));
    shuts_down_in_time(&drain, None).await;
}

#[tokio::test]
async fn a_client_gone_before_the_response_counts_as_cancelled() {
    let drain = Drain::new();
    let release = Arc::new(Notify::new());
    let app = routes(release.clone()).layer(drain.http_layer());
    let (addr, server) = serve_axum(app, &drain).await;

    // A raw client sends a request and hangs up before the answer.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /slow HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    bounded("1 in flight", drain.until(|s| s.in_flight == 1)).await;
    drop(tcp);

    // hyper notices the closed socket while the handler waits, and drops the handler.
    bounded("cancelled", drain.until(|s| s.cancelled == 1)).await;
    assert_eq!(counts(&drain), (1, 0, 1, 0, 0));
    shuts_down_in_time(&drain, Some(server)).await;
}

#[tokio::test]
async fn a_body_error_mid_stream_ends_the_request() {
    let drain = Drain::new();
    let app = routes(Arc::new(Notify::new())).layer(drain.http_layer());
    let (addr, _server) = serve_axum(app, &drain).await;
    // The client never sees a complete body: either the head arrives and the chunked body
    // breaks off, or hyper gives up before the head is out. Either way the handler's error,
    // not the layer's doing.
    match http1(addr)
        .await
        .send_request(get_request("/body-error"))
        .await
    {
        Ok(response) => {
            assert_eq!(response.status(), StatusCode::OK);
            let body = bounded("the body", response.into_body().collect()).await;
            assert!(
                body.is_err(),
                "the body error reaches the client as an error"
            );
        }
        Err(err) => assert!(err.is_incomplete_message(), "{err}"),
    }
    bounded("the pool empties", drain.until_empty()).await;
    assert_eq!(counts(&drain), (1, 1, 0, 0, 0));
}

#[tokio::test]
async fn a_client_that_never_reads_is_bounded_by_the_grace_deadline() {
    let drain = Drain::new();
    let app = routes(Arc::new(Notify::new())).layer(drain.http_layer());
    // The server runs on a runtime of its own, so that the test can end it the way a process
    // exit does: dropping every task, the connections' included.
    let server_runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = listener.into_std().unwrap();
    server_runtime.spawn(async move {
        let listener = TcpListener::from_std(listener).unwrap();
        axum::serve(listener, app).await.unwrap();
    });

    // Ask for a huge body and never read it: the server's writes block on a full socket.
    let tcp = request_and_never_read(addr, "/huge").await;
    bounded("1 in flight", drain.until(|s| s.in_flight == 1)).await;

    // The deadline is what bounds this shutdown: real time, since real sockets are involved.
    let shutdown = drain.shutdown().grace(Duration::from_millis(300));
    let report = bounded("shutdown", shutdown.into_future()).await;
    assert!(report.timed_out());
    assert_eq!(report.abandoned, 1);
    assert_eq!(report.completed, 0);
    assert_eq!(counts(&drain).4, 1);

    // The process exits: its runtime drops the straggler, counted as cancelled.
    server_runtime.shutdown_background();
    bounded("the straggler is dropped", drain.until_empty()).await;
    drop(tcp);
    assert_eq!(counts(&drain), (1, 0, 1, 0, 0));
}

#[tokio::test]
async fn a_connection_opened_while_unready_and_used_while_draining_is_refused_cleanly() {
    let drain = Drain::new();
    let release = Arc::new(Notify::new());
    let app = routes(release.clone()).layer(drain.http_layer());
    // No server-level graceful shutdown here: the connection must stay open into `Draining`,
    // so that what the layer does with its request is what is seen.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // A slow request keeps the shutdown waiting, so the refusal below is in its report.
    let mut slow_conn = http1(addr).await;
    let slow = tokio::spawn(async move {
        let response = slow_conn.send_request(get_request("/slow")).await.unwrap();
        response.into_body().collect().await.unwrap().to_bytes()
    });
    bounded("1 in flight", drain.until(|s| s.in_flight == 1)).await;

    let mut phases = drain.watch_phase();
    let shutdown = drain
        .shutdown()
        .unready_for(Duration::from_millis(200))
        .grace(Duration::from_secs(5));
    let shutdown = tokio::spawn(shutdown.into_future());
    bounded("unready", phases.wait_for(|p| *p == Phase::Unready))
        .await
        .unwrap();

    // Opened and used while unready: served.
    let mut conn = http1(addr).await;
    let served = conn.send_request(get_request("/ok")).await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    served.into_body().collect().await.unwrap();

    // The same keep-alive connection, used once draining: 503 with `Connection: close`.
    bounded("draining", phases.wait_for(|p| *p == Phase::Draining))
        .await
        .unwrap();
    let refused = conn.send_request(get_request("/ok")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()[header::CONNECTION], "close");

    release.notify_waiters();
    assert_eq!(bounded("the slow body", slow).await.unwrap(), "slow");
    let report = bounded("shutdown", shutdown).await.unwrap();
    assert_eq!((report.completed, report.rejected), (2, 1));
    assert!(!report.timed_out());
}
