//! One connection's life under `serve`: its protocol, learnt from its first request; what each
//! request is told about the connection (the peer's address, a gRPC deadline); and when it is
//! asked to close (`GOAWAY` for HTTP/2, keep-alive off for HTTP/1.1).

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tower_service::Service;

use super::body::ServeBody;
use super::grpc_timeout::{self, Deadline};
use super::peer::Peer;
use crate::BoxError;

/// What every connection is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
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

/// Serves one connection, closing it gracefully as `stage` says.
pub(crate) async fn serve_connection<I, A, S, B>(
    builder: auto::Builder<TokioExecutor>,
    io: I,
    peer: Peer<A>,
    service: S,
    mut stage: watch::Receiver<Stage>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A: Clone + Send + Sync + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let learnt = Arc::new(Learnt::default());
    let service = ConnectionService {
        inner: service,
        learnt: learnt.clone(),
        peer,
    };
    let connection =
        builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
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

/// The service of one connection: it records the protocol from the first request (so that
/// only HTTP/2 connections are sent `GOAWAY` early, including one opened during the unready
/// period), gives every request the peer's address, and holds gRPC calls to their
/// `grpc-timeout`.
#[derive(Clone)]
struct ConnectionService<S, A> {
    inner: S,
    learnt: Arc<Learnt>,
    peer: Peer<A>,
}

impl<S, A, B> Service<Request<Incoming>> for ConnectionService<S, A>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    A: Clone + Send + Sync + 'static,
{
    type Response = Response<ServeBody<B>>;
    type Error = S::Error;
    type Future = Deadline<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Incoming>) -> Self::Future {
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
        self.peer.describe(request.extensions_mut());
        let timeout = grpc_timeout::requested(request.headers());
        Deadline::new(self.inner.call(request), timeout)
    }
}
