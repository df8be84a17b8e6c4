//! Gradual closing during the unready period, with a seeded random source and paused time:
//! the share of HTTP/1.x responses that ask for `Connection: close` follows the period.
#![cfg(feature = "http")]

mod support;

use std::convert::Infallible;
use std::future::IntoFuture;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response, Version};
use http_body_util::Full;
use tower::{Service, ServiceExt};
use tower_drain::{Drain, Phase};

use support::full_service;

const UNREADY: Duration = Duration::from_secs(10);
const SAMPLE: usize = 2_000;

/// The share of `SAMPLE` responses, over `version`, that ask for `Connection: close`.
async fn share_closed<S>(service: &S, version: Version) -> f64
where
    S: Service<
            Request<()>,
            Response = Response<tower_drain::DrainBody<Full<Bytes>>>,
            Error = Infallible,
        > + Clone,
{
    let mut closed = 0;
    for _ in 0..SAMPLE {
        let mut request = Request::new(());
        *request.version_mut() = version;
        let response = service.clone().oneshot(request).await.unwrap();
        closed += usize::from(response.headers().contains_key(header::CONNECTION));
    }
    closed as f64 / SAMPLE as f64
}

/// Starts a shutdown with the unready period and waits until it is unready.
async fn begin_unready(drain: &Drain) -> tokio::task::JoinHandle<tower_drain::ShutdownReport> {
    let mut phases = drain.watch_phase();
    let shutdown = tokio::spawn(drain.shutdown().unready_for(UNREADY).into_future());
    phases.wait_for(|p| *p == Phase::Unready).await.unwrap();
    shutdown
}

#[tokio::test(start_paused = true)]
async fn the_share_of_closed_connections_rises_over_the_unready_period() {
    let drain = Drain::new();
    let service = full_service(drain.http_layer().gradual_close_seeded(42), b"ok");
    assert_eq!(
        share_closed(&service, Version::HTTP_11).await,
        0.0,
        "serving"
    );

    let shutdown = begin_unready(&drain).await;
    let mut expected = Vec::new();
    for quarter in 0..4u32 {
        // Time stands still while the sample is taken: every request sees one progress.
        let share = share_closed(&service, Version::HTTP_11).await;
        expected.push((f64::from(quarter) / 4.0, share));
        assert_eq!(
            share_closed(&service, Version::HTTP_2).await,
            0.0,
            "never on HTTP/2"
        );
        tokio::time::advance(UNREADY / 4).await;
    }
    for (progress, share) in &expected {
        // Binomial with n = 2,000: a standard deviation of at most 0.011.
        assert!((share - progress).abs() < 0.04, "at {progress}: {share}");
    }
    shutdown.await.unwrap();
    assert_eq!(drain.phase(), Phase::Drained);
}

#[tokio::test(start_paused = true)]
async fn without_gradual_closing_the_unready_period_closes_nothing() {
    let drain = Drain::new();
    let service = full_service(drain.http_layer(), b"ok");
    let shutdown = begin_unready(&drain).await;
    tokio::time::advance(UNREADY * 9 / 10).await;
    assert_eq!(share_closed(&service, Version::HTTP_11).await, 0.0);
    shutdown.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn resume_ends_gradual_closing() {
    let drain = Drain::new();
    let service = full_service(drain.http_layer().gradual_close_seeded(7), b"ok");
    let shutdown = begin_unready(&drain).await;
    tokio::time::advance(UNREADY * 3 / 4).await;
    assert!(share_closed(&service, Version::HTTP_11).await > 0.6);
    drain.resume();
    assert_eq!(share_closed(&service, Version::HTTP_11).await, 0.0);
    shutdown.abort();
}
