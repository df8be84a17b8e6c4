//! A SIGTERM that arrives after `signal::terminate()` is called but before its future is
//! first polled. Alone in its test process: no other test may have installed a handler that
//! would keep the default action (death) away.
#![cfg(all(unix, feature = "signal"))]

mod support;

use support::bounded;

#[tokio::test]
async fn a_sigterm_before_the_first_poll_is_caught() {
    // What a server does: it makes the future, says it listens, and polls the future only
    // once it serves. A SIGTERM in between must be caught, not kill the process by the
    // default action (as it did when the handlers were installed at the first poll).
    let terminate = tower_drain::signal::terminate();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    bounded("SIGTERM sent before the first poll", terminate).await;
}
