//! The `Drain` handle and the pool's shared state.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{watch, Notify, OnceCell};
use tokio::time::Instant;

use crate::error::Rejected;
use crate::guard::{Guard, Tracked};
use crate::layer::DrainLayer;
use crate::record::Record;
use crate::shutdown::{Shutdown, ShutdownReport};
use crate::slot;
use crate::snapshot::{Phase, Snapshot};
use crate::state::{self, Entry, Exit, Outcome, Reading, State};
use crate::trace;
use crate::wait::{Draining, NextEmpty, Until, UntilEmpty};

/// A pool of in-flight work that any number of tasks can wait on.
///
/// Requests enter the pool through [`DrainLayer`] (or by hand with [`track`](Drain::track),
/// [`guard`](Drain::guard) and [`try_guard`](Drain::try_guard)) and leave it when they finish.
/// [`start_draining`](Drain::start_draining) makes the pool refuse new work, and
/// [`until_empty`](Drain::until_empty) waits for what is outstanding: together, a graceful
/// shutdown. The pool is reusable: [`resume`](Drain::resume) lets work in again.
///
/// `Drain` is a cheap handle: clones share one pool. Entering and leaving the pool costs one
/// atomic read-modify-write each, with no lock and no allocation; waiters cost nothing until
/// the change they wait for happens.
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
        if self.shared.state.detach() {
            slot::release(self.shared);
        }
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
                shared: slot::acquire(None),
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
    ///
    /// The child keeps this pool alive. Pool memory is recycled per parent, so making and
    /// dropping children costs no allocation once their number stops growing.
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
        let parent = self.shared();
        let child = Drain {
            handle: Arc::new(Handle {
                shared: slot::acquire(Some(parent)),
                _parent: Some(self.clone()),
            }),
        };
        parent.adopt(&child.handle);
        // After the adoption: a `start_draining` on the parent either sees the child in its
        // list or has set the flag this reads (both take the children lock), so a child can
        // never miss its parent's drain.
        if self.is_draining() && child.start_draining() {
            child.shared().set_drained_by_parent(true);
        }
        child
    }

    #[inline]
    pub(crate) fn shared(&self) -> &'static Shared {
        self.handle.shared
    }

    /// A [`DrainLayer`] that puts every request of the service it wraps in this pool.
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
    /// Panics if 2^27 (about 134 million) guards are alive at once. Like `Arc`'s reference
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
        match shared.state.enter() {
            Entry::Admitted if shared.parent.is_none() => Guard::new(shared),
            entry => Self::guard_slow(shared, entry),
        }
    }

    /// `guard` when someone must hear of the entry, the pool is full, or it has a parent.
    #[cold]
    fn guard_slow(shared: &'static Shared, entry: Entry) -> Guard {
        match shared.finish_entry(entry, Admission::Always) {
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
    /// [`Rejected`] while the pool is draining, or when 2^27 requests are already in flight.
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
        match shared.state.try_enter() {
            Entry::Admitted if shared.parent.is_none() => Ok(Guard::new(shared)),
            entry => Self::try_guard_slow(shared, entry),
        }
    }

    /// `try_guard` when someone must hear of the entry, it is refused, or it has a parent.
    #[cold]
    fn try_guard_slow(shared: &'static Shared, entry: Entry) -> Result<Guard, Rejected> {
        shared
            .finish_entry(entry, Admission::UnlessDraining)
            .map(|()| Guard::new(shared))
    }

    /// How many requests are in the pool now.
    ///
    /// # Examples
    ///
    /// ```
    /// let drain = tower_drain::Drain::new();
    /// let _guard = drain.guard();
    /// assert_eq!(drain.in_flight(), 1);
    /// ```
    pub fn in_flight(&self) -> usize {
        state::in_flight(self.shared().state.load())
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
        let shared = self.shared();
        let prev = {
            let mut counts = shared.lock_waiters();
            let prev = shared.state.start_draining();
            if prev & state::DRAINING == 0 {
                // While draining, the exit that empties the pool must publish `Drained`: an
                // internal empty-waiter, registered with the flip under the same lock.
                shared.add_waiter(&mut counts, WaiterKind::Empty);
            }
            prev
        };
        let began = prev & state::DRAINING == 0;
        if began {
            trace::info!(
                in_flight = state::in_flight(prev),
                "draining: refusing new work"
            );
            shared.draining.notify_waiters();
            if prev & state::CHANGE_WATCHERS != 0 {
                shared.changed.notify_waiters();
            }
            shared.refresh_phase();
            for child in shared.children() {
                if child.start_draining() {
                    child.shared().set_drained_by_parent(true);
                }
            }
        }
        began
    }

    /// Ends draining, so the pool accepts new work again. Returns `true` if it was draining.
    ///
    /// From any [`Phase`] it returns to [`Phase::Serving`]: from `Unready` the readiness check
    /// answers `200` again; from `Draining` new work is admitted while what was in flight
    /// goes on; from `Drained` the pool simply reopens. A later [`shutdown`](Drain::shutdown)
    /// runs the whole procedure afresh; one still running completes when the pool next empties
    /// or its deadline passes. Waiters are not disturbed: an [`until_empty`](Drain::until_empty) waiter still waits for
    /// the pool to empty, now with new work allowed in.
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
        let shared = self.shared();
        let (prev, was_unready) = {
            let mut counts = shared.lock_waiters();
            let prev = shared.state.resume();
            if prev & state::DRAINING != 0 {
                shared.remove_waiter(&mut counts, WaiterKind::Empty);
            }
            *shared.lock_unready_window() = None;
            // Release: pairs with the Acquire load in `phase`.
            (prev, shared.unready.swap(false, Ordering::AcqRel))
        };
        let was_draining = prev & state::DRAINING != 0;
        if was_draining && prev & state::CHANGE_WATCHERS != 0 {
            shared.changed.notify_waiters();
        }
        if was_draining || was_unready {
            // A later `shutdown()` runs the procedure afresh.
            *shared.lock_shutdown() = None;
            shared.refresh_phase();
        }
        if was_draining {
            // Resumed by hand: no longer the parent's to resume.
            shared.set_drained_by_parent(false);
            // Only the children this pool's drain began: one drained on its own stays so.
            for child in shared.children() {
                if child.shared().set_drained_by_parent(false) {
                    child.resume();
                }
            }
        }
        was_draining
    }

    /// Marks the pool unready: [`readiness`](Drain::readiness) answers `503` while requests
    /// are still served. The first step of [`shutdown`](Drain::shutdown);
    /// [`resume`](Drain::resume) undoes it.
    pub(crate) fn set_unready(&self, period: Duration) {
        let shared = self.shared();
        // Before the flag, so that whoever sees the flag finds the window too.
        *shared.lock_unready_window() = Some((Instant::now(), period));
        // AcqRel: pairs with the Acquire load in `phase`.
        let was_unready = shared.unready.swap(true, Ordering::AcqRel);
        if !was_unready {
            shared.refresh_phase();
        }
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
        self.shared().phase_tx.subscribe()
    }

    /// A graceful shutdown in one call: report unready, then refuse new work, then wait for
    /// what is in flight, at most for a grace period. Await it (or `.into_future()` it) for a
    /// [`ShutdownReport`].
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

    /// The shutdown in progress or finished since the last `resume`, shared by every caller.
    pub(crate) fn shutdown_cell(&self) -> Arc<OnceCell<ShutdownReport>> {
        self.shared()
            .lock_shutdown()
            .get_or_insert_with(Default::default)
            .clone()
    }

    /// Waits until the pool is empty: ready at once if it is empty now, otherwise the next time
    /// its count reaches zero (Twisted's `deferUntilEmpty()`).
    ///
    /// The waiter is registered when this is called, not when first polled, so a transition to
    /// empty in between is not missed. It completes when the count reaches zero even if new
    /// work has entered by the time it is polled. It does not start draining: call
    /// [`start_draining`](Drain::start_draining) first for a shutdown.
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
    /// entered and the pool has become empty again. An entry refused while draining counts
    /// for the instant it takes to refuse it, so it can complete this future too.
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
    /// of the pool while it waits: each entry, exit, refusal and change of draining. Changes
    /// that happen while the waiter is being woken are checked together, against the newest
    /// snapshot (as with `tokio::sync::watch`). While at least one such waiter exists every
    /// entry and exit wakes it; with none, they cost nothing extra.
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
    /// Hand it to a server's own graceful shutdown so the server stops accepting connections
    /// when the pool stops accepting requests, e.g.
    /// `axum::serve(listener, app).with_graceful_shutdown(drain.draining())`, or select on it
    /// in a long-lived handler to end a stream early.
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
    /// let server_stops = tokio::spawn(drain.draining());
    ///
    /// drain.start_draining();
    /// server_stops.await.unwrap();
    /// # }
    /// ```
    pub fn draining(&self) -> Draining {
        Draining::new(self.clone())
    }

    /// The pool's counters, read at one moment.
    ///
    /// `started == completed + cancelled + in_flight` holds in every snapshot.
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
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::from_reading(&self.shared().state.read())
    }
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Drain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One load, so the two fields describe the same moment.
        let word = self.shared().state.load();
        f.debug_struct("Drain")
            .field("in_flight", &state::in_flight(word))
            .field("draining", &(word & state::DRAINING != 0))
            .finish()
    }
}

