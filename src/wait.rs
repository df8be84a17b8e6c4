//! The pool's waiters: `UntilEmpty`, `NextEmpty`, `Until` and `DrainStarted`.
//!
//! Each waiter re-checks durable state after enabling its `Notified`, so a wake-up can never
//! fall between the check and the wait (tokio's `Notified::enable` pattern). Empty waiters
//! compare the pool's entry clock (how many entries it has admitted) instead of trusting the
//! wake-up itself: an exit that emptied the pool *before* a waiter registered may notify after
//! it, and must not complete it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::sync::futures::Notified;

use crate::drain::Drain;
use crate::snapshot::Snapshot;

pin_project! {
    /// Waits for the pool's next transition to empty at or after a given attempt.
    #[derive(Debug)]
    struct EmptyWait {
        drain: Drain,
        // Complete once the pool has emptied at or after this attempt. `None` once finished,
        // or if the pool was empty when an `UntilEmpty` was made: then no waiter is registered.
        target: Option<u64>,
        #[pin]
        notified: Notified<'static>,
    }

    impl PinnedDrop for EmptyWait {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if this.target.is_some() {
                this.drain.shared().deregister_empty();
            }
        }
    }
}

impl EmptyWait {
    fn new(drain: Drain, ready_if_empty: bool) -> Self {
        let shared = drain.shared();
        let notified = shared.emptied.notified();
        // Empty now, by the word alone: no registration. While the shards are open only the
        // registration can tell.
        if ready_if_empty && shared.state.exact_in_flight() == Some(0) {
            return Self {
                drain,
                target: None,
                notified,
            };
        }
        let target = shared.register_empty(ready_if_empty);
        Self {
            drain,
            target,
            notified,
        }
    }

    fn poll_empty(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let shared = this.drain.shared();
        while let Some(target) = *this.target {
            // Enable first: a transition published after the check below notifies us.
            this.notified.as_mut().enable();
            if shared.emptied_since(target) {
                shared.deregister_empty();
                *this.target = None;
                break;
            }
            ready!(this.notified.as_mut().poll(cx));
            // Woken by an exit; it may have emptied the pool before we registered: check again.
            this.notified.set(shared.emptied.notified());
        }
        Poll::Ready(())
    }
}

pin_project! {
    /// Completes when the pool is empty: at once if it was empty when made, otherwise at its
    /// next transition to empty.
    ///
    /// Made by [`Drain::until_empty`], whose documentation has the details. It is `Send` and
    /// `'static`; polling it again after it has completed returns `Ready` again.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let drain = tower_drain::Drain::new();
    /// let guard = drain.guard();
    /// let waiter: tower_drain::UntilEmpty = drain.until_empty();
    /// drop(guard);
    /// waiter.await;
    /// # }
    /// ```
    ///
    /// [`Drain::until_empty`]: crate::Drain::until_empty
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct UntilEmpty {
        #[pin]
        wait: EmptyWait,
    }
}

impl UntilEmpty {
    pub(crate) fn new(drain: Drain) -> Self {
        Self {
            wait: EmptyWait::new(drain, true),
        }
    }
}

impl Future for UntilEmpty {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().wait.poll_empty(cx)
    }
}

pin_project! {
    /// Completes at the pool's next transition to empty, even if it is empty when made.
    ///
    /// Made by [`Drain::next_empty`], whose documentation has the details. It is `Send` and
    /// `'static`; polling it again after it has completed returns `Ready` again.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let drain = tower_drain::Drain::new();
    /// let waiter: tower_drain::NextEmpty = drain.next_empty();
    /// drop(drain.guard());
    /// waiter.await;
    /// # }
    /// ```
    ///
    /// [`Drain::next_empty`]: crate::Drain::next_empty
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct NextEmpty {
        #[pin]
        wait: EmptyWait,
    }
}

impl NextEmpty {
    pub(crate) fn new(drain: Drain) -> Self {
        Self {
            wait: EmptyWait::new(drain, false),
        }
    }
}

impl Future for NextEmpty {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().wait.poll_empty(cx)
    }
}

