//! The `metrics` facade: a debugging recorder sees what the reporter and a shutdown publish.
#![cfg(feature = "metrics")]

use std::collections::HashMap;
use std::future::IntoFuture;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio_test::{assert_pending, task};
use tower_drain::Drain;

/// Each metric by name: its labels and its value.
type Values = HashMap<String, (Vec<(String, String)>, DebugValue)>;

/// Every metric's value, by name. Reading resets the debugging recorder's values, so each
/// check reads once and looks everything up in the result.
fn read(snapshotter: &Snapshotter) -> Values {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.name().to_owned(), (labels, value))
        })
        .collect()
}

fn gauge(values: &Values, name: &str) -> f64 {
    match values.get(name) {
        Some((_, DebugValue::Gauge(v))) => v.into_inner(),
        other => panic!("{name}: {other:?}"),
    }
}

fn counter(values: &Values, name: &str) -> u64 {
    match values.get(name) {
        Some((_, DebugValue::Counter(v))) => *v,
        other => panic!("{name}: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_reporter_publishes_every_counter_each_period() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let drain = Drain::new();
    let mut reporter = metrics::with_local_recorder(&recorder, || {
        task::spawn(drain.report_metrics("api", Duration::from_secs(1)))
    });
    assert_pending!(reporter.poll());
    assert_eq!(gauge(&read(&snapshotter), "tower_drain_in_flight"), 0.0);

    let guard = drain.guard();
    drop(drain.track(std::future::pending::<()>()));
    drop(drain.guard());
    drain.start_draining();
    assert!(drain.try_guard().is_err());
    // Nothing is recorded on the request path: the figures change at the next period.
    assert!(read(&snapshotter).values().all(|(_, v)| match v {
        DebugValue::Gauge(g) => g.into_inner() == 0.0,
        DebugValue::Counter(c) => *c == 0,
        DebugValue::Histogram(h) => h.is_empty(),
    }));

    tokio::time::advance(Duration::from_secs(1)).await;
    assert_pending!(reporter.poll());
    let values = read(&snapshotter);
    assert_eq!(gauge(&values, "tower_drain_in_flight"), 1.0);
    assert_eq!(gauge(&values, "tower_drain_draining"), 1.0);
    assert_eq!(gauge(&values, "tower_drain_phase"), 2.0);
    assert_eq!(counter(&values, "tower_drain_requests_started_total"), 3);
    assert_eq!(counter(&values, "tower_drain_requests_completed_total"), 1);
    assert_eq!(counter(&values, "tower_drain_requests_cancelled_total"), 1);
    assert_eq!(counter(&values, "tower_drain_requests_rejected_total"), 1);
    assert_eq!(values.len(), 7);
    for (name, (labels, _)) in &values {
        assert_eq!(labels, &[("pool".to_owned(), "api".to_owned())], "{name}");
    }
    drop(guard);
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_records_its_duration_and_what_it_abandoned() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let drain = Drain::new();
    let stuck = drain.guard();
    let mut shutdown = task::spawn(
        drain
            .shutdown()
            .unready_for(Duration::from_secs(2))
            .grace(Duration::from_secs(3))
            .into_future(),
    );
    // The recorder is installed around each poll, where the shutdown records.
    let report = loop {
        match metrics::with_local_recorder(&recorder, || shutdown.poll()) {
            std::task::Poll::Ready(report) => break report,
            std::task::Poll::Pending => tokio::time::advance(Duration::from_millis(500)).await,
        }
    };
    assert!(report.timed_out());
    let values = read(&snapshotter);
    match &values["tower_drain_shutdown_duration_seconds"].1 {
        DebugValue::Histogram(seconds) => {
            assert_eq!(seconds.len(), 1);
            assert_eq!(seconds[0].into_inner(), 5.0);
        }
        other => panic!("duration: {other:?}"),
    }
    assert_eq!(counter(&values, "tower_drain_shutdown_abandoned_total"), 1);
    drop(stuck);
}
