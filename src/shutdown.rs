//! `Shutdown`: the whole graceful-shutdown procedure in one call, and its `ShutdownReport`.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use crate::drain::Drain;
use crate::record::AbandonedRequest;
use crate::trace;

/// How often a shutdown reports its progress by default.
const DEFAULT_PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// A graceful shutdown, ready to run: made by [`Drain::shutdown`], configured with
/// [`unready_for`](Self::unready_for), [`grace`](Self::grace) and
/// [`progress_every`](Self::progress_every), and run by awaiting it.
///
/// The steps:
///
/// 1. **Unready** for `unready_for` (default zero): requests are still served, but
///    [`Drain::readiness`] answers `503`, so load balancers and Kubernetes stop sending new
///    traffic while the instance still handles what arrives meanwhile.
/// 2. **Draining**: new work is refused ([`Drain::start_draining`]), and
///    [`Drain::draining`] resolves, so long-lived handlers finish and `serve` sends `GOAWAY`
///    to HTTP/2 clients it has not told yet. The listener stays open: a server closes once
///    the pool is empty ([`run_server`](Self::run_server)).
/// 3. **Wait** until nothing is in flight, or until `grace` has passed since draining began
///    (default: no limit). With the `tracing` feature, an event every `progress_every` says
///    how many requests remain.
///
/// The result is a [`ShutdownReport`]. Every call of [`Drain::shutdown`] on the same pool,
/// concurrent or later, shares one run and sees the same report, until
/// [`Drain::resume`] starts a new cycle: the first call's `unready_for` and `grace` decide the
/// run, and a later call's are not used (it joins the run, so that a signal handler, an admin
/// endpoint and `serve` may all shut the pool down without racing; a server that joins
/// closes by the run's own grace period). A `resume` ends the run at whatever step it is at,
/// with a report whose [`resumed`](ShutdownReport::resumed) is `true`; resumed while unready,
/// the pool never begins draining. Under `serve` or [`run_server`](Self::run_server), whose
/// signal has then been spent, a resumed run ends the server too.
///
/// Await a shutdown from outside the work it waits for: a shutdown with no `grace`, awaited
/// from inside a request that the same pool counts, waits for itself forever.
///
/// # At the deadline
///
/// The report says how many requests were abandoned; the caller then exits and the runtime
/// drops them: each is counted as cancelled, nothing panics and nothing hangs.
///
/// # With a server
///
/// Run a shutdown through the server: [`tower_drain::serve`](crate#two-ways-in) (feature
/// `serve`) runs it on its signal, and [`run_server`](Self::run_server) wires it into a server
/// with its own graceful shutdown (`axum::serve`, tonic's `Server`). Either way the server
/// accepts until the pool is empty and closes within a bound. Awaiting a shutdown beside a
/// server that was told to stop on [`Drain::draining`] refuses new connections while the
/// pool drains, and that server waits for its connections without a bound.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let drain = tower_drain::Drain::new();
/// let stuck = drain.guard(); // a request that never finishes
///
/// let report = drain
///     .shutdown()
///     .unready_for(Duration::from_secs(5))
///     .grace(Duration::from_secs(30))
///     .await;
/// assert!(report.timed_out());
/// assert_eq!(report.abandoned, 1);
/// assert_eq!(report.elapsed, Duration::from_secs(35));
/// # drop(stuck);
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a shutdown does nothing until it is awaited"]
pub struct Shutdown {
    drain: Drain,
    unready_for: Duration,
    grace: Option<Duration>,
    progress_every: Duration,
}

impl Shutdown {
    pub(crate) fn new(drain: Drain) -> Self {
        Self {
            drain,
            unready_for: Duration::ZERO,
            grace: None,
            progress_every: DEFAULT_PROGRESS_EVERY,
        }
    }

    /// Reports unready for `period` before refusing work. Default: zero.
    ///
    /// Make it longer than your load balancer takes to notice a failing readiness check
    /// (for Kubernetes, `periodSeconds * failureThreshold` of the readiness probe).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let shutdown = tower_drain::Drain::new().shutdown().unready_for(Duration::from_secs(5));
    /// # drop(shutdown);
    /// ```
    pub fn unready_for(mut self, period: Duration) -> Self {
        self.unready_for = period;
        self
    }

