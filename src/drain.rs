//! The `Drain` handle: the public face of a pool. The pool itself lives in `pool`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

use crate::error::Rejected;
use crate::guard::{Guard, Tracked};
use crate::layer::DrainLayer;
use crate::pool::state::{self, Entry};
use crate::pool::{Admission, Shared};
use crate::shutdown::Shutdown;
use crate::snapshot::{Phase, Snapshot};
use crate::wait::{DrainStarted, NextEmpty, Until, UntilEmpty};

/// A pool of in-flight work that any number of tasks can wait on.
///
/// Requests enter the pool through [`DrainLayer`] (or by hand with [`track`](Drain::track),
/// [`guard`](Drain::guard) and [`try_guard`](Drain::try_guard)) and leave it when they finish.
/// [`start_draining`](Drain::start_draining) makes the pool refuse new work, and
/// [`until_empty`](Drain::until_empty) waits for what is outstanding: together, a graceful
/// shutdown. The pool is reusable: [`resume`](Drain::resume) lets work in again.
///
/// `Drain` is a cheap handle: clones share one pool. Entering and leaving the pool costs one
/// atomic read-modify-write each, with no lock and no allocation, and while the pool serves it
/// is on a cache line of the current thread's own, so workers never contend for it; waiters
/// cost nothing until the change they wait for happens.
///
/// # Examples
///
/// ```
/// use tower_drain::Drain;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let drain = Drain::new();
///
/// let guard = drain.try_guard().expect("not draining yet");
/// assert_eq!(drain.in_flight(), 1);
///
/// drain.start_draining();
/// assert!(drain.try_guard().is_err(), "new work is refused");
///
/// let waiter = tokio::spawn(drain.until_empty());
/// drop(guard); // the last piece of work finishes
/// waiter.await.unwrap();
/// assert_eq!(drain.in_flight(), 0);
/// # }
/// ```
#[derive(Clone)]
pub struct Drain {
    handle: Arc<Handle>,
}

/// Owns the pool's membership of the handle count: the pool is recycled once the last handle
/// and the last guard are gone.
struct Handle {
    shared: &'static Shared,
    /// A child pool keeps its parent alive: the child's requests are counted there too, so
    /// the parent's memory must not be recycled into an unrelated pool while the child lives.
    /// Dropped after `Drop::drop` has detached the child.
    _parent: Option<Drain>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.release_handle();
    }
}

impl Drain {
    /// Creates an empty pool that is not draining.
    ///
    /// # Examples
    ///
    /// ```
    /// let drain = tower_drain::Drain::new();
    /// assert_eq!(drain.in_flight(), 0);
    /// assert!(!drain.is_draining());
    /// ```
    pub fn new() -> Self {
        Self {
            handle: Arc::new(Handle {
                shared: Shared::acquire(None),
                _parent: None,
            }),
        }
    }

    /// A child pool: its requests are counted in this pool too, it can drain on its own (a
    /// route group being retired, one listener of several), and draining this pool drains it.
    ///
    /// - Work entering the child enters every ancestor as well, and is refused if the child or
    ///   any ancestor is draining. It costs one more atomic read-modify-write on entry and on
    ///   exit per level.
    /// - [`start_draining`](Drain::start_draining) on this pool starts draining every child
    ///   (including children made later, while it drains), and [`resume`](Drain::resume) on
    ///   this pool resumes the children it drained; a child drained on its own stays drained.
    /// - The child's waiters, snapshot and phase describe the child alone.
    /// - A request the child admits an instant before this pool begins draining may still be
    ///   refused here: it is answered with the refusal, and counts in the child as started and
    ///   completed, here as rejected, so that neither pool's `started` ever goes back.
    ///
    /// Draining, resuming and making children are serialised per pool, so however they race,
    /// a child is never left draining under a serving parent by its parent's drain. The child
    /// keeps this pool alive. Pool memory is shared by roots and children alike and reused, so
    /// making and dropping children costs no allocation once their number stops growing, and
    /// making one costs the same however many are alive.
    ///
    /// Layer a route group with the child's [`http_layer`](Drain::http_layer) *instead of*
    /// the parent's, not beneath it: a request that passes both layers enters the parent
    /// twice.
    ///
    /// # Examples
    ///
    /// ```
    /// let server = tower_drain::Drain::new();
    /// let admin = server.child();
    ///
    /// let guard = admin.try_guard().unwrap();
    /// assert_eq!((admin.in_flight(), server.in_flight()), (1, 1));
    ///
    /// admin.start_draining(); // retire the admin routes alone
    /// assert!(admin.try_guard().is_err());
    /// assert!(server.try_guard().is_ok());
    ///
    /// admin.resume();
    /// server.start_draining(); // the whole server: the child drains too
    /// assert!(admin.is_draining());
    /// # drop(guard);
    /// ```
    pub fn child(&self) -> Drain {
        Drain {
            handle: Arc::new(Handle {
                shared: Shared::acquire(Some(self.shared())),
                _parent: Some(self.clone()),
            }),
        }
    }

