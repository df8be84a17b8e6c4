//! Where pools live: leaked once, reused forever.
//!
//! A `Guard` must keep its pool alive, and the usual way, an `Arc` clone per request, costs a
//! second read-modify-write on entry and on exit: as much as the counting itself. Instead each
//! pool's shared state is leaked, so a guard is a plain `&'static Shared`, and the in-flight
//! count doubles as the count of guards. When the last `Drain` handle is gone *and* the count
//! is zero (`State::detach` and the `DETACHED` bit decide which of the two happens last), the
//! state is reset and kept here for the next `Drain::new`. Memory is bounded by the largest
//! number of pools ever alive at once, and no `unsafe` is needed: a stale reference could only
//! ever point at a valid, if reused, pool, and none outlives the count.

use std::sync::{Mutex, PoisonError};

use crate::drain::Shared;

/// Pools whose handles and guards are all gone, ready for reuse.
static FREE: Mutex<Vec<&'static Shared>> = Mutex::new(Vec::new());

/// A pool in its initial state: a recycled one if any, else a new one leaked for good.
pub(crate) fn acquire() -> &'static Shared {
    // The lock is never held across user code, so poisoning cannot leave the list broken.
    let recycled = FREE.lock().unwrap_or_else(PoisonError::into_inner).pop();
    recycled.unwrap_or_else(|| Box::leak(Box::new(Shared::new())))
}

/// Returns a pool that no handle and no guard refers to any longer.
pub(crate) fn release(shared: &'static Shared) {
    shared.reset();
    FREE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(shared);
}
