//! A gRPC server (tonic, with the standard health service) that drains gracefully on Ctrl-C
//! or SIGTERM:
//! `cargo run -p tower-drain-integration --example tonic --features serve,signal,tonic`.
//!
//! Health follows the pool: `NOT_SERVING` from `Unready` on, so clients and load balancers
//! that watch it move away while every call is still served. Once draining, a call on any
//! connection, a new one too, gets `UNAVAILABLE` (a trailers-only response), HTTP/2 clients
//! are told to go away, and a health `Watch` stream ends with `UNAVAILABLE` instead of
//! holding the drain. It exits within `UNREADY_MS + GRACE_MS` and one second.
//!
//! As under tonic's own `Server`, a call's `grpc-timeout` is honoured (a response not begun by
//! then is a trailers-only `DEADLINE_EXCEEDED`) and a handler's `request.remote_addr()` is the
//! client's address.
//!
//! Settings: `PORT` (50051; 0 picks a free one), `UNREADY_MS` (5000), `GRACE_MS` (30000).

#[path = "support/settings.rs"]
mod settings;

use std::time::Duration;

use tonic::service::Routes;
use tonic_health::ServingStatus;
use tower::ServiceBuilder;
use tower_drain::{signal, Drain, Phase};

use settings::setting;

/// The health service's endless stream.
const WATCH: &str = "/grpc.health.v1.Health/Watch";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = setting("PORT", 50051) as u16;
    let unready = Duration::from_millis(setting("UNREADY_MS", 5_000));
    let grace = Duration::from_millis(setting("GRACE_MS", 30_000));

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

    let app = ServiceBuilder::new()
        .layer(
            drain
                .http_layer()
                .end_streams_when_draining(|request| request.uri.path() == WATCH),
        )
        .service(Routes::new(health));

    // Caught from here on: a SIGTERM the moment the server is up drains it too.
    let stop = signal::terminate();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("gRPC on http://{}", listener.local_addr()?);
    let shutdown = drain.shutdown().unready_for(unready).grace(grace);
    let report = tower_drain::serve(listener, app, shutdown)
        .with_graceful_shutdown(stop)
        // A second Ctrl-C or SIGTERM ends the drain at once.
        .with_forced_shutdown(signal::terminate)
        .await;
    println!("{report}");
    Ok(())
}
