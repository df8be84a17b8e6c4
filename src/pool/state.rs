//! The pool's packed state word and the counters beside it.
//!
//! Everything a request does on its way in and out is one read-modify-write: of this thread's
//! shard while the pool serves (`shards.rs`), of the word below whenever somebody needs an
//! exact count. The word's layout:
//!
//! ```text
//!  63                     32 31                  5   4       3        2         1       0
//! +-------------------------+---------------------+-------+--------+---------+-------+-------+
//! | entries (low 32 bits)   | in flight (27 bits) |SHARDED| DETACH | CHANGED | EMPTY | DRAIN |
//! +-------------------------+---------------------+-------+--------+---------+-------+-------+
//! ```
//!
//! - `DRAIN`: draining; `try_enter` refuses while it is set.
//! - `EMPTY`: at least one `until_empty`/`next_empty` waiter may still need the next transition
//!   to empty, so the exit that takes the count to zero must publish it. Without it, that exit
//!   does nothing more. The shards may stay open under it, with floors that keep every
//!   transition to empty in the word (see `shards.rs`).
//! - `CHANGED`: a predicate waiter is armed: the next change must wake it, and disarms it
//!   (`Shared::changed_now`); the waiter arms again when it has looked. While the shards are
//!   open, each is armed too (`arm_change`), so the first change counted there says so
//!   without the count leaving the shards.
//! - `DETACH`: every `Drain` handle is gone; the exit that takes the count to zero recycles the
//!   pool's memory (see `super`).
//! - `SHARDED`: the shards are open (or being folded), and the count is the word's *plus* the
//!   shards'. Only the mode lock's holder changes the word's count then: an entry or exit that
//!   finds its shard closed (a switch is under way) or at its floor waits for the lock and
//!   tries again (`admit_slow`, `exit_locked`). So the word's count never moves under an open
//!   shard, and no exit through the word can empty the pool unseen. No flag but `EMPTY` and
//!   `CHANGED` is set while `SHARDED` is (each of `EXACT` is set only after a fold, under the
//!   mode lock, and the shards open only while none is), and every exact reading folds first.
//! - in flight: 27 bits, of which at most `MAX_IN_FLIGHT` (2^26) are ever used: an entry is
//!   admitted by a compare-and-swap that checks the limit first, so the field never carries
//!   into the entries counter.
//! - entries: every admitted entry adds one (those counted in shards when they are folded);
//!   refused entries never touch the word. It is never reset, not even when the memory is
//!   reused for a new pool (`State::reset` moves `base` instead, from which `started` counts).
//!   Its 32 bits wrap; `halves` (below) counts half-period crossings so that `read` can extend
//!   it to 64 bits exactly.
//!
//! Empty-waiters do not read the clock: the transitions to empty they wait for are made and
//! counted under the mode lock (`emptyings`), where they register.
//!
//! Admission is a compare-and-swap, not a `fetch_add` that a refusal undoes: an entry that is
//! refused never appears in the count, not even for an instant, so `started` never goes
//! backwards and a refused entry can never complete a `next_empty` waiter.
//!
//! # The switch between shards and the exact count
//!
//! Every switch runs under the mode lock. *Closing* (`close`) swaps each shard closed, adds
//! what they held to the word and clears `SHARDED`, in one read-modify-write; from then on the
//! word is exact, and every entry and exit goes through it. The flags that need an exact count
//! (`DRAIN`, `DETACH`) are set only by a caller holding the mode lock after a close, so they
//! are ordered after it; `EMPTY` after a close too, unless floors already keep the pool from
//! emptying in the shards (`watch_empty`); `CHANGED` under the lock, with the open shards
//! armed in the same hold. *Opening* (`try_open`) happens only while neither of `EXACT` is
//! set, the pool is a root, and the word holds at most half the limit: it sets `SHARDED`, then
//! opens the shards empty, floored under `EMPTY` and armed under `CHANGED`. An entry that finds its shard closed while
//! `SHARDED` is set waits for the switch on the mode lock and tries again; an exit never waits.
//!
//! Why admission stays atomic: `start_draining` closes the shards before it sets `DRAIN`. An
//! entry counted in a shard was counted before that shard's swap, so the fold carries it into
//! the word before `DRAIN` is set; an entry after the swap goes through the word and its
//! compare-and-swap sees `DRAIN`, or is ordered before it and so is in the count a waiter
//! sees.

mod near;

use std::sync::PoisonError;

use std::sync::OnceLock;

use crate::loom::{fence, AtomicBool, AtomicU64, Mutex, MutexGuard, Ordering};

use super::shards::{self, Counted, Exited, Folded, Shards, Summed, UNFLOORED};

pub(crate) const DRAINING: u64 = 1 << 0;
pub(crate) const EMPTY_WAITERS: u64 = 1 << 1;
pub(crate) const CHANGE_WATCHERS: u64 = 1 << 2;
pub(crate) const DETACHED: u64 = 1 << 3;
pub(crate) const SHARDED: u64 = 1 << 4;
/// Every flag: what a recycled pool clears.
const FLAGS: u64 = DRAINING | EMPTY_WAITERS | CHANGE_WATCHERS | DETACHED | SHARDED;
/// The flags that make an exit do more than its read-modify-write.
pub(crate) const LATE_WORK: u64 = EMPTY_WAITERS | CHANGE_WATCHERS | DETACHED;
/// The flags that need the exact count: the shards stay closed while any is set. `EMPTY` is
/// not one of them: the floors keep its transitions in the word (see `shards.rs`); nor is
/// `CHANGED`: each open shard is armed with it (`arm_change`).
const EXACT: u64 = DRAINING | DETACHED;

