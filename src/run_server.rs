//! `Shutdown::run_server`: the shutdown wired into a server that has its own graceful
//! shutdown (`axum::serve`, tonic's `Server`, axum-server, a hyper-util accept loop), so that
//! it keeps accepting until the pool is empty and still ends in bounded time.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::sync::oneshot;
use tokio::time::Sleep;

use crate::shutdown::{Shutdown, ShutdownFuture, ShutdownReport};
use crate::trace;

/// How long a server gets to close after the grace period, by default.
const DEFAULT_CLOSE_WITHIN: Duration = Duration::from_secs(1);

impl Shutdown {
    /// Runs `server`, and this shutdown when `signal` completes, telling the server to close
    /// only once the pool is empty or the grace period is over: the wiring for a server with
    /// its own graceful shutdown.
    ///
    /// `server` is called once, at once, with the [`Closing`] future to hand to that server's
    /// graceful shutdown (`axum::serve(..).with_graceful_shutdown(closing)`, tonic's
    /// `serve_with_shutdown(addr, closing)`). So the server keeps accepting through the
    /// unready period and the drain, and a request on a new connection gets the layer's
    /// refusal (`503`, gRPC `UNAVAILABLE`), never a refused connection. Once the shutdown
    /// has run, `closing` completes, and the server closes its listener and its connections
    /// as it does; the future returned completes when the server has, and, with a `grace`
    /// period, in any case [`close_within`](RunServer::close_within) (one second by default)
    /// after its end: within `unready_for + grace + close_within` of the signal, whatever
    /// clients do. With no `grace` there is no such bound. A [`Drain::resume`](crate::Drain::resume) that ends the
    /// run ends the server too: its signal has been spent. The server's future is then dropped, with the connections it still owns;
    /// those it spawned end with the runtime, when `main` returns.
    ///
    /// What the stock servers cannot do here, and `serve` does: send HTTP/2 `GOAWAY` when the
    /// unready period begins (they send it when `closing` completes, once the pool is
    /// empty), and count the connections cut.
    ///
    /// # Errors
    ///
    /// The server's own error, if it fails; then no report is made, and a shutdown under way
    /// is left where it was (another `shutdown()` picks it up). A server that ends without an
    /// error before the signal runs the shutdown at once (what it had in flight is drained)
    /// and returns its report.
    ///
    /// # Examples
    ///
    /// `axum::serve`, with `ConnectInfo`:
    ///
    /// ```no_run
    /// use std::{net::SocketAddr, time::Duration};
    /// use axum::{extract::ConnectInfo, routing::get, Router};
    ///
    /// # #[cfg(feature = "http")]
    /// # async fn run() -> std::io::Result<()> {
    /// let drain = tower_drain::Drain::new();
    /// let app = Router::new()
    ///     .route("/", get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
    ///         format!("hello {peer}")
    ///     }))
    ///     .layer(drain.http_layer());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    ///
    /// let report = drain
    ///     .shutdown()
    ///     .unready_for(Duration::from_secs(5))
    ///     .grace(Duration::from_secs(30))
    ///     .run_server(async { tokio::signal::ctrl_c().await.unwrap() }, |closing| {
    ///         axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
    ///             .with_graceful_shutdown(closing)
    ///     })
    ///     .await?;
    /// println!("{report}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn run_server<Sig, F, Fut, T, E>(
        self,
        signal: Sig,
        server: F,
    ) -> RunServer<Sig, Fut::IntoFuture>
    where
        Sig: Future<Output = ()>,
        F: FnOnce(Closing) -> Fut,
        Fut: IntoFuture<Output = Result<T, E>>,
    {
        let (close, closing) = oneshot::channel();
        RunServer {
            signal,
            server: server(Closing { closing }).into_future(),
            state: State {
                shutdown: Some(self),
                procedure: None,
                close: Some(close),
                report: None,
                server_done: false,
                deadline: None,
                close_within: DEFAULT_CLOSE_WITHIN,
            },
        }
    }
}

/// Completes when a server given to [`Shutdown::run_server`] should close: once its shutdown
/// has run (the pool is empty or the grace period is over), or once the [`RunServer`] is
/// dropped.
///
/// # Examples
///
/// A hand-written hyper-util accept loop stops accepting on it:
///
/// ```no_run
/// # async fn run(listener: tokio::net::TcpListener) -> std::io::Result<()> {
/// let drain = tower_drain::Drain::new();
/// let report = drain
///     .shutdown()
///     .run_server(async { /* a signal */ }, |closing| async move {
///         let graceful = hyper_util::server::graceful::GracefulShutdown::new();
///         let mut closing = std::pin::pin!(closing);
///         loop {
///             tokio::select! {
///                 accepted = listener.accept() => {
///                     let (tcp, _) = accepted?;
///                     // ... `graceful.watch(connection)`, then spawn it ...
/// #                   drop(tcp);
///                 }
///                 () = &mut closing => break,
///             }
///         }
///         graceful.shutdown().await;
///         Ok::<_, std::io::Error>(())
///     })
///     .await?;
/// # drop(report);
/// # Ok(())
/// # }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Closing {
    closing: oneshot::Receiver<()>,
}

