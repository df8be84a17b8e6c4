//! `HttpDrainLayer` in a real axum 0.8 server on 127.0.0.1, driven by real hyper clients and
//! curl. Every wait is bounded by a timeout that only a bug can reach.
#![cfg(feature = "http")]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{header, StatusCode, Version};
use http_body_util::BodyExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};
use tower_drain::Drain;

use support::{bounded, get_request, http1_connection, http2_connection};

/// A server whose `/slow` handlers wait for `release`, whose `/stream` body is fed by the
/// test, and whose `/healthz` is exempt. Its graceful shutdown begins when the pool drains
/// *and* the test opens `shutdown_gate`, so a test can probe the server mid-drain first.
struct Server {
    addr: SocketAddr,
    drain: Drain,
    release: Arc<Notify>,
    chunks: mpsc::Sender<mpsc::Receiver<Result<Bytes, Infallible>>>,
    shutdown_gate: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_server() -> Server {
    let drain = Drain::new();
    let release = Arc::new(Notify::new());
    let (chunks, streams) = mpsc::channel::<mpsc::Receiver<Result<Bytes, Infallible>>>(8);
    let streams = Arc::new(tokio::sync::Mutex::new(streams));
    let app = Router::new()
        .route(
            "/slow",
            get({
                let release = release.clone();
                move || async move {
                    release.notified().await;
                    "slow response body"
                }
            }),
        )
        .route(
            "/stream",
            get(move || async move {
                let mut rx = streams
                    .lock()
                    .await
                    .recv()
                    .await
                    .expect("a stream for each request");
                let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
                Body::from_stream(stream)
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .layer(
            drain
                .http_layer()
                .retry_after(Duration::from_secs(3))
                .exempt(|request| request.uri.path() == "/healthz"),
        );
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
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .await
            .unwrap();
    });
    Server {
        addr,
        drain,
        release,
        chunks,
        shutdown_gate,
        task,
    }
}

#[tokio::test]
async fn drain_refuses_new_requests_finishes_accepted_ones_and_the_server_exits() {
    let server = start_server().await;
    let drain = server.drain.clone();

    // Three requests in flight, each on its own keep-alive connection, plus an idle one.
    let mut in_flight = Vec::new();
    for _ in 0..3 {
        let mut conn = http1_connection(server.addr).await;
        in_flight.push(tokio::spawn(async move {
            let response = conn.send_request(get_request("/slow")).await.unwrap();
            let close = response.headers().get(header::CONNECTION).cloned();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, close, body)
        }));
    }
    let mut idle = http1_connection(server.addr).await;
    bounded("3 in flight", drain.until(|s| s.in_flight == 3)).await;

    assert!(drain.start_draining());
    let empty = tokio::spawn(drain.until_empty());

    // A new request on an open connection is refused without reaching the handler.
    let refused = idle.send_request(get_request("/slow")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()[header::CONNECTION], "close");
    assert_eq!(refused.headers()[header::RETRY_AFTER], "3");
    let body = refused.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty());
    assert_eq!(drain.snapshot().rejected, 1);

    // The exempt health check still answers, and is not counted.
    let mut health_conn = http1_connection(server.addr).await;
    let health = health_conn
        .send_request(get_request("/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(drain.snapshot().started, 3);

    // Release the handlers: all three finish in full, with `Connection: close`.
    assert!(!empty.is_finished());
    server.release.notify_waiters();
    for request in in_flight {
        let (status, close, body) = bounded("a slow response", request).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(close.as_ref().map(|v| v.as_bytes()), Some(&b"close"[..]));
        assert_eq!(body, "slow response body");
    }
    bounded("until_empty", empty).await.unwrap();
    let s = drain.snapshot();
    assert_eq!(
        (s.completed, s.cancelled, s.rejected, s.in_flight),
        (3, 0, 1, 0)
    );

    server.shutdown_gate.notify_one();
    bounded("the server exits", server.task).await.unwrap();
}

#[tokio::test]
async fn a_streamed_body_stays_counted_until_its_last_chunk() {
    let server = start_server().await;
    let drain = server.drain.clone();
    let (tx, rx) = mpsc::channel(1);
    server.chunks.send(rx).await.unwrap();

    let mut conn = http1_connection(server.addr).await;
    let response = conn.send_request(get_request("/stream")).await.unwrap();
    let mut body = response.into_body();
    drain.start_draining();
    let mut empty = tokio_test::task::spawn(drain.until_empty());

    for i in 0..10 {
        tx.send(Ok(Bytes::from(format!("chunk {i};"))))
            .await
            .unwrap();
        let frame = bounded("a chunk", body.frame()).await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), format!("chunk {i};"));
        assert_eq!(drain.in_flight(), 1, "counted after chunk {i}");
        assert!(empty.poll().is_pending());
    }
    drop(tx); // the stream ends
    assert!(bounded("the end", body.frame()).await.is_none());
    bounded("until_empty", empty).await;
    assert_eq!(drain.snapshot().completed, 1);
    server.shutdown_gate.notify_one();
    bounded("the server exits", server.task).await.unwrap();
}

