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
    // Written by `ready` itself, not by ecdysis: ecdysis panics when it cannot write it.
    pid_file: Option<std::path::PathBuf>,
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
            pid_file: None,
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
        self.pid_file = Some(path.as_ref().to_owned());
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
    /// If the pid file cannot be written (its directory is missing, say), before anything
    /// else: the previous process, if any, is not told, and goes on serving when this one
    /// exits. Or if the previous process cannot be told.
    pub fn ready(self) -> io::Result<HandedOver> {
        if let Some(path) = &self.pid_file {
            write_pid_file(path).map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!("cannot write the pid file {}: {error}", path.display()),
                )
            })?;
        }
        let (_ecdysis, upgraded) = self.builder.ready()?;
        trace::info!(
            pid = std::process::id(),
            "ready: serving, upgradable on SIGHUP"
        );
        Ok(HandedOver {
            done: false,
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
/// Dropping it before it completes cancels an upgrade under way: the process stops instead
/// of handing over (a SIGTERM that wins a `select!` against it), so a successor started by a
/// `SIGHUP` and not yet handed over is sent `SIGTERM` (it drains and exits, or dies if it
/// has not caught signals yet), and no successor keeps serving after this process exits.
/// (Linux: the successors are found in `/proc`.)
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
    done: bool,
}

impl Future for HandedOver {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = std::task::ready!(self.inner.as_mut().poll(cx));
        self.done = true;
        Poll::Ready(result)
    }
}

impl Drop for HandedOver {
    fn drop(&mut self) {
        if !self.done {
            let stopped = stop_successors();
            if stopped > 0 {
                trace::info!(
                    successors = stopped,
                    "stopping, not handing over: the upgrade under way is cancelled"
                );
            }
        }
    }
}

/// Sends `SIGTERM` to the processes this one started for an upgrade that are still running;
/// returns how many. They are its children whose environment carries ecdysis's upgrade mark.
#[cfg(target_os = "linux")]
fn stop_successors() -> usize {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;

    let me = std::process::id().to_string();
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return 0;
    };
    processes
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so the fields
            // are read after its last `)`.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().nth(1));
            ppid == Some(Some(me.as_str()))
        })
        .filter(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            environ
                .split(|&byte| byte == 0)
                .any(|var| var == b"ECDYSIS_RUST_UPGRADE=yes")
        })
        .filter(|&pid| kill(Pid::from_raw(pid), Signal::SIGTERM).is_ok())
        .count()
}

#[cfg(not(target_os = "linux"))]
fn stop_successors() -> usize {
    0
}

/// Writes this process's id to `path` atomically: a new file in the same directory, moved into
/// place, so that a reader never sees it half written.
fn write_pid_file(path: &std::path::Path) -> io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a pid file needs a name"))?;
    let mut temporary = name.to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = dir.join(temporary);
    let written = std::fs::File::create(&temporary)
        .and_then(|mut file| writeln!(file, "{}", std::process::id()))
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

impl fmt::Debug for HandedOver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandedOver").finish_non_exhaustive()
    }
}
