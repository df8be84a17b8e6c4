//! One instance of a fleet behind a load balancer, as `scripts/rolling-restart` runs three of
//! them behind HAProxy: `cargo run --example fleet_server --features signal`.
//!
//! HTTP/1.1 and h2c on one port; `/` answers at once, `/slow` after about 50 ms, `/stream`
//! sends 10 chunks over about 50 ms, and `/ready` is the load balancer's readiness check. On
//! SIGTERM or Ctrl-C: unready for `UNREADY_MS` (requests still served while the balancer
//! notices), then refuse new work and let what is in flight finish within `GRACE_MS`, then log
//! the report and exit.
//!
//! Settings come from the environment: `HOST` (127.0.0.1; `scripts/kube-rollout` binds each
//! pod's own address), `PORT` (3000), `UNREADY_MS` (1000), `GRACE_MS`
//! (10000), and `TOWER_DRAIN=off` for the control run: no layer, a readiness route that always
//! answers `200`, and only axum's own graceful shutdown on the signal.

#[path = "support/fleet_routes.rs"]
mod fleet_routes;

use std::time::Duration;

use axum::routing::get;
use tokio::net::TcpListener;
use tower_drain::{signal, Drain};

use fleet_routes::routes;

/// A setting from the environment, or its default; a value that does not parse is an error.
fn setting<T: std::str::FromStr>(name: &str, default: T) -> std::io::Result<T> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(value) => value.parse().map_err(|_| {
            let message = format!("{name}={value:?} is not a valid value");
            std::io::Error::new(std::io::ErrorKind::InvalidInput, message)
        }),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = setting("PORT", 3000)?;
    let unready = Duration::from_millis(setting("UNREADY_MS", 1000)?);
    let grace = Duration::from_millis(setting("GRACE_MS", 10_000)?);
    let drain_on = std::env::var("TOWER_DRAIN").as_deref() != Ok("off");

    let host: std::net::IpAddr = setting("HOST", std::net::Ipv4Addr::LOCALHOST.into())?;
    // Caught from here on: a SIGTERM the moment the server is up drains it too.
    let stop = signal::terminate();
    let listener = TcpListener::bind((host, port)).await?;
    let pid = std::process::id();
    eprintln!(
        "[{pid}] listening on {} (tower-drain {})",
        listener.local_addr()?,
        if drain_on { "on" } else { "off" }
    );

    if !drain_on {
        // The control: what axum alone does on SIGTERM.
        let app = routes().route("/ready", get(|| async { "ready\n" }));
        axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await?;
        eprintln!("[{pid}] exited (axum's graceful shutdown only)");
        return Ok(());
    }

    let drain = Drain::new();
    let app = routes()
        .layer(drain.http_layer().gradual_close())
        // After the layer, so never refused: it must say 503 itself while draining.
        .route_service("/ready", drain.readiness());
    let shutdown = drain.shutdown().unready_for(unready).grace(grace);
    let report = tower_drain::serve(listener, app, shutdown)
        .with_graceful_shutdown(stop)
        .await;
    eprintln!("[{pid}] {report}");
    Ok(())
}
