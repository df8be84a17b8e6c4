//! The pool's packed state word and the counters beside it.
//!
//! Everything a request does on its way in and out is one read-modify-write of one `AtomicU64`,
//! so the hot path is as cheap as a counting layer can be. The word's layout:
//!
//! ```text
//!  63                     32 31 30            4   3        2         1        0
//! +-------------------------+--+---------------+--------+---------+--------+--------+
//! | attempts (low 32 bits)  |L | in flight (27)| DETACH | CHANGED | EMPTY  | DRAIN  |
//! +-------------------------+--+---------------+--------+---------+--------+--------+
//! ```
//!
//! - `DRAIN`: draining; `try_enter` refuses while it is set.
//! - `EMPTY`: at least one `until_empty`/`next_empty` waiter is registered, so the exit that takes
//!   the count to zero must publish the transition. Without it, that exit does nothing more.
//! - `CHANGED`: at least one predicate waiter is registered, so every change must wake it.
//! - `DETACH`: every `Drain` handle is gone; the exit that takes the count to zero recycles the
//!   pool's memory (see `slot.rs`).
//! - in flight: 27 bits, plus `L`, the limit bit: an entry that finds `L` set is refused and
//!   undone, so at most 2^27 requests are admitted at once and the field can never carry into
//!   the attempts counter (2^27 further entries would have to race past the check at once).
//! - attempts: every entry, admitted or refused, adds one. It is the pool's clock: waiters
//!   compare attempt counts to tell which transitions to empty happened after they registered.
//!   Its 32 bits wrap; `halves` (below) counts half-period crossings so that `snapshot` can
//!   extend it to 64 bits exactly.

use std::sync::PoisonError;

#[cfg(loom)]
use loom::sync::{
    atomic::{AtomicU64, Ordering},
    Mutex, MutexGuard,
};
#[cfg(not(loom))]
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Mutex, MutexGuard,
};

pub(crate) const DRAINING: u64 = 1 << 0;
pub(crate) const EMPTY_WAITERS: u64 = 1 << 1;
pub(crate) const CHANGE_WATCHERS: u64 = 1 << 2;
pub(crate) const DETACHED: u64 = 1 << 3;

const IN_FLIGHT_SHIFT: u32 = 4;
const IN_FLIGHT_ONE: u64 = 1 << IN_FLIGHT_SHIFT;
/// The limit bit: the top bit of the 28-bit in-flight field.
const IN_FLIGHT_LIMIT: u64 = 1 << 31;
const IN_FLIGHT_MASK: u64 = ((1 << 28) - 1) << IN_FLIGHT_SHIFT;
/// The most requests that can be in flight at once.
pub(crate) const MAX_IN_FLIGHT: usize = 1 << 27;

const ATTEMPTS_SHIFT: u32 = 32;
/// One entry: one more in flight, one more attempt.
const ENTER: u64 = IN_FLIGHT_ONE | (1 << ATTEMPTS_SHIFT);
/// The low 31 bits of the attempts field: when they roll over to zero, a half period ends.
const HALF_PERIOD_MASK: u64 = (1 << 31) - 1;

/// What an entry found, when it needs more than the fast path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// Admitted; nobody needs to hear about it.
    Admitted,
    /// Admitted; predicate waiters must be woken.
    AdmittedChanged,
    /// Refused because the pool is draining; the caller undoes the entry with
    /// `exit(Outcome::Refused)`.
    Draining,
    /// Refused because `MAX_IN_FLIGHT` requests are in flight; undone like `Draining`.
    Full,
}

/// What an exit must do after its read-modify-write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exit {
    /// The count reached zero while empty-waiters were registered: the attempt count at the
    /// moment it did, to publish.
    pub(crate) emptied_at: Option<u64>,
    /// Predicate waiters are registered and must be woken.
    pub(crate) changed: bool,
    /// The count reached zero after every handle was dropped: the caller must recycle the pool.
    pub(crate) recycle: bool,
}

impl Exit {
    /// An exit that needs nothing more: the fast path.
    pub(crate) const NONE: Exit = Exit {
        emptied_at: None,
        changed: false,
        recycle: false,
    };
}

/// How a request left the pool, for the statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Completed,
    Cancelled,
    /// An entry undone because it was refused.
    Refused,
}