/// Registered waiters, by the flag that tells exits to wake them.
#[derive(Debug, Default)]
struct WaiterCounts {
    empty: usize,
    change: usize,
}

/// Whether an entry is refused while the pool drains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// `guard`: work that already exists.
    Always,
    /// `try_guard`: new work.
    UnlessDraining,
}

/// The shared state behind every clone of a [`Drain`] and every [`Guard`].
pub(crate) struct Shared {
    pub(crate) state: State,
    /// The parent pool, for a child: entries and exits are repeated there. Fixed for the life
    /// of this memory (recycled pools are reused only as children of the same parent memory),
    /// so reading it needs no synchronisation.
    pub(crate) parent: Option<&'static Shared>,
    /// Child pools, to drain and resume with this one. Touched only when children are made and
    /// when draining starts or ends.
    children: Mutex<Vec<Weak<Handle>>>,
    /// Set on a child while the drain of its parent, not its own, keeps it draining.
    drained_by_parent: AtomicBool,
    /// Guards the waiter counts, so a count and its flag in the word change together.
    waiters: Mutex<WaiterCounts>,
    /// The (extended) attempt count at the latest transition to empty published for waiters.
    emptied_at: AtomicU64,
    /// Woken when the count reaches zero while `EMPTY_WAITERS` is set.
    pub(crate) emptied: Notify,
    /// Woken on every change while `CHANGE_WATCHERS` is set.
    pub(crate) changed: Notify,
    /// Woken when draining begins.
    pub(crate) draining: Notify,
    /// Set from `Unready` until `resume`: the readiness check answers `503`.
    unready: AtomicBool,
    /// When the unready period began and how long it lasts, for gradual closing.
    unready_window: Mutex<Option<(Instant, Duration)>>,
    /// The phase as last published to `watch_phase` receivers.
    phase_tx: watch::Sender<Phase>,
    /// Requests recorded for the shutdown report by a `RecordRequestsLayer`.
    pub(crate) record: Record,
    /// The shutdown procedure in progress or done, so every `shutdown()` shares one outcome.
    shutdown: Mutex<Option<Arc<OnceCell<ShutdownReport>>>>,
}

