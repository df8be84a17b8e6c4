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
