//! Shutdown signals (feature `signal`).

use std::future::Future;

/// Resolves when the process is asked to stop: Ctrl-C, or SIGTERM on Unix (what Kubernetes,
/// systemd and `docker stop` send); Ctrl-C or Ctrl-Close on Windows.
///
/// If a handler cannot be installed (no signal support in this environment), that source is
/// ignored and the others still count; if none can be, this never resolves.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main] async fn main() {
/// let drain = tower_drain::Drain::new();
/// tower_drain::signal::terminate().await;
/// let report = drain.shutdown().await;
/// println!("{report}");
/// # }
/// ```
pub async fn terminate() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let other = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(windows)]
    let other = async {
        match tokio::signal::windows::ctrl_close() {
            Ok(mut close) => {
                close.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(any(unix, windows)))]
    let other = std::future::pending::<()>();

    let mut ctrl_c = std::pin::pin!(ctrl_c);
    let mut other = std::pin::pin!(other);
    std::future::poll_fn(|cx| {
        if ctrl_c.as_mut().poll(cx).is_ready() || other.as_mut().poll(cx).is_ready() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}
