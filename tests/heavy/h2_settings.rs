//! What `serve` tells HTTP/2 clients in its SETTINGS, read by a raw `h2` client: WebSockets
//! over HTTP/2 (RFC 8441's `SETTINGS_ENABLE_CONNECT_PROTOCOL`, which `axum::serve` sends too)
//! and the concurrent-stream limit set with `http2_max_concurrent_streams`.
#![cfg(feature = "serve")]

use std::future::IntoFuture;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tower_drain::Drain;

#[tokio::test]
async fn serve_offers_websockets_over_http2_and_its_stream_limit() {
    let drain = Drain::new();
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(drain.http_layer());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tower_drain::serve(listener, app, drain.shutdown())
            .http2_max_concurrent_streams(7)
            .with_graceful_shutdown(async {
                stopped.await.ok();
            })
            .into_future(),
    );

    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::get("http://localhost/").body(()).unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    // Answered: the server's SETTINGS have arrived by now.
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    assert!(client.is_extended_connect_protocol_enabled());
    assert_eq!(client.current_max_send_streams(), 7);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
}
