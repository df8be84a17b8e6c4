//! Refusals on the wire, from a real axum server to a real hyper client: what a client reads
//! in a `503` or a gRPC refusal, whatever its request looked like.
#![cfg(feature = "serve")]

mod support;

use std::future::IntoFuture;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{Request, StatusCode};
use http_body_util::Empty;
use tokio::net::TcpListener;
use tower_drain::{Drain, HttpDrainLayer};

use support::{get_request, http1_connection};

/// A draining axum server behind `layer`; its address.
async fn draining_server(drain: &Drain, layer: HttpDrainLayer) -> std::net::SocketAddr {
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/pkg.Service/Method", post(|| async { "never" }))
        .layer(layer);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    drain.start_draining();
    addr
}

fn grpc_request(content_type: &str) -> Request<Empty<Bytes>> {
    Request::post("http://localhost/pkg.Service/Method")
        .header(CONTENT_TYPE, content_type)
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn retry_after_duration_max_tells_clients_to_come_back_much_later() {
    let drain = Drain::new();
    let addr = draining_server(&drain, drain.http_layer().retry_after(Duration::MAX)).await;
    let mut client = http1_connection(addr).await;
    let response = client.send_request(get_request("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Not `0` ("come back now"), and no panic in a debug build.
    assert_eq!(response.headers()[RETRY_AFTER], u64::MAX.to_string());
}

/// Sends a gRPC request with `content_type` to a draining server; checks that it is refused
/// with a trailers-only `UNAVAILABLE` in the content type `answered`.
async fn assert_grpc_refusal(addr: std::net::SocketAddr, content_type: &str, answered: &str) {
    let mut client = http1_connection(addr).await;
    let response = client
        .send_request(grpc_request(content_type))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{content_type}");
    assert_eq!(response.headers()["grpc-status"], "14", "{content_type}");
    assert_eq!(response.headers()[CONTENT_TYPE], answered, "{content_type}");
}

#[tokio::test]
async fn grpc_content_types_are_recognised_whatever_their_case() {
    let drain = Drain::new();
    let addr = draining_server(&drain, drain.http_layer()).await;
    for content_type in [
        "Application/GRPC",
        "APPLICATION/grpc+proto",
        "application/gRPC",
    ] {
        assert_grpc_refusal(addr, content_type, "application/grpc").await;
    }
}

#[tokio::test]
async fn grpc_web_refusals_answer_in_the_grpc_web_content_type() {
    let drain = Drain::new();
    let addr = draining_server(&drain, drain.http_layer()).await;
    for (content_type, answered) in [
        ("application/grpc-web", "application/grpc-web"),
        ("application/grpc-web+proto", "application/grpc-web+proto"),
        ("application/grpc-web-text", "application/grpc-web-text"),
        (
            "application/grpc-web-text+proto; charset=utf-8",
            "application/grpc-web-text+proto",
        ),
    ] {
        assert_grpc_refusal(addr, content_type, answered).await;
    }
}

/// A refusal needs no capacity: behind a full `ConcurrencyLimit(1)` inside the layer, a request
/// waiting for the permit when draining begins, and one arriving after, both get their `503`
/// while the request holding the permit is still running.
#[tokio::test]
async fn refusals_never_wait_for_the_inner_services_capacity() {
    use std::sync::Arc;
    use tokio::sync::Notify;

    let drain = Drain::new();
    let release = Arc::new(Notify::new());
    let app = Router::new()
        .route(
            "/hold",
            get({
                let release = release.clone();
                move || async move {
                    release.notified().await;
                    "released"
                }
            }),
        )
        .route("/", get(|| async { "hello" }));
    // One limit for the whole server, inside the drain layer.
    let service = tower::ServiceBuilder::new()
        .layer(drain.http_layer())
        .concurrency_limit(1)
        .service(app);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tower_drain::serve(listener, service, drain.shutdown()).into_future());

    let holder = tokio::spawn(async move {
        let mut client = http1_connection(addr).await;
        client.send_request(get_request("/hold")).await
    });
    support::bounded("the permit taken", drain.until(|s| s.in_flight == 1)).await;
    // Waits for the permit: not counted yet, since the layer counts on `call`.
    let waiting = tokio::spawn(async move {
        let mut client = http1_connection(addr).await;
        client.send_request(get_request("/")).await
    });

    drain.start_draining();
    let woken = support::bounded("the waiting request's refusal", waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(woken.status(), StatusCode::SERVICE_UNAVAILABLE);
    let mut client = http1_connection(addr).await;
    let late = support::bounded(
        "a late request's refusal",
        client.send_request(get_request("/")),
    )
    .await
    .unwrap();
    assert_eq!(late.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !holder.is_finished(),
        "refused while the permit is still held"
    );

    release.notify_one();
    let held = support::bounded("the held request", holder)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held.status(), StatusCode::OK);
}

/// A response whose length is declared is complete once that many bytes are out: HTTP/1.1
/// servers stop there and may drop the body unpolled, which is no client gone.
#[tokio::test]
async fn a_body_of_declared_length_sent_whole_counts_as_completed() {
    use http_body_util::BodyExt;

    let drain = Drain::new();
    let app = Router::new()
        .route(
            "/declared",
            get(|| async {
                // A stream that does not know its length, with the length in the header.
                let chunks = (0..10)
                    .map(|_| Ok::<_, std::convert::Infallible>(Bytes::from(vec![b'x'; 1000])));
                let body = axum::body::Body::from_stream(futures::stream::iter(chunks));
                ([(http::header::CONTENT_LENGTH, "10000")], body)
            }),
        )
        .layer(drain.http_layer());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut client = http1_connection(addr).await;
    for round in 1..=3u64 {
        let response = client.send_request(get_request("/declared")).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 10_000);
        support::bounded(
            "the request leaves the pool",
            drain.until(|s| s.in_flight == 0 && s.started == round),
        )
        .await;
        let snapshot = drain.snapshot();
        assert_eq!((snapshot.completed, snapshot.cancelled), (round, 0));
    }
}

/// A plain hyper `service_fn` answering `HEAD` with a body: hyper sends the head alone, and
/// the request is complete.
#[tokio::test]
async fn a_plain_hyper_service_answering_head_counts_as_completed() {
    use http_body_util::Full;
    use tower::ServiceBuilder;

    let drain = Drain::new();
    let service = ServiceBuilder::new().layer(drain.http_layer()).service_fn(
        |_: Request<hyper::body::Incoming>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
                vec![b'x'; 100_000],
            ))))
        },
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tower_drain::serve(listener, service, drain.shutdown()).into_future());

    let mut client = http1_connection(addr).await;
    let head = Request::head("http://localhost/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = client.send_request(head).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    support::bounded(
        "counted",
        drain.until(|s| s.in_flight == 0 && s.started == 1),
    )
    .await;
    assert_eq!(drain.snapshot().cancelled, 0);
}

