//! The pool's memory and its lifecycle, in one place so that both can be read and proven here.
//!
//! `Drain` (the public handle), `Guard`, the waiters and the shutdown procedure all use this
//! module; it uses none of them.
//!
//! # Why the memory is leaked
//!
//! A `Guard` must keep its pool alive, and the usual way, an `Arc` clone per request, costs a
//! second read-modify-write on entry and on exit: as much as the counting itself. Instead each
//! pool's memory is leaked, so a guard is a plain `&'static Shared`, and the in-flight count
//! doubles as the count of guards. No `unsafe` is needed: a reference to a pool can only ever
//! point at a valid pool, whatever has happened to it since.
//!
//! # When the memory may be reused, and why no late write can reach the next pool
//!
//! The memory begins a new life (`recycle`: reset, then back to the free list in `slot.rs`)
//! once every handle is gone *and* nothing is in flight. `State::detach` and the `DETACHED`
//! bit make exactly one thread the recycler: the last handle's drop if it finds the count at
//! zero, otherwise the exit that takes the count to zero with `DETACHED` set. Both decisions
//! are read-modify-writes of the word, so they cannot both see the other as having happened
//! first.
//!
//! What else may touch the memory after that decision is an exit's *late work*: an exit lowers
//! the count with one read-modify-write, and only then, if the word it replaced had waiter
//! flags, wakes waiters and refreshes the phase. Between the two, another thread may drop the
//! last handle, see the count at zero and recycle the memory, and `Drain::new` may hand it out
//! again. So late work follows two rules:
//!
//! 1. **Whatever a waiter counts on is written before the count can reach zero for the
//!    recycler.** A transition to empty that an empty-waiter needs is made and counted under
//!    the mode lock (`State::exit_locked`), and the recycler's decision needs that lock too
//!    (`State::detach`): the late work that follows only tells waiters to look.
//! 2. **What it does is harmless to any life.** Waking a `Notify` can only cause a spurious
//!    wake-up, and every waiter re-checks durable state after one (`wait.rs`). Refreshing the
//!    phase publishes the phase the pool has *now*, so it can only publish early what its own
//!    life would publish anyway. Disarming predicate waiters wakes them, and they arm again
//!    (`changed_now`). Clearing `EMPTY` for satisfied waiters decides on the current count of
//!    transitions, which is right for whichever life reads it (`satisfied`).
//!
//! The recycler resets the state after an Acquire fence that pairs with the Release of every
//! exit, so the reset follows everything the old life did. A phase receiver belongs to one
//! life: the recycler replaces the sender, and the old receivers end. A child's parent link is
//! rewritten only at the start of a life, while the child is owned by the thread making it;
//! the parent cannot be recycled before the child, whose handles hold it.

//! # What each piece buys, and what removing it would cost
//!
//! The pool is more machinery than tokio-util's `TaskTracker` (an `Arc` and one word). Each
//! piece stays only while a bench shows what it buys (`benches/overhead.rs`, figures in
//! `docs/performance.md`):
//!
//! - **Leaked memory with lives and a free list** (`slot.rs`, the rules above): a guard is a
//!   `&'static Shared`, so entering and leaving is one read-modify-write each instead of two
//!   (no `Arc` clone and drop per request). Removing it: `DrainLayer` would cost what
//!   `TaskTracker` costs, 1.96-1.99x the floor instead of 1.01x.
//! - **Per-thread shards** (`shards.rs`, the switch in `state.rs`): while serving, each worker
//!   counts on a cache line of its own, so two threads cost what one does (10.1-10.3 ns
//!   against 10.0-10.2 ns; the `threads_N` groups). Removing them: one shared word, 17-23 ns
//!   on two threads here and 12x the one-thread cost on a larger machine, and the peers'
//!   74-408 ns. The price is the switch: an exact read folds the shards (a snapshot 52-53 ns,
//!   the `switch` group).
//! - **A 32-bit entry clock in the word, extended by half-period crossings** (`state.rs`): the
//!   clock, the count and the flags fit one `AtomicU64`, so admission stays one
//!   compare-and-swap, and `started` is exact and never goes backwards without a second word
//!   to keep consistent. Removing it: a second atomic on every entry.
//! - **Floors on the shards** (`shards.rs`): an empty-waiter behind requests in flight leaves
//!   the per-worker counting on, because no shard may take more exits than its share of the
//!   requests counted before it opened, so only the word (under the mode lock) can see the
//!   pool empty. Removing them: every empty-waiter closes the shards, and a shutdown waiting
//!   behind long requests, or `until_empty()` in a `select!` loop, costs every request the
//!   shared word (4.3-7.1x the serving path on two threads in `benches/reads.rs`, against
//!   about 1x with them).
//! - **Transitions to empty counted under the mode lock** (`State::emptyings`): a waiter
//!   registers and a transition is made in the same lock, so a target is one number and
//!   needs no clock read or fold, and the memory cannot be recycled between a transition and
//!   its count. Removing it: waiters compare entry clocks, which must be folded out of the
//!   shards at every registration.
//! - **Per-thread kept readings and reports** (`state/near.rs`, `shards.rs`): a read inside
//!   every request reuses its thread's last reading until another shard reports 1,024
//!   changes. Removing them: each read looks at every other worker's cache line, 12-15x the
//!   serving path on two threads (as `TaskTracker::len` does), against 1.4-1.9x with them. The
//!   price is a test of the written word per change and one shared write per 1,024.
//! - **Armed shards for predicate waiters** (`ARMED` in `shards.rs`, `State::arm_change`): a
//!   look sets one bit in each open shard, and each shard's next change clears it and wakes
//!   the waiter. Removing it: every look folds the shards and the first change opens them
//!   again, and an `until()` recreated in a loop beside the workers cost them 2.4-9x the
//!   serving path, against about 1.2x with it.
//! - **Paced reads from threads that do not serve** (`state/near.rs`): such a thread's fresh
//!   reads and looks are a microsecond apart at least. Removing it: a tight read loop beside
//!   the workers pulls their cache lines at every read, 4-6x the serving path on one worker,
//!   against about 1x with it.