pin_project! {
    /// Completes with the first [`Snapshot`] for which a predicate holds.
    ///
    /// Made by [`Drain::until`], whose documentation has the details. It is `Send` and
    /// `'static` when the predicate is; polling it again after it has completed returns the
    /// current snapshot without calling the predicate.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let drain = tower_drain::Drain::new();
    /// let guards: Vec<_> = (0..10).map(|_| drain.guard()).collect();
    ///
    /// let few_left = tokio::spawn(drain.until(|s| s.in_flight <= 2));
    /// drop(guards);
    /// let snapshot = few_left.await.unwrap();
    /// assert!(snapshot.in_flight <= 2);
    /// # }
    /// ```
    ///
    /// [`Drain::until`]: crate::Drain::until
    #[must_use = "futures do nothing unless polled"]
    pub struct Until<P> {
        drain: Drain,
        predicate: P,
        done: bool,
        // The predicate has been checked since `notified` was made: poll `notified` before
        // checking again, so each wake-up costs one call of the predicate, not two.
        checked: bool,
        #[pin]
        notified: Notified<'static>,
    }
}

impl<P> Until<P> {
    pub(crate) fn new(drain: Drain, predicate: P) -> Self {
        Self {
            notified: drain.shared().changed.notified(),
            drain,
            predicate,
            done: false,
            checked: false,
        }
    }
}

impl<P> Future for Until<P>
where
    P: FnMut(&Snapshot) -> bool,
{
    type Output = Snapshot;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Snapshot> {
        let mut this = self.project();
        let shared = this.drain.shared();
        let mut looked = false;
        while !*this.done {
            if !*this.checked {
                if looked {
                    // Woken again by a change since this poll's look: under steady traffic
                    // that is every time, so look again at the next poll, after the task's
                    // neighbours have run, rather than spin here for as long as requests
                    // keep coming.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                looked = true;
                // Enable first, then arm: the first change after the arming disarms and wakes
                // us, and every change before it is in the snapshot below. Nothing is left
                // registered: a waiter dropped while armed costs the next change one wake-up
                // of nobody. A fresh reading, never one kept by this thread (`read_near`):
                // the arming moves nothing a kept reading checks, and one that left out
                // another thread's change from before the arming would miss it for good.
                this.notified.as_mut().enable();
                shared.state.pace_look();
                shared.state.arm_change();
                let snapshot = Snapshot::from_reading(&shared.state.read_shared());
                if (this.predicate)(&snapshot) {
                    *this.done = true;
                    return Poll::Ready(snapshot);
                }
                *this.checked = true;
            }
            ready!(this.notified.as_mut().poll(cx));
            this.notified.set(shared.changed.notified());
            *this.checked = false;
        }
        Poll::Ready(this.drain.snapshot())
    }
}

impl<P> fmt::Debug for Until<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Until")
            .field("drain", &self.drain)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// Completes when the pool begins draining, or at once if it is draining.
    ///
    /// Made by [`Drain::draining`]. It completes if draining began at any moment after it was
    /// made, even if [`Drain::resume`] has ended it since. It is `Send` and `'static`, so it
    /// fits `with_graceful_shutdown` of axum and hyper-util.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let drain = tower_drain::Drain::new();
    /// let signal: tower_drain::DrainStarted = drain.draining();
    /// drain.start_draining();
    /// signal.await;
    /// # }
    /// ```
    ///
    /// [`Drain::draining`]: crate::Drain::draining
    /// [`Drain::resume`]: crate::Drain::resume
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct DrainStarted {
        drain: Drain,
        #[pin]
        notified: Notified<'static>,
    }
}

impl DrainStarted {
    pub(crate) fn new(drain: Drain) -> Self {
        // Made now, so a `start_draining` between now and the first poll completes it.
        let notified = drain.shared().draining.notified();
        Self { drain, notified }
    }
}

impl Future for DrainStarted {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        this.notified.as_mut().enable();
        if this.drain.is_draining() {
            return Poll::Ready(());
        }
        this.notified.poll(cx)
    }
}
