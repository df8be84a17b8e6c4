//! `serve`: the server wiring that keeps every promise of a graceful shutdown, for any Tower
//! HTTP service (an axum `Router`, tonic `Routes`, a hyper-util service) over HTTP/1.1 and
//! HTTP/2, on any [`Listener`]: TCP, Unix sockets, TLS through any acceptor.
//!
//! One job per file: `listener` (where connections come from), `settings` (hyper's
//! connection settings and timeouts), `accept` (the accept loop and the shutdown's phases),
//! `connection` (one connection's life), `peer` (the peer address on each request),
//! `grpc_timeout` (the client's `grpc-timeout`) and `body` (the response body it writes).

mod accept;
mod body;
mod connection;
mod cut;
mod grpc_timeout;
mod listener;
mod peer;
mod settings;

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use tower_service::Service;

pub use self::listener::{Handshake, Listener, ListenerExt};
use self::settings::Settings;
use crate::shutdown::{Shutdown, ShutdownReport};
use crate::BoxError;

/// Serves `service` on `listener` until `shutdown` has run, with the wiring that delivers what
/// the pool promises: made by [`serve`], run by awaiting it.
///
/// Until [`with_graceful_shutdown`](Self::with_graceful_shutdown)'s signal, it serves every
/// connection over HTTP/1.1 or HTTP/2 (h2c with prior knowledge, or over TLS with ALPN `h2`),
/// upgrades included (WebSockets over HTTP/2 too, RFC 8441). Every request carries its
/// connection's peer address: as axum's `ConnectInfo<L::Addr>` with the `axum` feature and as
/// tonic's `TcpConnectInfo` (for `remote_addr()`) with the `tonic` feature. A gRPC call's
/// `grpc-timeout` is honoured as tonic's `Server` honours it: a response not begun by then is
/// a trailers-only `DEADLINE_EXCEEDED`. A client gets 30 seconds to send a request head
/// ([`header_read_timeout`](Self::header_read_timeout)).
///
/// On the signal it runs `shutdown`, and follows its phases:
///
/// 1. **Unready**: everything is served as before; only the readiness check says `503`.
///    HTTP/2 connections are sent `GOAWAY` now (and one opened meanwhile after its first
///    request), so that their clients open new streams elsewhere before anything is refused;
///    HTTP/1.1 keep-alive clients are moved off by the layer's `gradual_close`, a response at a
///    time.
/// 2. **Draining**: the listener stays open, so a request on a *new* connection is answered
///    with the refusal (`503` with `Retry-After` and `Connection: close`; gRPC: trailers-only
///    `UNAVAILABLE`), never with a refused connection. HTTP/2 connections not told yet are
///    sent `GOAWAY`; HTTP/1.1 keep-alive connections are not cut while idle (that races the
///    client's next request) but closed by the `Connection: close` of their next response.
/// 3. **Closing**, once the pool is empty or the grace period is over: the listener closes,
///    every connection closes gracefully, and responses still being written (a large
///    single-frame body to a slow client, say) may finish until the grace period's end; then
///    the connections left are cut, at most [`close_within`](Self::close_within) later.
///
/// So, with a `grace` period, the future completes within `unready_for + grace + close_within`
/// of the signal, whatever the clients do, with the [`ShutdownReport`]. With no `grace` there
/// is no such bound: it completes when every connection has closed, and a client that stops
/// reading keeps it waiting (a request head that never ends is closed at the
/// [`header_read_timeout`](Self::header_read_timeout)); set a grace period for a server on
/// the internet. (If the pool's shutdown was already running, started elsewhere, `serve` joins it,
/// and that run's grace period is the one it closes by.) It never fails: an error while
/// accepting is logged and accepting goes on (after 100 ms when it is not one connection's
/// own, such as running out of file descriptors), and without a signal it serves until it is
/// dropped. A [`Drain::resume`](crate::Drain::resume) that ends the run ends `serve` too: its
/// signal has been spent.
///
/// Choose [`close_listener_when_draining`](Self::close_listener_when_draining) instead for an
/// L4 balancer that health-checks by connecting: new connections are then refused from the
/// moment draining begins, the way `axum::serve(..).with_graceful_shutdown(drain.draining())`
/// behaves.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
///
/// use axum::{routing::get, Router};
/// use tower_drain::Drain;
///
/// # async fn run() -> std::io::Result<()> {
/// let drain = Drain::new();
/// let app = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(drain.http_layer())
///     .route_service("/ready", drain.readiness());
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let shutdown = drain.shutdown().unready_for(Duration::from_secs(5)).grace(Duration::from_secs(30));
/// let report = tower_drain::serve(listener, app, shutdown)
///     .with_graceful_shutdown(async { tokio::signal::ctrl_c().await.unwrap() })
///     .await;
/// println!("{report}");
/// # Ok(())
/// # }
/// ```
#[must_use = "a server does nothing until it is awaited"]
pub struct Serve<L, S> {
    listener: L,
    service: S,
    shutdown: Shutdown,
    signal: Option<accept::Signal>,
    force: Option<accept::MakeSignal>,
    settings: Settings,
}

