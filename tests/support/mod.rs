//! Helpers shared by the integration tests.

use std::future::Future;
use std::time::Duration;

/// A bound no healthy test comes near: reaching it means a hang, reported as a failure.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test with `what` if it takes longer than [`LIMIT`].
pub async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(LIMIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}
