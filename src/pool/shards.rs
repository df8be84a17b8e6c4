//! Per-worker counters: where a root pool counts its requests while nobody needs an exact
//! count.
//!
//! On a multi-threaded runtime every worker enters and leaves the same pool, and one shared
//! counter makes every request of every worker write the same cache line. So, in the spirit of
//! Linux's `percpu_ref`, a root pool keeps one counter per worker, each on its own cache line,
//! and counts there while it serves: no write is shared. When someone needs the exact count
//! (draining, an empty-waiter, a predicate waiter, a snapshot, the last handle going), the
//! pool *closes* its shards and folds what they hold into its packed word (`State::close`),
//! which from then on counts every request exactly, as it would with no shards at all. When
//! nobody needs the exact count any longer, the shards open again (`State::try_open`).
//!
//! A shard's word:
//!
//! ```text
//!  63                          32 31                    1       0
//! +------------------------------+-----------------------+--------+
//! | in flight (wrapping, signed) | entries since opened  | CLOSED |
//! +------------------------------+-----------------------+--------+
//! ```
//!
//! - `CLOSED`: the shard counts nothing; entries and exits go to the pool's word. An entry or
//!   exit is a compare-and-swap of a word it saw open, so none can land in a closed shard: the
//!   swap that closes a shard takes everything it will ever hold until it opens again.
//! - entries: admitted here since the shard opened, at most `ENTRIES_CAP`.
//! - in flight: entries here less exits here. A guard may leave on another worker than the one
//!   it entered on, so a shard's count may go below zero; only the sum over the shards and the
//!   word means anything. It sits at the top so that going below zero borrows out of the word,
//!   not into the entries.
//!
//! A worker is a thread: each thread takes the next shard, round robin, the first time it
//! counts anything, and keeps it. Threads beyond the number of shards share one, which is
//! correct (every change is a read-modify-write) and only slower.

use crossbeam_utils::CachePadded;

use crate::loom::{AtomicU64, Ordering};

const CLOSED: u64 = 1;
const ENTRY_ONE: u64 = 1 << 1;
const IN_FLIGHT_SHIFT: u32 = 32;
const IN_FLIGHT_ONE: u64 = 1 << IN_FLIGHT_SHIFT;
const ENTER: u64 = ENTRY_ONE | IN_FLIGHT_ONE;

/// The most shards a pool has: folding costs one swap per shard.
const MAX_SHARDS: usize = 64;

/// Entries a shard takes before the pool folds it. It bounds two things at once, since a
/// shard never counts more in flight than it admitted: the entries of one fold, below 2^31 so
/// that a fold moves the word's clock across at most one half period (see `state::extend`);
/// and the requests in flight in the shards, at most `MAX_IN_FLIGHT / 2`, so that with the
/// word holding at most the other half when the shards open (`State::try_open`) the pool
/// never has more than `MAX_IN_FLIGHT` in flight, whichever shards count them.
const ENTRIES_CAP: u64 = (super::state::MAX_IN_FLIGHT / 2 / MAX_SHARDS) as u64;
#[cfg(all(test, not(loom)))]
pub(super) const ENTRIES_AT_CAP: u32 = ENTRIES_CAP as u32;
/// The entries field's bit that the cap sets: one test finds a closed or a full shard.
const FULL: u64 = ENTRIES_CAP * ENTRY_ONE;

/// What a shard made of an entry or an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Counted {
    /// Counted in the shard.
    Here,
    /// The shard is closed: count it in the word.
    Closed,
    /// The shard is at its cap: fold the shards, then count it again.
    Full,
}

/// One shard: a word on a cache line of its own.
type Shard = CachePadded<AtomicU64>;

/// A pool's shards, made the first time its memory serves as a root pool and kept for good
/// (leaked, like the pool's memory, so that a thread can keep a plain reference to its own).
#[derive(Debug)]
pub(super) struct Shards {
    cells: &'static [Shard],
}

/// What the open shards hold, summed without closing them (`Shards::sum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Summed {
    /// Entries admitted in the shards since they opened.
    pub(super) entries: u64,
    /// Requests in flight counted in the shards, which may be negative (see `Folded`).
    pub(super) in_flight: i64,
}

