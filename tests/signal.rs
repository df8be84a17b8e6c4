//! `signal::terminate()` resolves on a real SIGTERM. This file is its own test process, so
//! the handler it installs affects nothing else.
#![cfg(all(unix, feature = "signal"))]

mod support;

use support::bounded;
use tokio_test::task::spawn;

#[tokio::test]
async fn terminate_resolves_on_sigterm() {
    let mut terminate = spawn(tower_drain::signal::terminate());
    // The first poll installs the handlers; only then is SIGTERM safe to send.
    assert!(terminate.poll().is_pending());
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    bounded("SIGTERM to be seen", terminate).await;
}