/// A consistent reading of the state, with the attempts counter extended to 64 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reading {
    pub(crate) word: u64,
    pub(crate) attempts: u64,
    pub(crate) cancelled: u64,
    pub(crate) refused: u64,
}

impl Reading {
    pub(crate) fn in_flight(&self) -> usize {
        in_flight(self.word)
    }
}

pub(crate) fn in_flight(word: u64) -> usize {
    ((word & IN_FLIGHT_MASK) >> IN_FLIGHT_SHIFT) as usize
}

fn attempts_low(word: u64) -> u32 {
    (word >> ATTEMPTS_SHIFT) as u32
}

/// Extends a 32-bit attempts reading to 64 bits, given `halves`, the number of half-period
/// crossings recorded so far, read *before* the word.
///
/// `halves` may lag the word by one crossing (the entry that crossed has not recorded it yet),
/// never lead it: the half the low bits are in tells which. It would take 2^31 entries while
/// one thread sits between two instructions for the lag to reach two.
fn extend(halves: u64, low: u32) -> u64 {
    let upper_half = u64::from(low >> 31);
    let crossings = if halves & 1 == upper_half {
        halves
    } else {
        halves + 1
    };
    ((crossings >> 1) << 32) | u64::from(low)
}

/// The packed word and the counters that only rare paths touch.
#[derive(Debug)]
pub(crate) struct State {
    word: AtomicU64,
    /// Half-period crossings of the 32-bit attempts field, for `extend`.
    halves: AtomicU64,
    /// Cancellations and refusals: the rare exits. Each changes the word and a counter, two
    /// steps that `read` must never see half done, so both happen under this lock, which
    /// `read` takes too. Completions, the common exit, need neither: the word alone says
    /// everything about them.
    rare: Mutex<RareCounts>,
}

#[derive(Debug, Default)]
struct RareCounts {
    cancelled: u64,
    refused: u64,
}

impl State {
    pub(crate) fn new() -> Self {
        Self {
            word: AtomicU64::new(0),
            halves: AtomicU64::new(0),
            rare: Mutex::new(RareCounts::default()),
        }
    }

    fn lock_rare(&self) -> MutexGuard<'_, RareCounts> {
        // No user code runs under this lock, so a poisoned lock still holds true counts.
        self.rare.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns a recycled pool to its initial state. The caller owns the pool exclusively.
    pub(crate) fn reset(&self) {
        // Relaxed: the slot is handed to its next owner through a mutex, which orders these.
        self.word.store(0, Ordering::Relaxed);
        self.halves.store(0, Ordering::Relaxed);
        *self.lock_rare() = RareCounts::default();
    }

    /// Counts one more request in flight unless the pool is draining or full.
    ///
    /// This is the check-and-admit step: one `fetch_add`, then a test of what it found. A
    /// concurrent `start_draining` is ordered before or after the add in the word's modification
    /// order: before, and this entry sees `DRAINING` and undoes itself; after, and this entry is
    /// in the count that the drainer's waiters see. So once `start_draining` has returned and a
    /// waiter has seen the pool empty, no entry can be admitted. A refused entry is in the count
    /// for the instant between its add and its undo, like a request that was refused at once.
    #[inline]
    pub(crate) fn try_enter(&self) -> Entry {
        // Relaxed: admission depends only on the word's modification order, which every RMW
        // observes whatever its ordering; the request publishes nothing to other threads.
        let prev = self.word.fetch_add(ENTER, Ordering::Relaxed);
        if prev & (DRAINING | IN_FLIGHT_LIMIT | CHANGE_WATCHERS) == 0 && !crosses_half(prev) {
            return Entry::Admitted;
        }
        self.enter_slow(prev, true)
    }

    /// Counts one more request in flight even while draining. Refuses only when full.
    #[inline]
    pub(crate) fn enter(&self) -> Entry {
        // Relaxed: as in `try_enter`.
        let prev = self.word.fetch_add(ENTER, Ordering::Relaxed);
        if prev & (IN_FLIGHT_LIMIT | CHANGE_WATCHERS) == 0 && !crosses_half(prev) {
            return Entry::Admitted;
        }
        self.enter_slow(prev, false)
    }

