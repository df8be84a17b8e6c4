//! Reads made inside requests: `Drain::in_flight` and `Drain::snapshot` on a worker that is
//! serving the same pool.
//!
//! An exact read while the shards are open must look at every other worker's shard, and a
//! shard written by its worker at every request is a cache line that moves between cores at
//! every look: a read inside each request on two threads cost 12-15x a request (as
//! `TaskTracker::len` does; no exact count can do better). So each thread keeps its last
//! shared reading of one pool, and reuses it, adding what its own shard counted since, while
//! three things hold:
//!
//! - **This thread has counted something of its own since**: its shard's word moved, or,
//!   in a shard that several threads share (more threads than shards), its own note of its
//!   changes there moved (`shards::own_changes`; only such shards pay for the note). A thread
//!   that reads without serving (a test after joining a task, a metrics loop) always reads
//!   afresh, so it sees everything that happened before its read.
//! - **Nothing moved** (`Shards::moved`, one load): no shard has reported, no switch between
//!   the shards and the word began (draining, an empty-waiter, a fold), no cancellation and
//!   no refusal. Each shard reports every `REPORT_EVERY` (1,024) changes per thread counting
//!   there, 8,192 at most (`shards.rs`); a kept reading is dropped at the first report seen
//!   after it was taken (a report is a relaxed write: one seen a moment late lets a few more
//!   changes by).
//!
//! So a reading reused here counts exactly this thread's shard and every request that was in
//! the pool when it was taken, and may leave out about `REPORT_EVERY` of each other shard's
//! latest changes at most. Its invariant holds (it is a shared reading plus one shard's
//! changes, each a whole entry or exit), and on one thread nothing it counts goes backwards:
//! the kept part is fixed, this thread's shard only adds entries and exits, and a fresh
//! reading counts at least everything the kept one did.

use std::cell::Cell;

use super::super::shards::{self, Shard};
use super::{Reading, State, SHARDED};
use crate::loom::{fence, Ordering};

/// A reading kept by a thread, and what must stand still for it to be reused.
#[derive(Debug, Clone, Copy)]
struct Kept {
    /// The state it was read from: a pool's memory is never freed, so the address names it
    /// for good, and a later life of it moves `moved` (its last handle closes the shards).
    state: *const State,
    /// The pool's `Shards::moved` before the reading: reports, switches, cancellations and
    /// refusals.
    moved: u64,
    /// This thread's shard of that state, which is this thread's for good.
    shard: Option<&'static Shard>,
    /// What this thread had counted there itself (`shards::own_changes`).
    own_changes: u64,
    /// Its changes as the reading saw its word (`shards::changes`).
    own_word_changes: u64,
    /// The reading's in-flight count less what this thread's shard held then: add what it
    /// holds now.
    in_flight_base: i64,
    /// The reading, with its `entries` and `started` less the entries this thread's shard
    /// had then: add what it has now.
    reading: Reading,
}

impl Kept {
    /// Nothing kept: no state is at the null address.
    const NONE: Self = Self {
        state: std::ptr::null(),
        moved: 0,
        shard: None,
        own_changes: 0,
        own_word_changes: 0,
        in_flight_base: 0,
        reading: Reading {
            word: 0,
            entries: 0,
            started: 0,
            cancelled: 0,
            rejected: 0,
            in_flight: 0,
        },
    };
}

// A `Cell` read whole: the copy is a tiny closure that inlines into the read, where a
// reference held across the checks would keep `LocalKey::with` out of line.
#[cfg(not(loom))]
std::thread_local!(static KEPT: Cell<Kept> = const { Cell::new(Kept::NONE) });
#[cfg(loom)]
loom::thread_local!(static KEPT: Cell<Kept> = Cell::new(Kept::NONE));

impl State {
    /// A reading for `Drain::snapshot`: exact while the shards are closed or when this thread
    /// has counted nothing since its last read; otherwise perhaps a kept one (see the module
    /// docs).
    #[inline]
    pub(crate) fn read_near(&self) -> Reading {
        if self.load() & SHARDED == 0 {
            return self.read_shared();
        }
        let kept = KEPT.with(Cell::get);
        match self.reuse(&kept) {
            Some((entries, in_flight)) => Reading {
                entries: kept.reading.entries + entries,
                started: kept.reading.started + entries,
                in_flight,
                ..kept.reading
            },
            None => self.refresh(),
        }
    }

    /// The in-flight count of `read_near`, reading only the word when it is exact.
    #[inline]
    pub(crate) fn in_flight_near(&self) -> usize {
        if let Some(exact) = self.exact_in_flight() {
            return exact;
        }
        let kept = KEPT.with(Cell::get);
        match self.reuse(&kept) {
            Some((_, in_flight)) => in_flight,
            None => self.refresh().in_flight,
        }
    }

