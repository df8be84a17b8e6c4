//! tower-http's `ServeFile` behind the layer, on a real axum server with a hyper client: a
//! file delivered whole over HTTP/1.1 counts as completed (hyper stops at the declared length
//! and drops the body unpolled).
#![cfg(feature = "http")]

#[path = "../support/mod.rs"]
mod support;

use axum::Router;
use http_body_util::BodyExt;
use tokio::net::TcpListener;
use tower_drain::Drain;
use tower_http::services::ServeFile;

use support::{bounded, get_request, http1_connection};

#[tokio::test]
async fn a_served_file_delivered_whole_counts_as_completed() {
    let path = std::env::temp_dir().join(format!("tower-drain-{}.bin", std::process::id()));
    std::fs::write(&path, vec![b'f'; 100_000]).unwrap();
    let drain = Drain::new();
    let app = Router::new()
        .route_service("/file", ServeFile::new(&path))
        .layer(drain.http_layer());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut client = http1_connection(addr).await;
    let response = client.send_request(get_request("/file")).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 100_000);
    bounded(
        "counted",
        drain.until(|s| s.in_flight == 0 && s.started == 1),
    )
    .await;
    let snapshot = drain.snapshot();
    assert_eq!((snapshot.completed, snapshot.cancelled), (1, 0));
    std::fs::remove_file(&path).unwrap();
}