mod control;
mod shards;
mod slot;
pub(crate) mod state;

use std::fmt;
use std::sync::PoisonError;

use tokio::sync::{watch, Notify};

use crate::error::Rejected;
use crate::loom::{fence, AtomicBool, AtomicU32, Mutex, MutexGuard, Ordering};
use crate::record::Record;
use crate::snapshot::Phase;
use crate::trace;

use self::control::Control;
pub(crate) use self::state::{Entry, Outcome, State};

/// Whether an entry is refused while the pool drains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// `guard`: work that already exists.
    Always,
    /// `try_guard`: new work.
    UnlessDraining,
}

/// The registered empty-waiters: `until_empty`/`next_empty` futures, and a draining pool's
/// own.
#[derive(Debug, Default)]
struct WaiterCounts {
    empty: usize,
    /// The highest target among them (`u64::MAX` for a draining pool's own, which is never
    /// satisfied): once a transition to empty at or above it is published, none of them needs
    /// another, and `EMPTY` is cleared until the next registration.
    until: u64,
}

/// The shared state behind every clone of a `Drain` and every `Guard`.
pub(crate) struct Shared {
    pub(crate) state: State,
    /// This memory's number in `slot.rs`, fixed for good.
    pub(crate) id: u32,
    /// The parent pool's id plus one, or zero for a root. Set at the start of a life, before
    /// the pool is handed out; fixed until the life ends.
    parent: AtomicU32,
    /// Guards the empty-waiter counts, so a count and its flag in the word change together.
    waiters: Mutex<WaiterCounts>,
    /// Woken when the count reaches zero while `EMPTY_WAITERS` is set.
    pub(crate) emptied: Notify,
    /// Woken by the first change after a predicate waiter armed `CHANGE_WATCHERS`.
    pub(crate) changed: Notify,
    /// Woken when draining begins.
    pub(crate) draining: Notify,
    /// Woken by `resume`, so a running shutdown procedure ends.
    pub(crate) resumed: Notify,
    /// Set from `Unready` until `resume`: the readiness check answers `503`.
    unready: AtomicBool,
    /// Set when a shutdown's grace period ran out with work in flight, until `resume`: the
    /// `Drained` that follows is the abandoned work being dropped, and is logged as such.
    pub(crate) abandoned: AtomicBool,
    /// Phase changes, children, the shutdown in progress: see `control.rs`.
    control: Mutex<Control>,
    /// The phase as last published to `watch_phase` receivers; a new sender each life.
    phase_tx: Mutex<watch::Sender<Phase>>,
    /// Requests recorded for the shutdown report by a `RecordRequestsLayer`.
    pub(crate) record: Record,
    /// Under loom, where there is no free list to reuse memory through, `slot::release` sets
    /// this (Release) and a model's `Drain::new` waits for it (Acquire): the free list's
    /// mutex handoff, modelled.
    #[cfg(loom)]
    pub(crate) released: AtomicBool,
}

