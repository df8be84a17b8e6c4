//! Stock servers with their own graceful shutdown, run under `Shutdown::run_server` in this
//! process: axum-server over rustls, stopped through its `Handle`, and a hand-written
//! hyper-util accept loop with `GracefulShutdown`. For each, with real clients over TCP (and
//! TLS): a request on a new connection during the drain gets `503`, never a refused
//! connection; a request in flight at the signal completes; and `run_server` returns within
//! `unready + grace + close_within` of the signal though a request never ends, or as soon as
//! the pool is empty, with the server closed. Plus `serve`'s peer address as tonic's
//! `remote_addr()`, in a hand-written tonic handler.
//!
//! Timers are real (the servers do real IO, which a paused clock would race): short periods,
//! and every wait bounded by a limit only a hang reaches.
#![cfg(feature = "http")]

#[path = "../support/mod.rs"]
mod support;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tower_drain::{Drain, Phase, ShutdownReport};

use support::{bounded, get_request};

const UNREADY: Duration = Duration::from_millis(200);
const GRACE: Duration = Duration::from_millis(800);
/// `run_server`'s default time for a server to close after the grace period.
const CLOSE_WITHIN: Duration = Duration::from_secs(1);
/// For the test to see `run_server` return: scheduling, on a busy machine too.
const MARGIN: Duration = Duration::from_millis(300);
/// In flight from before the signal until well into the drain.
const SLOW: Duration = Duration::from_millis(500);

/// The application every server runs: `/`, `/slow/{ms}`, and `/forever`, which never
/// answers. The slow and endless handlers say on `started` when they run, so that the test
/// knows they are counted before it signals.
fn app(drain: &Drain, started: mpsc::UnboundedSender<&'static str>) -> Router {
    let forever = started.clone();
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/slow/{ms}",
            get(|Path(ms): Path<u64>| async move {
                let _ = started.send("slow");
                tokio::time::sleep(Duration::from_millis(ms)).await;
                format!("slept {ms} ms")
            }),
        )
        .route(
            "/forever",
            get(|| async move {
                let _ = forever.send("forever");
                std::future::pending::<&str>().await
            }),
        )
        .layer(drain.http_layer())
}

/// A server running under `run_server`, and what the test needs to drive it.
struct Running {
    drain: Drain,
    client: Client,
    signal: oneshot::Sender<()>,
    server: JoinHandle<io::Result<ShutdownReport>>,
    started: mpsc::UnboundedReceiver<&'static str>,
}

/// axum-server over rustls, its `Handle` told to shut down gracefully when `closing` fires.
async fn axum_server(grace: Duration) -> Running {
    let drain = Drain::new();
    let (started, started_rx) = mpsc::unbounded_channel();
    let app = app(&drain, started);
    let (certificate, config) = self_signed();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
    let server = axum_server::tls_rustls::from_tcp_rustls(listener, config).unwrap();
    let handle = axum_server::Handle::new();
    let (signal, signalled) = oneshot::channel();
    let shutdown = drain.shutdown().unready_for(UNREADY).grace(grace);
    let server = tokio::spawn(shutdown.run_server(
        async {
            signalled.await.ok();
        },
        |closing| {
            let graceful = handle.clone();
            tokio::spawn(async move {
                closing.await;
                graceful.graceful_shutdown(None);
            });
            server.handle(handle).serve(app.into_make_service())
        },
    ));
    Running {
        drain,
        client: Client::tls(addr, certificate),
        signal,
        server,
        started: started_rx,
    }
}

