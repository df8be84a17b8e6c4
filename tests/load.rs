//! Load while draining: 20,000 requests from 64 HTTP/1.1 keep-alive connections and 8 HTTP/2
//! connections against a real axum server, through 5 shutdown/resume cycles started at
//! random moments. Every request is classified by what its client saw; nothing but a complete
//! `200` or a clean refusal is allowed, and the pool's counters must agree with the clients.
//!
//! `LOAD_REQUESTS` and `LOAD_SEED` change the size and the moments; the `#[ignore]`d soak runs
//! 1,000,000 requests (`cargo test --release --test load -- --ignored`).
#![cfg(feature = "http")]

mod support;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{header, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tower_drain::Drain;

use support::{bounded, get_request, http2_connection};

const HTTP1_CONNECTIONS: usize = 64;
const HTTP2_CONNECTIONS: usize = 8;
/// Concurrent streams on each HTTP/2 connection.
const HTTP2_STREAMS: usize = 4;
const CYCLES: u64 = 5;
/// The body every admitted request must receive in full.
const BODY_LEN: usize = 4096;

fn expected_body() -> Bytes {
    Bytes::from((0..BODY_LEN).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

/// What the clients saw, counted.
#[derive(Debug, Default)]
struct Seen {
    /// `200` with the whole body.
    completed: AtomicU64,
    /// `503` with an empty body (HTTP/1.1: with `Connection: close`).
    refused: AtomicU64,
    /// A connection that could not be opened or was closed before the request was sent.
    refused_at_connect: AtomicU64,
    /// Anything else: a truncated body, a reset of an accepted request, a wrong status.
    failures: Mutex<Vec<String>>,
}

impl Seen {
    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }
}

/// Issues request numbers until `total` is reached.
struct Budget {
    issued: AtomicU64,
    total: u64,
}

impl Budget {
    fn take(&self) -> bool {
        // Relaxed: a ticket counter; nothing else is published through it.
        self.issued.fetch_add(1, Ordering::Relaxed) < self.total
    }
}

async fn start_server(drain: &Drain) -> SocketAddr {
    let body = expected_body();
    let app = Router::new()
        .route(
            "/",
            get(move || async move {
                // One yield, so requests overlap and drains begin with work in flight.
                tokio::task::yield_now().await;
                body
            }),
        )
        .layer(drain.http_layer());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Classifies one response; returns whether the connection must be replaced.
async fn classify(
    result: Result<http::Response<hyper::body::Incoming>, hyper::Error>,
    seen: &Seen,
    expected: &Bytes,
) -> bool {
    let response = match result {
        Ok(response) => response,
        // hyper reports a request it never wrote as canceled: the connection was closing.
        Err(err) if err.is_canceled() => {
            seen.refused_at_connect.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        Err(err) => {
            seen.fail(format!("request failed after it was sent: {err}"));
            return true;
        }
    };
    let status = response.status();
    let close = response.headers().get(header::CONNECTION).cloned();
    let body = response.into_body().collect().await.map(|b| b.to_bytes());
    match (status, body) {
        (StatusCode::OK, Ok(body)) if body == *expected => {
            seen.completed.fetch_add(1, Ordering::Relaxed);
        }
        (StatusCode::SERVICE_UNAVAILABLE, Ok(body)) if body.is_empty() => {
            seen.refused.fetch_add(1, Ordering::Relaxed);
        }
        (status, Ok(body)) => seen.fail(format!("{status} with {} body bytes", body.len())),
        (status, Err(err)) => seen.fail(format!("{status}, body broken off: {err}")),
    }
    close.is_some_and(|v| v == "close")
}

async fn http1_client(addr: SocketAddr, budget: Arc<Budget>, seen: Arc<Seen>) {
    let expected = expected_body();
    let mut sender = None;
    while budget.take() {
        if sender.is_none() {
            let Ok(tcp) = TcpStream::connect(addr).await else {
                seen.refused_at_connect.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let Ok((s, connection)) =
                hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await
            else {
                seen.refused_at_connect.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            tokio::spawn(connection);
            sender = Some(s);
        }
        let s = sender.as_mut().unwrap();
        if s.ready().await.is_err() {
            // Closed before this request was written: counted, and a new connection.
            seen.refused_at_connect.fetch_add(1, Ordering::Relaxed);
            sender = None;
            continue;
        }
        if classify(s.send_request(get_request("/")).await, &seen, &expected).await {
            sender = None;
        }
    }
}

async fn http2_client(addr: SocketAddr, budget: Arc<Budget>, seen: Arc<Seen>) {
    let sender = http2_connection(addr).await;
    let streams: Vec<_> = (0..HTTP2_STREAMS)
        .map(|_| {
            let (mut sender, budget, seen) = (sender.clone(), budget.clone(), seen.clone());
            tokio::spawn(async move {
                let expected = expected_body();
                while budget.take() {
                    let result = sender.send_request(get_request("/")).await;
                    if classify(result, &seen, &expected).await {
                        seen.fail("an HTTP/2 connection was closed".into());
                        return;
                    }
                }
            })
        })
        .collect();
    for stream in streams {
        stream.await.unwrap();
    }
}

/// A small deterministic generator for the drain moments (xorshift64).
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

async fn load_while_draining(total: u64) {
    let seed = std::env::var("LOAD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_cafe_f00d_u64);
    eprintln!("LOAD_SEED={seed}");
    let mut random = seed | 1;

    let drain = Drain::new();
    let addr = start_server(&drain).await;
    let budget = Arc::new(Budget {
        issued: AtomicU64::new(0),
        total,
    });
    let seen = Arc::new(Seen::default());
    let mut clients = Vec::new();
    for _ in 0..HTTP1_CONNECTIONS {
        clients.push(tokio::spawn(http1_client(
            addr,
            budget.clone(),
            seen.clone(),
        )));
    }
    for _ in 0..HTTP2_CONNECTIONS {
        clients.push(tokio::spawn(http2_client(
            addr,
            budget.clone(),
            seen.clone(),
        )));
    }

    // Each cycle begins at a random point of its share of the load, and stays drained until
    // some requests have been refused.
    let mut reports = Vec::new();
    let share = total / (CYCLES + 1);
    for cycle in 0..CYCLES {
        let at = share * cycle + share / 2 + next_random(&mut random) % (share / 2);
        bounded(
            "the load reaches the drain point",
            drain.until(move |s| s.started + s.rejected >= at),
        )
        .await;
        let report = bounded(
            "shutdown",
            drain.shutdown().grace(Duration::from_secs(5)).into_future(),
        )
        .await;
        assert!(!report.timed_out(), "cycle {cycle}: {report}");
        assert_eq!(drain.in_flight(), 0, "cycle {cycle}");
        let rejected = drain.snapshot().rejected;
        bounded(
            "refusals",
            drain.until(move |s| s.rejected >= rejected + 20),
        )
        .await;
        reports.push(report);
        assert!(drain.resume());
    }

    for client in clients {
        bounded("a client finishes", client).await.unwrap();
    }
    let failures = seen.failures.lock().unwrap().clone();
    let (completed, refused, at_connect) = (
        seen.completed.load(Ordering::Relaxed),
        seen.refused.load(Ordering::Relaxed),
        seen.refused_at_connect.load(Ordering::Relaxed),
    );
    let snapshot = drain.snapshot();
    eprintln!(
        "{total} requests: {completed} completed, {refused} refused, {at_connect} refused at \
         connect, {} failed; pool: {snapshot:?}",
        failures.len()
    );
    for report in &reports {
        eprintln!("  {report}");
    }

    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    // Every request the clients sent is accounted for, and the pool agrees with them.
    assert_eq!(completed + refused + at_connect, total);
    assert_eq!(
        snapshot.completed, completed,
        "every admitted request completed in full"
    );
    assert_eq!(
        snapshot.rejected, refused,
        "every refusal reached its client"
    );
    assert_eq!(snapshot.cancelled, 0, "no accepted request was cut off");
    assert_eq!(snapshot.in_flight, 0);
    let reported: u64 = reports.iter().map(|r| r.rejected).sum();
    assert!(reported <= refused && reports.iter().all(|r| r.abandoned == 0));
    assert!(refused >= 20 * CYCLES, "every cycle refused requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_requests_through_five_drains_lose_nothing() {
    let total = std::env::var("LOAD_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    load_while_draining(total).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a soak of 1,000,000 requests (about 12 s in release): cargo test --release --test load -- --ignored"]
async fn soak_a_million_requests() {
    load_while_draining(1_000_000).await;
}
