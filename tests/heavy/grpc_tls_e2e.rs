//! The TLS and gRPC examples, run as a user runs them: each as a process on a free port, real
//! clients, a call in flight, a call that never ends, and SIGTERM.
//!
//! - `examples/tls.rs` (`serve` over rustls): curl (`-k`, HTTP/1.1 and HTTP/2) and a hyper
//!   client over rustls.
//! - `examples/tonic_server.rs` (tonic's own `Server` under `run_server`) and
//!   `examples/tonic.rs` (`serve`): tonic's health client, and raw HTTP/2 calls for the
//!   request bodies that never end.
//!
//! For each: a request on a new connection during the drain gets `503` or gRPC `UNAVAILABLE`,
//! never a refused connection; the request in flight at the signal completes; and the process
//! exits by itself within `UNREADY_MS + GRACE_MS + 1 s` of the signal (plus
//! [`EXIT_MARGIN_MS`]) though a request never ends. And a gRPC call whose client set
//! `grpc-timeout: 300m`, and whose request never ends, is answered within a second:
//! `DEADLINE_EXCEEDED` from `serve`, `CANCELLED` from tonic's `Server` (as tonic answers its
//! timeouts).
//!
//! The examples are built with every feature; this file runs with those they require.
#![cfg(all(
    unix,
    feature = "axum",
    feature = "serve",
    feature = "signal",
    feature = "tonic"
))]

#[path = "../support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use support::{bounded, example, get_request};

const UNREADY_MS: u64 = 600;
const GRACE_MS: u64 = 1_500;
/// What `serve` and `run_server` allow a server to close in after the grace period.
const CLOSE_WITHIN_MS: u64 = 1_000;
/// For the process to leave once the server has returned (print the report, drop the
/// runtime, exit) and for the test to see it.
const EXIT_MARGIN_MS: u64 = 500;
/// In flight from before the signal until well into the drain, and done long before its end.
const SLOW_MS: u64 = UNREADY_MS + 600;

#[tokio::test]
async fn the_tls_example_serves_curl_and_hyper_over_both_protocols_and_drains_in_bounds() {
    let mut server = Running::start("tls", &[]).await;
    let addr = server.addr();

    // Before the signal: curl and hyper, over HTTP/1.1 and HTTP/2, each told its own address.
    for (protocol, version) in CURL_PROTOCOLS {
        let (status, negotiated, body) = curl(addr, "/", protocol).await;
        assert_eq!((status, negotiated.as_str()), (200, version));
        assert!(body.starts_with("hello 127.0.0.1:"), "{body}");
    }
    let mut h1 = https1(addr).await;
    let response = h1.sender.send_request(get_request("/")).await.unwrap();
    let body = body_text(response.into_body()).await;
    assert_eq!(body, format!("hello {}\n", h1.local));
    let mut h2 = https2(addr).await;
    let response = h2.sender.send_request(get_request("/")).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = body_text(response.into_body()).await;
    assert_eq!(body, format!("hello {}\n", h2.local));

    // In flight at the signal (the unready period admits them if they arrive just after it):
    // one request that ends during the drain, one that never ends.
    let slow = tokio::spawn(async move {
        let response = get_https1(addr, &format!("/slow/{SLOW_MS}")).await;
        (response.status(), body_text(response.into_body()).await)
    });
    let forever = tokio::spawn(async move {
        let mut h2 = https2(addr).await;
        h2.sender.send_request(get_request("/slow/3600000")).await
    });

    let signalled = Instant::now();
    server.terminate();
    assert_eq!(server.line("phase:").await, "phase: unready");
    // Unready: served, on a new connection too; only readiness says 503.
    assert_eq!(get_https1(addr, "/").await.status(), StatusCode::OK);
    let ready = get_https1(addr, "/ready").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    assert_eq!(server.line("phase:").await, "phase: draining");
    assert!(signalled.elapsed() >= Duration::from_millis(UNREADY_MS));
    // Draining: a new connection is accepted, its TLS handshake done, and its request refused.
    for (protocol, version) in CURL_PROTOCOLS {
        let (status, negotiated, _) = curl(addr, "/", protocol).await;
        assert_eq!((status, negotiated.as_str()), (503, version));
    }
    let refused = get_https1(addr, "/").await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
    assert_eq!(refused.headers()[header::CONNECTION], "close");
    let mut h2 = https2(addr).await;
    let refused = h2.sender.send_request(get_request("/")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);

    // The request in flight completes, whole, within the grace period.
    let (status, body) = bounded("the slow request", slow).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, format!("slept {SLOW_MS} ms\n"));
    assert!(signalled.elapsed() < Duration::from_millis(UNREADY_MS + GRACE_MS));

    // The endless one is abandoned at the grace period's end, and the process exits.
    let report = server.line("grace period over").await;
    assert!(report.contains(", 1 abandoned"), "{report}");
    server.exits_in_bounds(signalled).await;
    let cut = bounded("the endless request", forever).await.unwrap();
    assert!(cut.is_err(), "the endless request was cut");
}

