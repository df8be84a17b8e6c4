//! Per-worker counters: where a root pool counts its requests while nobody needs an exact
//! count.
//!
//! On a multi-threaded runtime every worker enters and leaves the same pool, and one shared
//! counter makes every request of every worker write the same cache line. So, in the spirit of
//! Linux's `percpu_ref`, a root pool keeps one counter per worker, each on its own cache line,
//! and counts there while it serves: no write is shared. When someone needs the exact count
//! (draining, an empty-waiter registering, a read that cannot sum the shards consistently, a
//! shard at its cap, the last handle going), the pool *closes* its shards and folds what they
//! hold into its packed word (`State::close`), which from then on counts every request
//! exactly, as it would with no shards at all. When nobody needs the exact count any longer,
//! the shards open again (`State::try_open`). A predicate waiter needs no exact count, only
//! to hear of the next change: it *arms* the open shards instead (`ARMED`).
//!
//! A shard's word:
//!
//! ```text
//!  63                          32 31                    1       0
//! +------------------------------+-----------------------+--------+
//! | held (in flight + allotment) | entries since opened  | CLOSED |
//! +------------------------------+-----------------------+--------+
//! ```
//!
//! - `CLOSED`: the shard counts nothing; entries and exits go to the pool's word. An entry or
//!   exit is a compare-and-swap of a word it saw open, so none can land in a closed shard: the
//!   swap that closes a shard takes everything it will ever hold until it opens again.
//! - entries: admitted here since the shard opened, at most `ENTRIES_CAP`.
//! - held: entries here less exits here, plus the shard's *allotment*, which every shard gets
//!   when the shards open (`Shards::open`). A guard may leave on another worker than the one
//!   it entered on, so a shard's count of its own may go below zero, but never below minus
//!   its allotment: an exit that finds the field at zero is refused (`Exited::Floor`) and
//!   leaves through the word instead, after a fold (`State::exit_locked`). Only the sum
//!   over the shards and the word means anything.
//!
//! The allotment is what lets a waiter for the empty pool leave the shards open. With nobody
//! waiting, it is `UNFLOORED`, so large that no exit ever meets the floor. With a waiter, the
//! shards open only while the word holds `n >= 1` requests, and each gets `(n - 1) / shards`:
//! then the count is at least `n - shards * allotment >= 1` whatever the shards do, so the
//! pool can only become empty through the word, where the exit that empties it sees the
//! waiter's flag.
//!
//! Every `REPORT_EVERY` changes (entries and exits) counted in a shard, times the threads that
//! count there (at most `MAX_SHARERS`), the shard adds one to the pool's `moved` counter, on a
//! cache line of its own. A read inside a request keeps a reading of the other shards per
//! thread and uses it again while that counter stands still (`State::read_near`): the changes
//! it can miss are fewer than `REPORT_EVERY` per thread, and `REPORT_EVERY * MAX_SHARERS` per
//! shard.
//!
//! A worker is a thread: each thread takes the next shard, round robin, the first time it
//! counts anything, and keeps it. Threads beyond the number of shards share one, which is
//! correct (every change is a read-modify-write) and only slower.

use crossbeam_utils::CachePadded;

use crate::loom::{fence, AtomicU64, Ordering};

const CLOSED: u64 = 1;
/// Set while a predicate waiter is armed (`State::arm_change`): the next entry or exit here
/// clears it and says so (`Counted::Disarmed`, `Exited::Disarmed`), and its caller wakes the
/// waiters.
/// Left set after they are disarmed elsewhere, it costs the next change here one look at the
/// pool's word. Above the entries field, which the cap keeps below 2^21.
const ARMED: u64 = 1 << 30;
/// Set while some thread keeps a reading of this pool (`State::read_near`): only then does a
/// change count towards a report, so that a pool nobody reads inside requests pays one test
/// of a bit it already holds. Above the entries field, which the cap keeps below 2^20.
const REPORTING: u64 = 1 << 31;
const ENTRY_ONE: u64 = 1 << 1;
const IN_FLIGHT_SHIFT: u32 = 32;
const IN_FLIGHT_ONE: u64 = 1 << IN_FLIGHT_SHIFT;
const ENTER: u64 = ENTRY_ONE | IN_FLIGHT_ONE;