/// Which kind of waiter registers, and so which flag it needs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WaiterKind {
    Empty,
    Change,
}

impl Shared {
    pub(crate) fn new(parent: Option<&'static Shared>) -> Self {
        Self {
            state: State::new(),
            parent,
            children: Mutex::new(Vec::new()),
            drained_by_parent: AtomicBool::new(false),
            waiters: Mutex::new(WaiterCounts::default()),
            emptied_at: AtomicU64::new(0),
            emptied: Notify::new(),
            changed: Notify::new(),
            draining: Notify::new(),
            unready: AtomicBool::new(false),
            unready_window: Mutex::new(None),
            record: Record::default(),
            phase_tx: watch::Sender::new(Phase::Serving),
            shutdown: Mutex::new(None),
        }
    }

    /// Back to a new pool's state, before reuse. No handle, guard or waiter refers to `self`.
    pub(crate) fn reset(&self) {
        self.state.reset();
        // Relaxed: handed to the next owner through the slot list's mutex.
        self.emptied_at.store(0, Ordering::Relaxed);
        self.unready.store(false, Ordering::Relaxed);
        *self.lock_unready_window() = None;
        // A pool dropped while draining still counts its internal empty-waiter.
        *self.lock_waiters() = WaiterCounts::default();
        *self.lock_shutdown() = None;
        self.phase_tx.send_replace(Phase::Serving);
        self.lock_children().clear();
        self.record.clear();
        // Relaxed: handed to the next owner through the slot list's mutex.
        self.drained_by_parent.store(false, Ordering::Relaxed);
    }