/// `examples/tonic_server.rs`: tonic's own `Server` with the drain layer, under `run_server`.
#[tokio::test]
async fn the_tonic_server_example_keeps_the_promises_to_tonic_clients() {
    grpc_promises("tonic_server").await;
}

/// `examples/tonic_server.rs` keeps tonic's interceptors: one refuses a call that carries
/// `x-deny`, with the drain layer beside it.
#[tokio::test]
async fn the_tonic_server_example_keeps_its_interceptor() {
    use tonic_health::pb::HealthCheckRequest;

    let mut server = Running::start("tonic_server", &[]).await;
    let mut client = health_client(server.addr()).await;
    let mut denied = tonic::Request::new(HealthCheckRequest::default());
    denied
        .metadata_mut()
        .insert("x-deny", tonic::metadata::MetadataValue::from_static("1"));
    let status = client.check(denied).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(status.message(), "denied");
    assert!(client.check(HealthCheckRequest::default()).await.is_ok());
    server.terminate();
    bounded("the process exits", server.child.wait())
        .await
        .unwrap();
}

/// `examples/tonic.rs`: tonic's routes under `serve`.
#[tokio::test]
async fn the_tonic_example_keeps_the_promises_to_tonic_clients() {
    grpc_promises("tonic").await;
}

/// The three promises for a gRPC example, with tonic's health client and raw HTTP/2 calls.
async fn grpc_promises(example: &str) {
    use tonic::Code;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::HealthCheckRequest;

    let mut server = Running::start(example, &[]).await;
    let addr = server.addr();
    let mut client = health_client(addr).await;
    let check = client.check(HealthCheckRequest::default()).await.unwrap();
    assert_eq!(check.into_inner().status(), ServingStatus::Serving);
    let mut watch = client
        .watch(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = bounded("the first health", watch.message()).await.unwrap();
    assert_eq!(first.unwrap().status(), ServingStatus::Serving);

    // In flight at the signal: a call whose request the test finishes during the drain, and
    // one whose request never ends (no `grpc-timeout`, and the server's is longer than the
    // grace period), so that its handler never answers.
    let mut h2 = h2c(addr).await;
    let (finish, body) = open_body();
    let in_flight = tokio::spawn(h2.send_request(check_request(body, None)));
    let (_never, body) = open_body();
    let forever = tokio::spawn(h2.send_request(check_request(body, None)));

    let signalled = Instant::now();
    server.terminate();
    assert_eq!(server.line("phase:").await, "phase: unready");
    // Unready: served, on a new connection too; health says NOT_SERVING, on the watch too.
    let unready = bounded("NOT_SERVING", watch.message()).await.unwrap();
    assert_eq!(unready.unwrap().status(), ServingStatus::NotServing);
    let check = health_client(addr)
        .await
        .check(HealthCheckRequest::default())
        .await
        .unwrap();
    assert_eq!(check.into_inner().status(), ServingStatus::NotServing);

    assert_eq!(server.line("phase:").await, "phase: draining");
    // Draining: the watch ends with a clean status, not a cut connection; a call on a new
    // connection is accepted, and refused with UNAVAILABLE.
    let end = bounded("the end of the watch", watch.message())
        .await
        .unwrap_err();
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    let refused = health_client(addr)
        .await
        .check(HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert_eq!(refused.message(), "service is draining");

    // The call in flight completes once its request does: an answer and grpc-status 0.
    let message = http_body::Frame::data(Bytes::from_static(EMPTY_MESSAGE));
    finish.send(Ok(message)).await.unwrap();
    drop(finish);
    let response = bounded("the call in flight", in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = bounded("its body", response.into_body().collect())
        .await
        .unwrap();
    let trailers = body.trailers().cloned().unwrap_or_default();
    assert_eq!(grpc_status(&trailers), Some("0"), "{trailers:?}");
    assert!(!body.to_bytes().is_empty(), "a HealthCheckResponse");
    assert!(signalled.elapsed() < Duration::from_millis(UNREADY_MS + GRACE_MS));

    // The endless call is abandoned at the grace period's end, and the process exits.
    let report = server.line("grace period over").await;
    assert!(report.contains(", 1 abandoned"), "{report}");
    server.exits_in_bounds(signalled).await;
    let cut = bounded("the endless call", forever).await.unwrap();
    assert!(cut.is_err(), "the endless call was cut");
}

/// `serve` honours the client's `grpc-timeout` as tonic's `Server` does: a call whose request
/// never ends is answered `DEADLINE_EXCEEDED` at the deadline, a trailers-only response, and
/// its handler is dropped, so the drain has nothing to wait for.
#[tokio::test]
async fn the_tonic_example_answers_deadline_exceeded_at_the_clients_grpc_timeout() {
    let mut server = Running::start("tonic", &[]).await;
    let mut h2 = h2c(server.addr()).await;
    let (_never, body) = open_body();
    let sent = Instant::now();
    let response = h2.send_request(check_request(body, Some("300m")));
    let response = bounded("the deadline", response).await.unwrap();
    let took = sent.elapsed();
    assert_eq!(grpc_status(response.headers()), Some("4"), "{response:?}");
    assert_eq!(response.headers()["grpc-message"], "Timeout expired");
    assert!(
        Duration::from_millis(300) <= took && took < Duration::from_secs(1),
        "answered after {took:?}"
    );

    // Nothing is left in flight: the pool drains at the end of the unready period.
    let signalled = Instant::now();
    server.terminate();
    let report = server.line("drained in").await;
    assert!(
        report.contains("0 completed, 0 cancelled, 0 rejected"),
        "{report}"
    );
    server
        .exits(
            signalled,
            Duration::from_millis(UNREADY_MS + EXIT_MARGIN_MS),
        )
        .await;
}

/// tonic's `Server` under `run_server` ends a call at the client's `grpc-timeout`, or at its
/// own `timeout` (`TIMEOUT_MS`), whichever is sooner, with tonic's `CANCELLED`, and drops its
/// handler, so the drain has nothing to wait for.
#[tokio::test]
async fn the_tonic_server_example_ends_calls_at_the_clients_and_its_own_timeout() {
    let mut server = Running::start("tonic_server", &[("TIMEOUT_MS", "700".into())]).await;
    let mut h2 = h2c(server.addr()).await;
    let (_never, body) = open_body();
    let sent = Instant::now();
    let clients = tokio::spawn(h2.send_request(check_request(body, Some("300m"))));
    let (_never_either, body) = open_body();
    let its_own = tokio::spawn(h2.send_request(check_request(body, None)));

    let response = bounded("the client's deadline", clients)
        .await
        .unwrap()
        .unwrap();
    let took = sent.elapsed();
    assert_eq!(grpc_status(response.headers()), Some("1"), "{response:?}");
    // tonic percent-encodes its messages, the space too.
    assert_eq!(response.headers()["grpc-message"], "Timeout%20expired");
    let (earliest, latest) = (Duration::from_millis(300), Duration::from_millis(700));
    assert!(earliest <= took && took < latest, "answered after {took:?}");
    let response = bounded("the server's deadline", its_own)
        .await
        .unwrap()
        .unwrap();
    let took = sent.elapsed();
    assert_eq!(grpc_status(response.headers()), Some("1"), "{response:?}");
    let (earliest, latest) = (Duration::from_millis(700), Duration::from_millis(1_200));
    assert!(earliest <= took && took < latest, "answered after {took:?}");

    // Nothing is left in flight: the pool drains at the end of the unready period.
    let signalled = Instant::now();
    server.terminate();
    let report = server.line("drained in").await;
    assert!(
        report.contains("0 completed, 0 cancelled, 0 rejected"),
        "{report}"
    );
    server
        .exits(
            signalled,
            Duration::from_millis(UNREADY_MS + EXIT_MARGIN_MS),
        )
        .await;
}

/// A running example: its process and the lines it prints.
struct Running {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    port: u16,
}

impl Running {
    /// Starts `name` on a free port with [`UNREADY_MS`] and [`GRACE_MS`], and `env`.
    async fn start(name: &str, env: &[(&str, String)]) -> Running {
        let mut child = Command::new(example(name))
            .env("PORT", "0")
            .env("UNREADY_MS", UNREADY_MS.to_string())
            .env("GRACE_MS", GRACE_MS.to_string())
            // Longer than the grace period: the endless calls are the drain's to end.
            .env("TIMEOUT_MS", "30000")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = bounded("the listening line", lines.next_line())
            .await
            .unwrap()
            .expect("the example printed nothing");
        let port = first
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no port in {first:?}"));
        Running { child, lines, port }
    }

    /// Waits for a line starting with `prefix`; returns it.
    async fn line(&mut self, prefix: &str) -> String {
        bounded(&format!("a line {prefix:?}"), async {
            loop {
                let line = self.lines.next_line().await.unwrap();
                let line = line.unwrap_or_else(|| panic!("ended before {prefix:?}"));
                if line.starts_with(prefix) {
                    return line;
                }
            }
        })
        .await
    }

    fn terminate(&self) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// The process exits by itself, successfully, within `bound` of `signalled`.
    async fn exits(&mut self, signalled: Instant, bound: Duration) -> Duration {
        let status = bounded("the process exits", self.child.wait())
            .await
            .unwrap();
        let took = signalled.elapsed();
        assert!(status.success(), "{status}");
        assert!(took < bound, "exited after {took:?}");
        took
    }

    /// The process held by a request that never ends exits at the end of the grace period
    /// and within the close margin after it.
    async fn exits_in_bounds(&mut self, signalled: Instant) {
        let bound = UNREADY_MS + GRACE_MS + CLOSE_WITHIN_MS + EXIT_MARGIN_MS;
        let took = self.exits(signalled, Duration::from_millis(bound)).await;
        assert!(
            took >= Duration::from_millis(UNREADY_MS + GRACE_MS),
            "exited after {took:?}, before the grace period's end"
        );
    }
}

/// curl, as a user would test a self-signed server (`-k`): the status, the HTTP version and
/// the body. A refused connection fails the test (curl exits with 7).
async fn curl(addr: SocketAddr, path: &str, protocol: &str) -> (u16, String, String) {
    let output = Command::new("/usr/bin/curl")
        .args(["--silent", "--show-error", "--insecure", "--max-time", "5"])
        .args([protocol, "--write-out", "\n%{http_code} %{http_version}"])
        .arg(format!("https://{addr}{path}"))
        .output();
    let output = bounded("curl", output).await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "curl {protocol}: {stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let (body, last) = stdout.rsplit_once('\n').unwrap();
    let (status, version) = last.split_once(' ').unwrap();
    (status.parse().unwrap(), version.to_owned(), body.to_owned())
}

/// curl's options for each protocol, and the HTTP version it then reports.
const CURL_PROTOCOLS: [(&str, &str); 2] = [("--http1.1", "1.1"), ("--http2", "2")];

/// `GET path` on a new HTTPS connection, over HTTP/1.1.
async fn get_https1(addr: SocketAddr, path: &str) -> http::Response<hyper::body::Incoming> {
    let mut h1 = https1(addr).await;
    let response = h1.sender.send_request(get_request(path));
    bounded("a response", response).await.unwrap()
}

/// A client's end of a connection, and the address it connected from.
struct Connected<S> {
    sender: S,
    local: SocketAddr,
}

/// A new HTTPS connection, ALPN `http/1.1`.
async fn https1(addr: SocketAddr) -> Connected<http1::SendRequest<Empty<Bytes>>> {
    let (tls, local) = tls_connection(addr, b"http/1.1").await;
    let (sender, connection) = http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(connection);
    Connected { sender, local }
}

/// A new HTTPS connection, ALPN `h2`.
async fn https2(addr: SocketAddr) -> Connected<http2::SendRequest<Empty<Bytes>>> {
    let (tls, local) = tls_connection(addr, b"h2").await;
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    Connected { sender, local }
}

/// A TLS connection to `addr` whose ALPN chose `alpn`, trusting any certificate (the
/// example's is made at start), as curl's `-k` does.
async fn tls_connection(
    addr: SocketAddr,
    alpn: &[u8],
) -> (tokio_rustls::client::TlsStream<TcpStream>, SocketAddr) {
    use rustls::pki_types::ServerName;

    #[allow(deprecated)] // ring: see `examples/tls.rs`
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").unwrap();
    let tls = bounded("the TLS handshake", connector.connect(name, tcp))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
    (tls, local)
}

/// Accepts any server certificate, still checking that the server holds its key.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &rustls::pki_types::CertificateDer<'_>,
        signed: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, certificate, signed, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &rustls::pki_types::CertificateDer<'_>,
        signed: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, certificate, signed, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A body's bytes, as text.
async fn body_text(body: hyper::body::Incoming) -> String {
    let bytes = bounded("a body", body.collect()).await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// tonic's health client on a new connection.
async fn health_client(
    addr: SocketAddr,
) -> tonic_health::pb::health_client::HealthClient<tonic::transport::Channel> {
    let endpoint = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap();
    let channel = bounded("a gRPC connection", endpoint.connect())
        .await
        .unwrap();
    tonic_health::pb::health_client::HealthClient::new(channel)
}

type Frame = Result<http_body::Frame<Bytes>, Infallible>;
type OpenBody = StreamBody<ReceiverStream<Frame>>;

/// An empty `HealthCheckRequest`, in gRPC's framing: not compressed, no bytes.
const EMPTY_MESSAGE: &[u8] = &[0, 0, 0, 0, 0];

/// A request body that stays open until its sender is dropped.
fn open_body() -> (mpsc::Sender<Frame>, OpenBody) {
    let (sender, receiver) = mpsc::channel(1);
    (sender, StreamBody::new(ReceiverStream::new(receiver)))
}

/// A raw HTTP/2 connection with prior knowledge, for gRPC calls whose bodies the test holds.
async fn h2c(addr: SocketAddr) -> http2::SendRequest<OpenBody> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// A health `Check` call with `body`, and a `grpc-timeout` if given.
fn check_request(body: OpenBody, timeout: Option<&str>) -> http::Request<OpenBody> {
    let mut request = http::Request::post("http://localhost/grpc.health.v1.Health/Check")
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers");
    if let Some(timeout) = timeout {
        request = request.header("grpc-timeout", timeout);
    }
    request.body(body).unwrap()
}

/// The `grpc-status` in headers or trailers.
fn grpc_status(headers: &HeaderMap) -> Option<&str> {
    headers.get("grpc-status").and_then(|v| v.to_str().ok())
}
