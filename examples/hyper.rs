//! A hyper 1 server (HTTP/1.1 and h2c on one port) that drains gracefully on Ctrl-C or
//! SIGTERM: `cargo run --example hyper`.
//!
//! The pool refuses new requests once draining; hyper-util's `GracefulShutdown` closes idle
//! HTTP/1 connections and sends `GOAWAY` on HTTP/2; the process exits when both the pool and
//! the connections are done, or when the grace period ends.

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
use tower::{service_fn, ServiceBuilder};
use tower_drain::Drain;

const GRACE: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let drain = Drain::new();
    let service = ServiceBuilder::new()
        .layer(drain.http_layer())
        .service(service_fn(|_: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello\n"))))
        }));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!(
        "listening on http://{} (HTTP/1.1 and h2c)",
        listener.local_addr()?
    );
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
            () = &mut shutdown => break,
        }
    }

    // Refuse new requests (the pool), stop accepting, let open connections finish (hyper).
    drop(listener);
    let report = drain.shutdown().grace(GRACE);
    let (report, connections) = tokio::join!(
        report.into_future(),
        tokio::time::timeout(GRACE, graceful.shutdown())
    );
    println!("{report}; connections closed: {}", connections.is_ok());
    Ok(())
}
