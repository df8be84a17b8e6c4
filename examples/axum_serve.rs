//! Keep your server: the stock `axum::serve` draining gracefully on Ctrl-C or SIGTERM through
//! `run_server`: `cargo run --example axum_serve --features axum,serve,signal`, then
//! `curl localhost:3000/`.
//!
//! `run_server` holds back axum's own graceful shutdown until the pool is done, so axum keeps
//! accepting through the unready period and the drain: `/ready` turns `503` for `UNREADY_MS`
//! while every request is still served, then a new request, on a new connection too, gets the
//! layer's `503`, never a refused connection. In-flight requests run to their end within
//! `GRACE_MS`; then axum closes and the report is printed. It exits within
//! `UNREADY_MS + GRACE_MS` and one second, whatever the requests do. Handlers see the peer's
//! address through axum's `ConnectInfo`, from `into_make_service_with_connect_info`.
//!
//! Settings: `PORT` (3000; 0 picks a free one), `UNREADY_MS` (5000), `GRACE_MS` (30000).

#[path = "support/settings.rs"]
mod settings;

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path};
use axum::routing::get;
use axum::Router;
use tower_drain::{signal, Drain};

use settings::setting;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = setting("PORT", 3000) as u16;
    let unready = Duration::from_millis(setting("UNREADY_MS", 5_000));
    let grace = Duration::from_millis(setting("GRACE_MS", 30_000));

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
            // Count each request until its response body ends; while draining, answer new ones
            // with 503.
            .layer(drain.http_layer().retry_after(Duration::from_secs(1)))
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

    let report = drain
        .shutdown()
        .unready_for(unready)
        .grace(grace)
        // `closing` completes once the pool is empty or the grace period is over: only then
        // does axum stop accepting and close its connections.
        .run_server(stop, |closing| {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(closing)
        })
        .await?;
    println!("{report}");
    Ok(())
}