    #[cold]
    fn enter_slow(&self, prev: u64, refuse_draining: bool) -> Entry {
        if crosses_half(prev) {
            // Release: pairs with the Acquire load of `halves` in `read`, so a reader that sees
            // this crossing also sees the entry that made it.
            self.halves.fetch_add(1, Ordering::Release);
        }
        let refusal = if prev & IN_FLIGHT_LIMIT != 0 {
            Some(Entry::Full)
        } else if refuse_draining && prev & DRAINING != 0 {
            Some(Entry::Draining)
        } else {
            None
        };
        match refusal {
            // The caller's undo is an exit like any other: it may be the one that empties the
            // pool while waiters are registered, so its effects must run too.
            Some(refusal) => refusal,
            None if prev & CHANGE_WATCHERS != 0 => Entry::AdmittedChanged,
            None => Entry::Admitted,
        }
    }

    /// Takes one request out of the count and says what must happen next.
    #[inline]
    pub(crate) fn exit(&self, outcome: Outcome) -> Exit {
        let prev = match outcome {
            Outcome::Completed => self.leave_word(),
            Outcome::Cancelled | Outcome::Refused => self.leave_rare(outcome),
        };
        if prev & (EMPTY_WAITERS | CHANGE_WATCHERS | DETACHED) == 0 {
            return Exit::NONE;
        }
        self.exit_slow(prev)
    }

    #[inline]
    fn leave_word(&self) -> u64 {
        // Release: everything the request did happens-before a waiter that observes the count
        // it leaves (Acquire loads in `read` and in registration). Acquire: a recycling exit
        // must see every other exit's writes before it resets the pool.
        let prev = self.word.fetch_sub(IN_FLIGHT_ONE, Ordering::AcqRel);
        debug_assert!(in_flight(prev) > 0, "exit without a matching entry");
        prev
    }

    #[cold]
    fn leave_rare(&self, outcome: Outcome) -> u64 {
        let mut counts = self.lock_rare();
        let prev = self.leave_word();
        match outcome {
            Outcome::Cancelled => counts.cancelled += 1,
            Outcome::Refused => counts.refused += 1,
            Outcome::Completed => unreachable!("completions take the fast path"),
        }
        prev
    }

    #[cold]
    fn exit_slow(&self, prev: u64) -> Exit {
        let emptied = in_flight(prev) == 1;
        Exit {
            emptied_at: (emptied && prev & EMPTY_WAITERS != 0)
                .then(|| self.extend_recent(attempts_low(prev))),
            changed: prev & CHANGE_WATCHERS != 0,
            recycle: emptied && prev & DETACHED != 0,
        }
    }

    /// Extends an attempts value observed a moment ago to 64 bits, through a fresh reading.
    fn extend_recent(&self, low: u32) -> u64 {
        let now = self.read();
        let since = u64::from((now.attempts as u32).wrapping_sub(low));
        now.attempts - since
    }

    /// Sets `DRAINING`; returns the word before.
    pub(crate) fn start_draining(&self) -> u64 {
        // AcqRel: ordered with every entry by the word's modification order; Release publishes
        // the flip to Acquire readers of `is_draining`.
        self.word.fetch_or(DRAINING, Ordering::AcqRel)
    }

    /// Clears `DRAINING`; returns the word before.
    pub(crate) fn resume(&self) -> u64 {
        // AcqRel: as in `start_draining`.
        self.word.fetch_and(!DRAINING, Ordering::AcqRel)
    }

    /// Sets or clears a waiter bit; returns the word before. Callers serialise these under the
    /// pool's waiter lock, so the bit always matches the registered count.
    pub(crate) fn set_flag(&self, flag: u64, on: bool) -> u64 {
        // AcqRel: the registration is ordered with every exit by the word's modification order
        // (an exit after it sees the flag; one before it is visible in the returned count), and
        // Acquire makes the requests that left before it happen-before the waiter.
        if on {
            self.word.fetch_or(flag, Ordering::AcqRel)
        } else {
            self.word.fetch_and(!flag, Ordering::AcqRel)
        }
    }