    /// Whether `kept` may be reused: if so, the entries this thread's shard has now (within
    /// one opening, which `moved` standing still shows, they only grow from what the reading
    /// saw), and the count in flight with its changes.
    #[inline]
    fn reuse(&self, kept: &Kept) -> Option<(u64, usize)> {
        let own = kept.shard?;
        if !std::ptr::eq(kept.state, self) || own.moved() != kept.moved {
            return None;
        }
        // Relaxed, then the seqlock's second check: a fold that began after the check above
        // may have closed this shard (or closed and opened it again, empty), and its word
        // would then say nothing about the kept reading's opening. A switch moves `moved`
        // before its Release fence, and the shards after it; so a word written by a switch,
        // seen here, shows that move behind the Acquire fence. (Without this second check, a
        // fold and an opening between the two loads made a reading lose this thread's latest
        // entries: a stress test saw `started` go back by two.)
        let now = own.word.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if own.moved() != kept.moved {
            return None;
        }
        // Whether this thread has counted anything itself since the reading: if not, it
        // reads afresh, and so sees everything that happened before this call. Its shard's
        // changes are its own unless another thread counts there too, which that thread
        // says before its first change there (the fence above shows it with the change).
        let counted = if own.is_shared() {
            shards::own_changes(own) != kept.own_changes
        } else {
            shards::changes(now) != kept.own_word_changes
        };
        if !counted {
            return None;
        }
        // Below zero: a guard that entered elsewhere after the kept reading left here.
        let in_flight = usize::try_from(kept.in_flight_base + shards::held(now)).ok()?;
        Some((shards::entries(now), in_flight))
    }

    /// Paces a fresh look at the open shards from a thread that does not serve this pool
    /// (see `pace`): before a predicate waiter arms the shards and reads them.
    pub(crate) fn pace_look(&self) {
        if self.load() & SHARDED != 0 && !shards::counted_here(&self.shards) {
            pace();
        }
    }

    /// A fresh shared reading, kept for the next reads on this thread if nothing moved while
    /// it was taken.
    #[cold]
    fn refresh(&self) -> Reading {
        let Some(shards) = self.shards.get() else {
            return self.read_shared();
        };
        // Only a thread that serves this pool keeps a reading: one that only reads it (a
        // metrics loop) reads afresh every time, and never turns the reports on.
        let serving = shards::counted_here(&self.shards);
        if !serving {
            pace();
        }
        // Relaxed: a hint; `start_reporting` decides under the mode lock.
        if serving && !self.reporting.load(Ordering::Relaxed) {
            // Before the first reading is kept: from now on every change counts towards a
            // report, so none after the reading can go unreported.
            self.start_reporting();
        }
        // Each before the reading: anything that moves during it shows as a change at the
        // next reuse, which then reads afresh.
        let moved = shards.moved();
        // Acquire: pairs with the Release that ends a switch; a switch under way (odd)
        // overlaps the reading, which is then not kept.
        let switches = self.switches.load(Ordering::Acquire);
        let (reading, own) = self.read_shared_noting();
        // A reading that did not sum this thread's open shard (an exact fallback) is not
        // kept, nor one that a switch overlapped.
        let settled = serving
            && switches & 1 == 0
            && own != 0
            // Acquire: as above.
            && self.switches.load(Ordering::Acquire) == switches;
        let shard = shards::own(&self.shards);
        let kept = if settled {
            let own_entries = shards::entries(own);
            Kept {
                state: self,
                moved,
                shard,
                own_changes: shard.map_or(0, shards::own_changes),
                own_word_changes: shards::changes(own),
                in_flight_base: reading.in_flight as i64 - shards::held(own),
                reading: Reading {
                    entries: reading.entries - own_entries,
                    started: reading.started - own_entries,
                    ..reading
                },
            }
        } else {
            Kept::NONE
        };
        KEPT.with(|slot| slot.set(kept));
        reading
    }
}

/// The least time between two fresh readings of open shards on a thread that does not serve
/// the pool (see `pace`).
#[cfg(not(loom))]
const PACE: std::time::Duration = std::time::Duration::from_micros(1);

/// Spaces out this thread's fresh readings of open shards: each pulls every worker's cache
/// line to the reader, and the worker's next change must take it back, so a tight loop of
/// reads on another thread (a spinning metrics or backpressure loop) would slow every request
/// (2.4-4x the serving path in `benches/reads.rs`). A reading sooner than `PACE` after this
/// thread's last one waits the rest of it, spinning: the loop pays, not the workers, and a
/// reader that reads less often than that (any sampling interval) pays a clock read.
#[inline]
fn pace() {
    #[cfg(not(loom))]
    {
        use std::time::Instant;

        std::thread_local!(static LAST: Cell<Option<Instant>> = const { Cell::new(None) });
        let now = Instant::now();
        if let Some(due) = LAST.with(Cell::get).and_then(|last| last.checked_add(PACE)) {
            let mut now = now;
            while now < due {
                std::hint::spin_loop();
                now = Instant::now();
            }
            LAST.with(|last| last.set(Some(now)));
            return;
        }
        LAST.with(|last| last.set(Some(now)));
    }
}
