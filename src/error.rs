//! Error types.

use std::fmt;

/// The error for work refused by a [`Drain`](crate::Drain): the pool is draining (or, in a
/// pathological case, holds 2^26 requests already).
///
/// [`DrainService`](crate::DrainService) returns it boxed; find it with
/// `err.downcast_ref::<tower_drain::Rejected>()`.
///
/// # Examples
///
/// ```
/// let drain = tower_drain::Drain::new();
/// drain.start_draining();
/// let rejected: tower_drain::Rejected = drain.try_guard().unwrap_err();
/// assert_eq!(rejected.to_string(), "service is draining");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    reason: Reason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Draining,
    Full,
}

impl Rejected {
    pub(crate) fn draining() -> Self {
        Self {
            reason: Reason::Draining,
        }
    }

    pub(crate) fn full() -> Self {
        Self {
            reason: Reason::Full,
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.reason {
            Reason::Draining => "service is draining",
            Reason::Full => "service has too many requests in flight",
        })
    }
}

impl std::error::Error for Rejected {}
