//! A hyper 1 server (HTTP/1.1 and h2c on one port) that drains gracefully on Ctrl-C or
//! SIGTERM: `cargo run --example hyper --features signal`.
//!
//! `tower_drain::serve` runs hyper-util's connections: on the signal the pool refuses new
//! requests (new connections included), HTTP/2 clients are told to go away, and the process
//! exits once the pool is empty and its responses are written, or when the grace period ends.
//!
//! `PORT` picks the port (default 3000), `GRACE_MS` the grace period (30000).
//! `TOWER_DRAIN=off` serves the same handler without the layer: `scripts/e2e-bench` compares
//! the two.

#[path = "support/settings.rs"]
mod settings;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tower::{service_fn, ServiceBuilder};
use tower_drain::{signal, Drain};

use settings::setting;

async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"hello\n"))))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = setting("PORT", 3000) as u16;
    let grace = Duration::from_millis(setting("GRACE_MS", 30_000));
    // Caught from here on: a SIGTERM the moment the server is up drains it too.
    let stop = signal::terminate();
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "listening on http://{} (HTTP/1.1 and h2c)",
        listener.local_addr()?
    );

    let drain = Drain::new();
    let shutdown = drain.shutdown().grace(grace);
    let report = if std::env::var("TOWER_DRAIN").as_deref() == Ok("off") {
        tower_drain::serve(listener, service_fn(hello), shutdown)
            .with_graceful_shutdown(stop)
            .await
    } else {
        let service = ServiceBuilder::new()
            .layer(drain.http_layer())
            .service_fn(hello);
        tower_drain::serve(listener, service, shutdown)
            .with_graceful_shutdown(stop)
            .await
    };
    println!("{report}");
    Ok(())
}
