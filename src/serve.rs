//! `serve`: the server wiring that keeps every promise of a graceful shutdown, for any Tower
//! HTTP service (an axum `Router`, tonic `Routes`, a hyper-util service) over HTTP/1.1 and h2c.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower_service::Service;

use crate::shutdown::{Shutdown, ShutdownReport};
use crate::trace;
use crate::BoxError;

/// How long connections get to close after the grace period, by default.
const DEFAULT_CLOSE_WITHIN: Duration = Duration::from_secs(1);

/// Serves `service` on `listener` until `shutdown` has run, with the wiring that delivers what
/// the pool promises: made by [`serve`], run by awaiting it.
///
/// Until [`with_graceful_shutdown`](Self::with_graceful_shutdown)'s signal, it serves every
/// connection over HTTP/1.1 or h2c (prior knowledge), upgrades included. On the signal it runs
/// `shutdown`, and follows its phases:
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
/// So the future completes within `unready_for + grace + close_within` of the signal, whatever
/// the requests do, with the [`ShutdownReport`]; with no `grace`, when every connection has
/// closed.
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
///     .await?;
/// println!("{report}");
/// # Ok(())
/// # }
/// ```
#[must_use = "a server does nothing until it is awaited"]
pub struct Serve<S> {
    listener: TcpListener,
    service: S,
    shutdown: Shutdown,
    signal: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    close_listener_when_draining: bool,
    close_listener_on_signal: bool,
    close_within: Duration,
}

/// Serves `service` on `listener`, running `shutdown` on the signal given to
/// [`Serve::with_graceful_shutdown`]. See [`Serve`].
///
/// `service` is usually the application with [`Drain::http_layer`](crate::Drain::http_layer)
/// on it and the [`readiness`](crate::Drain::readiness) route beside it.
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
///     .await?;
/// # drop(report);
/// # Ok(())
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "serve")))]
pub fn serve<S>(listener: TcpListener, service: S, shutdown: Shutdown) -> Serve<S> {
    Serve {
        listener,
        service,
        shutdown,
        signal: None,
        close_listener_when_draining: false,
        close_listener_on_signal: false,
        close_within: DEFAULT_CLOSE_WITHIN,
    }
}

impl<S> Serve<S> {
    /// Runs the shutdown when `signal` completes: [`signal::terminate`](crate::signal) for
    /// Ctrl-C or SIGTERM, say. Without one, the server runs until an error.
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
        self.close_listener_when_draining = true;
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
        self.close_listener_on_signal = true;
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
        self.close_within = period;
        self
    }
}

impl<S> fmt::Debug for Serve<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("shutdown", &self.shutdown)
            .field("signal", &self.signal.is_some())
            .field(
                "close_listener_when_draining",
                &self.close_listener_when_draining,
            )
            .field("close_listener_on_signal", &self.close_listener_on_signal)
            .field("close_within", &self.close_within)
            .finish_non_exhaustive()
    }
}

impl<S, B> IntoFuture for Serve<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Output = io::Result<ShutdownReport>;
    type IntoFuture = ServeFuture;

    fn into_future(self) -> ServeFuture {
        ServeFuture {
            inner: Box::pin(self.run()),
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
    inner: Pin<Box<dyn Future<Output = io::Result<ShutdownReport>> + Send>>,
}

impl Future for ServeFuture {
    type Output = io::Result<ShutdownReport>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for ServeFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeFuture").finish_non_exhaustive()
    }
}

/// What every connection is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Serving,
    /// The unready period began: HTTP/2 connections go away now, so that their clients open
    /// new streams elsewhere (or on a new connection) before anything is refused. HTTP/1.1
    /// ones are moved off by `gradual_close`, a response at a time.
    Unready,
    /// Draining began: HTTP/2 connections go away, if they have not yet.
    Draining,
    /// The pool is empty or the grace period is over: every connection closes.
    Closing,
}

/// A connection's protocol, learnt from its first request.
const UNKNOWN: u8 = 0;
const HTTP1: u8 = 1;
const HTTP2: u8 = 2;

impl<S> Serve<S> {
    async fn run<B>(self) -> io::Result<ShutdownReport>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let Serve {
            listener,
            service,
            shutdown,
            signal,
            close_listener_when_draining,
            close_listener_on_signal,
            close_within,
        } = self;
        let drain = shutdown.drain().clone();
        let grace = shutdown.grace_period();
        let unready_for = shutdown.unready_period();
        let builder = auto::Builder::new(TokioExecutor::new());
        let (stage, _) = watch::channel(Stage::Serving);
        let mut connections = JoinSet::new();
        let mut listener = Some(listener);
        let mut signal = signal;
        let mut procedure: Option<Pin<Box<dyn Future<Output = ShutdownReport> + Send>>> = None;
        let mut draining = Box::pin(drain.draining());
        let mut draining_since: Option<Instant> = None;

