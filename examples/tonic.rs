//! A tonic server with `tonic-health` that drains gracefully on Ctrl-C or SIGTERM:
//! `cargo run --example tonic`.
//!
//! On the signal, health turns `NOT_SERVING` as soon as the pool is `Unready` (followed through
//! `watch_phase`), so clients and proxies move away while calls are still served; then the
//! pool refuses new calls with `UNAVAILABLE` (clients retry elsewhere), tonic's graceful
//! shutdown sends `GOAWAY`, and open calls and streams finish, bounded by a grace period.

#[path = "support/signal.rs"]
mod signal;

use std::time::Duration;

use tonic::transport::Server;
use tonic_health::ServingStatus;
use tower_drain::{Drain, Phase};

const UNREADY: Duration = Duration::from_secs(5);
const GRACE: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let drain = Drain::new();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;

    // Health follows the pool's phase: NOT_SERVING from `Unready` on.
    let mut phases = drain.watch_phase();
    tokio::spawn(async move {
        while phases.changed().await.is_ok() {
            let status = match *phases.borrow_and_update() {
                Phase::Serving => ServingStatus::Serving,
                _ => ServingStatus::NotServing,
            };
            reporter.set_service_status("", status).await;
        }
    });

    let addr = "127.0.0.1:50051".parse()?;
    println!("gRPC health on {addr}");
    let server = tokio::spawn(
        Server::builder()
            .layer(drain.http_layer())
            .add_service(health)
            .serve_with_shutdown(addr, drain.draining()),
    );

    signal::shutdown_signal().await;
    let report = drain.shutdown().unready_for(UNREADY).grace(GRACE).await;
    println!("{report}");
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    Ok(())
}
