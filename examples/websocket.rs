//! A WebSocket echo server whose sockets are part of the drain: `cargo run --example websocket
//! --features axum,signal`.
//!
//! A WebSocket outlives its HTTP request: the `101 Switching Protocols` response ends at once,
//! and the connection lives on in a task. The handler takes a guard from its `DrainWatch` and
//! moves it into that task, so the drain waits for the socket; when draining begins, the task
//! sends a close frame (`1001 Going Away`), the client reconnects elsewhere, and the guard is
//! dropped with the socket.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tower_drain::{signal, Drain, DrainWatch};

async fn echo(signal: DrainWatch, upgrade: WebSocketUpgrade) -> Response {
    let guard = signal.guard();
    upgrade.on_upgrade(move |mut socket: WebSocket| async move {
        let draining = signal.draining();
        tokio::pin!(draining);
        loop {
            tokio::select! {
                message = socket.recv() => match message {
                    Some(Ok(Message::Text(text))) => {
                        if socket.send(Message::Text(text)).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                },
                () = &mut draining => {
                    let close = CloseFrame { code: 1001, reason: "server draining".into() };
                    let _ = socket.send(Message::Close(Some(close))).await;
                    break;
                }
            }
        }
        // The socket is done: the drain may complete.
        drop(guard);
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let drain = Drain::new();
    let app = Router::new()
        .route("/ws", get(echo))
        .layer(drain.http_layer().with_request_signal());

    // Caught from here on: a SIGTERM the moment the server is up drains it too.
    let stop = signal::terminate();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("echo at ws://{}/ws", listener.local_addr()?);
    let shutdown = drain.shutdown().grace(Duration::from_secs(30));
    let report = tower_drain::serve(listener, app, shutdown)
        .with_graceful_shutdown(stop)
        .await;
    println!("{report}");
    Ok(())
}