/// The allotment of shards opened with nobody waiting for the empty pool: 2^30 exits beyond a
/// shard's entries before its floor, which no fold interval reaches in practice. With the
/// entries cap on top it stays below 2^31, so the field never overflows.
pub(super) const UNFLOORED: u64 = 1 << 30;

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

/// What a shard made of an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exited {
    /// Counted in the shard.
    Here,
    /// Not counted: the shard is armed for predicate waiters, and the caller did not ask to
    /// count there (the request path's first try, which stays small; its slow path asks).
    Armed,
    /// Counted in the shard, and this change disarmed it: the predicate waiters may need
    /// waking (`Shared::changed_now`).
    Disarmed,
    /// The shard is closed: count it in the word.
    Closed,
    /// The shard is at its floor: it has no allotment left for another exit (see the module
    /// docs). Fold, then count it in the word.
    Floor,
}

/// What a shard made of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Counted {
    /// Counted in the shard.
    Here,
    /// Not counted: the shard is armed for predicate waiters, and the caller did not ask to
    /// count there (the request path's first try, which stays small; its slow path asks).
    Armed,
    /// Counted in the shard, and this change disarmed it: the predicate waiters may need
    /// waking (`Shared::changed_now`).
    Disarmed,
    /// The shard is closed: count it in the word.
    Closed,
    /// The shard is at its cap: fold the shards, then count it again.
    Full,
}

/// Changes counted in one shard between two reports (see the module docs), for each thread
/// that counts in it. A power of two: a report costs the request path one shared write per
/// this many changes, and every reading kept by a reader is refreshed once per report.
pub(super) const REPORT_EVERY: u64 = 1024;

/// The most threads a shard's reports are spaced for (`Cell::reports`): a shard shared by more
/// still reports every `REPORT_EVERY * MAX_SHARERS` changes, so that threads come and gone do
/// not space them out for good.
const MAX_SHARERS: u64 = 8;

/// One shard: a word on a cache line of its own, and where it reports.
pub(super) type Shard = CachePadded<Cell>;

/// What a shard's cache line holds.
#[derive(Debug)]
pub(super) struct Cell {
    pub(super) word: AtomicU64,
    /// The pool's `Shards::moved`, beside the word so that a report needs no other line to
    /// find it, nor a reader its check.
    moved: &'static AtomicU64,
    /// The change counts at which this shard reports, as a mask: one less than `REPORT_EVERY`
    /// times the threads that count here, as a power of two, at most `MAX_SHARERS`. Each
    /// report makes every thread's kept reading stale; spaced for the threads sharing the
    /// shard, reports come as often per thread whatever the number of threads per shard (with
    /// 64 threads on 4 shards, every read inside a request refreshed 4x as often otherwise).
    /// Above its least value, it also says that more than one thread counts here: then a change
    /// of the word does not tell a reader that it counted something itself, and each change
    /// while reporting notes its thread (`own_changes`). Raised by each thread beyond the first,
    /// before its first change here (`Cell::share_if_second`).
    reports: AtomicU64,
}

/// A pool's shards, made the first time its memory serves as a root pool and kept for good
/// (leaked, like the pool's memory, so that a thread can keep a plain reference to its own).
#[derive(Debug)]
pub(super) struct Shards {
    cells: &'static [Shard],
    /// Moves at every report of `REPORT_EVERY` changes from any shard, at the start of every
    /// switch, and at every cancellation and refusal: everything that makes a reading kept by
    /// a thread (`State::read_near`) too old to reuse, in one load for the reader.
    moved: &'static CachePadded<AtomicU64>,
}

