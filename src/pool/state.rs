//! The pool's packed state word and the counters beside it.
//!
//! Everything a request does on its way in and out is one read-modify-write of one `AtomicU64`,
//! so the hot path is as cheap as a counting layer can be. The word's layout:
//!
//! ```text
//!  63                     32 31                  4   3        2         1        0
//! +-------------------------+---------------------+--------+---------+--------+--------+
//! | entries (low 32 bits)   | in flight (28 bits) | DETACH | CHANGED | EMPTY  | DRAIN  |
//! +-------------------------+---------------------+--------+---------+--------+--------+
//! ```
//!
//! - `DRAIN`: draining; `try_enter` refuses while it is set.
//! - `EMPTY`: at least one `until_empty`/`next_empty` waiter is registered, so the exit that takes
//!   the count to zero must publish the transition. Without it, that exit does nothing more.
//! - `CHANGED`: at least one predicate waiter is registered, so every change must wake it.
//! - `DETACH`: every `Drain` handle is gone; the exit that takes the count to zero recycles the
//!   pool's memory (see `super`).
//! - in flight: 28 bits, of which at most `MAX_IN_FLIGHT` (2^27) are ever used: an entry is
//!   admitted by a compare-and-swap that checks the limit first, so the field never carries
//!   into the entries counter.
//! - entries: every admitted entry adds one; refused entries never touch the word. It is the
//!   pool's clock: waiters compare entry counts to tell which transitions to empty happened
//!   after they registered. It is never reset, not even when the memory is reused for a new
//!   pool (`State::reset` moves `base` instead), so a transition of an earlier life is always
//!   older than any waiter of a later one. Its 32 bits wrap; `halves` (below) counts
//!   half-period crossings so that `read` can extend it to 64 bits exactly.
//!
//! Admission is a compare-and-swap, not a `fetch_add` that a refusal undoes: an entry that is
//! refused never appears in the count, not even for an instant, so `started` never goes
//! backwards and a refused entry can never complete a `next_empty` waiter.

use std::sync::PoisonError;

use crate::loom::{AtomicU64, Mutex, MutexGuard, Ordering};

pub(crate) const DRAINING: u64 = 1 << 0;
pub(crate) const EMPTY_WAITERS: u64 = 1 << 1;
pub(crate) const CHANGE_WATCHERS: u64 = 1 << 2;
pub(crate) const DETACHED: u64 = 1 << 3;
/// Every flag: what a recycled pool clears.
const FLAGS: u64 = DRAINING | EMPTY_WAITERS | CHANGE_WATCHERS | DETACHED;
/// The flags that make an exit do more than its read-modify-write.
pub(crate) const LATE_WORK: u64 = EMPTY_WAITERS | CHANGE_WATCHERS | DETACHED;

const IN_FLIGHT_SHIFT: u32 = 4;
const IN_FLIGHT_ONE: u64 = 1 << IN_FLIGHT_SHIFT;
const IN_FLIGHT_MASK: u64 = ((1 << 28) - 1) << IN_FLIGHT_SHIFT;
/// The most requests that can be in flight at once.
pub(crate) const MAX_IN_FLIGHT: usize = 1 << 27;

const ENTRIES_SHIFT: u32 = 32;
/// One entry: one more in flight, one more entry.
const ENTER: u64 = IN_FLIGHT_ONE | (1 << ENTRIES_SHIFT);
/// The low 31 bits of the entries field: when they roll over to zero, a half period ends.
const HALF_PERIOD_MASK: u64 = (1 << 31) - 1;

/// What an entry found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// Admitted; nobody needs to hear about it.
    Admitted,
    /// Admitted; predicate waiters must be woken.
    AdmittedChanged,
    /// Refused because the pool is draining; nothing was counted but the refusal.
    Draining,
    /// Refused because `MAX_IN_FLIGHT` requests are in flight; likewise.
    Full,
}

/// How a request left the pool, for the statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Completed,
    Cancelled,
}

/// A consistent reading of the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reading {
    pub(crate) word: u64,
    /// Entries since the memory was first used, extended to 64 bits: the pool's clock.
    pub(crate) entries: u64,
    /// Entries in this pool's life: `entries` less those of earlier lives of the memory.
    pub(crate) started: u64,
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

pub(crate) fn entries_low(word: u64) -> u32 {
    (word >> ENTRIES_SHIFT) as u32
}