    fn lock_unready_window(&self) -> MutexGuard<'_, Option<(Instant, Duration)>> {
        // No user code runs under this lock either.
        self.unready_window
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How far through its unready period the pool is, from 0 to 1; `None` when it is not
    /// unready. Only gradual closing asks, and only for HTTP/1.x requests.
    #[cfg(feature = "http")]
    pub(crate) fn unready_progress(&self) -> Option<f64> {
        // Acquire: pairs with the AcqRel swap in `set_unready`, so the window is there.
        if !self.unready.load(Ordering::Acquire) {
            return None;
        }
        let (start, period) = (*self.lock_unready_window())?;
        if period.is_zero() {
            return Some(1.0);
        }
        Some((start.elapsed().as_secs_f64() / period.as_secs_f64()).min(1.0))
    }

    fn lock_children(&self) -> MutexGuard<'_, Vec<Weak<Handle>>> {
        // No user code runs under this lock either.
        self.children.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a child to drain and resume with this pool, forgetting children that are gone.
    fn adopt(&self, child: &Arc<Handle>) {
        let mut children = self.lock_children();
        children.retain(|child| child.strong_count() > 0);
        children.push(Arc::downgrade(child));
    }

    /// The children alive now, as handles, so that no lock is held while they are drained.
    fn children(&self) -> Vec<Drain> {
        self.lock_children()
            .iter()
            .filter_map(Weak::upgrade)
            .map(|handle| Drain { handle })
            .collect()
    }

    /// Sets whether the parent's drain is what keeps this child draining; returns the old value.
    fn set_drained_by_parent(&self, by_parent: bool) -> bool {
        // AcqRel: a parent's `start_draining` and `resume` may race on one child; the swap
        // decides which of them owns the child's resume.
        self.drained_by_parent.swap(by_parent, Ordering::AcqRel)
    }

    /// Completes an entry into this pool, which `state` has already counted: wakes predicate
    /// waiters, undoes a refused entry, and repeats the entry in every ancestor, undoing this
    /// one if an ancestor refuses.
    pub(crate) fn finish_entry(
        &'static self,
        entry: Entry,
        admission: Admission,
    ) -> Result<(), Rejected> {
        match entry {
            Entry::Admitted => {}
            Entry::AdmittedChanged => self.changed.notify_waiters(),
            // `State::enter` never reports draining; `try_enter` does.
            Entry::Draining => {
                self.leave_here(Outcome::Refused);
                return Err(Rejected::draining());
            }
            Entry::Full => {
                self.leave_here(Outcome::Refused);
                return Err(Rejected::full());
            }
        }
        if let Some(parent) = self.parent {
            let entry = match admission {
                Admission::Always => parent.state.enter(),
                Admission::UnlessDraining => parent.state.try_enter(),
            };
            if let Err(rejected) = parent.finish_entry(entry, admission) {
                // Refused above: refused here too, so each pool's counts stay whole.
                self.leave_here(Outcome::Refused);
                return Err(rejected);
            }
        }
        Ok(())
    }

    fn lock_waiters(&self) -> MutexGuard<'_, WaiterCounts> {
        // No user code runs under this lock, so a poisoned lock still holds consistent counts.
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_shutdown(&self) -> MutexGuard<'_, Option<Arc<OnceCell<ShutdownReport>>>> {
        // No user code runs under this lock either.
        self.shutdown.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn phase(&self) -> Phase {
        // Acquire: pairs with the AcqRel swaps in `set_unready` and `resume`.
        Phase::of(self.state.load(), self.unready.load(Ordering::Acquire))
    }

