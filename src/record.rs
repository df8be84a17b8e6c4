//! The record of individual requests kept for the shutdown report, when a
//! [`RecordRequestsLayer`](crate::RecordRequestsLayer) fills it. Nothing else touches it, so
//! the pool's request path never does.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// A request that was still in flight when a shutdown's grace period ended.
///
/// Listed in [`ShutdownReport::abandoned`](crate::ShutdownReport::abandoned) for requests that
/// passed a [`RecordRequestsLayer`](crate::RecordRequestsLayer).
///
/// # Examples
///
/// ```
/// # fn show(report: &tower_drain::ShutdownReport) {
/// for request in &report.abandoned_requests {
///     eprintln!("cut: {request}"); // "GET /export, 31.2s old, sending its body"
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AbandonedRequest {
    /// The request's method.
    pub method: String,
    /// The request's path (without the query string, which may hold secrets).
    pub path: String,
    /// How long it had been in flight at the deadline.
    pub age: Duration,
    /// Whether its response head had been sent and it was sending its body.
    pub in_body: bool,
}

impl fmt::Display for AbandonedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stage = if self.in_body {
            "sending its body"
        } else {
            "before its response"
        };
        write!(
            f,
            "{} {}, {:.1}s old, {stage}",
            self.method,
            self.path,
            self.age.as_secs_f64()
        )
    }
}

#[derive(Debug)]
struct Entry {
    method: String,
    path: String,
    started: Instant,
    in_body: bool,
}

/// Recorded requests by id.
#[derive(Debug, Default)]
pub(crate) struct Record {
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    next_id: u64,
    by_id: BTreeMap<u64, Entry>,
}

impl Record {
    fn lock(&self) -> MutexGuard<'_, Entries> {
        // No user code runs under this lock, so a poisoned lock still holds whole entries.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a request; returns the id that `sending_body` and `remove` take.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn insert(&self, method: String, path: String) -> u64 {
        let entry = Entry {
            method,
            path,
            started: Instant::now(),
            in_body: false,
        };
        let mut entries = self.lock();
        let id = entries.next_id;
        entries.next_id += 1;
        entries.by_id.insert(id, entry);
        id
    }

    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn sending_body(&self, id: u64) {
        if let Some(entry) = self.lock().by_id.get_mut(&id) {
            entry.in_body = true;
        }
    }

    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn remove(&self, id: u64) {
        self.lock().by_id.remove(&id);
    }

    /// The recorded requests now, oldest first.
    pub(crate) fn in_flight(&self) -> Vec<AbandonedRequest> {
        let now = Instant::now();
        // Ids grow with time, so the map's order is the age order.
        self.lock()
            .by_id
            .values()
            .map(|entry| AbandonedRequest {
                method: entry.method.clone(),
                path: entry.path.clone(),
                age: now.saturating_duration_since(entry.started),
                in_body: entry.in_body,
            })
            .collect()
    }

    /// Empties the record, for a recycled pool.
    pub(crate) fn clear(&self) {
        self.lock().by_id.clear();
    }
}