impl Shared {
    fn new(id: u32) -> Self {
        Self {
            state: State::new(),
            id,
            parent: AtomicU32::new(0),
            waiters: Mutex::new(WaiterCounts::default()),
            emptied: Notify::new(),
            changed: Notify::new(),
            draining: Notify::new(),
            resumed: Notify::new(),
            unready: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            control: Mutex::new(Control::default()),
            phase_tx: Mutex::new(watch::Sender::new(Phase::Serving)),
            record: Record::default(),
            #[cfg(loom)]
            released: AtomicBool::new(false),
        }
    }

    /// A new pool: a root, or a child of `parent` that drains with it.
    pub(crate) fn acquire(parent: Option<&'static Shared>) -> &'static Shared {
        let pool = slot::acquire();
        match parent {
            Some(parent) => parent.adopt(pool),
            // A root counts in per-worker shards while it serves; a child's entries are rare
            // (each also enters its ancestors, which shard), so it keeps to its word.
            None => pool.state.shard(),
        }
        pool
    }

    /// The parent pool, for a child.
    #[inline]
    pub(crate) fn parent(&self) -> Option<&'static Shared> {
        match self.parent_link() {
            0 => None,
            link => Some(slot::get(link - 1)),
        }
    }

    /// Whether this pool has no parent: its entries need nothing more than its own word.
    #[inline]
    pub(crate) fn is_root(&self) -> bool {
        self.parent_link() == 0
    }

    #[inline]
    fn parent_link(&self) -> u32 {
        // Relaxed: written before the pool was handed to whoever holds it now (through the
        // free list's mutex and the handle's `Arc`), and not again during this life.
        self.parent.load(Ordering::Relaxed)
    }

    /// What the last `Drain` handle does as it goes: leaves its parent's list of children, and
    /// recycles the pool if nothing is in flight.
    pub(crate) fn release_handle(&'static self) {
        // First, while this pool is certainly alive: once detached, the memory may be reused
        // as a child of the same parent, which would then find itself removed.
        if let Some(parent) = self.parent() {
            parent.disown(self);
        }
        if self.state.detach() {
            self.recycle();
        }
    }

    /// Ends this life: resets everything and hands the memory back for reuse. The caller is
    /// the one recycler (see the module docs).
    fn recycle(&'static self) {
        // Acquire: pairs with the Release of every exit and of `detach`, so everything done in
        // the pool's last life happens-before the reset.
        fence(Ordering::Acquire);
        self.reset_for_reuse();
        slot::release(self);
    }

    /// Back to a new pool's state. Only the recycler (or a test owning the pool) calls it.
    pub(crate) fn reset_for_reuse(&self) {
        self.state.reset();
        // Relaxed: handed to the next owner through the free list's mutex.
        self.parent.store(0, Ordering::Relaxed);
        self.unready.store(false, Ordering::Relaxed);
        self.abandoned.store(false, Ordering::Relaxed);
        *self.lock_waiters() = WaiterCounts::default();
        *self.lock_control() = Control::default();
        // A new sender: the old one's receivers see the channel close, and no receiver ever
        // sees a later life's phases.
        *self.lock_phase_tx() = watch::Sender::new(Phase::Serving);
        self.record.clear();
    }

    fn lock_waiters(&self) -> MutexGuard<'_, WaiterCounts> {
        // No user code runs under this lock, so a poisoned lock still holds consistent counts.
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_control(&self) -> MutexGuard<'_, Control> {
        // No user code runs under this lock (but trace events, see `control.rs`).
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_phase_tx(&self) -> MutexGuard<'_, watch::Sender<Phase>> {
        // No user code runs under this lock either.
        self.phase_tx.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A child's entry: refused at once by the nearest draining pool on its way to the root,
    /// each level up to that one counting the refusal, and nothing else counted; otherwise
    /// entered here, then in every ancestor (`finish_entry`).
    #[cold]
    pub(crate) fn enter_tree(&'static self, admission: Admission) -> Result<(), Rejected> {
        if admission == Admission::UnlessDraining {
            let mut on_the_way = Some(self);
            while let Some(pool) = on_the_way {
                if pool.state.load() & state::DRAINING != 0 {
                    let mut level = self;
                    while !std::ptr::eq(level, pool) {
                        level.refused(Rejected::draining());
                        level = level.parent().expect("`pool` is an ancestor");
                    }
                    return Err(pool.refused(Rejected::draining()));
                }
                on_the_way = pool.parent();
            }
        }
        // A child's shards never open (see `acquire`).
        let entry = self
            .state
            .enter_with(admission == Admission::UnlessDraining, false);
        self.finish_entry(entry, admission)
    }