const IN_FLIGHT_SHIFT: u32 = 5;
const IN_FLIGHT_ONE: u64 = 1 << IN_FLIGHT_SHIFT;
const IN_FLIGHT_MASK: u64 = ((1 << 27) - 1) << IN_FLIGHT_SHIFT;
/// The most requests that can be in flight at once.
pub(crate) const MAX_IN_FLIGHT: usize = 1 << 26;

/// How often a lock-free read tries before it reads exactly under the locks. Once under loom:
/// both ways are explored all the same, and each try multiplies the interleavings.
#[cfg(not(loom))]
const READ_TRIES: usize = 4;
#[cfg(loom)]
const READ_TRIES: usize = 1;

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
    pub(crate) rejected: u64,
    /// Requests in flight: the word's count, or (read while the shards are open) the sum of
    /// the word's and the shards'.
    pub(crate) in_flight: usize,
}

impl Reading {
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
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

/// The packed word, the shards, and the counters that only rare paths touch.
#[derive(Debug)]
pub(crate) struct State {
    word: AtomicU64,
    /// Half-period crossings of the 32-bit entries field, for `extend`.
    halves: AtomicU64,
    /// The extended entry count when this life of the memory began: `started` is counted
    /// from here. Written only by `reset`, while nothing else can reach the pool.
    base: AtomicU64,
    /// Cancellations and refusals: the rare outcomes. A cancellation changes the count and a
    /// counter, two steps that `read` must never see half done, so both happen under this
    /// lock, which `read` takes too. Completions, the common exit, need neither: the count
    /// alone says everything about them.
    rare: Mutex<RareCounts>,
    /// The per-worker counters, made the first time this memory is a root pool.
    shards: OnceLock<Shards>,
    /// Serialises the switches between the shards and the exact count (see the module docs).
    mode: Mutex<Mode>,
    /// Counts the switches, twice each: odd while one is under way (a seqlock). A read that
    /// sums the open shards without closing them (`read_shared`) checks that it saw the same
    /// even value before and after, so that no fold or opening moved counts under it.
    switches: AtomicU64,
    /// The rare counts as a lock-free reader sees them: written under `rare` by the thread
    /// that changes them, inside a seqlock of their own (`rare_changes`, odd while a
    /// cancellation is half done), so that a read on the request path takes no lock.
    cancelled: AtomicU64,
    rejected: AtomicU64,
    rare_changes: AtomicU64,
    /// The allotment the shards were last opened with (`Mode::allotment`), for a lock-free
    /// reader: written inside a switch, so the `switches` seqlock covers it.
    allotment: AtomicU64,
    /// Transitions to empty made under `EMPTY`, each counted by its exit under the mode lock.
    /// Never reset: a waiter of a later life registers above every earlier transition.
    emptyings: AtomicU64,
    /// Set once reports are on (`Mode::reporting`), so that a refresh takes no lock after.
    reporting: AtomicBool,
}

#[derive(Debug, Default)]
struct RareCounts {
    cancelled: u64,
    rejected: u64,
}

#[derive(Debug, Default)]
struct Mode {
    /// Whether this life may count in shards: a root pool's may, a child's never does (its
    /// entries are rare, and its memory should stay small).
    may_shard: bool,
    /// The low 32 bits of the entry clock when the shards last opened: nothing but a fold
    /// moves it while they are open, so a fold compares against it to see a half crossing.
    opened_at: u32,
    /// Each shard's allotment since they last opened (see `shards.rs`).
    allotment: u64,
    /// Whether they opened with floors for an empty-waiter: the count cannot reach zero until
    /// the mode lock's holder lets it.
    floored: bool,
    /// Whether the shards count changes towards reports: from the first reading a thread
    /// keeps (`near.rs`) to the end of this life.
    reporting: bool,
}

impl State {
    pub(crate) fn new() -> Self {
        Self {
            word: AtomicU64::new(0),
            halves: AtomicU64::new(0),
            base: AtomicU64::new(0),
            rare: Mutex::new(RareCounts::default()),
            shards: OnceLock::new(),
            mode: Mutex::new(Mode::default()),
            switches: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            rare_changes: AtomicU64::new(0),
            allotment: AtomicU64::new(UNFLOORED),
            emptyings: AtomicU64::new(0),
            reporting: AtomicBool::new(false),
        }
    }

    fn lock_rare(&self) -> MutexGuard<'_, RareCounts> {
        // No user code runs under this lock, so a poisoned lock still holds true counts.
        self.rare.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_mode(&self) -> MutexGuard<'_, Mode> {
        // No user code runs under this lock either, and every switch finishes before it can
        // panic, so a poisoned lock guards a whole mode.
        self.mode.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Begins a new life: no flags, no counts, the shards closed. Nothing is in flight and no
    /// handle exists; the caller holds the pool's lifecycle lock.
    ///
    /// The entries field and `halves` are kept: the clock runs on across lives, so that an
    /// emptying published by a late exit of the old life can never satisfy a waiter of the
    /// new one, and `extend` stays exact.
    pub(crate) fn reset(&self) {
        let mut counts = self.lock_rare();
        let mut mode = self.lock_mode();
        // The last handle closed the shards for good (`detach`); a test's pool may not have.
        self.close(&mut mode);
        mode.may_shard = false;
        mode.reporting = false;
        // Relaxed: as `base`, below.
        self.reporting.store(false, Ordering::Relaxed);
        // Relaxed: the caller's fence ordered every exit of the old life before this, and the
        // memory reaches its next owner through the free list's mutex.
        self.word.fetch_and(!FLAGS, Ordering::Relaxed);
        let now = self.read_locked(&counts);
        debug_assert_eq!(now.in_flight(), 0, "reset with work in flight");
        // Relaxed: read under the lifecycle lock, or by a later owner after the handoff.
        self.base.store(now.entries, Ordering::Relaxed);
        *counts = RareCounts::default();
        // Relaxed: as `base`; the odd and even steps keep a reader of the old life (which
        // cannot exist: no handle is left) from mixing the two.
        self.begin_rare_change();
        self.cancelled.store(0, Ordering::Relaxed);
        self.rejected.store(0, Ordering::Relaxed);
        Self::even(&self.rare_changes);
    }

