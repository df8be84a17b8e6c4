//! A tonic server with `tonic-health` that drains gracefully on Ctrl-C or SIGTERM:
//! `cargo run --example tonic`.
//!
//! On the signal, health turns `NOT_SERVING`, the pool refuses new calls with `UNAVAILABLE`
//! (clients retry elsewhere), tonic's graceful shutdown sends `GOAWAY`, and open calls and
//! streams finish, bounded by a grace period.

#[path = "support/signal.rs"]
mod signal;

use std::time::Duration;

use tonic::transport::Server;
use tonic_health::ServingStatus;
use tower_drain::Drain;

const GRACE: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let drain = Drain::new();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;

    let addr = "127.0.0.1:50051".parse()?;
    println!("gRPC health on {addr}");
    let server = tokio::spawn(
        Server::builder()
            .layer(drain.http_layer())
            .add_service(health)
            .serve_with_shutdown(addr, drain.draining()),
    );

    signal::shutdown_signal().await;
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    drain.start_draining();
    match tokio::time::timeout(GRACE, drain.until_empty()).await {
        Ok(()) => println!("drained: {:?}", drain.snapshot()),
        Err(_) => println!("grace period over, abandoning {}", drain.in_flight()),
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Ok(())
}
