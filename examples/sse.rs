//! Server-sent events that end cleanly when the server drains: `cargo run --example sse
//! --features axum,signal`, then `curl -N localhost:3000/events` and press Ctrl-C on the server.
//!
//! Without the signal, an open event stream holds the drain until the grace period ends and is
//! then cut. With `DrainWatch`, the handler sends a last `draining` event, ends the stream,
//! and the drain completes at once.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use futures::Stream;
use tower_drain::{signal, Drain, DrainWatch};

/// A tick every second until draining begins, then a last event.
async fn events(signal: DrainWatch) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let ticks = tokio::time::interval(Duration::from_secs(1));
    let draining = Box::pin(signal.draining());
    let stream = futures::stream::unfold(Some((ticks, draining, 0u64)), |state| async move {
        let (mut ticks, mut draining, n) = state?;
        tokio::select! {
            _ = ticks.tick() => {
                let event = Event::default().data(format!("tick {n}"));
                Some((Ok(event), Some((ticks, draining, n + 1))))
            }
            () = &mut draining => {
                let event = Event::default().event("draining").data("reconnect elsewhere");
                Some((Ok(event), None))
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let drain = Drain::new();
    let app = Router::new()
        .route("/events", get(events))
        .layer(drain.http_layer().with_request_signal());

    // Caught from here on: a SIGTERM the moment the server is up drains it too.
    let stop = signal::terminate();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("events at http://{}/events", listener.local_addr()?);
    let shutdown = drain.shutdown().grace(Duration::from_secs(30));
    let report = tower_drain::serve(listener, app, shutdown)
        .with_graceful_shutdown(stop)
        .await;
    println!("{report}");
    Ok(())
}