    /// Turns reports on for this life (see `Mode::reporting`).
    pub(super) fn start_reporting(&self) {
        let mut mode = self.lock_mode();
        if !mode.reporting {
            mode.reporting = true;
            if let Some(shards) = self.shards.get() {
                shards.start_reporting();
            }
        }
        // Relaxed: a hint that spares later readers the lock; `mode.reporting` decides.
        self.reporting.store(true, Ordering::Relaxed);
    }

    /// Lets this life count in shards, and opens them: for a root pool, at the start of its
    /// life. The state must be in memory that is never freed, as a pool's is: threads remember
    /// their shard by its address (`shards::local`).
    pub(crate) fn shard(&self) {
        let mut mode = self.lock_mode();
        self.shards.get_or_init(Shards::new);
        mode.may_shard = true;
        self.try_open(&mut mode);
    }

    /// Counts an entry on this thread's shard, if the shards are open and it is below its cap:
    /// the request path's entry. Only a root pool's shards ever open (`Mode::may_shard`), so
    /// a caller that gets `true` has no parent to enter, whatever pool it holds; and nobody
    /// needs to hear of the entry (no flag but `EMPTY` is set while they are open, and an entry
    /// never empties the pool). Otherwise nothing was
    /// counted, and the caller enters through the word (`enter_with`, without the shard).
    #[inline(always)]
    pub(crate) fn enter_shard(&self) -> bool {
        shards::local(&self.shards)
            .is_some_and(|shard| shards::enter(shard, false) == Counted::Here)
    }

    /// Counts a completed request's exit on this thread's shard, if the shards are open and it
    /// is above its floor (see `enter_shard`: then the pool is a root, and nobody needs to hear
    /// of the exit: the floors keep it from emptying the pool). Otherwise nothing was counted,
    /// and the caller leaves through the word, which sends it to the mode lock if the shards
    /// are open (`leave`).
    #[inline(always)]
    pub(crate) fn exit_shard(&self) -> bool {
        shards::local(&self.shards).is_some_and(|shard| shards::exit(shard, false) == Exited::Here)
    }

    /// Counts one more request in flight unless the pool is draining or full, as a root
    /// pool's request does (`Drain::try_guard`): on this thread's shard, else through the word.
    ///
    /// This is the check-and-admit step: one compare-and-swap, of this thread's shard or of
    /// the word it checked. A concurrent `start_draining` is ordered before or after it: see
    /// the module docs. So once `start_draining` has returned and a waiter has seen the pool
    /// empty, no entry can be admitted.
    #[cfg(test)]
    pub(crate) fn try_enter(&self) -> Entry {
        self.enter_with(true, true)
    }

    /// Counts one more request in flight even while draining, as `Drain::guard` does for a
    /// root pool. Refuses only when full.
    #[cfg(test)]
    pub(crate) fn enter(&self) -> Entry {
        self.enter_with(false, true)
    }

    /// Counts one more request in flight unless it is full, or (`draining_refuses`) the pool
    /// is draining. With `sharded` false, straight to the word without looking for a shard:
    /// for a child pool, whose shards never open (`Mode::may_shard`), and after
    /// `enter_shard` (a shard at its cap is then folded when the entry meets `SHARDED`).
    #[inline]
    pub(crate) fn enter_with(&self, draining_refuses: bool, sharded: bool) -> Entry {
        self.admit(if draining_refuses { DRAINING } else { 0 }, sharded)
    }

