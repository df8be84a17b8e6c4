//! An axum server that drains gracefully on Ctrl-C or SIGTERM: `cargo run --example axum`.
//!
//! On the signal, `/ready` turns `503` for `UNREADY` while requests are still served (the load
//! balancer moves traffic away); then the pool drains: new requests get `503`, and axum's
//! graceful shutdown (triggered by `drain.draining()`) stops accepting connections and closes
//! idle ones. In-flight requests, streamed bodies included, run to their end, bounded by a
//! grace period, and the shutdown report is printed.

#[path = "support/signal.rs"]
mod signal;

use std::future::IntoFuture;
use std::time::Duration;

use axum::{routing::get, Router};
use tower_drain::Drain;

const UNREADY: Duration = Duration::from_secs(5);
const GRACE: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let drain = Drain::new();
    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "slow, but finished\n"
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(
            drain
                .http_layer()
                .retry_after(Duration::from_secs(1))
                .exempt(|request| request.uri.path() == "/healthz"),
        )
        // After the layer, so never refused: the load balancer's readiness check.
        .route_service("/ready", drain.readiness());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(drain.draining())
            .into_future(),
    );

    signal::shutdown_signal().await;
    let report = drain.shutdown().unready_for(UNREADY).grace(GRACE).await;
    println!("{report}");
    // Every request is done or abandoned; give the server a moment to flush and close.
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    Ok(())
}