    /// Completes an entry into this pool that `state` has decided: wakes predicate waiters,
    /// counts a refusal, and repeats the entry in every ancestor.
    pub(crate) fn finish_entry(
        &'static self,
        entry: Entry,
        admission: Admission,
    ) -> Result<(), Rejected> {
        match entry {
            Entry::Admitted => {}
            Entry::AdmittedChanged => self.changed_now(),
            // `State::enter` never reports draining; `try_enter` does.
            Entry::Draining => return Err(self.refused(Rejected::draining())),
            Entry::Full => return Err(self.refused(Rejected::full())),
        }
        if let Some(parent) = self.parent() {
            // Through its shards if it is a root; a child's never open (see `acquire`).
            let entry = parent
                .state
                .enter_with(admission == Admission::UnlessDraining, parent.is_root());
            if let Err(rejected) = parent.finish_entry(entry, admission) {
                // Admitted here an instant before an ancestor refused it (the ancestor began
                // draining in between): the request ends at once with the ancestor's refusal
                // as its answer. Here it counts as started and completed, so that `started`
                // never goes back.
                self.leave_here(Outcome::Completed, self.is_root());
                return Err(rejected);
            }
        }
        Ok(())
    }

    #[cold]
    fn refused(&self, rejected: Rejected) -> Rejected {
        if self.state.refuse() & state::CHANGE_WATCHERS != 0 {
            self.changed_now();
        }
        rejected
    }

    /// A change that found the predicate waiters armed: disarms them and, if this call did,
    /// wakes them. They arm again once they have looked (`Until`), so a waiter costs the
    /// requests one wake-up per look, however many changes come in between.
    ///
    /// Harmless to any life (rule 2 above): clearing the flag and waking can only cost a
    /// waiter of a later life a spurious wake-up, after which it looks and arms again.
    #[cold]
    pub(crate) fn changed_now(&self) {
        if self.state.disarm_change() {
            self.changed.notify_waiters();
        }
    }

    /// Takes one request out of the pool, and out of every ancestor, and carries out what each
    /// exit requires.
    #[inline]
    pub(crate) fn leave(&'static self, outcome: Outcome) {
        // A completion leaves through this thread's shard if they are open: only a root's
        // ever are, and then nobody needs to hear of it (see `State::exit_shard`). A
        // cancellation is counted under a lock anyway, and leaves through the word.
        if outcome == Outcome::Completed && self.state.exit_shard() {
            return;
        }
        self.leave_exact(outcome);
    }

    /// `leave` through the word: of this pool, then of every ancestor.
    #[cold]
    fn leave_exact(&'static self, outcome: Outcome) {
        // Read before leaving: once the count is down, the memory may begin a new life.
        let parent = self.parent_link();
        // A root's completion tries its shard once more: one that found it armed for
        // predicate waiters counts there now, and wakes them. A cancellation goes through the
        // word.
        self.leave_here(outcome, parent == 0 && outcome == Outcome::Completed);
        if parent != 0 {
            Self::leave_ancestors(parent, outcome);
        }
    }

    /// The rest of a child's exit, as a loop rather than a recursion, so that `leave` itself
    /// stays small enough to inline into every guard's drop.
    #[cold]
    fn leave_ancestors(mut link: u32, outcome: Outcome) {
        while link != 0 {
            let pool = slot::get(link - 1);
            // The request still counts in `pool`, so its link is still this life's.
            link = pool.parent_link();
            // A child's shards never open (see `acquire`).
            pool.leave_here(outcome, link == 0);
        }
    }

    /// Takes one request out of this pool alone; through this thread's shard if `sharded`
    /// (a root whose shard was not tried yet).
    #[inline]
    fn leave_here(&'static self, outcome: Outcome, sharded: bool) {
        let prev = self.state.exit_with(outcome, sharded);
        if prev & state::LATE_WORK != 0 {
            self.after_exit(prev);
        }
    }