/// A hand-written hyper-util accept loop that stops accepting when `closing` fires, then
/// waits for its connections through `GracefulShutdown`.
async fn hyper_util_loop(grace: Duration) -> Running {
    use hyper_util::server::conn::auto;
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let drain = Drain::new();
    let (started, started_rx) = mpsc::unbounded_channel();
    let app = app(&drain, started);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (signal, signalled) = oneshot::channel();
    let shutdown = drain.shutdown().unready_for(UNREADY).grace(grace);
    let server = tokio::spawn(shutdown.run_server(
        async {
            signalled.await.ok();
        },
        |closing| async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let graceful = GracefulShutdown::new();
            let mut closing = std::pin::pin!(closing);
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let (tcp, _) = accepted?;
                        let service = TowerToHyperService::new(app.clone());
                        let connection = builder
                            .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                            .into_owned();
                        let connection = graceful.watch(connection);
                        tokio::spawn(async move {
                            let _ = connection.await;
                        });
                    }
                    () = &mut closing => break,
                }
            }
            drop(listener);
            graceful.shutdown().await;
            Ok::<_, io::Error>(())
        },
    ));
    Running {
        drain,
        client: Client::Plain(addr),
        signal,
        server,
        started: started_rx,
    }
}

/// The three promises, for a server under `run_server` with `grace` = [`GRACE`].
async fn keeps_its_promises_with_a_request_that_never_ends(mut running: Running) {
    let client = running.client.clone();
    let mut h1 = client.http1().await;
    let response = h1.send_request(get_request("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut h2 = client.http2().await;
    let response = h2.send_request(get_request("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // In flight at the signal: one request that ends during the drain, one that never ends.
    let slow = {
        let client = client.clone();
        tokio::spawn(async move {
            let path = format!("/slow/{}", (UNREADY + SLOW).as_millis());
            let response = client
                .http1()
                .await
                .send_request(get_request(&path))
                .await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        })
    };
    let forever = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .http2()
                .await
                .send_request(get_request("/forever"))
                .await
        })
    };
    let mut begun = [started(&mut running).await, started(&mut running).await];
    begun.sort_unstable();
    assert_eq!(begun, ["forever", "slow"]);

    let signalled = Instant::now();
    running.signal.send(()).unwrap();
    draining(&running.drain).await;

    // A new connection is accepted, and its request refused: over HTTP/1.1 and HTTP/2.
    let refused = client.http1().await.send_request(get_request("/")).await;
    assert_eq!(refused.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    let refused = client.http2().await.send_request(get_request("/")).await;
    assert_eq!(refused.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);

    // The request in flight completes, whole.
    let (status, body) = bounded("the slow request", slow).await.unwrap().unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, format!("slept {} ms", (UNREADY + SLOW).as_millis()));
    assert!(
        signalled.elapsed() < UNREADY + GRACE,
        "{:?}",
        signalled.elapsed()
    );

    // The endless one holds the pool to the end of the grace period, and the server's own
    // graceful shutdown waits for it forever: `run_server` drops the server `CLOSE_WITHIN`
    // later.
    let report = bounded("run_server", running.server)
        .await
        .unwrap()
        .unwrap();
    let took = signalled.elapsed();
    assert!(report.timed_out(), "{report}");
    assert_eq!(report.abandoned, 1, "{report}");
    assert_eq!(report.completed, 1, "{report}");
    assert!(report.rejected >= 2, "{report}");
    assert!(took >= UNREADY + GRACE, "returned after {took:?}");
    assert!(
        took < UNREADY + GRACE + CLOSE_WITHIN + MARGIN,
        "returned after {took:?}"
    );
    // The server's connections are its own tasks: they end with the runtime, not with
    // `run_server`.
    forever.abort();
}

/// With nothing left in flight the server is told to close at once, and does: `run_server`
/// returns long before the grace period's end, and the listener is closed.
async fn closes_as_soon_as_the_pool_is_empty(mut running: Running) {
    let client = running.client.clone();
    let addr = client.addr();
    // An idle keep-alive connection of each protocol: the servers' graceful shutdowns close
    // them.
    let mut h1 = client.http1().await;
    assert_eq!(
        h1.send_request(get_request("/")).await.unwrap().status(),
        StatusCode::OK
    );
    let mut h2 = client.http2().await;
    assert_eq!(
        h2.send_request(get_request("/")).await.unwrap().status(),
        StatusCode::OK
    );
    let slow = tokio::spawn(async move {
        let path = format!("/slow/{}", (UNREADY + SLOW).as_millis());
        let response = client
            .http1()
            .await
            .send_request(get_request(&path))
            .await?;
        let status = response.status();
        response.into_body().collect().await?;
        Ok::<_, hyper::Error>(status)
    });
    assert_eq!(started(&mut running).await, "slow");

    let signalled = Instant::now();
    running.signal.send(()).unwrap();
    let report = bounded("run_server", running.server)
        .await
        .unwrap()
        .unwrap();
    let took = signalled.elapsed();
    assert!(!report.timed_out(), "{report}");
    assert_eq!(report.completed, 1, "{report}");
    assert!(took < UNREADY + SLOW + MARGIN, "returned after {took:?}");
    assert_eq!(
        bounded("the slow request", slow).await.unwrap().unwrap(),
        StatusCode::OK
    );
    let connect = TcpStream::connect(addr).await;
    assert!(connect.is_err(), "the listener is closed");
}

#[tokio::test]
async fn axum_server_with_rustls_keeps_the_promises_under_run_server() {
    keeps_its_promises_with_a_request_that_never_ends(axum_server(GRACE).await).await;
}

#[tokio::test]
async fn axum_server_with_rustls_closes_when_the_pool_is_empty() {
    closes_as_soon_as_the_pool_is_empty(axum_server(Duration::from_secs(30)).await).await;
}

#[tokio::test]
async fn a_hyper_util_accept_loop_keeps_the_promises_under_run_server() {
    keeps_its_promises_with_a_request_that_never_ends(hyper_util_loop(GRACE).await).await;
}

#[tokio::test]
async fn a_hyper_util_accept_loop_closes_when_the_pool_is_empty() {
    closes_as_soon_as_the_pool_is_empty(hyper_util_loop(Duration::from_secs(30)).await).await;
}

/// The next handler to start, by name.
async fn started(running: &mut Running) -> &'static str {
    bounded("a handler to start", running.started.recv())
        .await
        .unwrap()
}

