//! `signal::terminate()` resolves on a real SIGTERM. This file is its own test process, so
//! the handlers it installs affect nothing else; each test sends SIGTERM to this process.
#![cfg(all(unix, feature = "signal"))]

mod support;

use support::bounded;
use tokio_test::task::spawn;

/// Sends SIGTERM to this test process.
fn sigterm_self() {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[tokio::test]
async fn terminate_resolves_on_sigterm() {
    let mut terminate = spawn(tower_drain::signal::terminate());
    assert!(terminate.poll().is_pending());
    sigterm_self();
    bounded("SIGTERM to be seen", terminate).await;
}

#[test]
fn made_outside_a_runtime_it_installs_at_the_first_poll() {
    // No runtime to install with: no panic, and the handlers come with the first poll.
    let terminate = tower_drain::signal::terminate();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut terminate = spawn(terminate);
        assert!(terminate.poll().is_pending());
        sigterm_self();
        bounded("SIGTERM to be seen", terminate).await;
    });
}
