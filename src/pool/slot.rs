//! Where pools live: leaked once, numbered, and reused.
//!
//! Every pool's memory is leaked, so a guard is a plain `&'static Shared` (see `super` for why,
//! and for when the memory may be reused). Each memory gets a number when it is first made,
//! so that a child can name its parent in an atomic (`Shared::parent`) and find it again here
//! without a lock: the link changes only when the memory begins a new life.
//!
//! Memory is bounded by the largest number of pools alive at once: there is one free list for
//! all of them, roots and children alike.

use std::sync::{Mutex, OnceLock, PoisonError};

use super::Shared;

/// Chunk `k` of the table holds `2^k` pools, so the table grows with the pools made, never
/// moves what it holds, and is read without a lock. 32 chunks number 2^32 - 1 pools.
const CHUNKS: usize = 32;

type Chunk = Box<[OnceLock<&'static Shared>]>;

// A `const` item is how an array of a non-`Copy` type is written on the supported compiler;
// each use is a fresh, empty cell, which is the point.
#[allow(clippy::declare_interior_mutable_const)]
const NO_CHUNK: OnceLock<Chunk> = OnceLock::new();

static TABLE: [OnceLock<Chunk>; CHUNKS] = [NO_CHUNK; CHUNKS];

/// Pools whose handles and guards are all gone, ready for reuse, and the next number.
struct Free {
    pools: Vec<&'static Shared>,
    next_id: u32,
}

static FREE: Mutex<Free> = Mutex::new(Free {
    pools: Vec::new(),
    next_id: 0,
});

/// Which chunk holds pool `id`, and where in it.
fn locate(id: u32) -> (usize, usize) {
    let n = u64::from(id) + 1;
    let chunk = 63 - n.leading_zeros() as usize;
    (chunk, (n - (1 << chunk)) as usize)
}

/// The pool numbered `id`.
///
/// # Panics
///
/// If no pool has that number: ids come only from `Shared::id` of a pool made here.
pub(crate) fn get(id: u32) -> &'static Shared {
    let (chunk, index) = locate(id);
    TABLE[chunk]
        .get()
        .and_then(|chunk| chunk[index].get())
        .copied()
        .expect("tower-drain: a pool id that was never handed out")
}

/// A pool at the start of a life, with no parent: a recycled one if any, else a new one
/// leaked for good.
pub(crate) fn acquire() -> &'static Shared {
    // The lock is never held across user code, so poisoning cannot leave the list broken.
    let mut free = FREE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(pool) = free.pools.pop() {
        return pool;
    }
    let id = free.next_id;
    // The last number is kept free, so that `id + 1` always fits in a parent link.
    assert!(id < u32::MAX, "tower-drain: 2^32 - 1 pools alive at once");
    free.next_id = id + 1;
    let pool: &'static Shared = Box::leak(Box::new(Shared::new(id)));
    let (chunk, index) = locate(id);
    let chunk =
        TABLE[chunk].get_or_init(|| (0..1usize << chunk).map(|_| OnceLock::new()).collect());
    // Under the free-list lock, so each number is set once.
    let _ = chunk[index].set(pool);
    pool
}

/// Returns a pool, already reset, that no handle and no guard refers to any longer.
#[cfg(not(loom))]
pub(crate) fn release(pool: &'static Shared) {
    FREE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pools
        .push(pool);
}

/// Under loom each model run makes its pools anew (loom's atomics belong to one run), so
/// reuse is modelled through `Shared::released` instead of the free list.
#[cfg(loom)]
pub(crate) fn release(pool: &'static Shared) {
    // Release: pairs with the Acquire load of the model's `Drain::new`, as the free list's
    // mutex would.
    pool.released.store(true, crate::loom::Ordering::Release);
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn ids_map_to_chunks_without_gaps() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(1), (1, 0));
        assert_eq!(locate(2), (1, 1));
        assert_eq!(locate(3), (2, 0));
        assert_eq!(locate(6), (2, 3));
        assert_eq!(locate(7), (3, 0));
        assert_eq!(locate(u32::MAX - 1), (31, (1 << 31) - 1));
    }

    #[test]
    fn every_pool_is_found_by_its_id() {
        let pools: Vec<_> = (0..40).map(|_| acquire()).collect();
        for pool in &pools {
            assert!(std::ptr::eq(get(pool.id), *pool));
        }
        for pool in pools {
            pool.reset_for_reuse();
            release(pool);
        }
    }
}
