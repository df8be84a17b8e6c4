//! An axum app over HTTPS (rustls) that drains gracefully on Ctrl-C or SIGTERM:
//! `cargo run -p tower-drain-integration --example tls --features axum,serve,signal`, then
//! `curl -k https://127.0.0.1:3443/` (`-k`: the certificate is self-signed, made at start).
//!
//! `serve` runs each TLS handshake in its own task (`ListenerExt::handshake`), so a client
//! that stalls in its handshake delays no one, and ALPN offers `h2` and `http/1.1`: the drain
//! is then the same as in plain text (`examples/axum.rs`). On the signal, `/ready` turns `503`
//! for `UNREADY_MS` while every request is still served and HTTP/2 clients are told to go
//! away; then a new request, on a new connection too, gets `503`, never a refused connection,
//! while the requests in flight run to their end within `GRACE_MS`. It exits within
//! `UNREADY_MS + GRACE_MS` and one second, whatever the requests do.
//!
//! `/` answers with the peer's address, which `serve` gives every request as `ConnectInfo`.
//!
//! Settings: `PORT` (3443; 0 picks a free one), `UNREADY_MS` (5000), `GRACE_MS` (30000).

#[path = "support/settings.rs"]
mod settings;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path};
use axum::routing::get;
use axum::Router;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tower_drain::{signal, Drain, ListenerExt};

use settings::setting;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = setting("PORT", 3443) as u16;
    let unready = Duration::from_millis(setting("UNREADY_MS", 5_000));
    let grace = Duration::from_millis(setting("GRACE_MS", 30_000));

    // The process's crypto provider, chosen here rather than left to which of rustls's
    // features the dependency graph happens to enable. ring builds without cmake, unlike
    // aws-lc-rs (rustls's default), but has no post-quantum key exchange, for which rustls
    // deprecates it: in production, prefer aws-lc-rs.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    provider
        .install_default()
        .expect("no other crypto provider is installed yet");
    let acceptor = TlsAcceptor::from(Arc::new(self_signed()?));

    let drain = Drain::new();
    let app =
        Router::new()
            .route(
                "/",
                get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                    format!("hello {peer}\n")
                }),
            )
            .route(
                "/slow/{ms}",
                get(|Path(ms): Path<u64>| async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    format!("slept {ms} ms\n")
                }),
            )
            .layer(
                drain
                    .http_layer()
                    .retry_after(Duration::from_secs(1))
                    .gradual_close(),
            )
            // After the layer, so never refused: the load balancer's readiness check.
            .route_service("/ready", drain.readiness());

    // Caught from here on: a SIGTERM the moment the server is up drains it too.
    let stop = signal::terminate();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on https://{}", listener.local_addr()?);
    let mut phases = drain.watch_phase();
    tokio::spawn(async move {
        while phases.changed().await.is_ok() {
            println!("phase: {}", *phases.borrow_and_update());
        }
    });

    // Each connection's handshake runs off the accept loop, for ten seconds at most.
    let listener = listener.handshake(move |tcp| acceptor.accept(tcp));
    let shutdown = drain.shutdown().unready_for(unready).grace(grace);
    let report = tower_drain::serve(listener, app, shutdown)
        .with_graceful_shutdown(stop)
        // A second Ctrl-C or SIGTERM ends the drain at once.
        .with_forced_shutdown(signal::terminate)
        .await;
    println!("{report}");
    Ok(())
}

/// A TLS configuration with a certificate for `localhost` and `127.0.0.1`, made now and
/// signed by its own key, offering HTTP/2 and HTTP/1.1.
fn self_signed() -> Result<ServerConfig, Box<dyn std::error::Error>> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
