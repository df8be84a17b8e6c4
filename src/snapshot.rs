//! `Snapshot` and `Phase`: the pool's counters and its place in a shutdown.

use crate::pool::state::{self, Reading};

/// The pool's counters, read by [`Drain::snapshot`](crate::Drain::snapshot) (exact when no
/// request enters or leaves during the read; see there).
///
/// Every snapshot is consistent: `started == completed + cancelled + in_flight` always holds,
/// and `started`, `completed`, `cancelled` and `rejected` never decrease from one snapshot to
/// the next. An entry refused while draining is counted in `rejected` only: admission is one
/// compare-and-swap, so a refused entry never appears in `started` or `in_flight`, not even
/// for an instant.
///
/// # Examples
///
/// ```
/// let drain = tower_drain::Drain::new();
/// let guard = drain.guard();
/// drop(drain.guard());
///
/// let snapshot = drain.snapshot();
/// assert_eq!(snapshot.in_flight, 1);
/// assert_eq!(snapshot.started, 2);
/// assert_eq!(snapshot.completed, 1);
/// assert_eq!(
///     snapshot.started,
///     snapshot.completed + snapshot.cancelled + snapshot.in_flight as u64
/// );
/// # drop(guard);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Snapshot {
    /// Requests in the pool now.
    pub in_flight: usize,
    /// Requests admitted since the pool was made.
    pub started: u64,
    /// Requests that finished: their future completed, their guard was dropped.
    pub completed: u64,
    /// Requests dropped before they completed: a timeout, a client gone, a panic.
    pub cancelled: u64,
    /// Requests refused because the pool was draining (or full).
    pub rejected: u64,
    /// Whether the pool is draining.
    pub draining: bool,
}

impl Snapshot {
    #[inline]
    pub(crate) fn from_reading(reading: &Reading) -> Self {
        let in_flight = reading.in_flight();
        // Every cancellation `State::read` counts has left the in-flight count (a cancellation
        // changes both under the lock `read` takes), so the subtraction cannot underflow. A
        // refused entry is never counted at all, so `started` only ever grows.
        let started = reading.started;
        let completed = started - reading.cancelled - in_flight as u64;
        Self {
            in_flight,
            started,
            completed,
            cancelled: reading.cancelled,
            rejected: reading.rejected,
            draining: reading.word & state::DRAINING != 0,
        }
    }
}

/// Where a pool is in a graceful shutdown, from [`Drain::phase`](crate::Drain::phase).
///
/// `Serving` → `Unready` (still serving, but the readiness check answers `503` so load
/// balancers stop sending) → `Draining` (new work refused, in-flight work finishing) →
/// `Drained` (draining and empty). [`Drain::resume`](crate::Drain::resume) returns to `Serving`
/// from any phase.
///
/// # Examples
///
/// ```
/// use tower_drain::{Drain, Phase};
///
/// let drain = Drain::new();
/// assert_eq!(drain.phase(), Phase::Serving);
/// let guard = drain.guard();
/// drain.start_draining();
/// assert_eq!(drain.phase(), Phase::Draining);
/// drop(guard);
/// assert_eq!(drain.phase(), Phase::Drained);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Accepting work, and ready.
    Serving,
    /// Accepting work, but reporting unready so that load balancers move traffic away.
    Unready,
    /// Refusing new work while in-flight work finishes.
    Draining,
    /// Draining, and nothing is in flight.
    Drained,
}

impl Phase {
    pub(crate) fn of(word: u64, unready: bool) -> Self {
        if word & state::DRAINING != 0 {
            if state::in_flight(word) == 0 {
                Phase::Drained
            } else {
                Phase::Draining
            }
        } else if unready {
            Phase::Unready
        } else {
            Phase::Serving
        }
    }

    /// The phase's name in lowercase, as the readiness check and events print it.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(tower_drain::Phase::Draining.as_str(), "draining");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Serving => "serving",
            Phase::Unready => "unready",
            Phase::Draining => "draining",
            Phase::Drained => "drained",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
