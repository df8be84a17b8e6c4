//! Polling by hand with a no-op waker, shared by the benches: no runtime or scheduler noise
//! enters what they measure.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};

pub fn cx() -> Context<'static> {
    Context::from_waker(futures::task::noop_waker_ref())
}

/// Polls `future` once; every benchmarked future is ready at once. Inlined, so that no
/// variant pays for a call and a copy that another is spared by the optimiser.
#[inline(always)]
pub fn poll_now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut cx()) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("benchmarked futures are always ready"),
    }
}

/// Polls a pinned future once, to register its waker; returns whether it is still pending.
#[allow(dead_code)] // not every bench registers waiters
pub fn is_pending<F: Future + ?Sized>(future: std::pin::Pin<&mut F>) -> bool {
    future.poll(&mut cx()).is_pending()
}
