//! One HTTP request after another through `HttpDrainLayer`, or through the ideal body-aware
//! guard of `benches/overhead.rs`, for `scripts/http-copies`: under `callgrind`, the
//! instructions and the `memcpy` work per request are exact counts, where criterion's
//! nanoseconds swing with code layout from one build to the next.
//!
//! `http_copies <ideal|drain|bare> [requests]` prints the time per request.

use http::{Request, Response};
use http_body::Body;
use tower::{Layer, Service};
use tower_drain::Drain;

#[path = "../../benches/support/ideal.rs"]
mod ideal;
#[path = "../../benches/support/mod.rs"]
mod support;
use ideal::{http_inner, one_http, IdealHttp, IdealPool};

/// `requests` requests through `service`; returns the frames their bodies had.
fn run<S, B>(mut service: S, requests: u64) -> usize
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
    B::Error: std::fmt::Debug,
{
    let mut frames = 0;
    for _ in 0..requests {
        frames += std::hint::black_box(one_http(&mut service));
    }
    frames
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (which, requests) = (args.next(), args.next());
    let requests = match requests.as_deref().map(str::parse::<u64>) {
        None => 10_000_000,
        Some(Ok(requests)) if requests > 0 => requests,
        Some(_) => usage(),
    };
    let start = std::time::Instant::now();
    let drain = Drain::new();
    let frames = match which.as_deref() {
        Some("bare") => run(http_inner(), requests),
        Some("ideal") => {
            let pool = std::sync::Arc::new(IdealPool::default());
            run(
                IdealHttp {
                    inner: http_inner(),
                    pool,
                },
                requests,
            )
        }
        Some("drain") => run(drain.http_layer().layer(http_inner()), requests),
        _ => usage(),
    };
    assert_eq!(frames as u64, requests, "one frame per response");
    let per_request = start.elapsed().as_nanos() as f64 / requests as f64;
    println!(
        "{}: {per_request:.1} ns per request",
        which.unwrap_or_default()
    );
}

fn usage() -> ! {
    eprintln!("usage: http_copies <bare|ideal|drain> [requests, default 10000000]");
    std::process::exit(2)
}
