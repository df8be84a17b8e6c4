//! Gradual closing: during the unready period, HTTP/1.x responses ask for `Connection: close`
//! with a probability that rises from 0 to 1, so keep-alive clients move off a little at a
//! time (Envoy's drain strategy) instead of all reconnecting at once when draining begins.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::pool::Shared;

/// The random source of gradual closing: SplitMix64 over an atomic counter, so any number of
/// threads draw from it without a lock, and a seed makes a test reproducible.
#[derive(Debug)]
pub(crate) struct Gradual {
    state: AtomicU64,
}

impl Gradual {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// A seed that differs between processes, from the standard library's hasher keys.
    pub(crate) fn random_seed() -> u64 {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    }

    /// Whether this request's response should ask its client to close the connection.
    pub(crate) fn should_close(&self, shared: &Shared) -> bool {
        match shared.unready_progress() {
            None => false,
            Some(progress) => self.next_unit() < progress,
        }
    }

    /// A number in `[0, 1)`.
    fn next_unit(&self) -> f64 {
        const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
        // Relaxed: each draw needs only a distinct counter value; nothing is published.
        let mut z = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // The top 53 bits, as a fraction: every value equally likely.
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::Gradual;

    #[test]
    fn draws_are_uniform_in_the_unit_interval() {
        let gradual = Gradual::new(7);
        let draws: Vec<f64> = (0..100_000).map(|_| gradual.next_unit()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        for decile in 0..10 {
            let low = f64::from(decile) / 10.0;
            let n = draws
                .iter()
                .filter(|d| (low..low + 0.1).contains(*d))
                .count();
            assert!((9_500..10_500).contains(&n), "decile {decile}: {n}");
        }
    }
}
