//! The accept loop and its phases: accept and serve until the signal, run the shutdown, follow
//! its phases (unready, draining, closing), then close every connection within the bound.

use std::future::{Future, IntoFuture};
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::connection::{serve_connection, Stage};
use super::cut::Switches;
use super::listener::Listener;
use super::peer::Peer;
use super::settings::Settings;
use crate::shutdown::{Shutdown, ShutdownReport};
use crate::trace;
use crate::BoxError;

/// How long to wait after an accept error that is not one connection's (out of file
/// descriptors, say) before accepting again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The signal `serve` waits for, boxed once per server.
pub(crate) type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;
/// What makes the second signal, called when the first has come.
pub(crate) type MakeSignal = Box<dyn FnOnce() -> Signal + Send>;

/// Runs the server: see [`Serve`](super::Serve).
pub(crate) async fn run<L, S, B>(
    listener: L,
    service: S,
    shutdown: Shutdown,
    signal: Option<Signal>,
    force: Option<MakeSignal>,
    settings: Settings,
) -> ShutdownReport
where
    L: Listener,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let drain = shutdown.drain().clone();
    let unready_for = shutdown.unready_period();
    let builder = settings.builder();
    let local = listener.local_addr().ok();
    let (stage, _) = watch::channel(Stage::Serving);
    let mut connections = JoinSet::new();
    let switches = Switches::default();
    let mut listener = Some(listener);
    let mut signal = signal;
    let mut force = force;
    let mut second: Option<Signal> = None;
    // What the pool had done when the signal came, and when: for a forced report.
    let mut signalled: Option<(crate::Snapshot, Instant)> = None;
    let mut procedure: Option<Pin<Box<dyn Future<Output = ShutdownReport> + Send>>> = None;
    let mut draining = Box::pin(drain.draining());
    let mut drain_seen = false;
    // Set after an accept error: the listener is not polled again until it fires, while
    // the signal, the phases and the connections go on being served.
    let mut retry: Option<Pin<Box<Sleep>>> = None;

    let mut report = loop {
        let event = std::future::poll_fn(|cx| {
            if let Some(Poll::Ready(report)) = procedure.as_mut().map(|p| p.as_mut().poll(cx)) {
                return Poll::Ready(Event::Ended(report));
            }
            if let Some(Poll::Ready(())) = second.as_mut().map(|s| s.as_mut().poll(cx)) {
                return Poll::Ready(Event::Forced);
            }
            if !drain_seen && draining.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Draining);
            }
            if let Some(Poll::Ready(())) = signal.as_mut().map(|s| s.as_mut().poll(cx)) {
                return Poll::Ready(Event::Signal);
            }
            // Reap finished connections, so the set holds only live ones.
            while let Poll::Ready(Some(_)) = connections.poll_join_next(cx) {}
            if let Some(sleep) = &mut retry {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                retry = None;
            }
            match listener.as_mut().map(|l| l.poll_accept(cx)) {
                Some(Poll::Ready(accepted)) => Poll::Ready(Event::Accepted(accepted)),
                _ => Poll::Pending,
            }
        })
        .await;
        match event {
            Event::Accepted(Ok((io, addr))) => {
                connections.spawn(serve_connection(
                    builder.clone(),
                    switches.wrap(io),
                    Peer::new(addr, local.as_ref()),
                    service.clone(),
                    stage.subscribe(),
                ));
            }
            Event::Accepted(Err(error)) => {
                if concerns_one_connection(&error) {
                    // Free, but let the other tasks run: a listener that reports such errors
                    // without end must not hold the thread.
                    tokio::task::yield_now().await;
                } else {
                    trace::warning!("accept failed, retrying in 100 ms: {error}");
                    retry = Some(Box::pin(tokio::time::sleep(ACCEPT_RETRY)));
                }
            }
            Event::Signal => {
                signal = None;
                signalled = Some((drain.snapshot(), Instant::now()));
                // Installed now, so that only a signal after the first one counts.
                second = force.take().map(|make| make());
                if !unready_for.is_zero() {
                    trace::info!(
                        connections = connections.len(),
                        "unready: HTTP/2 connections told to go away"
                    );
                    stage.send_replace(Stage::Unready);
                }
                if settings.close_listener_on_signal {
                    trace::info!("shutdown: listener closed, another process accepts now");
                    listener = None;
                }
                procedure = Some(Box::pin(shutdown.clone().into_future()));
            }
            Event::Draining => {
                drain_seen = true;
                trace::info!(
                    connections = connections.len(),
                    "draining: HTTP/2 connections told to go away"
                );
                stage.send_replace(Stage::Draining);
                if settings.close_listener_when_draining {
                    listener = None;
                }
            }
            Event::Ended(report) => break report,
            Event::Forced => {
                let (before, at) = signalled.take().expect("a second signal follows a first");
                trace::warning!("second signal: the drain ends now");
                break ShutdownReport::of_forced(&drain, &before, at.elapsed());
            }
        }
    };

    // Closing: no new connections; every open one closes once its responses are written,
    // until the end of the run's grace period (and no longer than `close_within` past it).
    drop(listener);
    stage.send_replace(Stage::Closing);
    // Forced: cut at once.
    let deadline = if report.forced() {
        Some(Instant::now())
    } else {
        report.closing_deadline(settings.close_within)
    };
    let closed = async { while connections.join_next().await.is_some() {} };
    let all_closed = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, closed).await.is_ok(),
        None => {
            closed.await;
            true
        }
    };
    // What is left is cut: connections still writing at the deadline, and upgraded ones
    // (WebSockets) that hyper handed to the application. An upgraded connection that should
    // be waited for holds a guard (`DrainWatch::guard`), and so kept the pool from emptying
    // until the deadline.
    let cut = switches.cut_all();
    if !all_closed {
        trace::warning!(
            connections = connections.len(),
            "connections still open after the grace period: cut"
        );
        connections.shutdown().await;
    }
    if cut > 0 {
        trace::info!(connections = cut, "connections cut");
    }
    report.connections_cut = cut as u64;
    report
}

enum Event<I, A> {
    Accepted(io::Result<(I, A)>),
    Signal,
    Draining,
    Ended(ShutdownReport),
    Forced,
}

/// Whether an accept error concerns one connection only, which failed before it was accepted:
/// then it costs nothing, while running out of file descriptors calls for a pause.
fn concerns_one_connection(error: &io::Error) -> bool {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}