/// Waits until `drain` refuses new work.
async fn draining(drain: &Drain) {
    let mut phases = drain.watch_phase();
    bounded(
        "draining",
        phases.wait_for(|phase| *phase == Phase::Draining),
    )
    .await
    .unwrap();
}

/// A certificate for `localhost`, signed by its own key, and a server configuration with it
/// offering HTTP/2 and HTTP/1.1.
fn self_signed() -> (CertificateDer<'static>, ServerConfig) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let certificate = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certificate.clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (certificate, config)
}

/// rustls with ring, given to each configuration rather than installed for the process, so
/// that the tests need no order.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // Deprecated for its lack of post-quantum key exchange, which a loopback test does not
    // need; aws-lc-rs, which has it, needs cmake to build.
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// How the tests reach a server: over plain TCP, or over TLS trusting the test's certificate,
/// with ALPN choosing the protocol.
#[derive(Clone)]
enum Client {
    Plain(SocketAddr),
    Tls {
        addr: SocketAddr,
        http1: TlsConnector,
        http2: TlsConnector,
    },
}

impl Client {
    fn tls(addr: SocketAddr, certificate: CertificateDer<'static>) -> Self {
        let mut roots = RootCertStore::empty();
        roots.add(certificate).unwrap();
        let connector = |alpn: &[u8]| {
            let mut config = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            config.alpn_protocols = vec![alpn.to_vec()];
            TlsConnector::from(Arc::new(config))
        };
        Client::Tls {
            addr,
            http1: connector(b"http/1.1"),
            http2: connector(b"h2"),
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Client::Plain(addr) | Client::Tls { addr, .. } => *addr,
        }
    }

    /// A new HTTP/1.1 connection.
    async fn http1(&self) -> http1::SendRequest<Empty<Bytes>> {
        match self {
            Client::Plain(addr) => http1_over(TcpStream::connect(addr).await.unwrap()).await,
            Client::Tls { addr, http1, .. } => {
                http1_over(tls(http1, *addr, b"http/1.1").await).await
            }
        }
    }