impl Future for Closing {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Sent when the shutdown has run; dropped with the `RunServer`: either way, close.
        Pin::new(&mut self.closing).poll(cx).map(|_| ())
    }
}

impl fmt::Debug for Closing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Closing").finish_non_exhaustive()
    }
}

pin_project! {
    /// A server run under a shutdown: made by [`Shutdown::run_server`], resolves to the
    /// [`ShutdownReport`] or the server's error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # async fn run(listener: tokio::net::TcpListener, app: axum::Router) -> std::io::Result<()> {
    /// let drain = tower_drain::Drain::new();
    /// let report = drain
    ///     .shutdown()
    ///     .grace(Duration::from_secs(10))
    ///     .run_server(async { /* a signal */ }, |closing| {
    ///         axum::serve(listener, app).with_graceful_shutdown(closing)
    ///     })
    ///     .close_within(Duration::from_millis(500))
    ///     .await?;
    /// # drop(report);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct RunServer<Sig, F> {
        #[pin]
        signal: Sig,
        #[pin]
        server: F,
        state: State,
    }
}

/// Where a [`RunServer`] is: everything but the two futures it polls.
struct State {
    /// Taken when the shutdown starts.
    shutdown: Option<Shutdown>,
    procedure: Option<ShutdownFuture>,
    /// Taken when the server is told to close.
    close: Option<oneshot::Sender<()>>,
    report: Option<ShutdownReport>,
    server_done: bool,
    deadline: Option<Pin<Box<Sleep>>>,
    close_within: Duration,
}

impl<Sig, F> RunServer<Sig, F> {
    /// How long the server gets to close after the grace period before it is dropped.
    /// Default: one second.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(listener: tokio::net::TcpListener, app: axum::Router) {
    /// let drain = tower_drain::Drain::new();
    /// let server = drain
    ///     .shutdown()
    ///     .run_server(async {}, |closing| axum::serve(listener, app).with_graceful_shutdown(closing))
    ///     .close_within(std::time::Duration::from_secs(2));
    /// # drop(server);
    /// # }
    /// ```
    pub fn close_within(mut self, period: Duration) -> Self {
        self.state.close_within = period;
        self
    }
}

impl State {
    /// Starts the shutdown, once.
    fn start(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            self.procedure = Some(shutdown.into_future());
        }
    }
}

impl<Sig, F, T, E> Future for RunServer<Sig, F>
where
    Sig: Future<Output = ()>,
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<ShutdownReport, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let state = &mut *this.state;
        if state.shutdown.is_some() && this.signal.as_mut().poll(cx).is_ready() {
            state.start();
        }
        if let Some(procedure) = &mut state.procedure {
            if let Poll::Ready(report) = Pin::new(procedure).poll(cx) {
                state.procedure = None;
                // The server is told only now: until the pool is empty it accepts, and its
                // refusals are the layer's answers.
                if let Some(close) = state.close.take() {
                    let _ = close.send(());
                }
                state.deadline = report
                    .closing_deadline(state.close_within)
                    .map(|deadline| Box::pin(tokio::time::sleep_until(deadline)));
                state.report = Some(report);
            }
        }
        if !state.server_done {
            match this.server.as_mut().poll(cx) {
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(_)) => {
                    state.server_done = true;
                    if let Some(report) = state.report.take() {
                        return Poll::Ready(Ok(report));
                    }
                    // Ended before its shutdown: drain what it left in flight, now.
                    state.start();
                    if let Some(procedure) = &mut state.procedure {
                        if let Poll::Ready(report) = Pin::new(procedure).poll(cx) {
                            state.procedure = None;
                            return Poll::Ready(Ok(report));
                        }
                    }
                }
                Poll::Pending => {}
            }
        } else if let Some(report) = state.report.take() {
            return Poll::Ready(Ok(report));
        }
        if let Some(deadline) = &mut state.deadline {
            if deadline.as_mut().poll(cx).is_ready() {
                trace::warning!("the server was still closing after the grace period: dropped");
                state.deadline = None;
                if let Some(report) = state.report.take() {
                    return Poll::Ready(Ok(report));
                }
            }
        }
        Poll::Pending
    }
}

impl<Sig, F> fmt::Debug for RunServer<Sig, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunServer")
            .field("signalled", &self.state.shutdown.is_none())
            .field("closing", &self.state.close.is_none())
            .field("close_within", &self.state.close_within)
            .finish_non_exhaustive()
    }
}