    /// Waits at most `period` after draining begins. Default: no limit. A zero grace returns
    /// at once with whatever is still in flight; `Duration::MAX` is no limit.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let shutdown = tower_drain::Drain::new().shutdown().grace(Duration::from_secs(30));
    /// # drop(shutdown);
    /// ```
    pub fn grace(mut self, period: Duration) -> Self {
        self.grace = Some(period);
        self
    }

    /// How often to report progress while draining (with the `tracing` feature). Default:
    /// one second. Zero, or a period too long to represent (`Duration::MAX`), turns progress
    /// events off.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let shutdown = tower_drain::Drain::new().shutdown().progress_every(Duration::from_secs(5));
    /// # drop(shutdown);
    /// ```
    pub fn progress_every(mut self, period: Duration) -> Self {
        self.progress_every = period;
        self
    }

    /// The pool this shutdown drains.
    #[cfg_attr(any(not(feature = "serve"), loom), allow(dead_code))]
    pub(crate) fn drain(&self) -> &Drain {
        &self.drain
    }

    /// The unready period.
    #[cfg_attr(any(not(feature = "serve"), loom), allow(dead_code))]
    pub(crate) fn unready_period(&self) -> Duration {
        self.unready_for
    }

    async fn run(self) -> ShutdownReport {
        let cell = (self.drain.shared()).cycle_slot(tokio::sync::OnceCell::<ShutdownReport>::new);
        cell.get_or_init(|| self.procedure()).await.clone()
    }

    async fn procedure(self) -> ShutdownReport {
        let drain = &self.drain;
        let shared = drain.shared();
        let start = Instant::now();
        let before = drain.snapshot();

        let cycle = shared.begin_unready(self.unready_for);
        // When the grace period ends, once draining has begun (`Some(None)`: no limit).
        let mut grace_ends: Option<Option<Instant>> = None;
        // Ready once `resume` has ended this cycle: every step below gives way to it.
        let mut resumed = std::pin::pin!(resumed(drain, cycle));
        let end = 'steps: {
            if !self.unready_for.is_zero() {
                let mut unready = std::pin::pin!(tokio::time::sleep(self.unready_for));
                let end = std::future::poll_fn(|cx| {
                    if resumed.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Some(End::Resumed));
                    }
                    unready.as_mut().poll(cx).map(|()| None)
                })
                .await;
                if let Some(end) = end {
                    break 'steps end;
                }
            }
            // Checked under the same lock as `resume` changes the cycle: a resume that came
            // first wins, and one that comes after finds the pool draining and ends it.
            if shared.start_draining_in(cycle).is_none() {
                break 'steps End::Resumed;
            }
            // `None` when the deadline is beyond what `Instant` can represent: no limit.
            let deadline = self
                .grace
                .and_then(|grace| Instant::now().checked_add(grace));
            grace_ends = Some(deadline);
            let mut empty = std::pin::pin!(drain.until_empty());
            let mut deadline = std::pin::pin!(deadline.map(tokio::time::sleep_until));
            // `None` when off, or when the first report would lie beyond what `Instant` can
            // represent (a period of `Duration::MAX`): never.
            let mut progress = (!self.progress_every.is_zero())
                .then(|| Instant::now().checked_add(self.progress_every))
                .flatten()
                .map(|first| tokio::time::interval_at(first, self.progress_every));
            std::future::poll_fn(|cx| {
                if resumed.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(End::Resumed);
                }
                if empty.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(End::Drained);
                }
                if let Some(deadline) = deadline.as_mut().as_pin_mut() {
                    if deadline.poll(cx).is_ready() {
                        return Poll::Ready(End::TimedOut);
                    }
                }
                if let Some(progress) = &mut progress {
                    while progress.poll_tick(cx).is_ready() {
                        trace::info!(
                            in_flight = drain.in_flight(),
                            "draining: requests in flight"
                        );
                    }
                }
                Poll::Pending
            })
            .await
        };

        let after = drain.snapshot();
        let timed_out = end == End::TimedOut;
        let report = ShutdownReport {
            completed: after.completed - before.completed,
            cancelled: after.cancelled - before.cancelled,
            abandoned: if timed_out { after.in_flight as u64 } else { 0 },
            rejected: after.rejected - before.rejected,
            elapsed: start.elapsed(),
            abandoned_requests: if timed_out {
                shared.record.in_flight()
            } else {
                Vec::new()
            },
            connections_cut: 0,
            timed_out,
            resumed: end == End::Resumed,
            forced: false,
            grace_ends,
        };
        #[cfg(feature = "metrics")]
        crate::metrics_reporter::record_shutdown(&report);
        match end {
            End::TimedOut => {
                // Relaxed: a hint for the log line of the `Drained` that follows.
                shared
                    .abandoned
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                trace::warning!(abandoned = report.abandoned, "{report}");
                #[cfg(feature = "tracing")]
                for request in &report.abandoned_requests {
                    trace::warning!("abandoned: {request}");
                }
            }
            End::Drained | End::Resumed => {
                trace::info!("{report}");
            }
        }
        report
    }
}

