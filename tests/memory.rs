//! Pool memory is bounded by the pools alive at once, not by how many were ever made. Its own
//! test binary, so that no other test's allocations move the resident set it measures.
#![cfg(target_os = "linux")]

use tower_drain::Drain;

/// The resident set of this process, in bytes.
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn children_of_many_parents_reuse_the_same_memory() {
    let roots: Vec<Drain> = (0..200).map(|_| Drain::new()).collect();
    // Warm up: the memory for the most children alive at once, and the allocator's arenas.
    for root in &roots[..2] {
        drop((0..500).map(|_| root.child()).collect::<Vec<_>>());
    }
    let before = resident();
    for root in &roots {
        drop((0..500).map(|_| root.child()).collect::<Vec<_>>());
    }
    let grown = resident().saturating_sub(before);
    println!(
        "100,000 children of 200 roots, at most 700 pools alive at once: resident set +{} KiB",
        grown / 1024
    );
    // Memory kept per parent grew by about 73 MB here; reused memory grows by nothing.
    assert!(grown < 8 << 20, "resident set grew by {grown} bytes");
}
