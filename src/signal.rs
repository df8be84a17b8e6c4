//! Shutdown signals (feature `signal`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Resolves when the process is asked to stop: Ctrl-C, or SIGTERM on Unix (what Kubernetes,
/// systemd and `docker stop` send); Ctrl-C or Ctrl-Close on Windows.
///
/// The handlers are installed when this is called, within a tokio runtime: a signal that
/// arrives after the call is caught, even before the future is first polled. So call it
/// before the server says it is up (before binding, or before printing its address): a
/// process that a supervisor starts and at once stops, as a rolling update may, then drains
/// instead of dying of the default SIGTERM action. Called outside a runtime, it installs them
/// when first polled. As with tokio's own signal handling, the runtime needs its IO driver
/// (`#[tokio::main]` has it; a hand-built runtime needs `enable_io` or `enable_all`).
///
/// If a handler cannot be installed (no signal support in this environment), that source is
/// ignored and the others still count; if none can be, this never resolves.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main] async fn main() {
/// let drain = tower_drain::Drain::new();
/// // Caught from here on, whenever the future is first polled.
/// let stop = tower_drain::signal::terminate();
/// // ... bind, say that it listens, serve ...
/// stop.await;
/// let report = drain.shutdown().await;
/// println!("{report}");
/// # }
/// ```
pub fn terminate() -> Terminate {
    // Installed now if there is a runtime to install them with (tokio's handlers need its
    // signal driver); otherwise at the first poll, which needs one.
    let handlers = tokio::runtime::Handle::try_current()
        .is_ok()
        .then(Handlers::install);
    Terminate { handlers }
}

/// The future of [`terminate`]: completes on the first Ctrl-C or SIGTERM after the call.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main] async fn main() {
/// let stop: tower_drain::signal::Terminate = tower_drain::signal::terminate();
/// stop.await;
/// # }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Terminate {
    handlers: Option<Handlers>,
}

impl Future for Terminate {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.handlers
            .get_or_insert_with(Handlers::install)
            .poll_recv(cx)
    }
}

impl fmt::Debug for Terminate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Terminate")
            .field("installed", &self.handlers.is_some())
            .finish()
    }
}

/// The signal handlers `terminate` waits on; `None` where one could not be installed.
struct Handlers {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(windows)]
    ctrl_c: Option<tokio::signal::windows::CtrlC>,
    #[cfg(windows)]
    ctrl_close: Option<tokio::signal::windows::CtrlClose>,
}

impl Handlers {
    /// Installs every handler; the caller is within a runtime.
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Self {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(windows)]
        {
            Self {
                ctrl_c: tokio::signal::windows::ctrl_c().ok(),
                ctrl_close: tokio::signal::windows::ctrl_close().ok(),
            }
        }
        #[cfg(not(any(unix, windows)))]
        {
            Self {}
        }
    }

    /// Ready on the first signal any handler sees; never, if none was installed.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        {
            #[cfg(unix)]
            let seen = poll_some(
                &mut self.interrupt,
                cx,
                tokio::signal::unix::Signal::poll_recv,
            ) || poll_some(
                &mut self.terminate,
                cx,
                tokio::signal::unix::Signal::poll_recv,
            );
            #[cfg(windows)]
            let seen = poll_some(
                &mut self.ctrl_c,
                cx,
                tokio::signal::windows::CtrlC::poll_recv,
            ) || poll_some(
                &mut self.ctrl_close,
                cx,
                tokio::signal::windows::CtrlClose::poll_recv,
            );
            #[cfg(not(any(unix, windows)))]
            let seen = {
                let _ = cx;
                false
            };
            if seen {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }
}

/// Whether `handler`, if installed, has seen its signal. One whose stream ended (the runtime
/// is going away) sees nothing more.
#[cfg(any(unix, windows))]
fn poll_some<H>(
    handler: &mut Option<H>,
    cx: &mut std::task::Context<'_>,
    poll_recv: fn(&mut H, &mut std::task::Context<'_>) -> std::task::Poll<Option<()>>,
) -> bool {
    match handler.as_mut().map(|handler| poll_recv(handler, cx)) {
        Some(std::task::Poll::Ready(Some(()))) => true,
        Some(std::task::Poll::Ready(None)) => {
            *handler = None;
            false
        }
        _ => false,
    }
}
