//! The synchronisation types of the pool: loom's under `--cfg loom`, so that its models explore
//! the real code, and the standard library's otherwise.

#[cfg(loom)]
pub(crate) use loom::sync::{
    atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering},
    Mutex, MutexGuard,
};
#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering},
    Mutex, MutexGuard,
};

/// This thread's number, for picking its shard (`pool::shards`): threads are numbered in the
/// order they first ask.
#[cfg(not(loom))]
#[inline(always)]
pub(crate) fn worker_index() -> usize {
    use std::cell::Cell;

    // `usize::MAX`: not numbered yet. A `const` initialiser and no destructor make each
    // access a plain thread-local load.
    std::thread_local!(static INDEX: Cell<usize> = const { Cell::new(usize::MAX) });

    #[cold]
    fn number(index: &Cell<usize>) -> usize {
        use std::sync::atomic::AtomicUsize;
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        // Relaxed: each thread needs only a number of its own.
        let number = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & (usize::MAX >> 1);
        index.set(number);
        number
    }

    INDEX.with(|index| match index.get() {
        usize::MAX => number(index),
        number => number,
    })
}

/// Under loom, a thread's number is its place in the model's order of first use, counted
/// afresh in every execution so that the exploration stays deterministic.
#[cfg(loom)]
pub(crate) fn worker_index() -> usize {
    loom::lazy_static! {
        static ref NEXT: loom::sync::atomic::AtomicUsize = loom::sync::atomic::AtomicUsize::new(0);
    }
    loom::thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    INDEX.with(|index| *index)
}