/// What a fold took out of the shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Folded {
    /// Entries admitted in the shards, below 2^31.
    pub(super) entries: u32,
    /// Requests in flight counted in the shards, which may be negative: guards that entered
    /// before the shards opened may have left through them.
    pub(super) in_flight: i32,
}

/// This thread's shard of the pool whose shards live in `cell`, if it has any.
///
/// Each thread remembers the last pool it counted in and its shard there, keyed by the
/// address of the pool's `cell`: the request path then reads two thread-local words instead
/// of following the pool to its shards. The memory of a pool, its shards with it, is never
/// freed (`slot.rs`), so an address names one pool memory and one set of shards for good, and
/// a remembered shard stays valid; whether it is open is for its own word to say. (A `State`
/// anywhere but in leaked memory would break this: its address could be reused by another.)
#[inline(always)]
pub(super) fn local(cell: &std::sync::OnceLock<Shards>) -> Option<&'static Shard> {
    #[cfg(not(loom))]
    {
        type Remembered = Option<(*const std::sync::OnceLock<Shards>, &'static Shard)>;
        std::thread_local!(static LAST: std::cell::Cell<Remembered> = const {
            std::cell::Cell::new(None)
        });

        #[cold]
        fn look_up(shards: &Shards, key: *const std::sync::OnceLock<Shards>) -> &'static Shard {
            let shard = shards.local();
            LAST.with(|last| last.set(Some((key, shard))));
            shard
        }

        match LAST.with(std::cell::Cell::get) {
            Some((key, shard)) if std::ptr::eq(key, cell) => Some(shard),
            // A pool that never had shards (a child's memory, so far) answers here, without a
            // call: its entries and exits ask on every request.
            _ => cell.get().map(|shards| look_up(shards, cell)),
        }
    }
    // Under loom each lookup is fresh: a thread-local of the real thread would be shared by
    // the model's threads.
    #[cfg(loom)]
    {
        cell.get().map(Shards::local)
    }
}

/// Counts an entry in `shard` if it is open and below its cap.
#[inline(always)]
pub(super) fn enter(shard: &AtomicU64) -> Counted {
    // Relaxed: a first guess, which the swap checks.
    let mut word = shard.load(Ordering::Relaxed);
    loop {
        if word & (CLOSED | FULL) != 0 {
            return if word & CLOSED != 0 {
                Counted::Closed
            } else {
                Counted::Full
            };
        }
        // Relaxed: as the word's own entries (`State::admit`), an entry publishes nothing,
        // and the fold that closes this shard reads it whatever the order.
        match shard.compare_exchange_weak(
            word,
            // Wrapping: the in-flight field may sit below zero (see the module docs).
            word.wrapping_add(ENTER),
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => return Counted::Here,
            Err(now) => word = now,
        }
    }
}

/// Counts an exit in `shard` if it is open. Returns false if it is closed.
#[inline(always)]
pub(super) fn exit(shard: &AtomicU64) -> bool {
    // Relaxed: a first guess, which the swap checks.
    let mut word = shard.load(Ordering::Relaxed);
    while word & CLOSED == 0 {
        // Release: everything the request did happens-before the fold that closes this
        // shard (its swap is Acquire), and so before any waiter that reads the word the
        // fold writes.
        match shard.compare_exchange_weak(
            word,
            word.wrapping_sub(IN_FLIGHT_ONE),
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            Ok(_) => return true,
            Err(now) => word = now,
        }
    }
    false
}

impl Shards {
    /// Closed shards, one per worker of this machine, doubled so that a few extra threads
    /// (the blocking pool, the main thread) rarely share one with a worker.
    pub(super) fn new() -> Self {
        let cells: Box<[Shard]> = (0..shard_count())
            .map(|_| CachePadded::new(AtomicU64::new(CLOSED)))
            .collect();
        Self {
            cells: Box::leak(cells),
        }
    }