/// Serves `service` on `listener`, running `shutdown` on the signal given to
/// [`Serve::with_graceful_shutdown`]. See [`Serve`].
///
/// `listener` is a tokio `TcpListener` or `UnixListener`, either through a TLS acceptor
/// ([`ListenerExt::handshake`]), or any [`Listener`]. `service` is the application itself (an
/// axum `Router`, tonic `Routes`), usually with [`Drain::http_layer`](crate::Drain::http_layer)
/// on it and the [`readiness`](crate::Drain::readiness) route beside it; not a make-service:
/// `serve` makes no `into_make_service()` call, and gives every request its peer address as
/// `ConnectInfo` itself.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// let drain = tower_drain::Drain::new();
/// let app = axum::Router::new().layer(drain.http_layer());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let report = tower_drain::serve(listener, app, drain.shutdown())
///     .with_graceful_shutdown(async { /* a signal */ })
///     .await;
/// # drop(report);
/// # Ok(())
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "serve")))]
pub fn serve<L, S, B>(listener: L, service: S, shutdown: Shutdown) -> Serve<L, S>
where
    L: Listener,
    S: Service<Request<Incoming>> + Clone + Send + 'static,
    S::Response: HttpResponse<Body = B>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    Serve {
        listener,
        service,
        shutdown,
        signal: None,
        force: None,
        settings: Settings::default(),
    }
}

/// What the service given to [`serve`] must answer with: an [`http::Response`]. It exists
/// for its error message, which names the fix when a make-service is passed instead.
///
/// # Examples
///
/// A make-service is refused, with a message that says to pass the router itself:
///
/// ```compile_fail
/// # async fn run(listener: tokio::net::TcpListener) {
/// let drain = tower_drain::Drain::new();
/// let app = axum::Router::new().layer(drain.http_layer());
/// let report = tower_drain::serve(listener, app.into_make_service(), drain.shutdown()).await;
/// # }
/// ```
///
/// The router itself is served, and its handlers get `ConnectInfo` (feature `axum`):
///
/// ```no_run
/// # async fn run(listener: tokio::net::TcpListener) {
/// let drain = tower_drain::Drain::new();
/// let app = axum::Router::new().layer(drain.http_layer());
/// let report = tower_drain::serve(listener, app, drain.shutdown()).await;
/// # }
/// ```
#[diagnostic::on_unimplemented(
    message = "`serve` was given a service that answers with `{Self}`, not an HTTP response",
    label = "not an `http::Response`",
    note = "pass the router or service itself, not a make-service: `serve` needs no \
            `into_make_service()`, and it puts the peer address on every request as axum's \
            `ConnectInfo` (feature `axum`) and tonic's `TcpConnectInfo` (feature `tonic`)"
)]
pub trait HttpResponse {
    /// The response's body.
    type Body;
}

impl<B> HttpResponse for Response<B> {
    type Body = B;
}