/// Extends a 32-bit entries reading to 64 bits, given `halves`, the number of half-period
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
    /// Half-period crossings of the 32-bit entries field, for `extend`.
    halves: AtomicU64,
    /// The extended entry count when this life of the memory began: `started` is counted
    /// from here. Written only by `reset`, while nothing else can reach the pool but a late
    /// exit of the life before, which reads it under the same lock (see `super`).
    base: AtomicU64,
    /// Cancellations and refusals: the rare outcomes. A cancellation changes the word and a
    /// counter, two steps that `read` must never see half done, so both happen under this
    /// lock, which `read` takes too. Completions, the common exit, need neither: the word
    /// alone says everything about them.
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
            base: AtomicU64::new(0),
            rare: Mutex::new(RareCounts::default()),
        }
    }

    fn lock_rare(&self) -> MutexGuard<'_, RareCounts> {
        // No user code runs under this lock, so a poisoned lock still holds true counts.
        self.rare.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Begins a new life: no flags, no counts. Nothing is in flight and no handle exists; the
    /// caller holds the pool's lifecycle lock.
    ///
    /// The entries field and `halves` are kept: the clock runs on across lives, so that an
    /// emptying published by a late exit of the old life can never satisfy a waiter of the
    /// new one, and `extend` stays exact.
    pub(crate) fn reset(&self) {
        let mut counts = self.lock_rare();
        // Relaxed: the caller's fence ordered every exit of the old life before this, and the
        // memory reaches its next owner through the free list's mutex.
        self.word.fetch_and(!FLAGS, Ordering::Relaxed);
        let now = self.read_locked(&counts);
        debug_assert_eq!(now.in_flight(), 0, "reset with work in flight");
        // Relaxed: read under the lifecycle lock, or by a later owner after the handoff.
        self.base.store(now.entries, Ordering::Relaxed);
        *counts = RareCounts::default();
    }

    /// Counts one more request in flight unless the pool is draining or full.
    ///
    /// This is the check-and-admit step: one compare-and-swap of the word it checked. A
    /// concurrent `start_draining` is ordered before or after it in the word's modification
    /// order: before, and the swap fails and this entry sees `DRAINING`; after, and this entry
    /// is in the count that the drainer's waiters see. So once `start_draining` has returned
    /// and a waiter has seen the pool empty, no entry can be admitted.
    #[inline]
    pub(crate) fn try_enter(&self) -> Entry {
        self.admit(DRAINING)
    }

    /// Counts one more request in flight even while draining. Refuses only when full.
    #[inline]
    pub(crate) fn enter(&self) -> Entry {
        self.admit(0)
    }

    #[inline(always)]
    fn admit(&self, refused_by: u64) -> Entry {
        // Relaxed: a first guess at the word, which the swap below checks.
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            if word & (refused_by | CHANGE_WATCHERS) != 0
                || in_flight(word) >= MAX_IN_FLIGHT
                || crosses_half(word)
            {
                return self.admit_slow(word, refused_by);
            }
            // Relaxed, success and failure: admission depends only on the word's modification
            // order, which every read-modify-write observes whatever its ordering; the request
            // publishes nothing to other threads by entering.
            match self.word.compare_exchange_weak(
                word,
                // Wrapping: the entries field wraps at 2^32 by design (see `extend`).
                word.wrapping_add(ENTER),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Entry::Admitted,
                Err(now) => word = now,
            }
        }
    }

    #[cold]
    fn admit_slow(&self, mut word: u64, refused_by: u64) -> Entry {
        loop {
            if word & refused_by != 0 {
                return Entry::Draining;
            }
            if in_flight(word) >= MAX_IN_FLIGHT {
                return Entry::Full;
            }
            // Relaxed: as in `admit`.
            match self.word.compare_exchange_weak(
                word,
                // Wrapping: the entries field wraps at 2^32 by design (see `extend`).
                word.wrapping_add(ENTER),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => word = now,
            }
        }
        if crosses_half(word) {
            // Release: pairs with the Acquire load of `halves` in `read`, so a reader that sees
            // this crossing also sees the entry that made it.
            self.halves.fetch_add(1, Ordering::Release);
        }
        if word & CHANGE_WATCHERS != 0 {
            Entry::AdmittedChanged
        } else {
            Entry::Admitted
        }
    }

    /// Counts a refusal. Returns the word, whose flags say who must hear of it.
    #[cold]
    pub(crate) fn refuse(&self) -> u64 {
        let mut counts = self.lock_rare();
        counts.refused += 1;
        self.load()
    }

    /// Takes one request out of the count. Returns the word before: if it has any of
    /// `LATE_WORK`, the caller has more to do (`Shared::after_exit`).
    #[inline]
    pub(crate) fn exit(&self, outcome: Outcome) -> u64 {
        match outcome {
            Outcome::Completed => self.leave_word(),
            Outcome::Cancelled => self.leave_cancelled(),
        }
    }

    #[inline]
    fn leave_word(&self) -> u64 {
        // Release: everything the request did happens-before a waiter that observes the count
        // it leaves (Acquire loads in `read` and in registration), and before the recycling of
        // the pool, whose Acquire fence pairs with it.
        let prev = self.word.fetch_sub(IN_FLIGHT_ONE, Ordering::Release);
        debug_assert!(in_flight(prev) > 0, "exit without a matching entry");
        prev
    }

    #[cold]
    fn leave_cancelled(&self) -> u64 {
        let mut counts = self.lock_rare();
        let prev = self.leave_word();
        counts.cancelled += 1;
        prev
    }

    /// Extends an entry count observed a moment ago (`low`, from a word this life's exit
    /// returned) to 64 bits, through a fresh reading. The clock never goes backwards, so the
    /// fresh reading is never behind it.
    pub(crate) fn extend_recent(&self, low: u32) -> u64 {
        let now = self.read().entries;
        now - u64::from((now as u32).wrapping_sub(low))
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
        // AcqRel: Release so that the last exit, which recycles, sees this handle's writes;
        // Acquire so that a recycling caller sees every exit's.
        in_flight(self.word.fetch_or(DETACHED, Ordering::AcqRel)) == 0
    }

    /// The word alone, for the cheap queries.
    #[inline]
    pub(crate) fn load(&self) -> u64 {
        // Acquire: pairs with the Release exits, so requests seen gone have finished.
        self.word.load(Ordering::Acquire)
    }

    /// A consistent reading of everything: no cancellation or refusal is half done in it,
    /// since those run under the lock taken here, and entries and completions are single
    /// read-modify-writes of the word.
    pub(crate) fn read(&self) -> Reading {
        let counts = self.lock_rare();
        self.read_locked(&counts)
    }

    fn read_locked(&self, counts: &RareCounts) -> Reading {
        // Acquire: pairs with the Release increment after a crossing, so the word load below
        // sees the entry that made it: `extend` needs `halves` never to lead the word.
        let halves = self.halves.load(Ordering::Acquire);
        // Acquire: pairs with the Release exits.
        let word = self.word.load(Ordering::Acquire);
        let entries = extend(halves, entries_low(word));
        Reading {
            word,
            entries,
            // Relaxed: `base` changes only between lives, before the memory is handed on.
            started: entries - self.base.load(Ordering::Relaxed),
            cancelled: counts.cancelled,
            refused: counts.refused,
        }
    }

    /// The entry count at which this life began.
    pub(crate) fn base(&self) -> u64 {
        // Relaxed: see `base`.
        self.base.load(Ordering::Relaxed)
    }
}