    #[inline(always)]
    fn admit(&self, refused_by: u64, sharded: bool) -> Entry {
        if let Some(shard) = shards::local(&self.shards).filter(|_| sharded) {
            match shards::enter(shard, true) {
                Counted::Here => return Entry::Admitted,
                Counted::Disarmed => return Entry::AdmittedChanged,
                // `Armed` is for the request path's first try (`enter_shard`) alone.
                Counted::Armed | Counted::Closed => {}
                Counted::Full => return self.admit_after_fold(refused_by),
            }
        }
        // Relaxed: a first guess at the word, which the swap below checks.
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            if word & (refused_by | CHANGE_WATCHERS | SHARDED) != 0
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

    /// An entry that found its shard at a cap: fold the shards (which empties them), then
    /// count it again.
    #[cold]
    fn admit_after_fold(&self, refused_by: u64) -> Entry {
        {
            let mut mode = self.lock_mode();
            self.close(&mut mode);
            self.try_open(&mut mode);
        }
        self.admit(refused_by, true)
    }

    #[cold]
    fn admit_slow(&self, mut word: u64, refused_by: u64) -> Entry {
        loop {
            if word & SHARDED != 0 {
                // The shards are open or being folded, and this thread saw its own closed: a
                // switch is under way. Wait for it to end, then count again; the lock's
                // handoff shows this thread the shards as the switch left them.
                drop(self.lock_mode());
                return self.admit(refused_by, true);
            }
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
        counts.rejected += 1;
        // Inside the seqlock of the rare counts, as a cancellation is, so that a reading
        // kept by a reader (`near.rs`) sees one sequence move for either.
        self.begin_rare_change();
        // Relaxed: published by the seqlock's even step.
        self.rejected.store(counts.rejected, Ordering::Relaxed);
        Self::even(&self.rare_changes);
        self.load()
    }

    /// `exit_with` for a root pool, for the tests.
    #[cfg(test)]
    pub(crate) fn exit(&self, outcome: Outcome) -> u64 {
        self.exit_with(outcome, true)
    }

    /// Takes one request out of the count. Returns the word before, or 0 if the request left
    /// through a shard: if it has any of `LATE_WORK`, the caller has more to do
    /// (`Shared::after_exit`). With `sharded` false, straight to the word: for a child pool,
    /// as in `enter_with`, and after `exit_shard`.
    #[inline]
    pub(crate) fn exit_with(&self, outcome: Outcome, sharded: bool) -> u64 {
        match outcome {
            Outcome::Completed => self.leave(sharded),
            Outcome::Cancelled => self.leave_cancelled(sharded),
        }
    }

    #[inline(always)]
    fn leave(&self, sharded: bool) -> u64 {
        if let Some(shard) = shards::local(&self.shards).filter(|_| sharded) {
            match shards::exit(shard, true) {
                // A shard is open, so no flag but `EMPTY` and `CHANGED` is set, and its floors
                // keep this exit from emptying the pool: nobody needs to hear of it, unless
                // this exit disarmed the shard (then the predicate waiters must).
                Exited::Here => return 0,
                Exited::Disarmed => return CHANGE_WATCHERS,
                Exited::Floor => return self.exit_locked(),
                // `Armed` is for the request path's first try (`exit_shard`) alone.
                Exited::Armed | Exited::Closed => {}
            }
        }
        // Relaxed: a first guess, which the swap checks.
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            if word & SHARDED != 0 {
                // A switch is under way (this thread's shard was closed), or this is a root
                // pool's exit that did not try its shard: only the mode lock's holder may move
                // the word's count now.
                return self.exit_locked();
            }
            if word & EMPTY_WAITERS != 0 && in_flight(word) == 1 {
                // This exit would empty the pool under a waiter's flag: it does so under the
                // mode lock, where waiters register, and counts the transition there.
                return self.exit_locked();
            }
            debug_assert!(in_flight(word) > 0, "exit without a matching entry");
            // Release: everything the request did happens-before a waiter that observes the
            // count it leaves (Acquire loads in `read` and in registration), and before the
            // recycling of the pool, whose Acquire fence pairs with it.
            match self.word.compare_exchange_weak(
                word,
                word - IN_FLIGHT_ONE,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return word,
                Err(now) => word = now,
            }
        }
    }

    /// An exit that cannot be counted where it is: its shard is at its floor, a switch is
    /// under way, or it empties the pool under `EMPTY`. Under the mode lock, once any switch
    /// is over: through this thread's shard if it is open and has room now; otherwise the
    /// shards are folded and the exit counted in the exact word. An exit that empties the pool
    /// there under `EMPTY` counts the transition in `emptyings`, in the same hold of the lock,
    /// so a waiter registering (under the lock too) sees both or neither, and the memory
    /// cannot begin a new life in between (its recycler needs the lock as well). Returns the
    /// word before the exit, or 0 if it went through the shard.
    #[cold]
    fn exit_locked(&self) -> u64 {
        let mut mode = self.lock_mode();
        // Relaxed: only the mode lock's holder sets or clears `SHARDED`.
        if self.word.load(Ordering::Relaxed) & SHARDED != 0 {
            let shard = shards::local(&self.shards).expect("`SHARDED` without shards");
            match shards::exit(shard, true) {
                Exited::Here => return 0,
                Exited::Disarmed => return CHANGE_WATCHERS,
                Exited::Armed | Exited::Closed | Exited::Floor => {}
            }
            self.close(&mut mode);
        }
        // Release: as in `leave`. Exact: the shards are closed, and stay so while we hold the
        // lock.
        let prev = self.word.fetch_sub(IN_FLIGHT_ONE, Ordering::Release);
        debug_assert!(in_flight(prev) > 0, "exit without a matching entry");
        if in_flight(prev) == 1 && prev & EMPTY_WAITERS != 0 {
            // Release: pairs with the Acquire load in `emptyings`, so a waiter that sees this
            // transition sees everything the requests did (the exit's own Release came first).
            self.emptyings.fetch_add(1, Ordering::Release);
        }
        self.try_open(&mut mode);
        prev
    }

    /// Transitions to empty counted under `EMPTY` so far: a waiter's target is one more than
    /// the value at its registration.
    pub(crate) fn emptyings(&self) -> u64 {
        // Acquire: pairs with the Release increment in `exit_locked`.
        self.emptyings.load(Ordering::Acquire)
    }

    #[cold]
    fn leave_cancelled(&self, sharded: bool) -> u64 {
        let mut counts = self.lock_rare();
        self.begin_rare_change();
        let prev = self.leave(sharded);
        counts.cancelled += 1;
        // Relaxed: published by the seqlock's even step.
        self.cancelled.store(counts.cancelled, Ordering::Relaxed);
        Self::even(&self.rare_changes);
        prev
    }

    /// Closes the shards for good this cycle and sets `DRAINING`; returns the word before,
    /// whose count is exact.
    pub(crate) fn start_draining(&self) -> u64 {
        // AcqRel (in `set_exact`): ordered with every entry by the word's modification order;
        // Release publishes the flip to Acquire readers of `is_draining`.
        self.set_exact(DRAINING)
    }

    /// Clears `DRAINING`; returns the word before. The shards stay closed until the waiter
    /// that draining registered is gone too (`set_flag`).
    pub(crate) fn resume(&self) -> u64 {
        self.clear_exact(DRAINING)
    }

    /// Sets or clears a waiter bit; returns the word before, whose count is exact. Callers
    /// serialise these under the pool's waiter lock, so the bit always matches the registered
    /// count.
    pub(crate) fn set_flag(&self, flag: u64, on: bool) -> u64 {
        // AcqRel: the registration is ordered with every exit by the word's modification order
        // (an exit after it sees the flag; one before it is visible in the returned count), and
        // Acquire makes the requests that left before it happen-before the waiter.
        if on {
            self.set_exact(flag)
        } else {
            self.clear_exact(flag)
        }
    }

    /// Marks the pool as having no handles, its shards closed for the rest of its life.
    /// Returns true when nothing is in flight, in which case the caller recycles it now;
    /// otherwise the last exit will.
    pub(crate) fn detach(&self) -> bool {
        // AcqRel (in `set_exact`): Release so that the last exit, which recycles, sees this
        // handle's writes; Acquire so that a recycling caller sees every exit's. `DETACHED`
        // keeps the shards closed until `reset`.
        in_flight(self.set_exact(DETACHED)) == 0
    }

    /// Sets a flag after closing the shards and under the mode lock, so that the flag is
    /// ordered after the fold and no opening can come between them (see the module docs).
    /// Returns the word before, whose count is exact.
    fn set_exact(&self, flag: u64) -> u64 {
        let mut mode = self.lock_mode();
        self.close(&mut mode);
        // AcqRel: see each caller.
        let prev = self.word.fetch_or(flag, Ordering::AcqRel);
        if flag & EXACT == 0 {
            // `EMPTY` alone: the shards open again at once, with floors.
            self.try_open(&mut mode);
        }
        prev
    }

    /// Sets `EMPTY` for a waiter and returns its registration: the number the next
    /// transition to empty will have (`emptyings` reaching it completes the waiter), and
    /// whether the pool is empty now.
    ///
    /// Under the mode lock, where every transition to empty under `EMPTY` is made and counted
    /// (`exit_locked`): none can come between the flag, the count and the number. While the
    /// shards are open with floors (another waiter put them there) this folds nothing: the
    /// floors keep the pool from becoming empty without the lock, so it is not empty now. A
    /// waiter made and dropped in a loop then costs the workers neither a switch nor a look at
    /// their shards.
    pub(crate) fn watch_empty(&self) -> (u64, bool) {
        let mut mode = self.lock_mode();
        // Relaxed: counted only under the mode lock, which we hold.
        let next = self.emptyings.load(Ordering::Relaxed) + 1;
        // Relaxed: `SHARDED` and the floors change only under the mode lock, too.
        if self.word.load(Ordering::Relaxed) & SHARDED != 0 && mode.floored {
            // AcqRel: as in `set_flag`.
            self.word.fetch_or(EMPTY_WAITERS, Ordering::AcqRel);
            return (next, false);
        }
        self.close(&mut mode);
        // AcqRel: as in `set_flag`. An exit that emptied the pool before this, without the
        // flag, shows here as an empty pool; one after it sees the flag and waits for the lock.
        let prev = self.word.fetch_or(EMPTY_WAITERS, Ordering::AcqRel);
        self.try_open(&mut mode);
        (next, in_flight(prev) == 0)
    }

    /// Arms the predicate waiters: sets `CHANGED` in the word, and arms every open shard
    /// (`Shards::arm`), so that the first change, wherever it is counted, disarms and wakes
    /// them. The shards stay open: the workers go on counting each on its own line, and only
    /// the first change in each shard after an arming looks at the word. Returns the word
    /// before.
    ///
    /// Under the mode lock, so that no switch comes between the flag and the shards' arming:
    /// shards opened after it are armed by the opening (`try_open`), and a fold carries the
    /// flag's meaning into the word, where every change sees it.
    pub(crate) fn arm_change(&self) -> u64 {
        let _mode = self.lock_mode();
        // AcqRel: a change through the word after this sees the flag; one before it is in the
        // reading the waiter takes next (its Release exits, with the waiter's Acquire loads).
        let prev = self.word.fetch_or(CHANGE_WATCHERS, Ordering::AcqRel);
        if prev & SHARDED != 0 {
            // Open, and staying so while we hold the lock.
            self.shards.get().expect("`SHARDED` without shards").arm();
        }
        prev
    }

    /// Disarms the predicate waiters after a change that saw them armed: returns whether
    /// this call disarmed them (and so must wake them). Shards that stay armed after it cost
    /// their next change this look at the word, and nothing more.
    #[cold]
    pub(crate) fn disarm_change(&self) -> bool {
        // Acquire, as the swap's: a look first, so that the shards' leftover arms (and a
        // waiter disarmed already) cost no write of the shared word. Whoever cleared the
        // flag wakes the waiters, after every arming it saw.
        if self.load() & CHANGE_WATCHERS == 0 {
            return false;
        }
        // AcqRel: ordered with every entry and exit by the word's modification order, and
        // before the wake-up that follows, which a re-arming waiter's flag comes after.
        let prev = self.word.fetch_and(!CHANGE_WATCHERS, Ordering::AcqRel);
        prev & CHANGE_WATCHERS != 0
    }

    /// Clears one of `EXACT`, then opens the shards if nothing needs the exact count any more.
    /// Returns the word before.
    fn clear_exact(&self, flag: u64) -> u64 {
        // AcqRel: ordered with every entry and exit by the word's modification order, as the
        // flag's setting was.
        let prev = self.word.fetch_and(!flag, Ordering::AcqRel);
        self.try_open(&mut self.lock_mode());
        prev
    }

    /// The word alone, for its flags. Its count is exact only while one of `EXACT` is set;
    /// `in_flight` and `read` are exact always.
    #[inline]
    pub(crate) fn load(&self) -> u64 {
        // Acquire: pairs with the Release exits, so requests seen gone have finished.
        self.word.load(Ordering::Acquire)
    }

    /// Whether the pool is counting in its shards now.
    #[cfg(all(test, loom))]
    pub(crate) fn is_sharded(&self) -> bool {
        self.load() & SHARDED != 0
    }

    /// How many requests are in flight, if the word alone says so exactly (the shards are
    /// closed): a load, no lock.
    pub(crate) fn exact_in_flight(&self) -> Option<usize> {
        let word = self.load();
        (word & SHARDED == 0).then(|| in_flight(word))
    }

    /// The word and what the open shards hold, if the shards were open and no switch moved
    /// counts between the loads (the seqlock on `switches`); `None` otherwise. The sum notes
    /// this thread's own shard.
    fn sum_open_shards(&self) -> Option<(u64, Summed)> {
        // Acquire: pairs with the Release store that ends a switch, so the loads below see
        // the shards and the word as that switch left them.
        let before = self.switches.load(Ordering::Acquire);
        if before & 1 != 0 {
            return None;
        }
        // Acquire: pairs with the Release exits, as in `read_locked`.
        let word = self.word.load(Ordering::Acquire);
        if word & SHARDED == 0 {
            return None;
        }
        // Twice, and the entries a third time: the reading is the second pass, taken only if
        // no shard admitted an entry from its first look to its third. Then no entry came
        // anywhere from the end of the first pass to the start of the third, which spans the
        // second, so while the second pass read, requests only left:
        // - every request it counts in flight entered before the first pass ended and had not
        //   left when the second read the shard it left through, so it was in flight at the
        //   moment between the two passes, however long the reader was preempted;
        // - every exit it counts has its entry counted too: an entry just after the second
        //   pass read its shard, whose exit a later read of the second pass saw, would show in
        //   the third pass (without it, such a phantom exit counted one less than the
        //   requests held throughout: `a_shared_read_never_counts_an_exit_without_its_entry`);
        // - so its in-flight count is the pool's at some moment of the second pass, which only
        //   went down.
        // The word's counts need no second look: while the shards are open nothing but a
        // switch moves them (every exit through the word waits for the mode lock, and counts
        // in its shard or folds), and the seqlock sees a switch. Its flags may move (an
        // arming, an empty-waiter's registration) without changing what the reading counts.
        let shards = self.shards.get()?;
        // Relaxed: inside the seqlock checked below; a switch moves it.
        let allotment = self.allotment.load(Ordering::Relaxed);
        let own = shards::own(&self.shards);
        let first = shards.sum(allotment, own);
        let summed = shards.sum(allotment, own);
        let last = shards.sum(allotment, None).entries;
        // Acquire fence, then a Relaxed load: the seqlock reader's half (see `begin_switch`);
        // the loads above cannot move below the check.
        fence(Ordering::Acquire);
        // Each shard's entries only grow while they are open: equal sums are equal counts.
        let settled = summed.entries == first.entries && last == first.entries;
        (self.switches.load(Ordering::Relaxed) == before && settled).then_some((word, summed))
    }

    /// A reading that leaves the shards open and takes no lock: what a read on the request
    /// path or in a metrics loop must do, so that the workers go on counting each on its own
    /// cache line.
    ///
    /// It sums the open shards and the word inside two seqlocks: `switches`, so that no fold
    /// or opening moved counts between its loads, and `rare_changes`, so that no cancellation
    /// is half in it. What it can and cannot show:
    ///
    /// - Every count is exact when no request enters or leaves during the read; requests that
    ///   do may be in it or not.
    /// - `started == completed + cancelled + in_flight` holds, and `started`, the exits and
    ///   `cancelled` never go backwards from one reading to a later one: each shard's and the
    ///   word's entries and exits only grow, and a fold moves them without changing their sum.
    /// - It reads the shards twice, and their entries a third time, and uses the second pass
    ///   only if no entry came from the first to the third: every request it counts in
    ///   flight was in flight at one moment of the read (between the first two passes),
    ///   however long the reader was preempted; every exit it counts has its entry counted;
    ///   and its in-flight count is the pool's at some moment of the read (see
    ///   `sum_open_shards`). After a few tries (under steady entries on other threads, or
    ///   switches), it reads exactly instead (`read`, which folds under the locks).
    pub(crate) fn read_shared(&self) -> Reading {
        self.read_shared_noting().0
    }

    /// `read_shared`, and the word of this thread's shard as the reading saw it (0 if the
    /// reading did not sum the shards).
    fn read_shared_noting(&self) -> (Reading, u64) {
        for _ in 0..READ_TRIES {
            if let Some(read) = self.try_read_shared() {
                return read;
            }
            std::hint::spin_loop();
        }
        (self.read(), 0)
    }

    fn try_read_shared(&self) -> Option<(Reading, u64)> {
        // Acquire: pairs with the Release even step of a cancellation (`even`).
        let rare_before = self.rare_changes.load(Ordering::Acquire);
        if rare_before & 1 != 0 {
            return None;
        }
        // Acquire: as in `read_locked`, before the word.
        let halves = self.halves.load(Ordering::Acquire);
        let (word, entries_low, in_flight, shard_entries, noted) = match self.sum_open_shards() {
            Some((word, summed)) => (
                word,
                entries_low(word),
                in_flight(word) as i64 + summed.in_flight,
                summed.entries,
                summed.noted,
            ),
            None => {
                // Closed (or a switch under way): the word alone, if it is exact.
                let word = self.load();
                if word & SHARDED != 0 {
                    return None;
                }
                (word, entries_low(word), in_flight(word) as i64, 0, 0)
            }
        };
        // Relaxed: inside the seqlock checked below.
        let cancelled = self.cancelled.load(Ordering::Relaxed);
        let rejected = self.rejected.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if in_flight < 0 || self.rare_changes.load(Ordering::Relaxed) != rare_before {
            return None;
        }
        let entries = extend(halves, entries_low) + shard_entries;
        // Relaxed: see `base`.
        let started = entries - self.base.load(Ordering::Relaxed);
        if (in_flight as u64).saturating_add(cancelled) > started {
            // An exit seen without its entry, hidden by another request in flight: retried.
            return None;
        }
        let reading = Reading {
            word,
            entries,
            started,
            cancelled,
            rejected,
            in_flight: in_flight as usize,
        };
        Some((reading, noted))
    }

    /// A seqlock writer's odd step: the caller is the only writer (it holds the lock that
    /// serialises them). The Release fence orders the odd value before the writes that
    /// follow, so a reader that saw any of them sees the odd value (or a later one) on its
    /// second load.
    fn odd(sequence: &AtomicU64) {
        // Relaxed load and store: only the lock's holder writes the sequence.
        let now = sequence.load(Ordering::Relaxed);
        sequence.store(now + 1, Ordering::Relaxed);
        fence(Ordering::Release);
    }

    /// A seqlock writer's even step.
    fn even(sequence: &AtomicU64) {
        // Release: pairs with the Acquire load that begins a read, so a reader that sees the
        // even value sees everything written before it.
        let now = sequence.load(Ordering::Relaxed);
        sequence.store(now + 1, Ordering::Release);
    }

    /// Opens the seqlock's odd phase on `switches`: the caller holds the mode lock and is
    /// about to move counts between the shards and the word.
    fn begin_switch(&self) {
        self.note_move();
        Self::odd(&self.switches);
    }

    /// Opens the seqlock's odd phase on `rare_changes`: the caller holds the rare lock and is
    /// about to count a cancellation or refusal (or to reset the counts).
    fn begin_rare_change(&self) {
        self.note_move();
        Self::odd(&self.rare_changes);
    }

    /// Tells readers that keep a reading of this pool that it is too old now (see
    /// `Shards::moved`), before the odd step that follows fences.
    fn note_move(&self) {
        if let Some(shards) = self.shards.get() {
            shards.note_move();
        }
    }

    /// Closes it.
    fn end_switch(&self) {
        Self::even(&self.switches);
    }

    /// A consistent reading of everything: no cancellation or refusal is half done in it,
    /// since those run under the lock taken here, entries and completions are single
    /// read-modify-writes, and the shards are folded into the word first (and opened again
    /// after, if they may be).
    pub(crate) fn read(&self) -> Reading {
        let counts = self.lock_rare();
        let mut mode = self.lock_mode();
        self.close(&mut mode);
        let reading = self.read_locked(&counts);
        self.try_open(&mut mode);
        reading
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
            rejected: counts.rejected,
            in_flight: in_flight(word),
        }
    }

