//! `HttpResponseFuture` for HTTP services.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;

use super::body::DrainBody;
use super::reject;
use crate::guard::{CancelOnDrop, Guard};
use crate::wait::DrainStarted;

pin_project! {
    /// The response future of [`HttpDrainService`](crate::HttpDrainService).
    ///
    /// It resolves to the inner response with its body wrapped in [`DrainBody`], which keeps
    /// the request counted until the body ends; or to the refusal of a draining pool. Dropped
    /// before it resolves, the request counts as cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// use http::{Request, Response};
    /// use tower::{service_fn, Layer, Service};
    /// use tower_drain::{Drain, HttpResponseFuture};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let drain = Drain::new();
    /// let mut service = drain.http_layer().layer(service_fn(|_: Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(Response::new(String::from("hi")))
    /// }));
    /// let future: HttpResponseFuture<_> = service.call(Request::new(()));
    /// let response = future.await.unwrap();
    /// assert_eq!(drain.in_flight(), 1, "counted until the body ends");
    /// drop(response);
    /// # }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct HttpResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // An exempt request is one with no guard: never counted, never told to close.
        Called {
            #[pin]
            future: F,
            guard: CancelOnDrop,
            close: Close,
            // A `HEAD` request: its response has no body, whatever the service returns.
            head: bool,
            // `end_streams_when_draining` matched. `None` once resolved.
            ending: Option<Box<EndOnDrain>>,
        },
        // Boxed: a refusal is built out of line, and a pointer is all that crosses back.
        Refused {
            response: Option<Box<Response<Bytes>>>,
        },
    }
}

/// `end_streams_when_draining` matched a request: its response body ends when draining
/// begins, a gRPC one with `UNAVAILABLE` in its trailers. Boxed, so that only matching
/// requests pay for it in the response future's size.
pub(crate) struct EndOnDrain {
    draining: DrainStarted,
    grpc: bool,
}

impl EndOnDrain {
    #[cold]
    pub(crate) fn new(draining: DrainStarted, grpc: bool) -> Box<Self> {
        Box::new(Self { draining, grpc })
    }
}

/// When a response asks its client to close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Close {
    /// HTTP/2 and later, where connection headers are illegal; and exempt requests.
    Never,
    /// HTTP/1.x: if the pool drains before the response is ready.
    IfDraining,
    /// HTTP/1.x, picked by gradual closing.
    Always,
}

impl<F> HttpResponseFuture<F> {
    /// An admitted request (`guard`), or an exempt one (no guard, `Close::Never`), whose
    /// response body ends when draining begins if `ending` is given.
    ///
    /// Every admitted or exempt request's future is built here, and only here: one place
    /// that the compiler can build in where the caller wants it.
    #[inline]
    pub(crate) fn called(
        future: F,
        guard: Option<Guard>,
        close: Close,
        head: bool,
        ending: Option<Box<EndOnDrain>>,
    ) -> Self {
        Self {
            state: State::Called {
                future,
                guard: CancelOnDrop::new(guard),
                close,
                head,
                ending,
            },
        }
    }