/// What the open shards hold, summed without closing them (`Shards::sum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Summed {
    /// Entries admitted in the shards since they opened.
    pub(super) entries: u64,
    /// Requests in flight counted in the shards, less their allotments: may be negative (see
    /// `Folded`).
    pub(super) in_flight: i64,
    /// The word of the shard the sum was asked to note (the reader's own), as it was read.
    pub(super) noted: u64,
}

/// What a fold took out of the shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Folded {
    /// Entries admitted in the shards, below 2^31.
    pub(super) entries: u32,
    /// Requests in flight counted in the shards, less their allotments, which may be
    /// negative: guards that entered before the shards opened may have left through them.
    pub(super) in_flight: i64,
}

/// The last pool this thread counted in (by the address of its shards' cell) and its shard
/// there: see `local`.
#[cfg(not(loom))]
type Remembered = Option<(*const std::sync::OnceLock<Shards>, &'static Shard)>;
#[cfg(not(loom))]
std::thread_local!(static LAST: std::cell::Cell<Remembered> = const {
    std::cell::Cell::new(None)
});

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
        #[cold]
        fn look_up(shards: &Shards, key: *const std::sync::OnceLock<Shards>) -> &'static Shard {
            let shard = shards.local();
            shard.share_if_second();
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
        cell.get().map(|shards| {
            let shard = shards.local();
            shard.share_if_second();
            shard
        })
    }
}

/// This thread's shard of the pool whose shards live in `cell`, for a reader: `local` without
/// remembering it, so that reading a pool never makes a thread pass for one that serves it
/// (`counted_here`).
#[inline]
pub(super) fn own(cell: &std::sync::OnceLock<Shards>) -> Option<&'static Shard> {
    cell.get().map(Shards::local)
}

/// Whether this thread's last count in any pool was in the pool whose shards live in `cell`:
/// a thread serving that pool, as opposed to one that only reads it.
#[inline]
pub(super) fn counted_here(cell: &std::sync::OnceLock<Shards>) -> bool {
    #[cfg(not(loom))]
    {
        LAST.with(std::cell::Cell::get)
            .is_some_and(|(key, _)| std::ptr::eq(key, cell))
    }
    // Under loom every lookup is fresh (see `local`): every thread may keep a reading.
    #[cfg(loom)]
    {
        cell.get().is_some()
    }
}

/// Counts an entry in `shard` if it is open and below its cap, and if it is armed for
/// predicate waiters, only if `count_armed`.
#[inline(always)]
pub(super) fn enter(shard: &Shard, count_armed: bool) -> Counted {
    let cell = &**shard;
    // Relaxed: a first guess, which the swap checks.
    let mut word = cell.word.load(Ordering::Relaxed);
    loop {
        if word & (CLOSED | FULL | ARMED) != 0 {
            return if word & CLOSED != 0 {
                Counted::Closed
            } else if word & FULL != 0 {
                Counted::Full
            } else if count_armed {
                enter_armed(cell)
            } else {
                Counted::Armed
            };
        }
        // Acquire on success: pairs with the Release store that opened this shard, so that a
        // read on this thread after the entry sees the word as that opening left it (open),
        // never a closed word from before, which would leave its own request out. (Free on
        // x86, where every read-modify-write is a full barrier.) An entry publishes nothing,
        // and the fold that closes this shard reads it whatever the order: Relaxed on failure.
        match cell.word.compare_exchange_weak(
            word,
            word + ENTER,
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                if word & REPORTING != 0 {
                    cell.count_change(word + ENTER);
                }
                return Counted::Here;
            }
            Err(now) => word = now,
        }
    }
}