    /// Marks the pool as having no handles. Returns true when nothing is in flight, in which
    /// case the caller recycles it now; otherwise the last exit will.
    pub(crate) fn detach(&self) -> bool {
        // AcqRel: Acquire so the recycler sees every exit's writes; Release for the last exit.
        in_flight(self.word.fetch_or(DETACHED, Ordering::AcqRel)) == 0
    }

    /// The word alone, for the cheap queries.
    #[inline]
    pub(crate) fn load(&self) -> u64 {
        // Acquire: pairs with the Release exits, so requests seen gone have finished.
        self.word.load(Ordering::Acquire)
    }

    /// A consistent reading of everything: no rare exit is half done in it, since those run
    /// under the lock taken here, and completions are single RMWs of the word.
    pub(crate) fn read(&self) -> Reading {
        let counts = self.lock_rare();
        // Acquire: pairs with the Release increment after a crossing, so the word load below
        // sees the entry that made it: `extend` needs `halves` never to lead the word.
        let halves = self.halves.load(Ordering::Acquire);
        // Acquire: pairs with the Release exits.
        let word = self.word.load(Ordering::Acquire);
        Reading {
            word,
            attempts: extend(halves, attempts_low(word)),
            cancelled: counts.cancelled,
            refused: counts.refused,
        }
    }
}

/// Whether the entry that found `prev` moved the attempts field across a half period.
#[inline]
fn crosses_half(prev: u64) -> bool {
    (prev >> ATTEMPTS_SHIFT).wrapping_add(1) & HALF_PERIOD_MASK == 0
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn extend_follows_the_attempts_counter_across_wraps() {
        // Lower half, no crossing recorded.
        assert_eq!(extend(0, 5), 5);
        // Upper half, crossing recorded or still pending.
        assert_eq!(extend(1, 1 << 31), 1 << 31);
        assert_eq!(extend(0, 1 << 31), 1 << 31);
        // Wrapped: lower half of the second period, crossing recorded or pending.
        assert_eq!(extend(2, 7), (1 << 32) + 7);
        assert_eq!(extend(1, 7), (1 << 32) + 7);
        assert_eq!(extend(5, u32::MAX), (3 << 32) - 1);
    }

    #[test]
    fn crossing_is_detected_at_both_half_boundaries() {
        let at = |attempts: u64| attempts << ATTEMPTS_SHIFT;
        assert!(crosses_half(at((1 << 31) - 1)));
        assert!(crosses_half(at(u64::from(u32::MAX))));
        assert!(!crosses_half(at(0)));
        assert!(!crosses_half(at(1 << 31)));
    }

    #[test]
    fn attempts_stay_exact_past_the_32_bit_wrap() {
        let state = State::new();
        // Start just before the first half boundary and walk across two of them.
        state
            .word
            .store(((1u64 << 31) - 3) << ATTEMPTS_SHIFT, Ordering::Relaxed);
        let mut expected = (1u64 << 31) - 3;
        for _ in 0..6 {
            assert_eq!(state.try_enter(), Entry::Admitted);
            state.exit(Outcome::Completed);
            expected += 1;
            assert_eq!(state.read().attempts, expected);
        }
        // Jump to the end of the second period: three crossings recorded so far.
        state
            .word
            .store(u64::from(u32::MAX - 1) << ATTEMPTS_SHIFT, Ordering::Relaxed);
        state.halves.store(3, Ordering::Relaxed);
        expected = (1 << 32) + u64::from(u32::MAX - 1);
        for _ in 0..4 {
            state.enter();
            state.exit(Outcome::Completed);
            expected += 1;
            assert_eq!(state.read().attempts, expected);
        }
    }

    #[test]
    fn a_full_pool_refuses_and_undoes_the_entry() {
        let state = State::new();
        state.word.store(
            ((MAX_IN_FLIGHT - 1) as u64) << IN_FLIGHT_SHIFT,
            Ordering::Relaxed,
        );
        assert_eq!(state.enter(), Entry::Admitted);
        assert_eq!(in_flight(state.load()), MAX_IN_FLIGHT);
        assert_eq!(state.enter(), Entry::Full);
        // The caller undoes a refused entry; the count is back where it was.
        state.exit(Outcome::Refused);
        assert_eq!(in_flight(state.load()), MAX_IN_FLIGHT);
        assert_eq!(state.read().refused, 1);
    }
}