    /// Folds the shards into the word and closes them, if they are open. Afterwards the word
    /// is exact and counts every request. The caller holds the mode lock.
    fn close(&self, mode: &mut Mode) {
        // Relaxed: only the mode lock's holder sets or clears `SHARDED`.
        if self.word.load(Ordering::Relaxed) & SHARDED == 0 {
            return;
        }
        let shards = self.shards.get().expect("`SHARDED` without shards");
        self.begin_switch();
        let Folded {
            entries,
            in_flight: count,
        } = shards.close(mode.allotment);
        // One read-modify-write adds the shards' entries and count and clears `SHARDED`. The
        // count may be negative and the word's below zero; the sum is exact and in range, and
        // wrapping arithmetic over the whole word gives each field its exact value.
        let delta = (u64::from(entries) << ENTRIES_SHIFT)
            .wrapping_add((count as u64).wrapping_mul(IN_FLIGHT_ONE))
            .wrapping_sub(SHARDED);
        // AcqRel: Release hands the shards' exits (acquired by their swaps) on to whoever
        // reads the word; Acquire orders this fold after the word's earlier writes.
        let now = self
            .word
            .fetch_add(delta, Ordering::AcqRel)
            .wrapping_add(delta);
        debug_assert!(in_flight(now) <= MAX_IN_FLIGHT, "a fold out of range");
        // At most one crossing, since fewer than 2^31 entries were folded.
        if (mode.opened_at ^ entries_low(now)) >> 31 != 0 {
            // Release: as for an entry's crossing in `admit_slow`.
            self.halves.fetch_add(1, Ordering::Release);
        }
        self.end_switch();
    }

