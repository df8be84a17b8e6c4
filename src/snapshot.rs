//! `Snapshot`: the pool's counters at one moment.

use crate::state::{self, Reading};

/// The pool's counters, read at one moment by [`Drain::snapshot`](crate::Drain::snapshot).
///
/// Every snapshot is consistent: `started == completed + cancelled + in_flight` always holds,
/// and `completed`, `cancelled` and `rejected` never decrease from one snapshot to the next.
/// One transient is visible: an entry refused while draining is counted in `started` and
/// `in_flight` for the instant between its check and its undo, as it really is in the pool for
/// that instant, and moves to `rejected` after.
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
    pub(crate) fn from_reading(reading: &Reading) -> Self {
        let in_flight = reading.in_flight();
        // Every refusal and cancellation `State::read` counts has left the in-flight count (they
        // change both under the lock `read` takes), so neither subtraction can underflow.
        let started = reading.attempts - reading.refused;
        let completed = started - reading.cancelled - in_flight as u64;
        Self {
            in_flight,
            started,
            completed,
            cancelled: reading.cancelled,
            rejected: reading.refused,
            draining: reading.word & state::DRAINING != 0,
        }
    }
}
