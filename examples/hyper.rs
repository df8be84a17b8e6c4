//! A hyper 1 server (HTTP/1.1 and h2c on one port) that drains gracefully on Ctrl-C or
//! SIGTERM: `cargo run --example hyper`.
//!
//! The pool refuses new requests once draining; hyper-util's `GracefulShutdown` closes idle
//! HTTP/1 connections and sends `GOAWAY` on HTTP/2; the process exits when both the pool and
//! the connections are done, or when the grace period ends.
//!
//! `PORT` picks the port (default 3000). `TOWER_DRAIN=off` serves the same handler without
//! the layer: `scripts/e2e-bench` compares the two.

#[path = "support/signal.rs"]
mod signal;

use std::convert::Infallible;
use std::future::IntoFuture;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::{service_fn, ServiceBuilder};
use tower_drain::Drain;

const GRACE: Duration = Duration::from_secs(30);

async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"hello\n"))))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = std::env::var("PORT").map_or(Ok(3000), |port| port.parse::<u16>());
    let port = port.map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, err))?;
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "listening on http://{} (HTTP/1.1 and h2c)",
        listener.local_addr()?
    );

    let drain = Drain::new();
    let graceful = if std::env::var("TOWER_DRAIN").as_deref() == Ok("off") {
        serve(listener, service_fn(hello)).await
    } else {
        let service = ServiceBuilder::new()
            .layer(drain.http_layer())
            .service_fn(hello);
        serve(listener, service).await
    };

    // Refuse new requests (the pool), let open connections finish (hyper), both bounded.
    let report = drain.shutdown().grace(GRACE);
    let (report, connections) = tokio::join!(
        report.into_future(),
        tokio::time::timeout(GRACE, graceful.shutdown())
    );
    println!("{report}; connections closed: {}", connections.is_ok());
    Ok(())
}

/// Serves `service` until the shutdown signal, then stops accepting; returns the open
/// connections' graceful shutdown.
async fn serve<S, B>(listener: TcpListener, service: S) -> GracefulShutdown
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
    S: Clone + Send + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let shutdown = signal::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let service = TowerToHyperService::new(service.clone());
                let connection = builder.serve_connection(TokioIo::new(tcp), service).into_owned();
                tokio::spawn(graceful.watch(connection));
            }
            () = &mut shutdown => return graceful,
        }
    }
}