impl<L, S> Serve<L, S> {
    /// Runs the shutdown when `signal` completes: [`signal::terminate`](crate::signal) for
    /// Ctrl-C or SIGTERM, say. Without one, the server serves until it is dropped.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    /// let drain = tower_drain::Drain::new();
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// let server = tower_drain::serve(listener, axum::Router::<()>::new(), drain.shutdown())
    ///     .with_graceful_shutdown(async { stopped.await.ok(); });
    /// # drop((server, stop));
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_graceful_shutdown<F>(mut self, signal: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.signal = Some(Box::pin(signal));
        self
    }

    /// Ends the shutdown at once on a second signal: once the first has come, calls
    /// `make_signal` and, if what it returns completes before the drain is done, stops
    /// waiting, cuts every connection and returns a report of what was abandoned
    /// ([`ShutdownReport::forced`]). What people at a terminal and operators expect of a
    /// second Ctrl-C or SIGTERM: `.with_forced_shutdown(signal::terminate)`.
    ///
    /// `make_signal` is called only after the first signal, so that the first is not taken
    /// for the second too.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[cfg(feature = "signal")]
    /// # async fn run(listener: tokio::net::TcpListener) {
    /// use tower_drain::signal;
    /// let drain = tower_drain::Drain::new();
    /// let report = tower_drain::serve(listener, axum::Router::<()>::new(), drain.shutdown())
    ///     .with_graceful_shutdown(signal::terminate())
    ///     .with_forced_shutdown(signal::terminate)
    ///     .await;
    /// if report.forced() {
    ///     eprintln!("forced: {report}");
    /// }
    /// # }
    /// ```
    pub fn with_forced_shutdown<M, F>(mut self, make_signal: M) -> Self
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        self.force = Some(Box::new(move || Box::pin(make_signal()) as accept::Signal));
        self
    }

    /// Closes the listener when draining begins, instead of once the pool is empty: for an L4
    /// balancer that health-checks by connecting. New connections are then refused while the
    /// pool drains, rather than answered with `503`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(listener: tokio::net::TcpListener) {
    /// let drain = tower_drain::Drain::new();
    /// let server = tower_drain::serve(listener, axum::Router::<()>::new(), drain.shutdown())
    ///     .close_listener_when_draining();
    /// # drop(server);
    /// # }
    /// ```
    pub fn close_listener_when_draining(mut self) -> Self {
        self.settings.close_listener_when_draining = true;
        self
    }

    /// Closes the listener as soon as the signal comes: for an in-place upgrade, where another
    /// process now accepts on the same socket (`tower_drain::upgrade`), so that every new
    /// connection goes to it. Connections already open are served and drained as usual.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(listener: tokio::net::TcpListener) {
    /// let drain = tower_drain::Drain::new();
    /// let server = tower_drain::serve(listener, axum::Router::<()>::new(), drain.shutdown())
    ///     .close_listener_on_signal();
    /// # drop(server);
    /// # }
    /// ```
    pub fn close_listener_on_signal(mut self) -> Self {
        self.settings.close_listener_on_signal = true;
        self
    }

    /// How long connections still open at the end of the grace period get before they are
    /// cut. Default: one second.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(listener: tokio::net::TcpListener) {
    /// use std::time::Duration;
    /// let drain = tower_drain::Drain::new();
    /// let server = tower_drain::serve(listener, axum::Router::<()>::new(), drain.shutdown())
    ///     .close_within(Duration::from_millis(200));
    /// # drop(server);
    /// # }
    /// ```
    pub fn close_within(mut self, period: Duration) -> Self {
        self.settings.close_within = period;
        self
    }

    /// How long an HTTP/1.x client may take to send a request head before its connection is
    /// closed; `None` waits forever. Default: 30 seconds (hyper's).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(listener: tokio::net::TcpListener) {
    /// use std::time::Duration;
    /// let drain = tower_drain::Drain::new();
    /// let server = tower_drain::serve(listener, axum::Router::<()>::new(), drain.shutdown())
    ///     .header_read_timeout(Duration::from_secs(10));
    /// # drop(server);
    /// # }
    /// ```
    pub fn header_read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.settings.header_read_timeout = timeout.into();
        self
    }

    /// Whether HTTP/1.1 connections are kept open between requests. Default: `true`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(listener: tokio::net::TcpListener) {
    /// let drain = tower_drain::Drain::new();
    /// let server = tower_drain::serve(listener, axum::Router::<()>::new(), drain.shutdown())
    ///     .http1_keep_alive(false);
    /// # drop(server);
    /// # }
    /// ```
    pub fn http1_keep_alive(mut self, keep_alive: bool) -> Self {
        self.settings.http1_keep_alive = keep_alive;
        self
    }

    /// How many streams an HTTP/2 client may have open at once on one connection (its
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`). Default: hyper's (200).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(listener: tokio::net::TcpListener) {
    /// let drain = tower_drain::Drain::new();
    /// let server = tower_drain::serve(listener, axum::Router::<()>::new(), drain.shutdown())
    ///     .http2_max_concurrent_streams(100);
    /// # drop(server);
    /// # }
    /// ```
    pub fn http2_max_concurrent_streams(mut self, max: u32) -> Self {
        self.settings.http2_max_concurrent_streams = Some(max);
        self
    }

    /// Sends HTTP/2 keep-alive pings this often, closing a connection whose ping goes
    /// unanswered for [`http2_keep_alive_timeout`](Self::http2_keep_alive_timeout); `None`
    /// sends none. Default: none.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(listener: tokio::net::TcpListener) {
    /// use std::time::Duration;
    /// let drain = tower_drain::Drain::new();
    /// let server = tower_drain::serve(listener, axum::Router::<()>::new(), drain.shutdown())
    ///     .http2_keep_alive_interval(Duration::from_secs(30));
    /// # drop(server);
    /// # }
    /// ```
    pub fn http2_keep_alive_interval(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.settings.http2_keep_alive_interval = interval.into();
        self
    }

    /// How long an HTTP/2 keep-alive ping may go unanswered. Default: 20 seconds (hyper's).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(listener: tokio::net::TcpListener) {
    /// use std::time::Duration;
    /// let drain = tower_drain::Drain::new();
    /// let server = tower_drain::serve(listener, axum::Router::<()>::new(), drain.shutdown())
    ///     .http2_keep_alive_interval(Duration::from_secs(30))
    ///     .http2_keep_alive_timeout(Duration::from_secs(10));
    /// # drop(server);
    /// # }
    /// ```
    pub fn http2_keep_alive_timeout(mut self, timeout: Duration) -> Self {
        self.settings.http2_keep_alive_timeout = timeout;
        self
    }
}

