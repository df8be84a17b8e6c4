//! Helpers shared by the integration tests. Each test file uses only some of them.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
#[cfg(feature = "http")]
use http::Response;
use http_body_util::Empty;
#[cfg(feature = "http")]
use http_body_util::Full;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
#[cfg(feature = "http")]
use tower::{service_fn, Layer, Service};
#[cfg(feature = "http")]
use tower_drain::{DrainBody, HttpDrainLayer};

/// An example's binary, built now: `cargo test --test ...` does not build examples, and a
/// binary left from an earlier build would test old code. A no-op when it is fresh. The tonic
/// and TLS examples are the `integration` member's (they need tonic, rustls); the others the
/// crate's.
pub fn example(name: &str) -> std::path::PathBuf {
    let deps = std::env::current_exe().unwrap();
    let profile = deps.parent().unwrap().parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let package = if ["tonic", "tonic_server", "tls"].contains(&name) {
        "tower-drain-integration"
    } else {
        "tower-drain"
    };
    let mut build = std::process::Command::new(cargo);
    build.args([
        "build",
        "--quiet",
        "-p",
        package,
        "--example",
        name,
        "--all-features",
    ]);
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    assert!(build.status().unwrap().success(), "building example {name}");
    profile.join("examples").join(name)
}

/// A bound no healthy test comes near: reaching it means a hang, reported as a failure.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test with `what` if it takes longer than [`LIMIT`].
pub async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(LIMIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// An HTTP/1.1 client connection of the test's own, so it controls which requests share it.
pub async fn http1_connection(addr: SocketAddr) -> http1::SendRequest<Empty<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(connection);
    sender
}

/// An HTTP/2 client connection with prior knowledge (h2c).
pub async fn http2_connection(addr: SocketAddr) -> http2::SendRequest<Empty<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// `GET path` with an empty body.
pub fn get_request(path: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("http://localhost{path}"))
        .body(Empty::new())
        .unwrap()
}

/// A 1 GiB response body: far more than the socket buffers hold, so a client that never reads
/// leaves it unfinished.
pub fn huge_body() -> axum::body::Body {
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let chunks = std::iter::repeat(Ok::<_, Infallible>(chunk)).take(16 * 1024);
    axum::body::Body::from_stream(futures::stream::iter(chunks))
}

/// Sends `GET path` over a raw connection and never reads the answer: the server's writes
/// block once the socket buffers are full. Keep the stream alive for as long as that matters.
pub async fn request_and_never_read(addr: SocketAddr, path: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp
}

#[cfg(feature = "http")]
/// `layer` around a service that answers every request with `body` at once.
pub fn full_service(
    layer: HttpDrainLayer,
    body: &'static [u8],
) -> impl Service<Request<()>, Response = Response<DrainBody<Full<Bytes>>>, Error = Infallible> + Clone
{
    layer.layer(service_fn(move |_: Request<()>| async move {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(body))))
    }))
}