#[tokio::test]
async fn a_client_gone_mid_body_releases_its_slot_as_cancelled() {
    let server = start_server().await;
    let drain = server.drain.clone();
    let (tx, rx) = mpsc::channel(4);
    server.chunks.send(rx).await.unwrap();

    let mut conn = http1_connection(server.addr).await;
    let response = conn.send_request(get_request("/stream")).await.unwrap();
    let mut body = response.into_body();
    tx.send(Ok(Bytes::from_static(b"first"))).await.unwrap();
    bounded("first chunk", body.frame()).await.unwrap().unwrap();
    assert_eq!(drain.in_flight(), 1);

    // The client goes away mid-body.
    drop(body);
    drop(conn);
    // The server learns it when it next writes; keep offering chunks until it gives up.
    let cancelled = drain.until(|s| s.cancelled == 1);
    let feeder = tokio::spawn(async move {
        while tx.send(Ok(Bytes::from_static(b"more"))).await.is_ok() {
            tokio::task::yield_now().await;
        }
    });
    bounded("cancelled", cancelled).await;
    assert_eq!(drain.in_flight(), 0);
    bounded("feeder stops", feeder).await.unwrap();
}

#[tokio::test]
async fn http2_responses_never_carry_connection_headers() {
    let server = start_server().await;
    let drain = server.drain.clone();
    let mut conn = http2_connection(server.addr).await;

    let request = tokio::spawn({
        let mut conn = conn.clone();
        async move { conn.send_request(get_request("/slow")).await.unwrap() }
    });
    bounded("1 in flight", drain.until(|s| s.in_flight == 1)).await;
    drain.start_draining();

    // A new stream on the open HTTP/2 connection is refused, without `Connection`.
    let refused = conn.send_request(get_request("/slow")).await.unwrap();
    assert_eq!(refused.version(), Version::HTTP_2);
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().get(header::CONNECTION).is_none());

    server.release.notify_waiters();
    let response = bounded("the slow response", request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get(header::CONNECTION).is_none());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "slow response body");
    bounded("until_empty", drain.until_empty()).await;

    server.shutdown_gate.notify_one();
    bounded("the server exits", server.task).await.unwrap();
}

#[tokio::test]
async fn curl_sees_503_with_connection_close_while_draining() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: curl is not installed (apt-get install curl)");
        return;
    }
    let server = start_server().await;
    server.drain.start_draining();
    let url = format!("http://{}/anything", server.addr);
    let output = bounded(
        "curl",
        tokio::process::Command::new("curl")
            .args(["-s", "-i", "--max-time", "5", &url])
            .output(),
    )
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_lowercase();
    assert!(text.starts_with("http/1.1 503"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    assert!(text.contains("retry-after: 3"), "{text}");
    assert!(text.contains("content-length: 0"), "{text}");
    server.shutdown_gate.notify_one();
    bounded("the server exits", server.task).await.unwrap();
}

#[test]
fn layer_fits_router_layer_and_route_layer() {
    let drain = Drain::new();
    let _app: Router = Router::new()
        .route("/", get(|| async { "hi" }))
        .route_layer(drain.http_layer())
        .layer(drain.http_layer());
}

/// Responses that carry no body by definition (a `HEAD` answer, `204`, `304`) are complete
/// once their head is sent: hyper drops their bodies unpolled over HTTP/1.1, and that counts
/// as completed, not cancelled, as it does over HTTP/2.
#[tokio::test]
async fn head_204_and_304_responses_count_as_completed() {
    let drain = Drain::new();
    let streamed = || {
        let chunks = futures::stream::iter([Ok::<_, Infallible>(Bytes::from_static(b"never"))]);
        Body::from_stream(chunks)
    };
    let app = Router::new()
        .route("/page", get(|| async { "a page with a body" }))
        .route(
            "/not-modified",
            get(|| async { (StatusCode::NOT_MODIFIED, "ignored body") }),
        )
        .route(
            "/no-content",
            get(move || async move { (StatusCode::NO_CONTENT, streamed()) }),
        )
        .layer(drain.http_layer());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let requests = || {
        [
            (http::Method::HEAD, "/page", StatusCode::OK),
            (http::Method::GET, "/not-modified", StatusCode::NOT_MODIFIED),
            (http::Method::GET, "/no-content", StatusCode::NO_CONTENT),
        ]
    };
    let mut expected = 0;
    let mut h1 = http1_connection(addr).await;
    let mut h2 = http2_connection(addr).await;
    for (method, path, status) in requests() {
        let request = || {
            http::Request::builder()
                .method(method.clone())
                .uri(format!("http://localhost{path}"))
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap()
        };
        for version in [Version::HTTP_11, Version::HTTP_2] {
            let response = if version == Version::HTTP_11 {
                h1.send_request(request()).await.unwrap()
            } else {
                h2.send_request(request()).await.unwrap()
            };
            assert_eq!(response.status(), status, "{method} {path}");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            if version == Version::HTTP_11 {
                // hyper suppresses these bodies over HTTP/1.1; over HTTP/2 it sends what the
                // service returns, which is then complete when sent, as before.
                assert!(body.is_empty(), "{method} {path}: {body:?}");
            }
            expected += 1;
            bounded(
                "the request leaves the pool",
                drain.until(|s| s.in_flight == 0 && s.started == expected),
            )
            .await;
            let snapshot = drain.snapshot();
            assert_eq!(
                (snapshot.completed, snapshot.cancelled),
                (expected, 0),
                "{method} {path} over {version:?}"
            );
        }
    }
}