/// Counts an exit in `shard` if it is open and above its floor, and if it is armed for
/// predicate waiters, only if `count_armed`.
#[inline(always)]
pub(super) fn exit(shard: &Shard, count_armed: bool) -> Exited {
    let cell = &**shard;
    // Relaxed: a first guess, which the swap checks.
    let mut word = cell.word.load(Ordering::Relaxed);
    loop {
        if word & (CLOSED | ARMED) != 0 {
            return if word & CLOSED != 0 {
                Exited::Closed
            } else if count_armed {
                exit_armed(cell)
            } else {
                Exited::Armed
            };
        }
        if word < IN_FLIGHT_ONE {
            return Exited::Floor;
        }
        // Release: everything the request did happens-before the fold that closes this
        // shard (its swap is Acquire), and so before any waiter that reads the word the
        // fold writes. Acquire: as for an entry, so that a read after it on this thread sees
        // this opening, and its exit.
        match cell.word.compare_exchange_weak(
            word,
            word - IN_FLIGHT_ONE,
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                if word & REPORTING != 0 {
                    cell.count_change(word - IN_FLIGHT_ONE);
                }
                return Exited::Here;
            }
            Err(now) => word = now,
        }
    }
}

/// `enter` in a shard armed for predicate waiters: counts the entry and disarms the shard in
/// one swap, unless it closed or filled meanwhile.
#[cold]
fn enter_armed(cell: &Cell) -> Counted {
    // Acquire: as in `enter`.
    match change_armed(
        cell,
        |word| word & (CLOSED | FULL) != 0,
        |word| word + ENTER,
        Ordering::Acquire,
    ) {
        Ok(word) if word & ARMED != 0 => Counted::Disarmed,
        Ok(_) => Counted::Here,
        Err(word) if word & CLOSED != 0 => Counted::Closed,
        Err(_) => Counted::Full,
    }
}

/// `exit` in a shard armed for predicate waiters: as `enter_armed`.
#[cold]
fn exit_armed(cell: &Cell) -> Exited {
    // AcqRel: as in `exit`.
    let refused = |word: u64| word & CLOSED != 0 || word < IN_FLIGHT_ONE;
    match change_armed(cell, refused, |word| word - IN_FLIGHT_ONE, Ordering::AcqRel) {
        Ok(word) if word & ARMED != 0 => Exited::Disarmed,
        Ok(_) => Exited::Here,
        Err(word) if word & CLOSED != 0 => Exited::Closed,
        Err(_) => Exited::Floor,
    }
}

/// Swaps `cell`'s word for `next` of it, with `ARMED` cleared, unless `refused` of it: the
/// word replaced, or the word that refused the change.
#[inline(always)]
fn change_armed(
    cell: &Cell,
    refused: impl Fn(u64) -> bool,
    next: impl Fn(u64) -> u64,
    success: Ordering,
) -> Result<u64, u64> {
    // Relaxed: a first guess, which the swap checks.
    let mut word = cell.word.load(Ordering::Relaxed);
    loop {
        if refused(word) {
            return Err(word);
        }
        // `success` is the caller's ordering, which is also at least Acquire: the change that
        // clears an arm pairs with the Release of that arming (`Shards::arm`), so that the
        // caller's look at the pool's word sees the flag the arming set there, or a later
        // value.
        match cell
            .word
            .compare_exchange_weak(word, next(word) & !ARMED, success, Ordering::Relaxed)
        {
            Ok(_) => {
                if word & REPORTING != 0 {
                    cell.count_change(next(word));
                }
                return Ok(word);
            }
            Err(now) => word = now,
        }
    }
}

impl Cell {
    /// Reports every `REPORT_EVERY`th change, given the word this change wrote. Twice the
    /// entries less the held field grows by exactly one with each entry and each exit, so it
    /// is a change counter that needs no room of its own in the word.
    ///
    /// In a shard that several threads share, it also notes this thread's change (see
    /// `Cell::reports`).
    #[inline(always)]
    fn count_change(&self, word: u64) {
        // Relaxed: a thread that sees a raised mask late reports a little early, and leaves a
        // few of its changes unnoted, after which its reader reads afresh where it could have
        // reused a reading (see `own_changes`), which is always correct.
        let reports = self.reports.load(Ordering::Relaxed);
        if changes(word) & reports == 0 {
            self.report();
        }
        if reports != REPORT_EVERY - 1 {
            note_own_change(self);
        }
    }

