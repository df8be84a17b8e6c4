//! The shutdown sequence against a real axum server on 127.0.0.1: the readiness route flips
//! to 503 while requests are still served, and idle keep-alive connections are closed only
//! once draining begins, not during the unready period.
#![cfg(feature = "http")]

mod support;

use std::future::IntoFuture;
use std::time::Duration;

use axum::{routing::get, Router};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tower_drain::{Drain, Phase};

use support::bounded;

fn get_request(path: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("http://localhost{path}"))
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn readiness_flips_first_and_idle_connections_close_only_when_draining() {
    let drain = Drain::new();
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(drain.http_layer())
        .route_service("/ready", drain.readiness());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(drain.draining())
            .into_future(),
    );

    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut conn, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let ready = conn.send_request(get_request("/ready")).await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        ready.into_body().collect().await.unwrap().to_bytes(),
        "serving\n"
    );

    // A long unready period: the test observes it rather than waiting it out.
    let shutdown = tokio::spawn(
        drain
            .shutdown()
            .unready_for(Duration::from_secs(3600))
            .into_future(),
    );
    let mut phases = drain.watch_phase();
    bounded("unready", phases.wait_for(|p| *p == Phase::Unready))
        .await
        .unwrap();

    // Unready: the probe says 503 on the same keep-alive connection, which stays open and
    // still serves real requests.
    let ready = conn.send_request(get_request("/ready")).await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        ready.into_body().collect().await.unwrap().to_bytes(),
        "unready\n"
    );
    let served = conn.send_request(get_request("/")).await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    served.into_body().collect().await.unwrap();
    assert!(
        !connection.is_finished(),
        "idle connection kept while unready"
    );

    // Draining begins (as the procedure would after `unready_for`): axum's graceful shutdown
    // starts now and closes the idle connection; the server exits.
    drain.start_draining();
    bounded("idle connection closed", connection)
        .await
        .unwrap()
        .unwrap();
    bounded("server exits", server).await.unwrap().unwrap();
    shutdown.abort();
}
