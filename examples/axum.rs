//! An axum server that drains gracefully on Ctrl-C or SIGTERM:
//! `cargo run --example axum --features serve,signal`.
//!
//! On the signal, `/ready` turns `503` for `UNREADY_MS` while every request is still served
//! (the load balancer moves traffic away; HTTP/1.1 keep-alive clients are moved off a few at a
//! time). Then the pool drains: a new request, on a new connection too, gets `503` with
//! `Retry-After`; HTTP/2 clients are told to go away. In-flight requests, streamed bodies
//! included, run to their end within `GRACE_MS`; then the server closes and the report is
//! printed. It exits within `UNREADY_MS + GRACE_MS` and one second, whatever the requests do.
//!
//! Settings: `PORT` (3000; 0 picks a free one), `UNREADY_MS` (5000), `GRACE_MS` (30000).

use std::time::Duration;

use axum::{extract::Path, routing::get, Router};
use tower_drain::{signal, Drain};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = setting("PORT", 3000) as u16;
    let unready = Duration::from_millis(setting("UNREADY_MS", 5_000));
    let grace = Duration::from_millis(setting("GRACE_MS", 30_000));

    let drain = Drain::new();
    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route(
            "/slow/{ms}",
            get(|Path(ms): Path<u64>| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                format!("slept {ms} ms\n")
            }),
        )
        // Count each request until its response body ends; while draining, answer new ones
        // with 503. While unready, ask HTTP/1.1 keep-alive clients to reconnect, gradually.
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
    println!("listening on http://{}", listener.local_addr()?);
    let mut phases = drain.watch_phase();
    tokio::spawn(async move {
        while phases.changed().await.is_ok() {
            println!("phase: {}", *phases.borrow_and_update());
        }
    });

    let shutdown = drain.shutdown().unready_for(unready).grace(grace);
    let report = tower_drain::serve(listener, app, shutdown)
        .with_graceful_shutdown(stop)
        // A second Ctrl-C or SIGTERM ends the drain at once.
        .with_forced_shutdown(signal::terminate)
        .await;
    println!("{report}");
    Ok(())
}

/// A number from the environment, or `default`.
fn setting(name: &str, default: u64) -> u64 {
    let value = std::env::var(name).ok();
    value.map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number"))
    })
}