/// Whether the entry that found `prev` moved the entries field across a half period.
#[inline]
fn crosses_half(prev: u64) -> bool {
    (prev >> ENTRIES_SHIFT).wrapping_add(1) & HALF_PERIOD_MASK == 0
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn extend_follows_the_entries_counter_across_wraps() {
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
        let at = |entries: u64| entries << ENTRIES_SHIFT;
        assert!(crosses_half(at((1 << 31) - 1)));
        assert!(crosses_half(at(u64::from(u32::MAX))));
        assert!(!crosses_half(at(0)));
        assert!(!crosses_half(at(1 << 31)));
    }

    #[test]
    fn entries_stay_exact_past_the_32_bit_wrap() {
        let state = State::new();
        // Start just before the first half boundary and walk across two of them.
        state
            .word
            .store(((1u64 << 31) - 3) << ENTRIES_SHIFT, Ordering::Relaxed);
        let mut expected = (1u64 << 31) - 3;
        for _ in 0..6 {
            assert_eq!(state.try_enter(), Entry::Admitted);
            state.exit(Outcome::Completed);
            expected += 1;
            assert_eq!(state.read().entries, expected);
        }
        // Jump to the end of the second period: three crossings recorded so far.
        state
            .word
            .store(u64::from(u32::MAX - 1) << ENTRIES_SHIFT, Ordering::Relaxed);
        state.halves.store(3, Ordering::Relaxed);
        expected = (1 << 32) + u64::from(u32::MAX - 1);
        for _ in 0..4 {
            state.enter();
            state.exit(Outcome::Completed);
            expected += 1;
            assert_eq!(state.read().entries, expected);
        }
    }

    #[test]
    fn a_full_pool_refuses_without_counting_the_entry() {
        let state = State::new();
        state.word.store(
            ((MAX_IN_FLIGHT - 1) as u64) << IN_FLIGHT_SHIFT,
            Ordering::Relaxed,
        );
        assert_eq!(state.enter(), Entry::Admitted);
        assert_eq!(in_flight(state.load()), MAX_IN_FLIGHT);
        let before = state.load();
        assert_eq!(state.enter(), Entry::Full);
        assert_eq!(state.load(), before, "a refusal never touches the word");
    }

    #[test]
    fn a_new_life_counts_from_zero_on_a_clock_that_runs_on() {
        let state = State::new();
        for _ in 0..3 {
            state.enter();
            state.exit(Outcome::Cancelled);
        }
        state.start_draining();
        assert_eq!(state.try_enter(), Entry::Draining);
        state.refuse();
        state.reset();
        let reading = state.read();
        assert_eq!((reading.entries, reading.started), (3, 0));
        assert_eq!(
            (reading.cancelled, reading.refused, reading.word & FLAGS),
            (0, 0, 0)
        );
        assert_eq!(state.try_enter(), Entry::Admitted);
        assert_eq!(state.read().started, 1);
    }
}