    /// How often the pool has moved (see `Shards::moved`), found through this shard.
    #[inline(always)]
    pub(super) fn moved(&self) -> u64 {
        // Relaxed: a check, not a read of data. A report seen late lets a few more changes by,
        // as the bound allows; a switch is checked again after the reader's load of its own
        // word, behind an Acquire fence (`State::reuse`).
        self.moved.load(Ordering::Relaxed)
    }

    /// Whether several threads count in this shard (see `Cell::reports`).
    #[inline(always)]
    pub(super) fn is_shared(&self) -> bool {
        // Relaxed: the caller has loaded the word with Acquire (or fenced) first: see
        // `share_if_second`.
        self.reports.load(Ordering::Relaxed) != REPORT_EVERY - 1
    }

    /// Spaces this shard's reports for this thread too, if it is not the first to count in
    /// it (see `Cell::reports`), before the thread's first change here.
    fn share_if_second(&self) {
        let index = crate::loom::worker_index();
        if index < shard_count() {
            return;
        }
        // This thread is at least the shard's `sharers`th.
        let sharers = (index / shard_count()) as u64 + 1;
        let reports = REPORT_EVERY * sharers.min(MAX_SHARERS).next_power_of_two() - 1;
        // Relaxed, then a Release fence before every change this thread makes here: a reader
        // that loads this word (Acquire) and sees one of those changes sees the raised mask
        // too, and so never takes this thread's change for its own.
        if self.reports.load(Ordering::Relaxed) < reports {
            self.reports.fetch_max(reports, Ordering::Relaxed);
        }
        fence(Ordering::Release);
    }

    #[cold]
    fn report(&self) {
        // Relaxed: a hint that readings kept elsewhere are getting old; it orders nothing,
        // and a reader that sees it late misses a few more changes, as its bound allows.
        self.moved.fetch_add(1, Ordering::Relaxed);
    }
}

// What this thread itself counted while its pool was reporting: the shard (which names the
// pool too, a thread's shard of a pool being fixed) and how many changes in a row it counted
// there. A shard shared by several threads cannot tell a reader whether the reader counted
// anything, so the reader asks this (`State::read_near`).
#[cfg(not(loom))]
std::thread_local!(static OWN: std::cell::Cell<(usize, u64)> = const { std::cell::Cell::new((0, 0)) });
#[cfg(loom)]
loom::thread_local!(static OWN: std::cell::Cell<(usize, u64)> = std::cell::Cell::new((0, 0)));

#[inline(always)]
fn note_own_change(cell: &Cell) {
    let at = cell as *const Cell as usize;
    OWN.with(|own| {
        let (shard, changes) = own.get();
        own.set((at, if shard == at { changes + 1 } else { 1 }));
    });
}

/// How many changes this thread has counted in `shard` since it last counted in another:
/// 0 if its last change was elsewhere (or it never counted while reporting).
#[inline(always)]
pub(super) fn own_changes(shard: &Shard) -> u64 {
    let at = &**shard as *const Cell as usize;
    let (last, changes) = OWN.with(std::cell::Cell::get);
    if last == at {
        changes
    } else {
        0
    }
}

/// The word a shard's change wrote, as a change count: see `Cell::count_change`.
#[inline(always)]
pub(super) fn changes(word: u64) -> u64 {
    (word & ENTRIES_MASK).wrapping_sub(word >> IN_FLIGHT_SHIFT)
}

