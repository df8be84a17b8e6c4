//! tonic's own `Server`, with the standard health service, draining gracefully on Ctrl-C or
//! SIGTERM: `cargo run -p tower-drain-integration --example tonic_server --features signal`.
//!
//! For a service that keeps tonic's server (its `timeout`, its per-connection concurrency
//! limit, its interceptors, its TLS, its settings) rather than
//! moving to `tower_drain::serve` (`examples/tonic.rs`). The drain is a layer on the server's
//! builder, and `run_server` holds back the server's own graceful shutdown until the pool is
//! empty or the grace period is over, so that the listener stays open meanwhile. On the signal,
//! health turns `NOT_SERVING` for `UNREADY_MS` while every call is still served; then a call on
//! any connection, a new one too, gets `UNAVAILABLE` (a trailers-only response, never a refused
//! connection), a health `Watch` stream ends with `UNAVAILABLE`, and the calls in flight run
//! to their end within `GRACE_MS`. It exits within `UNREADY_MS + GRACE_MS` and one second,
//! whatever the calls do.
//!
//! What tonic's server does not do here and `tower_drain::serve` does: tell HTTP/2 clients to
//! go away when the unready period begins (tonic sends `GOAWAY` only when it closes, once the
//! pool is empty), and count the connections it cuts.
//!
//! Settings: `PORT` (50051; 0 picks a free one), `UNREADY_MS` (5000), `GRACE_MS` (30000),
//! `TIMEOUT_MS` (30000: how long a call may take before its response begins; a client's
//! shorter `grpc-timeout` wins).

#[path = "support/settings.rs"]
mod settings;

use std::time::Duration;

use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tower_drain::{signal, Drain, Phase};

use settings::setting;

/// The health service's endless stream.
const WATCH: &str = "/grpc.health.v1.Health/Watch";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = setting("PORT", 50051) as u16;
    let unready = Duration::from_millis(setting("UNREADY_MS", 5_000));
    let grace = Duration::from_millis(setting("GRACE_MS", 30_000));
    let timeout = Duration::from_millis(setting("TIMEOUT_MS", 30_000));

    let drain = Drain::new();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;

    // Health follows the pool's phase: NOT_SERVING from `Unready` on.
    let mut phases = drain.watch_phase();
    tokio::spawn(async move {
        while phases.changed().await.is_ok() {
            let phase = *phases.borrow_and_update();
            println!("phase: {phase}");
            let status = match phase {
                Phase::Serving => ServingStatus::Serving,
                _ => ServingStatus::NotServing,
            };
            reporter.set_service_status("", status).await;
        }
    });

    // Caught from here on: a SIGTERM the moment the server is up drains it too.
    let stop = signal::terminate();
    // Bound here rather than by `serve_with_shutdown(addr, ..)`, so that the address it got
    // can be printed (with `PORT=0`).
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));

    let layer = drain
        .http_layer()
        .end_streams_when_draining(|request| request.uri.path() == WATCH);
    let report = drain
        .shutdown()
        .unready_for(unready)
        .grace(grace)
        .run_server(stop, |closing| {
            Server::builder()
                .timeout(timeout)
                .concurrency_limit_per_connection(256)
                // An interceptor, as an application has for authentication.
                .layer(tonic::service::InterceptorLayer::new(refuse_denied))
                // Inside tonic's own layers: a call it times out is dropped, and counted as
                // cancelled; a refusal is an answer, as from any service.
                .layer(layer)
                .add_service(health)
                .serve_with_incoming_shutdown(incoming, closing)
        })
        .await?;
    println!("{report}");
    Ok(())
}

/// Refuses calls that carry `x-deny`: the interceptor a real service would authenticate with.
fn refuse_denied(request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    if request.metadata().contains_key("x-deny") {
        Err(tonic::Status::unauthenticated("denied"))
    } else {
        Ok(request)
    }
}
