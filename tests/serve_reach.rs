//! `serve` beyond a plain TCP listener: a Unix socket, a handshake before serving (TLS's
//! place), the peer address as axum's `ConnectInfo`, a gRPC call's `grpc-timeout`, and a
//! download that the grace period covers even when the pool emptied before draining began.
#![cfg(all(unix, feature = "serve", feature = "axum"))]

mod support;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::oneshot;
use tower_drain::{Drain, ListenerExt};

use support::{bounded, get_request, http1_connection};

/// Serves `app` on `listener` under `drain` until `stop` fires.
fn spawn_serve<L: tower_drain::Listener>(
    listener: L,
    app: Router,
    drain: &Drain,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<tower_drain::ShutdownReport>,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        tower_drain::serve(
            listener,
            app,
            drain.shutdown().grace(Duration::from_secs(5)),
        )
        .with_graceful_shutdown(async {
            stopped.await.ok();
        })
        .into_future(),
    );
    (stop, server)
}

#[tokio::test]
async fn a_unix_socket_is_served_and_drained_with_the_peer_in_connect_info() {
    let dir = std::env::temp_dir().join(format!("tower-drain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("serve.sock");
    let _ = std::fs::remove_file(&path);
    let drain = Drain::new();
    let app = Router::new()
        .route(
            "/",
            get(
                |ConnectInfo(peer): ConnectInfo<tokio::net::unix::SocketAddr>| async move {
                    format!("hello {}", peer.is_unnamed())
                },
            ),
        )
        .layer(drain.http_layer());
    let (stop, server) = spawn_serve(UnixListener::bind(&path).unwrap(), app, &drain);

    let unix = UnixStream::connect(&path).await.unwrap();
    let (mut client, connection) = hyper::client::conn::http1::handshake(TokioIo::new(unix))
        .await
        .unwrap();
    tokio::spawn(connection);
    let response = client.send_request(get_request("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "hello true", "a client socket is unnamed");

    stop.send(()).unwrap();
    let report = bounded("serve returns", server).await.unwrap();
    assert_eq!(report.completed, 0, "the request ended before the shutdown");
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn connect_info_carries_the_tcp_peer_address() {
    let drain = Drain::new();
    let app = Router::new()
        .route(
            "/",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .layer(drain.http_layer());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, server) = spawn_serve(listener, app, &drain);

    let tcp = TcpStream::connect(addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let (mut client, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    let response = client.send_request(get_request("/")).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, local.to_string());
    stop.send(()).unwrap();
    bounded("serve returns", server).await.unwrap();
}

#[tokio::test]
async fn a_stalled_handshake_delays_no_one_and_is_closed_at_its_timeout() {
    // The handshake stands in for TLS: it reads one byte of "hello" before serving.
    let drain = Drain::new();
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(drain.http_layer());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = listener
        .handshake(|mut tcp: TcpStream| async move {
            let mut hello = [0; 1];
            tcp.read_exact(&mut hello).await?;
            Ok(tcp)
        })
        .timeout(Duration::from_millis(300));
    let (stop, server) = spawn_serve(listener, app, &drain);

    // A client that connects and never says hello.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    // Another one, after it, is served at once.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"!GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    bounded("the answer", tcp.read_to_string(&mut answer))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("hello"), "{answer}");

    // The silent one is closed at the handshake's timeout.
    let mut rest = Vec::new();
    let read = bounded("the silent client closed", silent.read_to_end(&mut rest)).await;
    assert!(read.is_ok_and(|n| n == 0) || rest.is_empty());
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    stop.send(()).unwrap();
    bounded("serve returns", server).await.unwrap();
}

#[tokio::test]
async fn a_grpc_call_past_its_grpc_timeout_is_answered_deadline_exceeded() {
    let drain = Drain::new();
    // A handler that waits for the whole request body, which never ends.
    let app = Router::new()
        .route(
            "/grpc.health.v1.Health/Check",
            post(|body: axum::body::Body| async move {
                let _ = body.collect().await;
                "never"
            }),
        )
        .layer(drain.http_layer());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, server) = spawn_serve(listener, app, &drain);

    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut client, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    let (_keep_open, chunks) =
        tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::convert::Infallible>>(1);
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(chunks));
    let request = Request::post("http://localhost/grpc.health.v1.Health/Check")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "300m")
        .body(body)
        .unwrap();
    let start = Instant::now();
    let response = bounded("the deadline's answer", client.send_request(request))
        .await
        .unwrap();
    let took = start.elapsed();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "4");
    assert_eq!(response.headers()["grpc-message"], "Timeout expired");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    // The call was dropped: the pool counts it as cancelled, and is empty.
    bounded("the pool empties", drain.until(|s| s.in_flight == 0)).await;
    assert_eq!(drain.snapshot().cancelled, 1);

    // A call without the header, and a plain request with one, are not timed.
    let mut plain = http1_connection(addr).await;
    let request = Request::get("http://localhost/nothing")
        .header("grpc-timeout", "1n")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = plain.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    stop.send(()).unwrap();
    bounded("serve returns", server).await.unwrap();
}

#[tokio::test]
async fn with_no_unready_period_a_download_gets_the_grace_period_not_one_second() {
    // The pool empties before draining begins (the body is one frame, taken at once); the
    // connection must still get the grace period to write it, not `close_within`.
    const SIZE: usize = 32 << 20;
    let drain = Drain::new();
    let app = Router::new()
        .route("/big", get(|| async { vec![b'b'; SIZE] }))
        .layer(drain.http_layer());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        tower_drain::serve(
            listener,
            app,
            drain.shutdown().grace(Duration::from_secs(30)),
        )
        .close_within(Duration::from_millis(200))
        .with_graceful_shutdown(async {
            stopped.await.ok();
        })
        .into_future(),
    );
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /big HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut received = vec![0; 64 << 10];
    tcp.read_exact(&mut received).await.unwrap();
    bounded("the pool empties", drain.until(|s| s.in_flight == 0)).await;

    stop.send(()).unwrap();
    // A slow client: it reads nothing for longer than `close_within`, then the rest.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!server.is_finished(), "returned with the body unsent");
    let mut rest = Vec::new();
    bounded("the rest of the body", tcp.read_to_end(&mut rest))
        .await
        .unwrap();
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        received.len() - head_end + rest.len(),
        SIZE,
        "every byte arrived"
    );
    bounded("serve returns", server).await.unwrap();
}