    #[inline]
    pub(crate) fn shared(&self) -> &'static Shared {
        self.handle.shared
    }

    /// A [`DrainLayer`] that puts every request of the service it wraps in this pool.
    ///
    /// This is the protocol-agnostic layer: it counts a request until its response future
    /// completes, and refuses with a [`Rejected`] error. **For HTTP services (axum, hyper,
    /// tonic) use [`http_layer`](Drain::http_layer) instead**: it counts each request until its
    /// response *body* ends, and answers a refusal with `503` (gRPC: `UNAVAILABLE`). With this
    /// layer, axum's `Router::layer` does not compile (its error type is `BoxError`, not
    /// `Infallible`: "`Infallible: From<Box<dyn Error + Send + Sync>>` is not satisfied"), and
    /// tonic turns each refusal into `Internal "h2 protocol error"` rather than
    /// `UNAVAILABLE`.
    ///
    /// # Examples
    ///
    /// ```
    /// use tower::ServiceBuilder;
    /// use tower_drain::Drain;
    ///
    /// let drain = Drain::new();
    /// let service = ServiceBuilder::new()
    ///     .layer(drain.layer())
    ///     .service_fn(|name: &'static str| async move {
    ///         Ok::<_, std::convert::Infallible>(format!("hello, {name}"))
    ///     });
    /// # drop(service);
    /// ```
    pub fn layer(&self) -> DrainLayer {
        DrainLayer::new(self.clone())
    }

    /// Counts `future` in the pool until it completes or is dropped, like Twisted's
    /// `DeferredPool.add`.
    ///
    /// The future is counted even while the pool is draining: it is work that already exists.
    /// Dropped before it completes, it is counted as cancelled in [`snapshot`](Drain::snapshot).
    /// The future's output is passed through unchanged.
    ///
    /// # Panics
    ///
    /// As [`guard`](Drain::guard).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let drain = tower_drain::Drain::new();
    /// let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
    ///
    /// let task = tokio::spawn(drain.track(async move { rx.await.unwrap() * 2 }));
    /// assert_eq!(drain.in_flight(), 1);
    ///
    /// tx.send(21).unwrap();
    /// assert_eq!(task.await.unwrap(), 42);
    /// assert_eq!(drain.in_flight(), 0);
    /// # }
    /// ```
    pub fn track<F: Future>(&self, future: F) -> Tracked<F> {
        Tracked::new(future, self.guard())
    }

    /// Counts one piece of work in the pool until the returned [`Guard`] is dropped.
    ///
    /// It succeeds while draining: use it for work that must be finished once begun, such as
    /// a response being written or a task spawned by an admitted request. For new work, use
    /// [`try_guard`](Drain::try_guard).
    ///
    /// # Panics
    ///
    /// Panics if 2^26 (about 67 million) guards are alive at once. Like `Arc`'s reference
    /// count overflow, this can only happen when guards are leaked with `std::mem::forget`.
    ///
    /// # Examples
    ///
    /// ```
    /// let drain = tower_drain::Drain::new();
    /// drain.start_draining();
    ///
    /// let guard = drain.guard();
    /// assert_eq!(drain.in_flight(), 1);
    /// drop(guard);
    /// assert_eq!(drain.in_flight(), 0);
    /// ```
    #[inline]
    pub fn guard(&self) -> Guard {
        let shared = self.shared();
        // Only a root's shards open: counted there, the request has no parent to enter.
        if shared.state.enter_shard() {
            return Guard::new(shared);
        }
        Self::guard_exact(shared)
    }

    /// `guard` when this thread's shard did not count it: through the word, and the parents'.
    #[cold]
    fn guard_exact(shared: &'static Shared) -> Guard {
        if !shared.is_root() {
            return Self::guard_slow(shared, None);
        }
        // The shard once more, if it is open: an entry that found it armed for predicate
        // waiters counts there now, and wakes them.
        match shared.state.enter_with(false, true) {
            Entry::Admitted => Guard::new(shared),
            entry => Self::guard_slow(shared, Some(entry)),
        }
    }

    /// `guard` when someone must hear of the entry, the pool is full, or it has a parent (then
    /// nothing has been entered yet: `entry` is `None`).
    #[cold]
    fn guard_slow(shared: &'static Shared, entry: Option<Entry>) -> Guard {
        let entered = match entry {
            Some(entry) => shared.finish_entry(entry, Admission::Always),
            None => shared.enter_tree(Admission::Always),
        };
        match entered {
            Ok(()) => Guard::new(shared),
            // `Admission::Always` ignores draining, so only a full pool refuses here.
            Err(_) => panic!(
                "tower-drain: {} guards are alive at once; are guards being leaked?",
                state::MAX_IN_FLIGHT
            ),
        }
    }

    /// Counts one piece of new work in the pool, unless the pool is draining.
    ///
    /// The check and the count are one atomic step: once [`start_draining`] has returned and
    /// the pool has been seen empty, no `try_guard` can succeed, however they race.
    ///
    /// # Errors
    ///
    /// [`Rejected`] while the pool is draining, or when 2^26 requests are already in flight.
    /// Each refusal is counted in [`Snapshot::rejected`].
    ///
    /// # Examples
    ///
    /// ```
    /// let drain = tower_drain::Drain::new();
    /// let guard = drain.try_guard().unwrap();
    ///
    /// drain.start_draining();
    /// let err = drain.try_guard().unwrap_err();
    /// assert_eq!(err.to_string(), "service is draining");
    /// # drop(guard);
    /// ```
    ///
    /// [`start_draining`]: Drain::start_draining
    #[inline]
    pub fn try_guard(&self) -> Result<Guard, Rejected> {
        let shared = self.shared();
        // Only a root's shards open, and only while it serves: counted there, the request has
        // no parent to enter and the pool is not draining.
        if shared.state.enter_shard() {
            return Ok(Guard::new(shared));
        }
        Self::try_guard_exact(shared)
    }

    /// `try_guard` when this thread's shard did not count it: through the word, which decides
    /// admission exactly, and the parents'.
    #[cold]
    fn try_guard_exact(shared: &'static Shared) -> Result<Guard, Rejected> {
        if !shared.is_root() {
            return Self::try_guard_slow(shared, None);
        }
        // The shard once more: as in `guard_exact`.
        match shared.state.enter_with(true, true) {
            Entry::Admitted => Ok(Guard::new(shared)),
            entry => Self::try_guard_slow(shared, Some(entry)),
        }
    }

    /// `try_guard` when someone must hear of the entry, it is refused, or it has a parent
    /// (then nothing has been entered yet: `entry` is `None`).
    #[cold]
    fn try_guard_slow(shared: &'static Shared, entry: Option<Entry>) -> Result<Guard, Rejected> {
        match entry {
            Some(entry) => shared.finish_entry(entry, Admission::UnlessDraining),
            None => shared.enter_tree(Admission::UnlessDraining),
        }
        .map(|()| Guard::new(shared))
    }

    /// How many requests are in the pool now.
    ///
    /// Cheap enough to call inside every request (a load-shedding check, an `X-In-Flight`
    /// header), on every thread at once: it never stops the per-thread counting, and a thread
    /// that reads again and again inside its requests reuses what it read last. What a read
    /// may show:
    ///
    /// - On a thread that has not entered or left the pool since its last read (a test after
    ///   joining a task, a metrics loop), it is the pool's count at some moment of the read:
    ///   exact when no request enters or leaves during the read, a request in flight
    ///   throughout always in it, one that enters or leaves during it in or not. Such a read
    ///   looks at every worker's
    ///   counter, which moves their cache lines, so on a thread that does not serve the pool
    ///   two of them are at least a microsecond apart: a read sooner than that after the
    ///   thread's last one waits (spinning) the rest of it. A loop that reads as fast as it
    ///   can then costs the workers next to nothing; any sampling interval never waits.
    /// - On a thread that has (a worker serving requests), it counts that thread's own
    ///   requests exactly, and may leave out the latest entries and exits of other threads:
    ///   about 1,024 at most per thread since its last fresh read, after which it reads afresh
    ///   (with more threads than per-thread counters, 2 per core, up to 8,192 per counter
    ///   that several threads share).
    /// - While draining, it reads one exact word.
    ///
    /// See [`snapshot`](Self::snapshot) for the rest of what a reading promises.
    ///
    /// # Examples
    ///
    /// ```
    /// let drain = tower_drain::Drain::new();
    /// let _guard = drain.guard();
    /// assert_eq!(drain.in_flight(), 1);
    /// ```
    #[inline]
    pub fn in_flight(&self) -> usize {
        self.shared().state.in_flight_near()
    }

    /// Whether the pool is draining, that is refusing new work.
    ///
    /// # Examples
    ///
    /// ```
    /// let drain = tower_drain::Drain::new();
    /// assert!(!drain.is_draining());
    /// drain.start_draining();
    /// assert!(drain.is_draining());
    /// ```
    pub fn is_draining(&self) -> bool {
        self.shared().state.load() & state::DRAINING != 0
    }

    /// Begins draining: from now on [`try_guard`](Drain::try_guard) and [`DrainLayer`] refuse
    /// new work, while work already in the pool runs to its end.
    ///
    /// Returns `true` for the call that began draining and `false` if the pool was already
    /// draining, so it is idempotent and racing callers can tell who began it. Waking
    /// [`draining`](Drain::draining) waiters happens here. It does not wait: await
    /// [`until_empty`](Drain::until_empty) for that.
    ///
    /// # Examples
    ///
    /// ```
    /// let drain = tower_drain::Drain::new();
    /// assert!(drain.start_draining());
    /// assert!(!drain.start_draining(), "already draining");
    /// ```
    pub fn start_draining(&self) -> bool {
        self.shared().start_draining()
    }

    /// Ends draining, so the pool accepts new work again. Returns `true` if it was draining.
    ///
    /// From any [`Phase`] it returns to [`Phase::Serving`]: from `Unready` the readiness check
    /// answers `200` again; from `Draining` new work is admitted while what was in flight
    /// goes on; from `Drained` the pool simply reopens. A [`shutdown`](Drain::shutdown) still
    /// running ends at once, whatever step it is at, with a report whose
    /// [`resumed`](crate::ShutdownReport::resumed) is `true`: resumed during the unready
    /// period, it never starts draining. A later `shutdown` runs the whole procedure afresh.
    /// Children that this pool's drain began draining are resumed too. Waiters are not
    /// disturbed: an [`until_empty`](Drain::until_empty) waiter still waits for the pool to
    /// empty, now with new work allowed in.
    ///
    /// # Examples
    ///
    /// ```
    /// let drain = tower_drain::Drain::new();
    /// drain.start_draining();
    /// assert!(drain.try_guard().is_err());
    ///
    /// assert!(drain.resume());
    /// assert!(drain.try_guard().is_ok());
    /// ```
    pub fn resume(&self) -> bool {
        self.shared().resume()
    }

    /// Where the pool is in a graceful shutdown now.
    ///
    /// # Examples
    ///
    /// ```
    /// let drain = tower_drain::Drain::new();
    /// assert_eq!(drain.phase(), tower_drain::Phase::Serving);
    /// drain.start_draining();
    /// assert_eq!(drain.phase(), tower_drain::Phase::Drained, "draining and empty");
    /// ```
    pub fn phase(&self) -> Phase {
        self.shared().phase()
    }

    /// A receiver that sees every change of [`phase`](Drain::phase) without polling: to set
    /// a gRPC health status to `NOT_SERVING` when `Unready` begins, say.
    ///
    /// `Drained` is published when the pool empties while draining. A [`guard`](Drain::guard)
    /// taken while `Drained` makes [`phase`](Drain::phase) `Draining` again at once; the
    /// receiver sees that at the next change.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use tower_drain::{Drain, Phase};
    ///
    /// let drain = Drain::new();
    /// let mut phases = drain.watch_phase();
    /// assert_eq!(*phases.borrow(), Phase::Serving);
    ///
    /// drain.start_draining();
    /// phases.changed().await.unwrap();
    /// assert_eq!(*phases.borrow_and_update(), Phase::Drained);
    /// # }
    /// ```
    pub fn watch_phase(&self) -> watch::Receiver<Phase> {
        self.shared().watch_phase()
    }

    /// A graceful shutdown in one call: report unready, then refuse new work, then wait for
    /// what is in flight, at most for a grace period. Await it (or `.into_future()` it) for a
    /// [`ShutdownReport`](crate::ShutdownReport).
    ///
    /// See [`Shutdown`] for the steps, the options and what happens at the deadline.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let drain = tower_drain::Drain::new();
    /// let report = drain
    ///     .shutdown()
    ///     .unready_for(Duration::from_secs(5))
    ///     .grace(Duration::from_secs(30))
    ///     .await;
    /// assert!(!report.timed_out());
    /// # }
    /// ```
    pub fn shutdown(&self) -> Shutdown {
        Shutdown::new(self.clone())
    }

    /// Waits until the pool is empty: ready at once if it is empty now, otherwise the next time
    /// its count reaches zero (Twisted's `deferUntilEmpty()`).
    ///
    /// The waiter is registered when this is called, not when first polled, so a transition to
    /// empty in between is not missed. It completes when the count reaches zero even if new
    /// work has entered by the time it is polled. It does not start draining: call
    /// [`start_draining`](Drain::start_draining) first for a shutdown.
    ///
    /// While it waits behind requests in flight, the requests go on counting per thread, as
    /// with no waiter; once the pool has emptied, it costs them nothing more, polled or not.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future unregisters it; it leaves nothing behind and costs nothing later.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let drain = tower_drain::Drain::new();
    /// drain.until_empty().await; // empty now: ready at once
    ///
    /// let guard = drain.guard();
    /// let waiter = tokio::spawn(drain.until_empty());
    /// drop(guard);
    /// waiter.await.unwrap();
    /// # }
    /// ```
    pub fn until_empty(&self) -> UntilEmpty {
        UntilEmpty::new(self.clone())
    }

    /// Waits for the pool's next transition to empty, even if it is empty now (Twisted's
    /// `deferUntilEmpty(testImmediately=False)`).
    ///
    /// If the pool is empty when this is called, the future completes once some work has
    /// entered and the pool has become empty again. A refused entry is never counted, so it
    /// cannot complete this future.
    ///
    /// # Cancel safety
    ///
    /// As [`until_empty`](Drain::until_empty).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let drain = tower_drain::Drain::new();
    /// let next = tokio::spawn(drain.next_empty());
    ///
    /// let guard = drain.guard(); // the pool fills...
    /// drop(guard); // ...and empties again
    /// next.await.unwrap();
    /// # }
    /// ```
    pub fn next_empty(&self) -> NextEmpty {
        NextEmpty::new(self.clone())
    }

    /// Waits until `predicate` holds for the pool's [`Snapshot`].
    ///
    /// The predicate is checked when the future is first polled and again after every change
    /// of the pool while it waits: each entry, exit, refusal and change of draining. The first
    /// change after a check wakes the waiter, and the changes that come until it is polled
    /// again are checked together, against the newest snapshot (as with
    /// `tokio::sync::watch`). So a waiter costs the requests one wake-up per check, however
    /// busy the pool: each worker's first change after a check looks at one shared word,
    /// and every other change counts per thread as if the waiter were not there; once it is
    /// dropped, the next change finds nobody to wake. Each poll checks at most once: woken
    /// again by then (under steady traffic, always), it asks to be polled again and returns
    /// `Pending`, so it never holds its thread for as long as requests keep coming. On a
    /// thread that does not serve the pool, checks are paced as its reads are (see
    /// [`in_flight`](Self::in_flight)).
    ///
    /// # Cancel safety
    ///
    /// As [`until_empty`](Drain::until_empty).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let drain = tower_drain::Drain::new();
    /// let guards: Vec<_> = (0..3).map(|_| drain.guard()).collect();
    ///
    /// let two_done = tokio::spawn(drain.until(|s| s.completed >= 2));
    /// drop(guards);
    /// two_done.await.unwrap();
    /// # }
    /// ```
    pub fn until<P>(&self, predicate: P) -> Until<P>
    where
        P: FnMut(&Snapshot) -> bool,
    {
        Until::new(self.clone(), predicate)
    }

    /// Waits until draining begins: ready at once if it already has.
    ///
    /// Select on it in a long-lived handler to end a stream early. `tower_drain::serve` (feature
    /// `serve`) watches it to send HTTP/2 clients `GOAWAY`.
    ///
    /// It is *not* the signal for a server's own graceful shutdown: a server told to shut down
    /// when draining begins closes its listener then, so new clients are refused at the TCP
    /// level rather than answered with `503`, and it waits for its connections without a
    /// bound. To keep your server, wire it with [`Shutdown::run_server`], which tells it to
    /// close only once the pool is empty and bounds how long it takes; or use
    /// `tower_drain::serve`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves nothing behind.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let drain = tower_drain::Drain::new();
    /// let draining = tokio::spawn(drain.draining());
    ///
    /// drain.start_draining();
    /// draining.await.unwrap();
    /// # }
    /// ```
    pub fn draining(&self) -> DrainStarted {
        DrainStarted::new(self.clone())
    }

    /// The pool's counters.
    ///
    /// `started == completed + cancelled + in_flight` holds in every snapshot, and `started`,
    /// `completed`, `cancelled` and `rejected` never go backwards from one snapshot to a later
    /// one on the same thread (or to one on another thread that has not itself entered or
    /// left the pool since its last read). While the pool counts per thread (serving, nobody
    /// waiting for an exact count), a snapshot sums the per-thread counters without stopping
    /// them, so a metrics loop on another thread costs the request path next to nothing:
    /// its counts are the pool's at some moment of the read (exact when no request enters or
    /// leaves during it; one that does may be in it or not). Inside requests, a snapshot is as cheap as
    /// [`in_flight`](Self::in_flight), and may leave out the same changes of other threads;
    /// on a thread that does not serve the pool, snapshots are paced as `in_flight`'s reads
    /// are, a microsecond apart at least. While draining, it reads one exact word.
    ///
    /// # Examples
    ///
    /// ```
    /// let drain = tower_drain::Drain::new();
    /// let guard = drain.guard();
    /// drop(drain.track(async {})); // dropped before it completed
    /// drain.start_draining();
    /// assert!(drain.try_guard().is_err());
    ///
    /// let snapshot = drain.snapshot();
    /// assert_eq!(snapshot.in_flight, 1);
    /// assert_eq!(snapshot.started, 2);
    /// assert_eq!(snapshot.cancelled, 1);
    /// assert_eq!(snapshot.rejected, 1);
    /// assert!(snapshot.draining);
    /// # drop(guard);
    /// ```
    #[inline]
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::from_reading(&self.shared().state.read_near())
    }
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Drain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One load, so the two fields describe the same moment, and no fold: a `{:?}` in a
        // per-request log line must not stop the per-thread counting. While the pool counts
        // per thread the word's count is not the total, and `in_flight` is left out (shown as
        // `..`; `Drain::in_flight` gives it exactly).
        let word = self.shared().state.load();
        let mut debug = f.debug_struct("Drain");
        if word & state::SHARDED == 0 {
            debug
                .field("in_flight", &state::in_flight(word))
                .field("draining", &(word & state::DRAINING != 0))
                .finish()
        } else {
            debug
                .field("draining", &(word & state::DRAINING != 0))
                .finish_non_exhaustive()
        }
    }
}
