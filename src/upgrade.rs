//! In-place upgrades on one machine: hand the listening sockets to a new process, then drain.
//!
//! Built on Cloudflare's [`ecdysis`](https://docs.rs/ecdysis) (the Rust heir of tableflip):
//! on `SIGHUP` it starts the same binary (the new one, if you replaced the file) with the
//! listening sockets inherited, so the kernel's accept queue is shared and nothing is refused
//! or lost; once the new process says it is ready, the old one stops accepting and
//! [`serve`](crate::serve) drains it. A new process that fails before it is ready leaves the
//! old one serving, unharmed, and a later `SIGHUP` tries again.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use tower_drain::{signal, upgrade::Upgrade, Drain};
//!
//! # async fn run() -> std::io::Result<()> {
//! let drain = Drain::new();
//! let app = axum::Router::new().layer(drain.http_layer());
//!
//! let upgrade = Upgrade::new()?; // on SIGHUP, start the new process
//! let terminated = signal::terminate(); // SIGTERM caught from here on
//! let listener = upgrade.listen("127.0.0.1:3000".parse().unwrap())?; // inherited, or new
//! let handed_over = upgrade.ready()?; // the old process (if any) stops accepting now
//!
//! let shutdown = drain.shutdown().grace(Duration::from_secs(30));
//! let report = tower_drain::serve(listener, app, shutdown)
//!     .close_listener_on_signal() // the new process accepts from now on
//!     .with_graceful_shutdown(async {
//!         tokio::select! {
//!             _ = handed_over => {}
//!             _ = terminated => {}
//!         }
//!     })
//!     .await;
//! println!("{report}");
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use ecdysis::tokio_ecdysis::{ExitMode, SignalKind, TokioEcdysisBuilder};
use tokio::net::TcpListener;

use crate::trace;

/// A process that can be replaced in place: made at start-up, before any listener; see the
/// [module docs](self).
///
/// `SIGHUP` asks for an upgrade: the signal `nginx -s reload`, HAProxy and tableflip-based
/// servers use, and the one `systemctl reload` sends with `ExecReload=kill -HUP $MAINPID`.
///
/// # Examples
///
/// ```no_run
/// # fn run() -> std::io::Result<()> {
/// let upgrade = tower_drain::upgrade::Upgrade::new()?;
/// if upgrade.is_upgrade() {
///     println!("started by an upgrade: listeners are inherited");
/// }
/// # Ok(())
/// # }
/// ```
pub struct Upgrade {
    builder: TokioEcdysisBuilder,
}

impl Upgrade {
    /// Prepares this process to be upgraded on `SIGHUP`. Call it inside the tokio runtime,
    /// before making listeners.
    ///
    /// # Errors
    ///
    /// If the signal handler cannot be installed, or this process was started by an upgrade
    /// whose handover pipes are unusable.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            builder: TokioEcdysisBuilder::new(SignalKind::hangup())?,
        })
    }

    /// Writes this process's id to `path` once it is ready (atomically: a new file moved into
    /// place), so that a supervisor follows each upgrade: systemd's `PIDFile=`, for
    /// `$MAINPID` in `ExecReload=/bin/kill -HUP $MAINPID`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn run() -> std::io::Result<()> {
    /// let upgrade = tower_drain::upgrade::Upgrade::new()?.pid_file("/run/app.pid");
    /// # drop(upgrade);
    /// # Ok(())
    /// # }
    /// ```
    pub fn pid_file(mut self, path: impl AsRef<std::path::Path>) -> Self {
        self.builder.set_pid_file(path);
        self
    }

    /// Whether this process was started by an upgrade, its listeners inherited.
    pub fn is_upgrade(&self) -> bool {
        self.builder.is_child()
    }

    /// A TCP listener on `addr`: the one the previous process handed over, if this is an
    /// upgrade, or a new one (with `SO_REUSEADDR`). Give the same address in every version,
    /// with its port (port 0 is never the same address twice).
    ///
    /// # Errors
    ///
    /// As binding or listening does.
    pub fn listen(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        let listener = self
            .builder
            .std_ecdysis()
            .build_listen_tcp(addr, |socket, addr| {
                socket.set_reuse_address(true)?;
                socket.bind(&addr.into())?;
                socket.listen(1024)?;
                Ok(socket.into())
            })?;
        listener.set_nonblocking(true)?;
        TcpListener::from_std(listener)
    }

    /// Says this process is ready: if it was started by an upgrade, the previous process stops
    /// accepting now and drains. Returns a future that completes when *this* process has been
    /// replaced in turn (its successor is ready): the moment to stop accepting and drain.
    ///
    /// # Errors
    ///
    /// If the previous process cannot be told.
    pub fn ready(self) -> io::Result<HandedOver> {
        let (_ecdysis, upgraded) = self.builder.ready()?;
        trace::info!(
            pid = std::process::id(),
            "ready: serving, upgradable on SIGHUP"
        );
        Ok(HandedOver {
            inner: Box::pin(async move {
                // Ecdysis keeps its inherited sockets alive while this lives.
                let _ecdysis = _ecdysis;
                match upgraded.await {
                    Ok((ExitMode::Upgrade, _)) => {
                        trace::info!("upgrade: the new process is ready; stop accepting, drain");
                        Ok(())
                    }
                    Ok((mode, _)) => Err(io::Error::other(format!("stopped: {mode:?}"))),
                    Err(error) => Err(io::Error::other(error)),
                }
            }),
        })
    }
}

impl fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgrade")
            .field("is_upgrade", &self.is_upgrade())
            .finish()
    }
}

/// Completes once a new process has taken over this one's listeners: made by
/// [`Upgrade::ready`]. An error means the upgrade machinery itself failed (an upgrade that
/// merely failed to start is retried on the next `SIGHUP`, and this keeps waiting).
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// let upgrade = tower_drain::upgrade::Upgrade::new()?;
/// let handed_over: tower_drain::upgrade::HandedOver = upgrade.ready()?;
/// handed_over.await?;
/// println!("replaced: draining");
/// # Ok(())
/// # }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct HandedOver {
    inner: Pin<Box<dyn Future<Output = io::Result<()>> + Send>>,
}

impl Future for HandedOver {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for HandedOver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandedOver").finish_non_exhaustive()
    }
}