    /// A new HTTP/2 connection: h2c with prior knowledge, or ALPN `h2`.
    async fn http2(&self) -> http2::SendRequest<Empty<Bytes>> {
        match self {
            Client::Plain(addr) => http2_over(TcpStream::connect(addr).await.unwrap()).await,
            Client::Tls { addr, http2, .. } => http2_over(tls(http2, *addr, b"h2").await).await,
        }
    }
}

/// A TLS connection to `addr` as `localhost`, whose ALPN chose `alpn`.
async fn tls(
    connector: &TlsConnector,
    addr: SocketAddr,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = bounded("the TLS handshake", connector.connect(name, tcp))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
    tls
}

async fn http1_over<I>(io: I) -> http1::SendRequest<Empty<Bytes>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(io)).await.unwrap();
    tokio::spawn(connection);
    sender
}

async fn http2_over<I>(io: I) -> http2::SendRequest<Empty<Bytes>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// `serve` puts the peer on every request as tonic's `TcpConnectInfo`, so a tonic handler's
/// `request.remote_addr()` is the client's address: over TCP, and over a TLS handshake
/// listener. The handler is a hand-written `Health` service that answers with the address it
/// sees, in the response's metadata.
#[cfg(all(feature = "serve", feature = "tonic"))]
#[tokio::test]
async fn a_tonic_handler_sees_its_peer_through_serve() {
    use std::future::IntoFuture;

    use http_body_util::Full;
    use tonic_health::pb::health_server::{Health, HealthServer};
    use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
    use tower_drain::ListenerExt;

    struct PeerEcho;

    #[tonic::async_trait]
    impl Health for PeerEcho {
        async fn check(
            &self,
            request: tonic::Request<HealthCheckRequest>,
        ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
            let peer = request
                .remote_addr()
                .map_or("none".to_owned(), |a| a.to_string());
            let mut response = tonic::Response::new(HealthCheckResponse { status: 1 });
            response
                .metadata_mut()
                .insert("x-peer", peer.parse().unwrap());
            Ok(response)
        }

        type WatchStream = futures::stream::Empty<Result<HealthCheckResponse, tonic::Status>>;

        async fn watch(
            &self,
            _: tonic::Request<HealthCheckRequest>,
        ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
            Err(tonic::Status::unimplemented("not here"))
        }
    }

    /// Calls `Check` over `io`; returns the address the handler saw.
    async fn peer_seen<I>(io: I) -> String
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut h2, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
        tokio::spawn(connection);
        let check = http::Request::post("http://localhost/grpc.health.v1.Health/Check")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            // An empty `HealthCheckRequest`, in gRPC's framing: not compressed, no bytes.
            .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
            .unwrap();
        let response = bounded("the check", h2.send_request(check)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.headers()["x-peer"].to_str().unwrap().to_owned()
    }

    let service = || tonic::service::Routes::new(HealthServer::new(PeerEcho));

    // Over TCP.
    let drain = Drain::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server =
        tokio::spawn(tower_drain::serve(listener, service(), drain.shutdown()).into_future());
    let tcp = TcpStream::connect(addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    assert_eq!(peer_seen(tcp).await, local.to_string());
    server.abort();

    // Over TLS, through a handshake listener.
    let (certificate, config) = self_signed();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = listener.handshake(move |tcp| acceptor.accept(tcp));
    let server =
        tokio::spawn(tower_drain::serve(listener, service(), drain.shutdown()).into_future());
    let Client::Tls { http2, .. } = Client::tls(addr, certificate) else {
        unreachable!()
    };
    let tcp = TcpStream::connect(addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = bounded("the TLS handshake", http2.connect(name, tcp))
        .await
        .unwrap();
    assert_eq!(peer_seen(tls).await, local.to_string());
    server.abort();
}