impl Shards {
    /// Closed shards, one per worker of this machine, doubled so that a few extra threads
    /// (the blocking pool, the main thread) rarely share one with a worker.
    pub(super) fn new() -> Self {
        let moved: &'static CachePadded<AtomicU64> =
            Box::leak(Box::new(CachePadded::new(AtomicU64::new(0))));
        let cells: Box<[Shard]> = (0..shard_count())
            .map(|_| {
                CachePadded::new(Cell {
                    word: AtomicU64::new(CLOSED),
                    moved,
                    reports: AtomicU64::new(REPORT_EVERY - 1),
                })
            })
            .collect();
        Self {
            cells: Box::leak(cells),
            moved,
        }
    }

    /// This thread's shard.
    fn local(&self) -> &'static Shard {
        // The length is a power of two.
        &self.cells[crate::loom::worker_index() & (self.cells.len() - 1)]
    }

    /// How many shards there are: what the allotments are divided by.
    pub(super) fn len(&self) -> u64 {
        self.cells.len() as u64
    }

    /// Closes every shard and returns what they held, less the `allotment` each was opened
    /// with. The caller holds the pool's mode lock and has seen the shards open.
    pub(super) fn close(&self, allotment: u64) -> Folded {
        let mut folded = Folded {
            entries: 0,
            in_flight: 0,
        };
        for shard in self.cells.iter() {
            // AcqRel: Acquire so that every exit counted here happens-before the fold's write
            // of the word; Release orders the close after the caller's earlier writes.
            let word = shard.word.swap(CLOSED, Ordering::AcqRel);
            debug_assert_eq!(word & CLOSED, 0, "closing a closed shard");
            // The entries cap keeps the sum below 2^31.
            folded.entries += entries(word) as u32;
            folded.in_flight += held(word) - allotment as i64;
        }
        folded
    }

    /// What the shards hold, less the `allotment` they were opened with, read one by one while
    /// they stay open: a sum that is exact only if nothing enters or leaves meanwhile (see
    /// `State::read_shared`).
    pub(super) fn sum(&self, allotment: u64, noted: Option<&Shard>) -> Summed {
        let mut summed = Summed {
            entries: 0,
            in_flight: 0,
            noted: 0,
        };
        for shard in self.cells.iter() {
            // Acquire: pairs with the Release exits, so requests seen gone have finished.
            let word = shard.word.load(Ordering::Acquire);
            summed.entries += entries(word);
            summed.in_flight += held(word) - allotment as i64;
            if noted.is_some_and(|noted| std::ptr::eq(noted, shard)) {
                summed.noted = word;
            }
        }
        summed
    }

    /// Arms every shard for predicate waiters: the next entry or exit in each says so. The
    /// caller holds the pool's mode lock, has seen the shards open, and has set `CHANGED` in
    /// the word.
    pub(super) fn arm(&self) {
        for shard in self.cells.iter() {
            // Release: pairs with the Acquire of the change that clears it, which then sees
            // `CHANGED` (set before this) when it looks at the word, or a later value.
            shard.word.fetch_or(ARMED, Ordering::Release);
        }
    }

    /// Makes every shard count its changes towards reports from now on, open or not (an
    /// opening carries it on). The caller holds the pool's mode lock.
    pub(super) fn start_reporting(&self) {
        for shard in self.cells.iter() {
            // Relaxed: an entry or exit that loaded the word before this fails its swap and
            // sees the bit; a reader keeps a reading only after this returns (in program
            // order, under the mode lock).
            shard.word.fetch_or(REPORTING, Ordering::Relaxed);
        }
    }

    /// How often the pool has moved so far (see `Shards::moved`).
    pub(super) fn moved(&self) -> u64 {
        // Relaxed: see `Cell::moved`.
        self.moved.load(Ordering::Relaxed)
    }

    /// Records a move that is not a report: a switch beginning, a cancellation or a refusal.
    /// The caller holds the lock that serialises its kind, and fences (Release) before
    /// changing what readers read.
    pub(super) fn note_move(&self) {
        // Relaxed: ordered for readers by the caller's seqlock step that follows (its Release
        // fence), which a reader's Acquire fence after its loads pairs with.
        self.moved.fetch_add(1, Ordering::Relaxed);
    }

    /// Puts this thread's shard at its cap, as if `ENTRIES_AT_CAP` requests had entered and
    /// were in flight.
    #[cfg(all(test, not(loom)))]
    pub(super) fn fill_local_for_test(&self) {
        let word = (ENTRIES_CAP * ENTER + UNFLOORED * IN_FLIGHT_ONE) & !CLOSED;
        // The test's own three entries are replaced: they were in this shard too.
        self.local().word.store(word, Ordering::Relaxed);
    }

    /// Opens every shard, empty but for its `allotment`, and `armed` if predicate waiters are
    /// (`CHANGED` was in the word that `SHARDED` was set in). The caller holds the pool's mode
    /// lock, has set `SHARDED` in the word, and has seen the shards closed.
    pub(super) fn open(&self, allotment: u64, reporting: bool, armed: bool) {
        let word = (allotment * IN_FLIGHT_ONE)
            | if reporting { REPORTING } else { 0 }
            | if armed { ARMED } else { 0 };
        for shard in self.cells.iter() {
            // Release: pairs with the Acquire of the entries and exits that find it open, so
            // that they see `SHARDED`, set before this, in the word (see `enter`). A closed
            // shard holds nothing and nobody writes it; the next fold reads it under the mode
            // lock, after this thread's release of it.
            shard.word.store(word, Ordering::Release);
        }
    }
}