/// How a shutdown procedure ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Drained,
    TimedOut,
    Resumed,
}

/// Completes once `drain` has left `cycle`, that is once `resume` has ended the shutdown.
async fn resumed(drain: &Drain, cycle: u64) {
    let shared = drain.shared();
    let mut notified = std::pin::pin!(shared.resumed.notified());
    loop {
        // Enable first: a resume after the check below wakes us.
        notified.as_mut().enable();
        if shared.cycle() != cycle {
            return;
        }
        notified.as_mut().await;
        notified.set(shared.resumed.notified());
    }
}

impl IntoFuture for Shutdown {
    type Output = ShutdownReport;
    type IntoFuture = ShutdownFuture;

    fn into_future(self) -> ShutdownFuture {
        ShutdownFuture {
            inner: Box::pin(self.run()),
        }
    }
}

/// The future of a [`Shutdown`]: resolves to its [`ShutdownReport`].
///
/// It is `Send + 'static`, so it can be spawned. Dropping it before it completes leaves the
/// pool where the procedure had got to (unready or draining); another `shutdown()` picks up
/// from there.
///
/// # Examples
///
/// ```
/// use std::future::IntoFuture;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let drain = tower_drain::Drain::new();
/// let task = tokio::spawn(drain.shutdown().into_future());
/// let report = task.await.unwrap();
/// assert_eq!(report.completed, 0);
/// # }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct ShutdownFuture {
    // One allocation per shutdown, not per request: it keeps the async procedure nameable.
    inner: Pin<Box<dyn Future<Output = ShutdownReport> + Send>>,
}

impl Future for ShutdownFuture {
    type Output = ShutdownReport;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ShutdownReport> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for ShutdownFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownFuture").finish_non_exhaustive()
    }
}

/// What a [`Shutdown`] did.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let drain = tower_drain::Drain::new();
/// let report = drain.shutdown().await;
/// assert_eq!(
///     report.to_string(),
///     "drained in 0.000s: 0 completed, 0 cancelled, 0 rejected"
/// );
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Requests that finished during the shutdown.
    pub completed: u64,
    /// Requests whose client went away (or whose response was dropped) before their end,
    /// during the shutdown: an SSE client that disconnects while the pool drains, say.
    pub cancelled: u64,
    /// Requests still in flight at the deadline, abandoned (each one, with a
    /// [`RecordRequestsLayer`](crate::RecordRequestsLayer), in
    /// [`abandoned_requests`](Self::abandoned_requests)).
    pub abandoned: u64,
    /// Requests refused during the shutdown.
    pub rejected: u64,
    /// How long the shutdown took, the unready period included.
    pub elapsed: Duration,
    /// Each request abandoned at the deadline, oldest first, for requests that passed a
    /// [`RecordRequestsLayer`](crate::RecordRequestsLayer); empty without one, or when the
    /// pool drained in time.
    pub abandoned_requests: Vec<AbandonedRequest>,
    /// Connections that `serve` cut when it closed: still writing a response at the end of
    /// the grace period (a client that stopped reading), or upgraded (a WebSocket) and not
    /// closed by then. Zero for a shutdown run without `serve`. A cut connection's I/O fails
    /// from then on; an upgraded one closes when the task that owns it next reads or writes
    /// it, or drops it (a task that never touches it keeps it open until the runtime ends).
    pub connections_cut: u64,
    timed_out: bool,
    resumed: bool,
    forced: bool,
    /// When the run's grace period ends (or ended): `None` if it never began draining,
    /// `Some(None)` with no limit. A server gives its connections until then to write what
    /// they hold, whichever caller's shutdown started the run.
    grace_ends: Option<Option<Instant>>,
}