    /// Opens the shards if this life may shard, they are closed, and nobody needs the exact
    /// count: none of `EXACT` is set and the word holds at most half the limit (so that the
    /// shards' cap keeps the whole pool within it). With `EMPTY` set, only while the word
    /// holds at least one request, and with floors (see `shards.rs`). The caller holds the
    /// mode lock.
    fn try_open(&self, mode: &mut Mode) {
        if !mode.may_shard {
            return;
        }
        let Some(shards) = self.shards.get() else {
            return;
        };
        let allotment = |word: u64| -> Option<u64> {
            if word & (EXACT | SHARDED) != 0 || in_flight(word) > MAX_IN_FLIGHT / 2 {
                return None;
            }
            if word & EMPTY_WAITERS == 0 {
                return Some(UNFLOORED);
            }
            // Every shard may take this many exits beyond its entries, and the count stays
            // at least one: `n - shards * ((n - 1) / shards) >= 1`.
            (in_flight(word) as u64)
                .checked_sub(1)
                .map(|spare| spare / shards.len())
        };
        // Relaxed: a first guess, which the swap checks.
        let mut word = self.word.load(Ordering::Relaxed);
        if allotment(word).is_none() {
            return;
        }
        self.begin_switch();
        let opened = loop {
            let Some(allotment) = allotment(word) else {
                self.end_switch();
                return;
            };
            // Relaxed: the flags that forbid opening are set only under the mode lock, which
            // we hold; the swap fails if an entry, exit or a cleared flag changed the word
            // meanwhile, and the allotment is decided again.
            match self.word.compare_exchange_weak(
                word,
                word | SHARDED,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break allotment,
                Err(now) => word = now,
            }
        };
        // No entry changes the clock while `SHARDED` is set (`admit_slow` waits).
        mode.opened_at = entries_low(word);
        mode.allotment = opened;
        mode.floored = word & EMPTY_WAITERS != 0;
        // Relaxed: inside the switch's seqlock, which orders it for lock-free readers.
        self.allotment.store(opened, Ordering::Relaxed);
        shards.open(opened, mode.reporting, word & CHANGE_WATCHERS != 0);
        self.end_switch();
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
            (reading.cancelled, reading.rejected, reading.word & FLAGS),
            (0, 0, 0)
        );
        assert_eq!(state.try_enter(), Entry::Admitted);
        assert_eq!(state.read().started, 1);
    }

