//! An axum server that drains gracefully on Ctrl-C or SIGTERM: `cargo run --example axum`.
//!
//! On the signal the pool starts draining: new requests get `503`, and axum's graceful
//! shutdown (triggered by `drain.draining()`) stops accepting connections and closes idle
//! ones. In-flight requests, streamed bodies included, run to their end, bounded by a grace
//! period.

#[path = "support/signal.rs"]
mod signal;

use std::future::IntoFuture;
use std::time::Duration;

use axum::{routing::get, Router};
use tower_drain::Drain;

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
        );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(drain.draining())
            .into_future(),
    );

    signal::shutdown_signal().await;
    drain.start_draining();
    println!("draining: {} request(s) in flight", drain.in_flight());
    match tokio::time::timeout(GRACE, drain.until_empty()).await {
        Ok(()) => println!("drained: {:?}", drain.snapshot()),
        Err(_) => println!("grace period over, abandoning {}", drain.in_flight()),
    }
    // Every request is done; give the server a moment to flush and close its connections.
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Ok(())
}
