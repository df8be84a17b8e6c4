//! `Guard` and `Tracked`: membership of the pool.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;

use crate::pool::{Outcome, Shared};

/// One piece of work counted in a [`Drain`](crate::Drain)'s pool, until it is dropped.
///
/// Made by [`Drain::guard`](crate::Drain::guard) and [`Drain::try_guard`](crate::Drain::try_guard).
/// Dropping it counts the work as completed and, if it was the last, wakes the pool's empty
/// waiters. It is a single pointer; dropping it costs one atomic read-modify-write. It may be
/// moved to and dropped on any thread, and it keeps the pool alive even after every `Drain`
/// handle is gone.
///
/// # Examples
///
/// Keep a background task spawned by a request in the pool:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let drain = tower_drain::Drain::new();
/// let guard = drain.try_guard().expect("not draining");
/// let task = tokio::spawn(async move {
///     // ... work that a shutdown must wait for ...
///     drop(guard);
/// });
/// drain.start_draining();
/// drain.until_empty().await; // waits for the task
/// # task.await.unwrap();
/// # }
/// ```
#[must_use = "the work is counted only while the guard is alive"]
pub struct Guard {
    shared: &'static Shared,
}

impl Guard {
    /// Wraps a slot that `State::enter`/`try_enter` has already counted.
    #[inline]
    pub(crate) fn new(shared: &'static Shared) -> Self {
        Self { shared }
    }

    /// Leaves the pool with `outcome` rather than as completed.
    #[cold]
    pub(crate) fn release(self, outcome: Outcome) {
        let shared = self.shared;
        // The guard's own `Drop` would count a completion; this one is counted instead.
        std::mem::forget(self);
        shared.leave(outcome);
    }

    /// Whether the guard's pool is draining now.
    #[cfg(feature = "http")]
    #[inline]
    pub(crate) fn is_draining(&self) -> bool {
        self.shared.state.load() & crate::pool::state::DRAINING != 0
    }
}

/// A guard held by a future or body that may be dropped before it is done: dropped still
/// holding its guard, it counts the work as cancelled. `take` hands the guard over for a
/// normal release.
#[derive(Debug)]
pub(crate) struct CancelOnDrop {
    guard: Option<Guard>,
}

impl CancelOnDrop {
    #[inline]
    pub(crate) fn new(guard: Option<Guard>) -> Self {
        Self { guard }
    }

    #[inline]
    pub(crate) fn get(&self) -> Option<&Guard> {
        self.guard.as_ref()
    }

    #[inline]
    pub(crate) fn take(&mut self) -> Option<Guard> {
        self.guard.take()
    }
}

impl Drop for CancelOnDrop {
    #[inline]
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            guard.release(Outcome::Cancelled);
        }
    }
}

impl Drop for Guard {
    #[inline]
    fn drop(&mut self) {
        self.shared.leave(Outcome::Completed);
    }
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard").finish_non_exhaustive()
    }
}

pin_project! {
    /// A future counted in a [`Drain`](crate::Drain)'s pool until it completes or is dropped.
    ///
    /// Made by [`Drain::track`](crate::Drain::track). It yields the inner future's output
    /// unchanged. Completing counts as completed; being dropped first (a timeout, a client gone,
    /// a panic unwinding through it) counts as cancelled. It adds one pointer to the inner
    /// future's size.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let drain = tower_drain::Drain::new();
    /// let answer = drain.track(async { 42 }).await;
    /// assert_eq!(answer, 42);
    /// assert_eq!(drain.snapshot().completed, 1);
    /// # }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct Tracked<F> {
        #[pin]
        future: F,
        guard: CancelOnDrop,
    }
}

impl<F> Tracked<F> {
    pub(crate) fn new(future: F, guard: Guard) -> Self {
        Self {
            future,
            guard: CancelOnDrop::new(Some(guard)),
        }
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = ready!(this.future.poll(cx));
        // Completed: leave the pool before handing the output on.
        drop(this.guard.take());
        Poll::Ready(output)
    }
}

impl<F> fmt::Debug for Tracked<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracked")
            .field("completed", &self.guard.get().is_none())
            .finish_non_exhaustive()
    }
}