    pub(crate) fn refused(response: Box<Response<Bytes>>) -> Self {
        Self {
            state: State::Refused {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for HttpResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
    B::Data: From<Bytes>,
{
    type Output = Result<Response<DrainBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called {
                future,
                guard,
                close,
                head,
                ending,
            } => {
                let result = ready!(future.poll(cx));
                // Taken before the result is looked at: an inner error ends the request as
                // completed (the closure below, never called, drops it).
                let guard = guard.take();
                // The wrapped response is built whole, as the return value, and settled where
                // it lies: anything that reads the inner response between the inner future
                // and the wrapped one (a status test, a body's end) makes the compiler copy
                // it whole into a temporary, on every request.
                let mut output = Poll::Ready(
                    result.map(|response| response.map(|body| DrainBody::counted(body, guard))),
                );
                if let Poll::Ready(Ok(response)) = &mut output {
                    settle(response, *close, *head, ending);
                }
                output
            }
            StateProj::Refused { response } => {
                // Built here rather than out of line: a response coming back from a call would
                // join the admitted one's in a temporary, and cost every request a copy.
                let response = match response.take() {
                    Some(response) => *response,
                    None => refused_again(),
                };
                Poll::Ready(Ok(response.map(DrainBody::full)))
            }
        }
    }
}

/// Settles a freshly wrapped response to an admitted (or exempt) request: its guard released
/// at once if the head is the whole response; `connection: close` if it asks an HTTP/1.x
/// client to reconnect; counted only to its declared length where a server may stop there;
/// ended when draining begins if `end_streams_when_draining` matched.
///
/// Its checks only read, and are inlined; the rare work is one out-of-line call, so the
/// common path is a few comparisons.
#[inline(always)]
fn settle<B: http_body::Body>(
    response: &mut Response<DrainBody<B>>,
    close: Close,
    head: bool,
    ending: &mut Option<Box<EndOnDrain>>,
) {
    let status = response.status();
    let body = response.body();
    // Accepted before the drain, answered during it: ask HTTP/1.x keep-alive clients to
    // reconnect elsewhere. Or picked by gradual closing. (`close` is `Never` but for
    // HTTP/1.x.)
    let close_now = should_close(close, body.guard()) && reject::may_close(true, status);
    // The head is the whole response (RFC 9110, sections 9.3.2, 15.3.5 and 15.4.5), or the
    // body is empty, and servers drop such bodies unpolled: that is no client gone. The
    // request completes now.
    let complete = head || has_no_body(status) || body.inner_is_end_stream();
    // HTTP/1.x servers stop at a declared length and may drop the body there; HTTP/2 ones
    // poll its end. Looked up only for a counted HTTP/1.x response whose body does not know
    // its own length: one that does (`Full`, `Bytes`, `String`) ends where hyper stops. A
    // stream to end on drain does not rely on it.
    let by_length = ending.is_none()
        && close != Close::Never
        && !complete
        && body.guard().is_some()
        && body.inner_length_unknown();
    if close_now || complete || by_length || ending.is_some() {
        finish(response, close_now, complete, by_length, ending.take());
    }
}

/// The rare work `settle` decided on, out of line.
#[cold]
#[inline(never)]
fn finish<B: http_body::Body>(
    response: &mut Response<DrainBody<B>>,
    close: bool,
    complete: bool,
    by_length: bool,
    ending: Option<Box<EndOnDrain>>,
) {
    if complete {
        response.body_mut().complete_now();
    }
    if close {
        response
            .headers_mut()
            .insert(http::header::CONNECTION, reject::CLOSE);
    }
    if let Some(length) = by_length
        .then(|| declared_length(response.headers()))
        .flatten()
    {
        response.body_mut().complete_after(length);
    }
    if let Some(ending) = ending {
        let EndOnDrain { draining, grpc } = *ending;
        response.body_mut().end_when_draining(draining, grpc);
    }
}

/// The `content-length` that a response's headers declare, if any.
#[inline]
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    let value = headers.get(http::header::CONTENT_LENGTH)?;
    value.to_str().ok()?.parse().ok()
}

/// Whether a response to an admitted HTTP/1.x request asks its client to reconnect: accepted
/// before the drain and answered during it, or picked by gradual closing.
#[inline]
fn should_close(close: Close, guard: Option<&Guard>) -> bool {
    match close {
        Close::Never => false,
        Close::IfDraining => guard.is_some_and(Guard::is_draining),
        Close::Always => true,
    }
}

/// Statuses whose responses never have a body: informational, `204` and `304`.
#[inline]
fn has_no_body(status: http::StatusCode) -> bool {
    status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED
}

/// A refused future polled again after it completed: another refusal rather than a panic.
#[cold]
#[inline(never)]
fn refused_again() -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    response
}

impl<F> fmt::Debug for HttpResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Called { guard, .. } if guard.get().is_some() => "counted",
            State::Called { .. } => "exempt",
            State::Refused { .. } => "refused",
        };
        f.debug_struct("HttpResponseFuture")
            .field("state", &state)
            .finish()
    }
}
