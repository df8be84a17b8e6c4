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

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use crate::drain::Shared;

/// Pools whose handles and guards are all gone, ready for reuse: root pools, and child pools
/// by the address of their parent's memory. A child's parent link is fixed for the life of its
/// memory, so a child pool is reused only as a child of the same parent memory.
struct Free {
    roots: Vec<&'static Shared>,
    children: BTreeMap<usize, Vec<&'static Shared>>,
}

static FREE: Mutex<Free> = Mutex::new(Free {
    roots: Vec::new(),
    children: BTreeMap::new(),
});

/// The key of a parent's free children: its address, which is stable since pools are never
/// freed.
fn key(parent: &'static Shared) -> usize {
    parent as *const Shared as usize
}

/// A pool in its initial state, a child of `parent` if given: a recycled one if any, else a
/// new one leaked for good.
pub(crate) fn acquire(parent: Option<&'static Shared>) -> &'static Shared {
    // The lock is never held across user code, so poisoning cannot leave the lists broken.
    let mut free = FREE.lock().unwrap_or_else(PoisonError::into_inner);
    let recycled = match parent {
        None => free.roots.pop(),
        Some(parent) => free.children.get_mut(&key(parent)).and_then(Vec::pop),
    };
    drop(free);
    recycled.unwrap_or_else(|| Box::leak(Box::new(Shared::new(parent))))
}

/// Returns a pool that no handle and no guard refers to any longer.
pub(crate) fn release(shared: &'static Shared) {
    shared.reset();
    let mut free = FREE.lock().unwrap_or_else(PoisonError::into_inner);
    match shared.parent {
        None => free.roots.push(shared),
        Some(parent) => free.children.entry(key(parent)).or_default().push(shared),
    }
}