    /// A state in memory that is never freed, as a pool's is: each thread remembers its shard
    /// by the state's address (`shards::local`), which must never name another state.
    fn leaked() -> &'static State {
        Box::leak(Box::new(State::new()))
    }

    /// A root pool's state, counting in its shards.
    fn sharded() -> &'static State {
        let state = leaked();
        state.shard();
        assert_ne!(state.load() & SHARDED, 0);
        state
    }

    /// A thread that only reads a pool (a metrics loop, a test's check) never passes for one
    /// that serves it: it keeps no reading and turns no reports on, which every request would
    /// pay for. (Before, its first read remembered its shard as a serving thread's would, and
    /// every read after it was taken for a serving thread's: unpaced, and reporting.)
    #[test]
    fn a_thread_that_only_reads_never_passes_for_one_that_serves() {
        let state = sharded();
        std::thread::spawn(|| {
            for _ in 0..3 {
                assert_eq!(state.read_near().in_flight(), 0);
                assert_eq!(state.in_flight_near(), 0);
            }
            assert!(!shards::counted_here(&state.shards));
        })
        .join()
        .unwrap();
        assert!(
            !state.reporting.load(Ordering::Relaxed),
            "reports turned on"
        );
        std::thread::spawn(|| {
            assert_eq!(state.enter(), Entry::Admitted);
            assert_eq!(state.read_near().in_flight(), 1);
            assert!(shards::counted_here(&state.shards));
            state.exit(Outcome::Completed);
        })
        .join()
        .unwrap();
        assert!(
            state.reporting.load(Ordering::Relaxed),
            "a serving thread keeps readings"
        );
    }

    #[test]
    fn the_shards_close_for_whoever_needs_the_exact_count_and_open_after() {
        let state = sharded();
        assert_eq!(state.enter(), Entry::Admitted);
        assert_eq!(
            in_flight(state.load()),
            0,
            "counted in a shard, not the word"
        );

        let prev = state.set_flag(EMPTY_WAITERS, true);
        assert_eq!((in_flight(prev), prev & SHARDED), (1, 0), "a waiter folds");
        assert_ne!(state.load() & SHARDED, 0, "and opens again, with floors");
        assert!(state.lock_mode().floored);
        state.set_flag(EMPTY_WAITERS, false);
        assert_ne!(state.load() & SHARDED, 0, "open once the waiter is gone");

        let prev = state.start_draining();
        assert_eq!((in_flight(prev), prev & SHARDED), (1, 0), "draining folds");
        state.set_flag(EMPTY_WAITERS, true);
        assert_eq!(state.load() & SHARDED, 0, "closed while draining");
        state.resume();
        assert_ne!(state.load() & SHARDED, 0, "open with floors once resumed");
        state.exit(Outcome::Completed);
        assert_eq!(
            state.load() & SHARDED,
            0,
            "the last exit met a floor: folded, and closed at zero"
        );
        assert_eq!(state.read_shared().in_flight, 0);
        state.enter();
        state.set_flag(EMPTY_WAITERS, false);
        assert_ne!(state.load() & SHARDED, 0);

        // A snapshot folds and opens again; the clock and the count are exact throughout.
        let reading = state.read();
        assert_eq!((reading.in_flight(), reading.started), (1, 2));
        assert_ne!(state.load() & SHARDED, 0);
        state.exit(Outcome::Completed);
        assert_eq!(state.read_shared().in_flight, 0);
        assert!(!state.detach() || state.load() & SHARDED == 0);
    }

    #[test]
    fn a_shard_at_its_cap_is_folded_and_the_entry_counted_once() {
        let state = sharded();
        for _ in 0..3 {
            state.enter();
        }
        state.shards.get().unwrap().fill_local_for_test();
        assert_eq!(state.enter(), Entry::Admitted);
        let reading = state.read();
        assert_eq!(
            reading.in_flight(),
            super::super::shards::ENTRIES_AT_CAP as usize + 1
        );
        assert_eq!(
            reading.started,
            u64::from(super::super::shards::ENTRIES_AT_CAP) + 1
        );
        assert_ne!(state.load() & SHARDED, 0, "open again after the fold");
    }

    #[test]
    fn the_shards_stay_closed_while_the_word_holds_over_half_the_limit() {
        let state = leaked();
        state.word.store(
            ((MAX_IN_FLIGHT / 2 + 1) as u64) << IN_FLIGHT_SHIFT,
            Ordering::Relaxed,
        );
        state.shard();
        assert_eq!(state.load() & SHARDED, 0);
        state.exit(Outcome::Completed);
        state.read();
        assert_ne!(state.load() & SHARDED, 0, "opens once the word is at half");
    }

    #[test]
    fn a_fold_carries_the_clock_across_a_half_period() {
        let state = leaked();
        state
            .word
            .store(((1u64 << 31) - 2) << ENTRIES_SHIFT, Ordering::Relaxed);
        state.shard();
        for _ in 0..5 {
            state.enter();
            state.exit(Outcome::Completed);
        }
        let reading = state.read();
        assert_eq!(reading.entries, (1 << 31) + 3);
        assert_eq!(state.halves.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn exits_that_find_their_shard_closed_mid_switch_are_made_good_by_the_fold() {
        let state = sharded();
        // Two requests counted in a shard; one leaves through the word while `SHARDED` is
        // still set (as an exit racing the switch does), taking the word below zero.
        state.enter();
        state.enter();
        let prev = state.word.fetch_sub(IN_FLIGHT_ONE, Ordering::Release);
        assert_eq!(in_flight(prev), 0);
        let reading = state.read();
        assert_eq!((reading.in_flight(), reading.started), (1, 2));
    }
}