impl<L: fmt::Debug, S> fmt::Debug for Serve<L, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("shutdown", &self.shutdown)
            .field("signal", &self.signal.is_some())
            .field("forced_shutdown", &self.force.is_some())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<L, S, B> IntoFuture for Serve<L, S>
where
    L: Listener,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Output = ShutdownReport;
    type IntoFuture = ServeFuture;

    fn into_future(self) -> ServeFuture {
        let Serve {
            listener,
            service,
            shutdown,
            signal,
            force,
            settings,
        } = self;
        ServeFuture {
            inner: Box::pin(accept::run(
                listener, service, shutdown, signal, force, settings,
            )),
        }
    }
}

/// The future of a [`Serve`]: resolves to the [`ShutdownReport`] once the server has closed.
///
/// # Examples
///
/// ```no_run
/// use std::future::IntoFuture;
///
/// # async fn run(listener: tokio::net::TcpListener) {
/// let drain = tower_drain::Drain::new();
/// let future: tower_drain::ServeFuture =
///     tower_drain::serve(listener, axum::Router::<()>::new(), drain.shutdown()).into_future();
/// let server = tokio::spawn(future);
/// # drop(server);
/// # }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct ServeFuture {
    // One allocation per server: it keeps the async loop nameable.
    inner: Pin<Box<dyn Future<Output = ShutdownReport> + Send>>,
}

impl Future for ServeFuture {
    type Output = ShutdownReport;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for ServeFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeFuture").finish_non_exhaustive()
    }
}
