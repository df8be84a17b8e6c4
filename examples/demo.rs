//! A self-driving demonstration of tower-drain: `cargo run --example demo`.
//!
//! A real axum server on 127.0.0.1 takes five slow requests from a real HTTP client. Then a
//! graceful shutdown runs: first the readiness check turns `503` while requests are still
//! served; then the pool drains: a new request is refused with `503`, the health check still
//! answers, the five in flight run to their end (told to close their keep-alive connections),
//! the shutdown reports, and the server exits.

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use axum::{extract::Path, routing::get, Router};
use bytes::Bytes;
use http::header::{CONNECTION, RETRY_AFTER};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower_drain::{Drain, Phase};

#[tokio::main]
async fn main() {
    let start = Instant::now();
    let log = move |message: String| println!("[{:>5} ms] {message}", start.elapsed().as_millis());

    // The server: slow handlers, an exempt health check, and the drain layer.
    let drain = Drain::new();
    let app = Router::new()
        .route(
            "/slow/{ms}",
            get(|Path(ms): Path<u64>| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                format!("slept {ms} ms")
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .layer(
            drain
                .http_layer()
                .retry_after(Duration::from_secs(2))
                .exempt(|request| request.uri.path() == "/healthz"),
        )
        // Added after the layer: never refused, never counted.
        .route_service("/ready", drain.readiness());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // `serve` runs the shutdown when told to: the listener stays open while the pool drains,
    // so late clients get a clear 503 rather than a refused connection, and the server closes
    // once the pool is empty and its responses are written.
    let (begin_shutdown, signal) = tokio::sync::oneshot::channel::<()>();
    let shutdown = drain
        .shutdown()
        .unready_for(Duration::from_millis(50))
        .grace(Duration::from_secs(5));
    let server = tokio::spawn(
        tower_drain::serve(listener, app, shutdown)
            .with_graceful_shutdown(async {
                signal.await.ok();
            })
            .into_future(),
    );
    log(format!("axum server listening on http://{addr}"));

    // The client: five slow requests over keep-alive HTTP/1.1 connections.
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut requests = Vec::new();
    for i in 1..=5u64 {
        let (client, url) = (client.clone(), format!("http://{addr}/slow/{}", i * 100));
        requests.push(tokio::spawn(async move {
            let response = client.get(url.parse().unwrap()).await.unwrap();
            let close = response.headers().contains_key(CONNECTION);
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (String::from_utf8_lossy(&body).into_owned(), close)
        }));
    }
    drain.until(|s| s.in_flight == 5).await;
    log(format!("5 requests in flight: {drain:?}"));

    begin_shutdown.send(()).unwrap();
    let mut phases = drain.watch_phase();
    phases.wait_for(|p| *p == Phase::Unready).await.unwrap();
    let ready = client
        .get(format!("http://{addr}/ready").parse().unwrap())
        .await
        .unwrap();
    let served = client
        .get(format!("http://{addr}/slow/1").parse().unwrap())
        .await
        .unwrap();
    log(format!(
        "shutdown begins, phase unready: /ready answers {}, a new request is still served: {}",
        ready.status(),
        served.status()
    ));
    phases.wait_for(|p| *p == Phase::Draining).await.unwrap();
    log("phase draining: new work is refused".into());

    let refused = client
        .get(format!("http://{addr}/slow/1").parse().unwrap())
        .await
        .unwrap();
    log(format!(
        "a new request is refused: {} (Retry-After: {:?}, Connection: {:?})",
        refused.status(),
        refused.headers()[RETRY_AFTER],
        refused.headers()[CONNECTION],
    ));
    let health = client
        .get(format!("http://{addr}/healthz").parse().unwrap())
        .await
        .unwrap();
    log(format!(
        "the exempt health check still answers: {}",
        health.status()
    ));

    let waiter = tokio::spawn({
        let drain = drain.clone();
        async move {
            drain.until_empty().await;
            log("until_empty() resolved: every response is complete".into());
        }
    });
    for request in requests {
        let (body, close) = request.await.unwrap();
        log(format!(
            "response \"{body}\" complete{}; {} still in flight",
            if close { " with Connection: close" } else { "" },
            drain.in_flight()
        ));
    }
    waiter.await.unwrap();
    let report = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server exits")
        .unwrap();
    log(format!("the server has exited; shutdown report: {report}"));

    let s = drain.snapshot();
    println!(
        "\nstarted {}, completed {}, cancelled {}, rejected {}, in flight {}: nothing was lost.",
        s.started, s.completed, s.cancelled, s.rejected, s.in_flight
    );
}
