//! The shutdown procedure, on paused time: phases, readiness, deadline, report, repeats.

use std::future::IntoFuture;
use std::time::Duration;

use tokio::time::Instant;
use tower_drain::{Drain, Phase};

const UNREADY: Duration = Duration::from_secs(5);
const GRACE: Duration = Duration::from_secs(30);

#[cfg(feature = "http")]
async fn readiness_status(drain: &Drain) -> http::StatusCode {
    use tower::ServiceExt;
    drain
        .readiness()
        .oneshot(http::Request::new(()))
        .await
        .unwrap()
        .status()
}

#[tokio::test(start_paused = true)]
async fn requests_are_served_while_unready_and_refused_once_draining() {
    let drain = Drain::new();
    let held = drain.try_guard().unwrap();
    let shutdown = tokio::spawn(
        drain
            .shutdown()
            .unready_for(UNREADY)
            .grace(GRACE)
            .into_future(),
    );
    tokio::task::yield_now().await;

    // Unready: still serving, readiness says 503, `draining()` has not fired.
    assert_eq!(drain.phase(), Phase::Unready);
    let mut draining = tokio_test::task::spawn(drain.draining());
    assert!(draining.poll().is_pending());
    #[cfg(feature = "http")]
    assert_eq!(
        readiness_status(&drain).await,
        http::StatusCode::SERVICE_UNAVAILABLE
    );
    let during_unready = drain.try_guard().expect("served while unready");

    tokio::time::sleep(UNREADY).await;
    tokio::task::yield_now().await;
    assert_eq!(drain.phase(), Phase::Draining);
    assert!(
        draining.poll().is_ready(),
        "draining() fires when Draining begins"
    );
    assert!(drain.try_guard().is_err(), "refused once draining");

    drop(during_unready);
    drop(held);
    let report = shutdown.await.unwrap();
    assert!(!report.timed_out());
    assert_eq!(report.completed, 2);
    assert_eq!(report.rejected, 1);
    assert_eq!(report.abandoned, 0);
    assert_eq!(report.elapsed, UNREADY);
    assert_eq!(drain.phase(), Phase::Drained);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_yields_a_report_of_what_was_abandoned() {
    let drain = Drain::new();
    // Three requests that will never finish on their own.
    let stuck: Vec<_> = (0..3)
        .map(|_| drain.track(std::future::pending::<()>()))
        .collect();
    let finishing = drain.guard();
    let shutdown = tokio::spawn(
        drain
            .shutdown()
            .unready_for(UNREADY)
            .grace(GRACE)
            .into_future(),
    );
    tokio::time::sleep(UNREADY + Duration::from_secs(1)).await;
    drop(finishing);
    let report = shutdown.await.unwrap();
    assert!(report.timed_out());
    assert_eq!(report.abandoned, 3);
    assert_eq!(report.completed, 1);
    assert_eq!(report.elapsed, UNREADY + GRACE);
    assert_eq!(
        report.to_string(),
        "grace period over after 35.000s: 1 completed, 0 cancelled, 0 rejected, 3 abandoned"
    );

    // The caller exits; the runtime drops the stragglers: counted as cancelled.
    drop(stuck);
    assert_eq!(drain.in_flight(), 0);
    assert_eq!(drain.snapshot().cancelled, 3);
    assert_eq!(drain.phase(), Phase::Drained);
}

#[tokio::test(start_paused = true)]
async fn an_empty_pool_finishes_right_after_the_unready_period() {
    let drain = Drain::new();
    let start = Instant::now();
    let report = drain.shutdown().unready_for(UNREADY).grace(GRACE).await;
    assert_eq!(start.elapsed(), UNREADY);
    assert_eq!(report.elapsed, UNREADY);
    assert!(!report.timed_out());
    assert_eq!(
        report.to_string(),
        "drained in 5.000s: 0 completed, 0 cancelled, 0 rejected"
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_and_repeated_shutdowns_share_one_outcome() {
    let drain = Drain::new();
    let guard = drain.guard();
    let first = tokio::spawn(drain.shutdown().unready_for(UNREADY).into_future());
    let second = tokio::spawn(drain.shutdown().grace(Duration::ZERO).into_future());
    tokio::time::sleep(UNREADY * 2).await;
    drop(guard);
    let (a, b) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!(a, b, "both see the same outcome");
    assert!(!a.timed_out());
    assert_eq!(a.completed, 1);
    let later = drain.shutdown().await;
    assert_eq!(later, a, "a later call sees it too");
}

#[tokio::test(start_paused = true)]
async fn resume_after_a_finished_shutdown_serves_again() {
    let drain = Drain::new();
    let report = drain.shutdown().await;
    assert_eq!(drain.phase(), Phase::Drained);
    assert!(drain.try_guard().is_err());
    assert_eq!(report.completed, 0);

    assert!(drain.resume());
    assert_eq!(drain.phase(), Phase::Serving);
    #[cfg(feature = "http")]
    assert_eq!(readiness_status(&drain).await, http::StatusCode::OK);
    let guard = drain.try_guard().expect("serving again");

    // A new shutdown runs afresh.
    let next = tokio::spawn(drain.shutdown().grace(GRACE).into_future());
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(guard);
    let report = next.await.unwrap();
    assert_eq!(report.completed, 1);
}

#[tokio::test(start_paused = true)]
async fn resume_during_a_shutdown_ends_it_and_serves() {
    let drain = Drain::new();
    let guard = drain.guard();
    let shutdown = tokio::spawn(drain.shutdown().unready_for(UNREADY).into_future());
    tokio::time::sleep(UNREADY + Duration::from_secs(1)).await;
    assert_eq!(drain.phase(), Phase::Draining);
    drain.resume();
    assert_eq!(drain.phase(), Phase::Serving);
    assert!(drain.try_guard().is_ok());
    // The running procedure ends at once, saying it was resumed, with the work still there.
    let report = shutdown.await.unwrap();
    assert!(report.resumed() && !report.timed_out());
    assert_eq!(report.elapsed, UNREADY + Duration::from_secs(1));
    assert!(
        report.to_string().starts_with("resumed after 6.000s"),
        "{report}"
    );
    assert_eq!(drain.in_flight(), 1);
    drop(guard);
}

#[tokio::test(start_paused = true)]
async fn resume_during_the_unready_period_stops_the_shutdown_before_it_drains() {
    let drain = Drain::new();
    let shutdown = tokio::spawn(
        drain
            .shutdown()
            .unready_for(UNREADY)
            .grace(UNREADY)
            .into_future(),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(drain.phase(), Phase::Unready);
    assert!(!drain.resume(), "not draining yet");
    assert_eq!(drain.phase(), Phase::Serving);
    let report = shutdown.await.unwrap();
    assert!(report.resumed());
    assert_eq!(report.elapsed, Duration::from_secs(1));

    // Past the moment the old procedure would have begun draining: still serving.
    tokio::time::sleep(UNREADY * 3).await;
    assert_eq!(drain.phase(), Phase::Serving);
    assert!(!drain.is_draining());
    assert!(drain.try_guard().is_ok());
    #[cfg(feature = "http")]
    assert_eq!(readiness_status(&drain).await, http::StatusCode::OK);

    // A new shutdown runs the whole procedure afresh.
    let start = Instant::now();
    let report = drain.shutdown().unready_for(UNREADY).await;
    assert!(!report.resumed());
    assert_eq!(start.elapsed(), UNREADY);
    assert_eq!(drain.phase(), Phase::Drained);
}

#[tokio::test(start_paused = true)]
async fn watch_phase_sees_every_step() {
    let drain = Drain::new();
    let mut phases = drain.watch_phase();
    let guard = drain.guard();
    let shutdown = tokio::spawn(drain.shutdown().unready_for(UNREADY).into_future());
    let mut seen = vec![*phases.borrow_and_update()];
    for _ in 0..2 {
        phases.changed().await.unwrap();
        seen.push(*phases.borrow_and_update());
    }
    drop(guard);
    phases.changed().await.unwrap();
    seen.push(*phases.borrow_and_update());
    assert_eq!(
        seen,
        [
            Phase::Serving,
            Phase::Unready,
            Phase::Draining,
            Phase::Drained
        ]
    );
    shutdown.await.unwrap();
    drain.resume();
    phases.changed().await.unwrap();
    assert_eq!(*phases.borrow(), Phase::Serving);
}

#[tokio::test(start_paused = true)]
async fn absurd_durations_are_well_defined() {
    let drain = Drain::new();
    let report = drain.shutdown().grace(Duration::ZERO).await;
    assert!(!report.timed_out(), "empty: nothing to abandon");

    let drain = Drain::new();
    let guard = drain.guard();
    let report = drain.shutdown().grace(Duration::ZERO).await;
    assert!(report.timed_out());
    assert_eq!(report.abandoned, 1);
    drop(guard);

    // `Duration::MAX` is no limit, not an overflow.
    let drain = Drain::new();
    let guard = drain.guard();
    let shutdown = tokio::spawn(
        drain
            .shutdown()
            .grace(Duration::MAX)
            .progress_every(Duration::ZERO)
            .into_future(),
    );
    tokio::time::sleep(Duration::from_secs(365 * 24 * 3600)).await;
    assert!(!shutdown.is_finished());
    drop(guard);
    assert!(!shutdown.await.unwrap().timed_out());

    // So is `Duration::MAX` for the unready period and the progress period.
    let drain = Drain::new();
    let shutdown = tokio::spawn(
        drain
            .shutdown()
            .unready_for(Duration::MAX)
            .progress_every(Duration::MAX)
            .into_future(),
    );
    tokio::time::sleep(Duration::from_secs(365 * 24 * 3600)).await;
    assert!(!shutdown.is_finished());
    assert_eq!(drain.phase(), tower_drain::Phase::Unready);
    shutdown.abort();
    let drain = Drain::new();
    let report = drain.shutdown().progress_every(Duration::MAX).await;
    assert!(!report.timed_out());
}

#[tokio::test(start_paused = true)]
async fn the_report_counts_work_cancelled_during_the_shutdown() {
    let drain = Drain::new();
    // An SSE client, say, whose response is dropped while the pool drains.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let stream = tokio::spawn(drain.track(async move {
        rx.await.ok();
        std::future::pending::<()>().await
    }));
    let done = drain.guard();
    let shutdown = tokio::spawn(drain.shutdown().grace(GRACE).into_future());
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(done);
    stream.abort(); // the client went away
    drop(tx);
    let report = shutdown.await.unwrap();
    assert_eq!((report.completed, report.cancelled), (1, 1));
    assert!(!report.timed_out());
    assert!(
        report
            .to_string()
            .ends_with("1 completed, 1 cancelled, 0 rejected"),
        "{report}"
    );
}