        let report = loop {
            let event = std::future::poll_fn(|cx| {
                if let Some(Poll::Ready(report)) = procedure.as_mut().map(|p| p.as_mut().poll(cx)) {
                    return Poll::Ready(Event::Ended(report));
                }
                if draining_since.is_none() && draining.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Draining);
                }
                if let Some(Poll::Ready(())) = signal.as_mut().map(|s| s.as_mut().poll(cx)) {
                    return Poll::Ready(Event::Signal);
                }
                // Reap finished connections, so the set holds only live ones.
                while let Poll::Ready(Some(_)) = connections.poll_join_next(cx) {}
                match listener.as_ref().map(|l| l.poll_accept(cx)) {
                    Some(Poll::Ready(accepted)) => Poll::Ready(Event::Accepted(accepted)),
                    _ => Poll::Pending,
                }
            })
            .await;
            match event {
                Event::Accepted(Ok((tcp, _))) => {
                    connections.spawn(serve_connection(
                        builder.clone(),
                        tcp,
                        service.clone(),
                        stage.subscribe(),
                    ));
                }
                Event::Accepted(Err(error)) => accept_error(error).await,
                Event::Signal => {
                    signal = None;
                    if !unready_for.is_zero() {
                        trace::info!(
                            connections = connections.len(),
                            "unready: HTTP/2 connections told to go away"
                        );
                        stage.send_replace(Stage::Unready);
                    }
                    if close_listener_on_signal {
                        trace::info!("shutdown: listener closed, another process accepts now");
                        listener = None;
                    }
                    procedure = Some(Box::pin(shutdown.clone().into_future()));
                }
                Event::Draining => {
                    draining_since = Some(Instant::now());
                    trace::info!(
                        connections = connections.len(),
                        "draining: HTTP/2 connections told to go away"
                    );
                    stage.send_replace(Stage::Draining);
                    if close_listener_when_draining {
                        listener = None;
                    }
                }
                Event::Ended(report) => break report,
            }
        };

        // Closing: no new connections; every open one closes once its responses are written,
        // until the end of the grace period (and no longer than `close_within` past it).
        drop(listener);
        stage.send_replace(Stage::Closing);
        let deadline = match (draining_since, grace) {
            (Some(since), Some(grace)) => since
                .checked_add(grace)
                .map(|end| end.max(Instant::now()))
                .and_then(|end| end.checked_add(close_within)),
            // Drained before draining began (a resume): close within the margin.
            (None, Some(_)) => Instant::now().checked_add(close_within),
            (_, None) => None,
        };
        let closed = async { while connections.join_next().await.is_some() {} };
        let all_closed = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, closed).await.is_ok(),
            None => {
                closed.await;
                true
            }
        };
        if !all_closed {
            trace::warning!(
                connections = connections.len(),
                "connections still open after the grace period: closed"
            );
            connections.shutdown().await;
        }
        Ok(report)
    }
}

enum Event {
    Accepted(io::Result<(TcpStream, std::net::SocketAddr)>),
    Signal,
    Draining,
    Ended(ShutdownReport),
}

/// Waits out an error from `accept`: a connection that failed before it was accepted costs
/// nothing, while running out of file descriptors calls for a pause before trying again.
async fn accept_error(error: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    trace::warning!("accept failed, retrying in 100 ms: {error}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Serves one connection, closing it gracefully as `stage` says.
async fn serve_connection<S, B>(
    builder: auto::Builder<TokioExecutor>,
    tcp: TcpStream,
    service: S,
    mut stage: watch::Receiver<Stage>,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let learnt = Arc::new(Learnt::default());
    let service = LearnVersion {
        inner: service,
        learnt: learnt.clone(),
    };
    let connection = builder
        .serve_connection_with_upgrades(TokioIo::new(tcp), TowerToHyperService::new(service));
    let mut connection = std::pin::pin!(connection);
    let mut told = false;
    let mut stage_open = true;
    loop {
        // Ready on a change of stage, or once the first request has told the protocol.
        let changed = {
            // Kept across polls, so that neither registration is ever lost.
            let mut changed = std::pin::pin!(stage.changed());
            let mut first_request = std::pin::pin!(learnt.first_request.notified());
            std::future::poll_fn(|cx| {
                if connection.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                if first_request.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Ok(())));
                }
                if !stage_open {
                    return Poll::Pending;
                }
                changed.as_mut().poll(cx).map(Some)
            })
            .await
        };
        match changed {
            None => return,
            Some(Err(_)) => stage_open = false,
            Some(Ok(())) => {
                let now = *stage.borrow_and_update();
                // Relaxed: a hint set by the connection's own requests; a connection whose
                // first request has not been seen yet is closed with the rest.
                let http2 = learnt.version.load(Ordering::Relaxed) == HTTP2;
                let go_away = match now {
                    Stage::Serving => false,
                    Stage::Unready | Stage::Draining => http2,
                    Stage::Closing => true,
                };
                if go_away && !told {
                    told = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// What a connection's requests tell its task: the protocol, once the first one arrives.
#[derive(Default)]
struct Learnt {
    version: AtomicU8,
    first_request: tokio::sync::Notify,
}

/// Records its connection's protocol from the first request it sees, so that only HTTP/2
/// connections are sent `GOAWAY` early, including one opened during the unready period.
#[derive(Clone)]
struct LearnVersion<S> {
    inner: S,
    learnt: Arc<Learnt>,
}

impl<S> Service<Request<Incoming>> for LearnVersion<S>
where
    S: Service<Request<Incoming>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        // Relaxed: read by this connection's task as a hint only, after the notification.
        if self.learnt.version.load(Ordering::Relaxed) == UNKNOWN {
            let version = if request.version() == Version::HTTP_2 {
                HTTP2
            } else {
                HTTP1
            };
            self.learnt.version.store(version, Ordering::Relaxed);
            // `notify_one` keeps the permit if the task is not waiting at this instant.
            self.learnt.first_request.notify_one();
        }
        self.inner.call(request)
    }
}