/// The entries field: bits 1 to 20 (the cap is 2^19).
const ENTRIES_MASK: u64 = (FULL << 1) - ENTRY_ONE;

/// A shard word's entries since the shards opened.
#[inline(always)]
pub(super) fn entries(word: u64) -> u64 {
    (word & ENTRIES_MASK) >> 1
}

/// A shard word's held field: its count plus its allotment, never below zero.
#[inline(always)]
pub(super) fn held(word: u64) -> i64 {
    (word >> IN_FLIGHT_SHIFT) as i64
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
        shards.open(UNFLOORED, false, false);
        let shard = shards.local();
        assert_eq!(exit(shard, true), Exited::Here);
        assert_eq!(exit(shard, true), Exited::Here);
        assert_eq!(enter(shard, true), Counted::Here);
        let folded = shards.close(UNFLOORED);
        assert_eq!(
            folded,
            Folded {
                entries: 1,
                in_flight: -1
            }
        );
        assert_eq!(enter(shard, true), Counted::Closed);
        assert_eq!(
            exit(shard, true),
            Exited::Closed,
            "a closed shard takes no exit"
        );
    }

    #[test]
    fn a_shard_refuses_exits_beyond_its_allotment() {
        let shards = Shards::new();
        shards.open(1, false, false);
        let shard = shards.local();
        assert_eq!(exit(shard, true), Exited::Here, "the allotment");
        assert_eq!(exit(shard, true), Exited::Floor);
        assert_eq!(enter(shard, true), Counted::Here);
        assert_eq!(exit(shard, true), Exited::Here, "its own entry");
        assert_eq!(exit(shard, true), Exited::Floor);
        let folded = shards.close(1);
        assert_eq!(folded.in_flight, -1);
    }

    #[test]
    fn a_shard_at_a_cap_asks_for_a_fold() {
        let shards = Shards::new();
        shards.open(UNFLOORED, false, false);
        let shard = shards.local();
        shard
            .word
            .store((ENTRIES_CAP - 1) * ENTRY_ONE, Ordering::Relaxed);
        assert_eq!(
            enter(shard, true),
            Counted::Here,
            "the last entry below the cap"
        );
        assert_eq!(enter(shard, true), Counted::Full);
        // Exits are never capped.
        assert_eq!(exit(shard, true), Exited::Here);
    }

    #[test]
    fn the_shard_count_is_a_power_of_two() {
        let count = shard_count();
        assert!(count.is_power_of_two() && (2..=MAX_SHARDS).contains(&count));
    }
}