    /// This thread's shard.
    fn local(&self) -> &'static Shard {
        // The length is a power of two.
        &self.cells[crate::loom::worker_index() & (self.cells.len() - 1)]
    }

    /// Closes every shard and returns what they held. The caller holds the pool's mode lock
    /// and has seen the shards open.
    pub(super) fn close(&self) -> Folded {
        let mut folded = Folded {
            entries: 0,
            in_flight: 0,
        };
        for shard in self.cells.iter() {
            // AcqRel: Acquire so that every exit counted here happens-before the fold's write
            // of the word; Release orders the close after the caller's earlier writes.
            let word = shard.swap(CLOSED, Ordering::AcqRel);
            debug_assert_eq!(word & CLOSED, 0, "closing a closed shard");
            // The entries cap keeps the sum below 2^31; the in-flight sum wraps like the
            // fields it adds.
            folded.entries += ((word & ENTRIES_MASK) >> 1) as u32;
            folded.in_flight = folded.in_flight.wrapping_add(in_flight(word));
        }
        folded
    }

    /// What the shards hold, read one by one while they stay open: a sum that is exact only if
    /// nothing enters or leaves meanwhile (see `State::read_shared`).
    pub(super) fn sum(&self) -> Summed {
        let mut summed = Summed {
            entries: 0,
            in_flight: 0,
        };
        for shard in self.cells.iter() {
            // Acquire: pairs with the Release exits, so requests seen gone have finished.
            let word = shard.load(Ordering::Acquire);
            summed.entries += (word & ENTRIES_MASK) >> 1;
            summed.in_flight += i64::from(in_flight(word));
        }
        summed
    }

    /// Puts this thread's shard at its cap, as if `ENTRIES_AT_CAP` requests had entered and
    /// were in flight.
    #[cfg(all(test, not(loom)))]
    pub(super) fn fill_local_for_test(&self) {
        let word = (ENTRIES_CAP * ENTER) & !CLOSED;
        // The test's own three entries are replaced: they were in this shard too.
        self.local().store(word, Ordering::Relaxed);
    }

    /// Opens every shard, empty. The caller holds the pool's mode lock, has set `SHARDED` in
    /// the word, and has seen the shards closed.
    pub(super) fn open(&self) {
        for shard in self.cells.iter() {
            // Relaxed: a closed shard holds nothing and nobody writes it; entries and exits
            // that see it open need nothing else from this thread. The next fold reads it
            // under the mode lock, after this thread's release of it.
            shard.store(0, Ordering::Relaxed);
        }
    }
}

const ENTRIES_MASK: u64 = (1 << IN_FLIGHT_SHIFT) - 2;

/// A shard word's in-flight field, as the signed count it is.
#[inline(always)]
fn in_flight(word: u64) -> i32 {
    (word >> IN_FLIGHT_SHIFT) as u32 as i32
}

/// Twice the machine's parallelism, as a power of two between 2 and `MAX_SHARDS`.
#[cfg(not(loom))]
fn shard_count() -> usize {
    static COUNT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *COUNT.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        (cores * 2).next_power_of_two().clamp(2, MAX_SHARDS)
    })
}

/// Two shards under loom: enough for two threads not to share one, and a third to share.
#[cfg(loom)]
fn shard_count() -> usize {
    2
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_shard_counts_below_zero_without_touching_its_entries() {
        let shards = Shards::new();
        shards.open();
        let shard = shards.local();
        assert!(exit(shard));
        assert!(exit(shard));
        assert_eq!(enter(shard), Counted::Here);
        let folded = shards.close();
        assert_eq!(
            folded,
            Folded {
                entries: 1,
                in_flight: -1
            }
        );
        assert_eq!(enter(shard), Counted::Closed);
        assert!(!exit(shard), "a closed shard takes no exit");
    }

    #[test]
    fn a_shard_at_a_cap_asks_for_a_fold() {
        let shards = Shards::new();
        shards.open();
        let shard = shards.local();
        shard.store((ENTRIES_CAP - 1) * ENTRY_ONE, Ordering::Relaxed);
        assert_eq!(enter(shard), Counted::Here, "the last entry below the cap");
        assert_eq!(enter(shard), Counted::Full);
        // Exits are never capped.
        assert!(exit(shard));
    }

    #[test]
    fn the_shard_count_is_a_power_of_two() {
        let count = shard_count();
        assert!(count.is_power_of_two() && (2..=MAX_SHARDS).contains(&count));
    }
}
