//! An HTTP/2 (h2c) load client that does what RFC 9113 asks of a client on `GOAWAY`: new
//! requests go to a new connection, and a request the server says it never processed (above
//! the `GOAWAY`'s last stream, or `REFUSED_STREAM`) is sent again. h2load does neither (it
//! never reconnects an HTTP/2 connection), so across a process handoff it reports the streams
//! it could not open as errors whatever the server does.
//!
//! `h2-load URL... --connections N --seconds S`: N concurrent requesters cycling over the
//! URLs for S seconds. Prints `h2client <requests> <non-2xx> <failed> <timeouts>` and, on
//! stderr, how many were sent again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    non_2xx: AtomicU64,
    failed: AtomicU64,
    timeouts: AtomicU64,
    resent: AtomicU64,
}

/// Whether the server said it never processed the request: safe to send again.
fn unprocessed(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            return (h2.is_go_away() && h2.is_remote())
                || h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        source = error.source();
    }
    false
}

#[tokio::main]
async fn main() {
    let mut urls = Vec::new();
    let (mut connections, mut seconds) = (8usize, 10u64);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--connections" => connections = args.next().unwrap().parse().unwrap(),
            "--seconds" => seconds = args.next().unwrap().parse().unwrap(),
            url => urls.push(url.parse::<http::Uri>().expect("a URL")),
        }
    }
    assert!(
        !urls.is_empty(),
        "usage: h2-load URL... [--connections N] [--seconds S]"
    );
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<Bytes>>();
    let counts = Arc::new(Counts::default());
    let end = Instant::now() + Duration::from_secs(seconds);
    let requesters: Vec<_> = (0..connections)
        .map(|i| {
            let (client, counts, urls) = (client.clone(), counts.clone(), urls.clone());
            tokio::spawn(async move {
                let mut n = i;
                while Instant::now() < end {
                    let url = urls[n % urls.len()].clone();
                    n += 1;
                    for attempt in 0..3 {
                        let sent = tokio::time::timeout(Duration::from_secs(5), async {
                            let response = client.get(url.clone()).await?;
                            let status = response.status();
                            response.into_body().collect().await?;
                            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(status)
                        })
                        .await;
                        match sent {
                            Err(_) => counts.timeouts.fetch_add(1, Ordering::Relaxed),
                            Ok(Ok(status)) if status.is_success() => 0,
                            Ok(Ok(_)) => counts.non_2xx.fetch_add(1, Ordering::Relaxed),
                            Ok(Err(error)) if attempt < 2 && unprocessed(&*error) => {
                                counts.resent.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            Ok(Err(_)) => counts.failed.fetch_add(1, Ordering::Relaxed),
                        };
                        counts.requests.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            })
        })
        .collect();
    for requester in requesters {
        requester.await.unwrap();
    }
    let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
    eprintln!(
        "h2-load: {} requests sent again after GOAWAY",
        get(&counts.resent)
    );
    println!(
        "h2client {} {} {} {}",
        get(&counts.requests),
        get(&counts.non_2xx),
        get(&counts.failed),
        get(&counts.timeouts)
    );
}
