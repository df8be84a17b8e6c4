//! Long-lived responses that end themselves when draining begins, through `DrainWatch`, on a
//! real axum server: a server-sent-events stream read by a hyper client, and a WebSocket
//! (axum's `WebSocketUpgrade`, tokio-tungstenite as the client) that outlives its `101`
//! response and is kept counted by a guard until it closes.
#![cfg(feature = "axum")]

#[path = "../support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use axum::Router;
use futures::{SinkExt, Stream, StreamExt};
use http_body_util::BodyExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};
use tower_drain::{Drain, DrainWatch};

use support::{bounded, get_request, http1_connection};

/// Events the test sends down the SSE stream.
type Feed = Arc<Mutex<Option<mpsc::Receiver<String>>>>;

/// The stream: each fed message as an event; when draining begins, a last `draining` event,
/// then the end of the stream.
async fn events(
    signal: DrainWatch,
    State(feed): State<Feed>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = feed.lock().await.take().expect("one stream per test");
    let draining = Box::pin(signal.draining());
    let stream = futures::stream::unfold(Some((rx, draining)), |state| async move {
        let (mut rx, mut draining) = state?;
        tokio::select! {
            Some(message) = rx.recv() => {
                Some((Ok(Event::default().data(message)), Some((rx, draining))))
            }
            () = &mut draining => Some((Ok(Event::default().event("draining").data("bye")), None)),
        }
    });
    Sse::new(stream)
}

/// An echo WebSocket: counted by a guard from the upgrade to the close, and closed with
/// `1001 Going Away` when draining begins.
async fn websocket(signal: DrainWatch, upgrade: WebSocketUpgrade) -> axum::response::Response {
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
                    // Wait for the client's reply to the close, then the socket is done.
                    while let Some(Ok(message)) = socket.recv().await {
                        if matches!(message, Message::Close(_)) {
                            break;
                        }
                    }
                    break;
                }
            }
        }
        drop(guard);
    })
}

async fn start_server(drain: &Drain, feed: Feed) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let app = Router::new()
        .route("/events", get(events))
        .route("/ws", get(websocket))
        .with_state(feed)
        .layer(drain.http_layer().with_request_signal());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = axum::serve(listener, app).with_graceful_shutdown(drain.draining());
    let task = tokio::spawn(async move { server.into_future().await.unwrap() });
    (addr, task)
}

#[tokio::test]
async fn an_sse_stream_ends_cleanly_when_draining_begins() {
    let drain = Drain::new();
    let (tx, rx) = mpsc::channel(4);
    let (addr, server) = start_server(&drain, Arc::new(Mutex::new(Some(rx)))).await;

    let mut conn = http1_connection(addr).await;
    let response = conn.send_request(get_request("/events")).await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    tx.send("one".into()).await.unwrap();
    let frame = bounded("the first event", body.frame())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(frame.into_data().unwrap(), "data: one\n\n");
    assert_eq!(drain.in_flight(), 1);

    // Draining: the handler sends its last event and ends the stream; nothing is cut.
    let report = tokio::spawn(drain.shutdown().into_future());
    let rest = bounded("the end of the stream", body.collect())
        .await
        .unwrap();
    assert_eq!(rest.to_bytes(), "event: draining\ndata: bye\n\n");
    let report = bounded("the shutdown", report).await.unwrap();
    assert!(!report.timed_out());
    assert_eq!(report.completed, 1);
    let s = drain.snapshot();
    assert_eq!((s.completed, s.cancelled, s.in_flight), (1, 0, 0));
    bounded("the server exits", server).await.unwrap();
}

#[tokio::test]
async fn a_websocket_is_counted_until_it_closes_and_is_closed_by_the_drain() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::Message as Client;

    let drain = Drain::new();
    let (addr, _server) = start_server(&drain, Arc::new(Mutex::new(None))).await;

    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut socket, response) = tokio_tungstenite::client_async("ws://localhost/ws", tcp)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    socket.send(Client::text("hello")).await.unwrap();
    let echo = bounded("the echo", socket.next()).await.unwrap().unwrap();
    assert_eq!(echo, Client::text("hello"));
    // The `101` response is complete; the guard keeps the upgraded connection counted.
    let s = drain.snapshot();
    assert_eq!((s.started, s.completed, s.in_flight), (2, 1, 1));

    // Draining: the server closes the socket with `1001 Going Away`; the drain waits for it.
    let empty = tokio::spawn(drain.until_empty());
    drain.start_draining();
    let close = bounded("the close frame", socket.next())
        .await
        .unwrap()
        .unwrap();
    let Client::Close(Some(frame)) = close else {
        panic!("expected a close frame, got {close:?}");
    };
    assert_eq!(frame.code, CloseCode::Away);
    assert_eq!(frame.reason, "server draining");
    // tungstenite answers the close while flushing; the stream then ends.
    assert!(bounded("the end of the socket", socket.next())
        .await
        .is_none());
    bounded("the pool empties", empty).await.unwrap();
    let s = drain.snapshot();
    assert_eq!((s.completed, s.cancelled, s.in_flight), (2, 0, 0));
}

#[tokio::test]
async fn the_extractor_names_the_missing_option() {
    // `DrainWatch` in a handler, but the layer without `with_request_signal`.
    let drain = Drain::new();
    let app = Router::new()
        .route("/", get(|_: DrainWatch| async { "unreachable" }))
        .layer(drain.http_layer());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let response = http1_connection(addr)
        .await
        .send_request(get_request("/"))
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        std::str::from_utf8(&body)
            .unwrap()
            .contains("with_request_signal"),
        "{body:?}"
    );
}
