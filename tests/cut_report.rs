//! The report of what was cut: with `RecordRequestsLayer`, a shutdown whose grace period runs
//! out names each abandoned request, on a real axum server with real clients.
#![cfg(feature = "http")]

mod support;

use std::future::IntoFuture;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use tokio::net::TcpListener;
use tower_drain::Drain;

use support::{bounded, get_request, http1_connection, huge_body, request_and_never_read};

#[tokio::test]
async fn a_cut_short_shutdown_names_each_abandoned_request() {
    let drain = Drain::new();
    let app = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/stuck", get(std::future::pending::<&'static str>))
        .route("/huge", get(|| async { huge_body() }))
        .layer(drain.record_requests())
        .layer(drain.http_layer());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, app).into_future());

    // One request that completes, one stuck before its response, one whose client never
    // reads its body.
    let mut conn = http1_connection(addr).await;
    let ok = conn.send_request(get_request("/ok")).await.unwrap();
    ok.into_body().collect().await.unwrap();
    let stuck = tokio::spawn(async move {
        let mut conn = http1_connection(addr).await;
        conn.send_request(get_request("/stuck")).await
    });
    bounded("stuck in flight", drain.until(|s| s.in_flight == 1)).await;
    let _reader = request_and_never_read(addr, "/huge?token=secret").await;
    bounded("both in flight", drain.until(|s| s.in_flight == 2)).await;

    let shutdown = drain.shutdown().grace(Duration::from_millis(300));
    let report = bounded("the shutdown", shutdown.into_future()).await;
    assert!(report.timed_out());
    assert_eq!(report.abandoned, 2);
    let cut: Vec<_> = report
        .abandoned_requests
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str(), r.in_body))
        .collect();
    assert_eq!(cut, [("GET", "/stuck", false), ("GET", "/huge", true)]);
    assert!(report.abandoned_requests[0].age >= report.abandoned_requests[1].age);
    assert!(report.abandoned_requests[1].age >= Duration::from_millis(300));
    let text = report.to_string();
    assert!(text.contains("(oldest: GET /stuck, "), "{text}");
    assert!(text.ends_with("before its response)"), "{text}");
    stuck.abort();
}

#[tokio::test]
async fn without_the_layer_or_when_drained_in_time_nothing_is_listed() {
    let drain = Drain::new();
    let guard = drain.guard();
    let report = drain.shutdown().grace(Duration::ZERO).await;
    assert!(report.timed_out());
    assert!(
        report.abandoned_requests.is_empty(),
        "no RecordRequestsLayer: a count only"
    );
    drop(guard);

    let drain = Drain::new();
    let report = drain.shutdown().await;
    assert!(report.abandoned_requests.is_empty());
}

/// An exempt request is not the drain's: a stuck one is neither counted nor named, even with
/// the recorder inside the drain layer where it sees every request that layer passes on.
#[tokio::test]
async fn exempt_requests_are_never_named_in_the_report() {
    let drain = Drain::new();
    let (entered, mut handlers) = tokio::sync::mpsc::unbounded_channel::<()>();
    let stuck = move || {
        let entered = entered.clone();
        async move {
            entered.send(()).unwrap();
            std::future::pending::<&'static str>().await
        }
    };
    let app = Router::new()
        .route("/status", get(stuck.clone()))
        .route("/work", get(stuck))
        .layer(drain.record_requests())
        .layer(
            drain
                .http_layer()
                .exempt(|request| request.uri.path() == "/status"),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, app).into_future());

    let mut clients = Vec::new();
    for path in ["/status", "/work"] {
        clients.push(tokio::spawn(async move {
            let mut conn = http1_connection(addr).await;
            conn.send_request(get_request(path)).await
        }));
    }
    for _ in 0..2 {
        bounded("both handlers entered", handlers.recv())
            .await
            .unwrap();
    }
    assert_eq!(drain.in_flight(), 1, "the exempt request is not counted");

    let shutdown = drain.shutdown().grace(Duration::from_millis(200));
    let report = bounded("the shutdown", shutdown.into_future()).await;
    assert!(report.timed_out());
    assert_eq!(report.abandoned, 1);
    let cut: Vec<_> = report
        .abandoned_requests
        .iter()
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(cut, ["/work"], "{report}");
    for client in clients {
        client.abort();
    }
}