impl ShutdownReport {
    /// Whether the grace period ended with requests still in flight.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let report = tower_drain::Drain::new().shutdown().await;
    /// assert!(!report.timed_out());
    /// # }
    /// ```
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// Whether [`Drain::resume`] ended the shutdown before the pool drained: the pool is
    /// serving again, and whatever was in flight is still running. (`serve` and
    /// [`Shutdown::run_server`] end on such a report all the same: their signal is spent.)
    ///
    /// # Examples
    ///
    /// ```
    /// use std::future::IntoFuture;
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let drain = tower_drain::Drain::new();
    /// let shutdown = tokio::spawn(
    ///     drain.shutdown().unready_for(Duration::from_secs(5)).into_future(),
    /// );
    /// tokio::time::sleep(Duration::from_secs(1)).await;
    /// drain.resume(); // changed our mind: keep serving
    ///
    /// let report = shutdown.await.unwrap();
    /// assert!(report.resumed());
    /// assert!(!drain.is_draining(), "it never began draining");
    /// # }
    /// ```
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Whether a second signal ended the shutdown at once
    /// ([`Serve::with_forced_shutdown`](crate::Serve::with_forced_shutdown)), abandoning what
    /// was still in flight.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let report = tower_drain::Drain::new().shutdown().await;
    /// assert!(!report.forced());
    /// # }
    /// ```
    pub fn forced(&self) -> bool {
        self.forced
    }

    /// When a server cuts the connections it has left: `close_within` after the end of the
    /// run's grace period, or after now if that has passed or draining never began (a
    /// resume); `None` with no grace period.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn closing_deadline(&self, close_within: Duration) -> Option<Instant> {
        let now = Instant::now();
        let closing_from = match self.grace_ends {
            None => now,
            Some(None) => return None,
            Some(Some(grace_ends)) => grace_ends.max(now),
        };
        closing_from.checked_add(close_within)
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_counts(f)?;
        match self.connections_cut {
            0 => Ok(()),
            1 => write!(f, "; 1 connection cut"),
            n => write!(f, "; {n} connections cut"),
        }
    }
}

impl ShutdownReport {
    /// The report of a shutdown cut short by a second signal, `elapsed` after the first: what
    /// finished since `before`, and what is abandoned now.
    #[cfg_attr(any(not(feature = "serve"), loom), allow(dead_code))]
    pub(crate) fn of_forced(drain: &Drain, before: &crate::Snapshot, elapsed: Duration) -> Self {
        // Refuse new work from now on, if the unready period had not ended yet.
        drain.start_draining();
        let after = drain.snapshot();
        let report = ShutdownReport {
            completed: after.completed - before.completed,
            cancelled: after.cancelled - before.cancelled,
            abandoned: after.in_flight as u64,
            rejected: after.rejected - before.rejected,
            elapsed,
            abandoned_requests: drain.shared().record.in_flight(),
            connections_cut: 0,
            timed_out: after.in_flight > 0,
            resumed: false,
            forced: true,
            grace_ends: Some(Some(Instant::now())),
        };
        trace::warning!(abandoned = report.abandoned, "{report}");
        report
    }

    fn fmt_counts(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.elapsed.as_secs_f64();
        if self.forced {
            write!(
                f,
                "forced after {seconds:.3}s by a second signal: {} completed, {} cancelled, \
                 {} rejected, {} abandoned",
                self.completed, self.cancelled, self.rejected, self.abandoned
            )?;
            return match self.abandoned_requests.first() {
                Some(oldest) => write!(f, " (oldest: {oldest})"),
                None => Ok(()),
            };
        }
        if self.resumed {
            write!(
                f,
                "resumed after {seconds:.3}s: {} completed, {} cancelled, {} rejected",
                self.completed, self.cancelled, self.rejected
            )
        } else if self.timed_out {
            write!(
                f,
                "grace period over after {seconds:.3}s: {} completed, {} cancelled, {} rejected, \
                 {} abandoned",
                self.completed, self.cancelled, self.rejected, self.abandoned
            )?;
            match self.abandoned_requests.first() {
                Some(oldest) => write!(f, " (oldest: {oldest})"),
                None => Ok(()),
            }
        } else {
            write!(
                f,
                "drained in {seconds:.3}s: {} completed, {} cancelled, {} rejected",
                self.completed, self.cancelled, self.rejected
            )
        }
    }
}