    /// Publishes the current phase to `watch_phase` receivers if it changed. It reads the
    /// phase inside the channel's lock, so racing publishers can never leave a stale one.
    fn refresh_phase(&self) {
        let mut now = Phase::Serving;
        let changed = self.phase_tx.send_if_modified(|published| {
            now = self.phase();
            let changed = *published != now;
            *published = now;
            changed
        });
        if changed {
            trace::info!(
                phase = now.as_str(),
                in_flight = state::in_flight(self.state.load()),
                "phase changed"
            );
        }
    }

    /// Takes one request out of the pool, and out of every ancestor, and carries out what each
    /// exit requires.
    #[inline]
    pub(crate) fn leave(&'static self, outcome: Outcome) {
        // Read before leaving: the exit may recycle this memory (its parent stays the same).
        let parent = self.parent;
        self.leave_here(outcome);
        if let Some(parent) = parent {
            Self::leave_ancestors(parent, outcome);
        }
    }

    /// The rest of a child's exit, as a loop rather than a recursion, so that `leave` itself
    /// stays small enough to inline into every guard's drop.
    #[cold]
    fn leave_ancestors(mut shared: &'static Shared, outcome: Outcome) {
        loop {
            let parent = shared.parent;
            shared.leave_here(outcome);
            match parent {
                Some(parent) => shared = parent,
                None => break,
            }
        }
    }

    /// Takes one request out of this pool alone.
    #[inline]
    fn leave_here(&'static self, outcome: Outcome) {
        let exit = self.state.exit(outcome);
        if exit != Exit::NONE {
            self.after_exit(exit);
        }
    }

    #[cold]
    fn after_exit(&'static self, exit: Exit) {
        if let Some(at) = exit.emptied_at {
            // Release: pairs with the Acquire load in `emptied_since`; the exit's Release RMW
            // on the word already ordered the request's effects before this point.
            self.emptied_at.fetch_max(at, Ordering::Release);
            // After the publication, so a waiter that checks before it is woken by it.
            self.emptied.notify_waiters();
            // Draining pools register an empty-waiter, so this is where `Drained` begins.
            self.refresh_phase();
        }
        if exit.changed {
            self.changed.notify_waiters();
        }
        if exit.recycle {
            slot::release(self);
        }
    }

    /// Whether the pool has become empty at or after attempt `target`.
    pub(crate) fn emptied_since(&self, target: u64) -> bool {
        // Acquire: pairs with the Release `fetch_max` in `after_exit`.
        self.emptied_at.load(Ordering::Acquire) >= target
    }

    /// Registers a waiter and returns the reading at its registration point: every exit after
    /// that point sees the waiter's flag, and every exit before it is in the reading.
    pub(crate) fn register(&self, kind: WaiterKind) -> Reading {
        let mut counts = self.lock_waiters();
        self.add_waiter(&mut counts, kind);
        // A load after the flag is set (by us or, under this lock, by an earlier waiter).
        self.state.read()
    }

    /// Undoes one `register`.
    pub(crate) fn deregister(&self, kind: WaiterKind) {
        let mut counts = self.lock_waiters();
        self.remove_waiter(&mut counts, kind);
    }

    fn add_waiter(&self, counts: &mut WaiterCounts, kind: WaiterKind) {
        let (count, flag) = counts.slot(kind);
        *count += 1;
        if *count == 1 {
            self.state.set_flag(flag, true);
        }
    }

    fn remove_waiter(&self, counts: &mut WaiterCounts, kind: WaiterKind) {
        let (count, flag) = counts.slot(kind);
        debug_assert!(*count > 0, "removing a waiter that is not registered");
        *count -= 1;
        if *count == 0 {
            self.state.set_flag(flag, false);
        }
    }
}

impl WaiterCounts {
    fn slot(&mut self, kind: WaiterKind) -> (&mut usize, u64) {
        match kind {
            WaiterKind::Empty => (&mut self.empty, state::EMPTY_WAITERS),
            WaiterKind::Change => (&mut self.change, state::CHANGE_WATCHERS),
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}