    /// An exit's late work (see the module docs): `prev` is the word its exit replaced. The
    /// loom models call it by hand, to see that word.
    #[cold]
    pub(crate) fn after_exit(&'static self, prev: u64) {
        let emptied = state::in_flight(prev) == 1;
        if emptied && prev & state::DETACHED != 0 {
            // The last of everything: no handle and no other guard can reach this memory, and
            // no waiter (each holds a handle); receivers of the phase see the last one.
            if prev & state::EMPTY_WAITERS != 0 {
                self.refresh_phase();
            }
            self.recycle();
            return;
        }
        if emptied && prev & state::EMPTY_WAITERS != 0 {
            // Counted already, under the mode lock (`State::exit_locked`): tell the waiters to
            // look. Harmless to any life (rule 2).
            self.emptied.notify_waiters();
            // Draining pools register an empty-waiter, so this is where `Drained` begins.
            self.refresh_phase();
            self.satisfied();
        }
        if prev & state::CHANGE_WATCHERS != 0 {
            self.changed_now();
        }
    }

    /// After a transition to empty: if the transitions counted so far satisfy every
    /// registered empty-waiter, none needs the next one, so `EMPTY` is cleared and the shards
    /// open without floors, while the waiters wait to be polled or dropped. A waiter that
    /// registers later has a higher target, and sets it again.
    ///
    /// Harmless to any life: it decides on the current count, under the waiter lock.
    fn satisfied(&self) {
        let counts = self.lock_waiters();
        if counts.empty > 0 && counts.until <= self.state.emptyings() {
            self.state.set_flag(state::EMPTY_WAITERS, false);
        }
    }

    /// Whether the transitions to empty have reached `target`.
    pub(crate) fn emptied_since(&self, target: u64) -> bool {
        self.state.emptyings() >= target
    }

    /// Registers an empty-waiter, unless `ready_if_empty` and the pool is empty: returns its
    /// target, the count of transitions to empty that completes it (the next one), or `None`
    /// if it is ready at once.
    ///
    /// Every exit that empties the pool after the registration sees the flag and counts its
    /// transition under the mode lock (`State::watch_empty`); none before it is counted at or
    /// above the target. If the pool was empty, the next transition needs an entry first.
    pub(crate) fn register_empty(&self, ready_if_empty: bool) -> Option<u64> {
        let mut counts = self.lock_waiters();
        let (next, empty) = self.state.watch_empty();
        let target = (!(empty && ready_if_empty)).then_some(next);
        match target {
            Some(target) => {
                counts.empty += 1;
                counts.until = counts.until.max(target);
            }
            // Set for nothing: cleared unless another waiter still counts on it.
            None if counts.empty == 0 => {
                self.state.set_flag(state::EMPTY_WAITERS, false);
            }
            None => {}
        }
        target
    }

    /// Undoes one `register_empty` that returned a target.
    pub(crate) fn deregister_empty(&self) {
        let mut counts = self.lock_waiters();
        self.remove_waiter(&mut counts);
    }

    /// A draining pool's own empty-waiter, which is never satisfied: every transition to empty
    /// publishes `Drained`, until `resume`.
    fn add_draining_waiter(&self, counts: &mut WaiterCounts) {
        counts.empty += 1;
        counts.until = u64::MAX;
        self.state.set_flag(state::EMPTY_WAITERS, true);
    }

    fn remove_waiter(&self, counts: &mut WaiterCounts) {
        debug_assert!(counts.empty > 0, "removing a waiter that is not registered");
        counts.empty -= 1;
        if counts.empty == 0 {
            counts.until = 0;
            self.state.set_flag(state::EMPTY_WAITERS, false);
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        // Acquire: pairs with the AcqRel swaps in `set_unready` and `resume`.
        Phase::of(self.state.load(), self.unready.load(Ordering::Acquire))
    }

    /// A receiver of this life's phase changes.
    pub(crate) fn watch_phase(&self) -> watch::Receiver<Phase> {
        self.lock_phase_tx().subscribe()
    }

    /// Publishes the current phase to `watch_phase` receivers if it changed. It reads the
    /// phase inside the channel's lock, so racing publishers can never leave a stale one.
    pub(crate) fn refresh_phase(&self) {
        let mut now = Phase::Serving;
        let changed = self.lock_phase_tx().send_if_modified(|published| {
            now = self.phase();
            let changed = *published != now;
            *published = now;
            changed
        });
        // Relaxed: a hint for the log line alone.
        if changed && now == Phase::Drained && self.abandoned.load(Ordering::Relaxed) {
            trace::info!(
                phase = now.as_str(),
                "phase changed: the requests abandoned at the deadline were dropped"
            );
        } else if changed {
            trace::info!(
                phase = now.as_str(),
                in_flight = self.state.read_shared().in_flight,
                "phase changed"
            );
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("id", &self.id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}