/// The last byte really sent: a 32 MiB single-frame body leaves the pool as soon as the server
/// takes it, but `serve` keeps the connection until its client has read every byte, within
/// the grace period, before it returns (and the process exits).
#[tokio::test]
async fn serve_waits_for_a_single_frame_body_to_be_written_before_it_returns() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SIZE: usize = 32 << 20;
    let drain = Drain::new();
    let app = Router::new()
        .route("/big", get(|| async { vec![b'b'; SIZE] }))
        .layer(drain.http_layer());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = drain.shutdown().grace(Duration::from_secs(30));
    let server = tokio::spawn(
        tower_drain::serve(listener, app, shutdown)
            .with_graceful_shutdown(async {
                stopped.await.ok();
            })
            .into_future(),
    );

    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /big HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut received = vec![0; 64 << 10];
    tcp.read_exact(&mut received).await.unwrap();
    // The body is one frame, taken by the server at once: the pool is already empty.
    support::bounded("the pool empties", drain.until(|s| s.in_flight == 0)).await;

    stop.send(()).unwrap();
    let mut phases = drain.watch_phase();
    support::bounded(
        "drained",
        phases.wait_for(|p| *p == tower_drain::Phase::Drained),
    )
    .await
    .unwrap();
    // Far more than the socket buffers hold is still unsent: the server cannot be done.
    assert!(!server.is_finished(), "returned with the body unsent");

    let mut rest = Vec::new();
    support::bounded("the rest of the body", tcp.read_to_end(&mut rest))
        .await
        .unwrap();
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        received.len() - head_end + rest.len(),
        SIZE,
        "every byte arrived"
    );
    let report = support::bounded("serve returns", server).await.unwrap();
    assert!(!report.timed_out(), "{report}");
}
