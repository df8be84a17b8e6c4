//! Unusual requests on the wire, sent by hand over TCP to a real axum server: HTTP/1.0, a
//! WebSocket-style `Connection: upgrade` during a drain, and a malformed gRPC content type.
//! Each gets a defined answer; none is lost, none panics.
#![cfg(feature = "http")]

mod support;

use std::net::SocketAddr;

use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_drain::Drain;

use support::bounded;

async fn start_server(drain: &Drain) -> SocketAddr {
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(drain.http_layer());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Sends `request` as raw bytes and reads the whole answer: these requests all end with the
/// server closing the connection.
async fn exchange(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    bounded("the server's answer", tcp.read_to_end(&mut answer))
        .await
        .unwrap();
    String::from_utf8(answer).unwrap().to_ascii_lowercase()
}

#[tokio::test]
async fn http10_requests_are_served_and_then_refused_with_connection_close() {
    let drain = Drain::new();
    let addr = start_server(&drain).await;

    let served = exchange(addr, "GET / HTTP/1.0\r\n\r\n").await;
    assert!(served.starts_with("http/1.0 200"), "{served}");
    assert!(served.ends_with("hello"), "{served}");

    drain.start_draining();
    let refused = exchange(addr, "GET / HTTP/1.0\r\n\r\n").await;
    assert!(refused.starts_with("http/1.0 503"), "{refused}");
    assert!(refused.contains("connection: close"), "{refused}");
    let s = drain.snapshot();
    assert_eq!((s.completed, s.rejected, s.in_flight), (1, 1, 0));
}

#[tokio::test]
async fn an_upgrade_request_during_a_drain_is_refused_not_upgraded() {
    let drain = Drain::new();
    let addr = start_server(&drain).await;
    drain.start_draining();

    let refused = exchange(
        addr,
        "GET / HTTP/1.1\r\nhost: localhost\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert!(refused.starts_with("http/1.1 503"), "{refused}");
    assert!(refused.contains("connection: close"), "{refused}");
    assert!(!refused.contains("upgrade: websocket"), "{refused}");
    assert_eq!(drain.snapshot().rejected, 1);
}

#[tokio::test]
async fn a_malformed_grpc_content_type_gets_the_plain_refusal() {
    let drain = Drain::new();
    let addr = start_server(&drain).await;
    drain.start_draining();

    // Not `application/grpc`, and not even valid UTF-8: a plain 503, not a gRPC status.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"POST / HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/gr\xffpc\r\ncontent-length: 0\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    bounded("the server's answer", tcp.read_to_end(&mut answer))
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 503"), "{answer}");
    assert!(!answer.contains("grpc-status"), "{answer}");
    assert_eq!(drain.snapshot().rejected, 1);
}
