//! `MetricsReporter`: the pool's counters through the `metrics` facade (feature `metrics`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use metrics::{counter, gauge, Counter, Gauge};

use crate::drain::Drain;
use crate::snapshot::Phase;
use crate::ShutdownReport;

/// Publishes a pool's counters through the [`metrics`](https://docs.rs/metrics) facade every
/// period, until dropped.
///
/// Made by [`Drain::report_metrics`]; spawn it beside the server. It never completes. Nothing
/// is recorded on the request path: the reporter reads a [`Snapshot`](crate::Snapshot) each
/// period, and a shutdown records its duration and what it abandoned once, when it ends.
/// Whatever recorder the program installs (Prometheus, StatsD, OpenTelemetry exporters)
/// receives:
///
/// | name | kind | unit | meaning |
/// | --- | --- | --- | --- |
/// | `tower_drain_in_flight` | gauge | requests | requests in the pool now |
/// | `tower_drain_draining` | gauge | 0 or 1 | whether the pool refuses new work |
/// | `tower_drain_phase` | gauge | 0 to 3 | `Serving`, `Unready`, `Draining`, `Drained` |
/// | `tower_drain_requests_started_total` | counter | requests | admitted since the pool began |
/// | `tower_drain_requests_completed_total` | counter | requests | finished in full |
/// | `tower_drain_requests_cancelled_total` | counter | requests | dropped before finishing |
/// | `tower_drain_requests_rejected_total` | counter | requests | refused while draining |
/// | `tower_drain_shutdown_duration_seconds` | histogram | seconds | each `shutdown()`, start to end |
/// | `tower_drain_shutdown_abandoned_total` | counter | requests | in flight at a grace deadline |
///
/// The reporter's metrics carry a `pool` label with the name it was given, so that several
/// pools (children, listeners) can be told apart; the shutdown metrics carry none.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let drain = tower_drain::Drain::new();
/// let reporter = tokio::spawn(drain.report_metrics("api", Duration::from_secs(5)));
/// // ... serve ...
/// reporter.abort();
/// # }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct MetricsReporter {
    drain: Drain,
    ticks: tokio::time::Interval,
    handles: Handles,
}

/// The recorder's handles, registered once so that each report is a few stores.
struct Handles {
    in_flight: Gauge,
    draining: Gauge,
    phase: Gauge,
    started: Counter,
    completed: Counter,
    cancelled: Counter,
    rejected: Counter,
}

impl MetricsReporter {
    pub(crate) fn new(drain: Drain, pool: String, period: Duration) -> Self {
        let handles = Handles {
            in_flight: gauge!("tower_drain_in_flight", "pool" => pool.clone()),
            draining: gauge!("tower_drain_draining", "pool" => pool.clone()),
            phase: gauge!("tower_drain_phase", "pool" => pool.clone()),
            started: counter!("tower_drain_requests_started_total", "pool" => pool.clone()),
            completed: counter!("tower_drain_requests_completed_total", "pool" => pool.clone()),
            cancelled: counter!("tower_drain_requests_cancelled_total", "pool" => pool.clone()),
            rejected: counter!("tower_drain_requests_rejected_total", "pool" => pool),
        };
        // A zero period would make `interval` panic: report as often as the timer allows.
        let mut ticks = tokio::time::interval(period.max(Duration::from_millis(1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            drain,
            ticks,
            handles,
        }
    }

    fn report(&self) {
        let snapshot = self.drain.snapshot();
        let h = &self.handles;
        h.in_flight.set(snapshot.in_flight as f64);
        h.draining.set(f64::from(u8::from(snapshot.draining)));
        h.phase.set(match self.drain.phase() {
            Phase::Serving => 0.0,
            Phase::Unready => 1.0,
            Phase::Draining => 2.0,
            Phase::Drained => 3.0,
        });
        h.started.absolute(snapshot.started);
        h.completed.absolute(snapshot.completed);
        h.cancelled.absolute(snapshot.cancelled);
        h.rejected.absolute(snapshot.rejected);
    }
}

impl Future for MetricsReporter {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Every field is `Unpin`.
        let this = self.get_mut();
        while this.ticks.poll_tick(cx).is_ready() {
            this.report();
        }
        Poll::Pending
    }
}

impl fmt::Debug for MetricsReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsReporter")
            .field("drain", &self.drain)
            .field("period", &self.ticks.period())
            .finish()
    }
}

impl Drain {
    /// A future that publishes this pool's counters through the `metrics` facade every
    /// `period`, labelled `pool = name`, until dropped. See [`MetricsReporter`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let drain = tower_drain::Drain::new();
    /// tokio::spawn(drain.report_metrics("api", Duration::from_secs(5)));
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn report_metrics(&self, name: impl Into<String>, period: Duration) -> MetricsReporter {
        MetricsReporter::new(self.clone(), name.into(), period)
    }
}

/// Records a finished shutdown.
pub(crate) fn record_shutdown(report: &ShutdownReport) {
    metrics::histogram!("tower_drain_shutdown_duration_seconds").record(report.elapsed);
    counter!("tower_drain_shutdown_abandoned_total").increment(report.abandoned);
}
