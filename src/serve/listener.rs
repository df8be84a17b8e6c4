//! What `serve` accepts connections from: a TCP or Unix listener, or any listener whose
//! connections pass a handshake first (TLS through `tokio-rustls`, say).

use std::fmt;
use std::future::Future;
use std::io;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;

use crate::trace;

/// How long a connection's handshake may take by default.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A source of connections for [`serve`](crate::serve): implemented for tokio's
/// [`TcpListener`](tokio::net::TcpListener) and [`UnixListener`](tokio::net::UnixListener),
/// and by [`Handshake`] for connections that must pass a handshake (TLS) before they are
/// served.
///
/// It is `axum::serve::Listener` in poll form: `serve` polls it beside its signal and its
/// connections, so that an accept error's back-off never delays a shutdown.
///
/// # Examples
///
/// A listener that refuses peers outside the loopback range, built on the TCP one:
///
/// ```
/// use std::{io, net::SocketAddr, task::{Context, Poll}};
/// use tokio::net::{TcpListener, TcpStream};
///
/// struct LoopbackOnly(TcpListener);
///
/// impl tower_drain::Listener for LoopbackOnly {
///     type Io = TcpStream;
///     type Addr = SocketAddr;
///
///     fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
///         loop {
///             let (tcp, peer) = std::task::ready!(self.0.poll_accept(cx))?;
///             if peer.ip().is_loopback() {
///                 return Poll::Ready(Ok((tcp, peer)));
///             }
///         }
///     }
///
///     fn local_addr(&self) -> io::Result<SocketAddr> {
///         self.0.local_addr()
///     }
/// }
/// ```
pub trait Listener: Send + 'static {
    /// A connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// A peer's address: what `ConnectInfo` and tonic's `remote_addr()` see.
    type Addr: Clone + fmt::Debug + Send + Sync + 'static;

    /// Accepts the next connection.
    ///
    /// # Errors
    ///
    /// What accepting failed with: `serve` skips errors that concern one connection
    /// (`ECONNABORTED`, `ECONNRESET`) and waits a moment after the others (out of file
    /// descriptors, say) before polling again.
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Io, Self::Addr)>>;

    /// The address this listener is bound to.
    ///
    /// # Errors
    ///
    /// What the socket reported.
    fn local_addr(&self) -> io::Result<Self::Addr>;
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Io, Self::Addr)>> {
        tokio::net::TcpListener::poll_accept(self, cx)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        tokio::net::TcpListener::local_addr(self)
    }
}

#[cfg(unix)]
impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Io, Self::Addr)>> {
        tokio::net::UnixListener::poll_accept(self, cx)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        tokio::net::UnixListener::local_addr(self)
    }
}

/// Adapters for any [`Listener`].
pub trait ListenerExt: Listener + Sized {
    /// Runs `handshake` on each accepted connection before it is served: a TLS acceptor's
    /// `accept`, say. See [`Handshake`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use tower_drain::ListenerExt;
    ///
    /// # async fn run(acceptor: fn(tokio::net::TcpStream) -> std::future::Ready<std::io::Result<tokio::net::TcpStream>>) -> std::io::Result<()> {
    /// // With tokio-rustls: `let acceptor = TlsAcceptor::from(Arc::new(config));`
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
    ///     .await?
    ///     .handshake(move |tcp| acceptor(tcp));
    /// # drop(listener);
    /// # Ok(())
    /// # }
    /// ```
    fn handshake<F, Fut, T>(self, handshake: F) -> Handshake<Self, F, T>
    where
        F: FnMut(Self::Io) -> Fut + Send + 'static,
        Fut: Future<Output = io::Result<T>> + Send + 'static,
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Handshake {
            listener: self,
            handshake,
            pending: JoinSet::new(),
            timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

impl<L: Listener> ListenerExt for L {}

/// A [`Listener`] whose connections pass a handshake before they are served: made by
/// [`ListenerExt::handshake`].
///
/// Handshakes run in their own tasks, any number at once, so a client that stalls in its
/// handshake delays no one; one that has not finished within the
/// [`timeout`](Self::timeout) (ten seconds by default) is closed, and a failed one is logged
/// and skipped. Dropping the listener (as `serve` does when it stops accepting) abandons the
/// handshakes under way.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use tower_drain::ListenerExt;
///
/// # async fn run() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
///     .await?
///     .handshake(|tcp| async move { Ok(tcp) /* acceptor.accept(tcp).await */ })
///     .timeout(Duration::from_secs(5));
/// # drop(listener);
/// # Ok(())
/// # }
/// ```
pub struct Handshake<L: Listener, F, T> {
    listener: L,
    handshake: F,
    pending: JoinSet<Option<(T, L::Addr)>>,
    timeout: Duration,
}

impl<L: Listener, F, T> Handshake<L, F, T> {
    /// How long a handshake may take before its connection is closed. Default: ten seconds.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use tower_drain::ListenerExt;
    /// # async fn run(listener: tokio::net::TcpListener) {
    /// let listener = listener
    ///     .handshake(|tcp| async move { Ok(tcp) })
    ///     .timeout(std::time::Duration::from_secs(3));
    /// # drop(listener);
    /// # }
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The listener whose connections are handed to the handshake.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use tower_drain::ListenerExt;
    /// # async fn run(listener: tokio::net::TcpListener) {
    /// let listener = listener.handshake(|tcp| async move { Ok(tcp) });
    /// println!("listening on {}", listener.get_ref().local_addr().unwrap());
    /// # }
    /// ```
    pub fn get_ref(&self) -> &L {
        &self.listener
    }
}

impl<L, F, Fut, T> Listener for Handshake<L, F, T>
where
    L: Listener,
    F: FnMut(L::Io) -> Fut + Send + 'static,
    Fut: Future<Output = io::Result<T>> + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Io = T;
    type Addr = L::Addr;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(T, L::Addr)>> {
        // Start a handshake for everything accepted so far, then hand out one that finished.
        loop {
            match self.listener.poll_accept(cx) {
                Poll::Ready(Ok((io, peer))) => {
                    let handshake = (self.handshake)(io);
                    let timeout = self.timeout;
                    self.pending.spawn(async move {
                        match tokio::time::timeout(timeout, handshake).await {
                            Ok(Ok(io)) => Some((io, peer)),
                            Ok(Err(_error)) => {
                                trace::debug!(?peer, "handshake failed: {_error}");
                                None
                            }
                            Err(_) => {
                                trace::debug!(?peer, "handshake timed out");
                                None
                            }
                        }
                    });
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => break,
            }
        }
        loop {
            match self.pending.poll_join_next(cx) {
                Poll::Ready(Some(Ok(Some(accepted)))) => return Poll::Ready(Ok(accepted)),
                // A failed or panicked handshake concerns that connection alone.
                Poll::Ready(Some(_)) => continue,
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn local_addr(&self) -> io::Result<L::Addr> {
        self.listener.local_addr()
    }
}

impl<L, F, T> fmt::Debug for Handshake<L, F, T>
where
    L: Listener + fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("listener", &self.listener)
            .field("in_progress", &self.pending.len())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
