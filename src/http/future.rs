//! `ResponseFuture` for HTTP services.

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
use crate::wait::Draining;

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
    /// use tower_drain::{http::ResponseFuture, Drain};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let drain = Drain::new();
    /// let mut service = drain.http_layer().layer(service_fn(|_: Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(Response::new(String::from("hi")))
    /// }));
    /// let future: ResponseFuture<_> = service.call(Request::new(()));
    /// let response = future.await.unwrap();
    /// assert_eq!(drain.in_flight(), 1, "counted until the body ends");
    /// drop(response);
    /// # }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F> {
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
    draining: Draining,
    grpc: bool,
}

impl EndOnDrain {
    #[cold]
    pub(crate) fn new(draining: Draining, grpc: bool) -> Box<Self> {
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

impl<F> ResponseFuture<F> {
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

impl<F, B, E> Future for ResponseFuture<F>
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
                // Taken before the `?`: an inner error ends the request as completed.
                let guard = guard.take();
                let mut response = result?;
                let wrap = Wrap::new(&mut response, guard, *close, *head, ending.take());
                // Built in the return value, as the tail: see `Wrap::new`.
                Poll::Ready(Ok(response.map(|body| wrap.body(body))))
            }
            StateProj::Refused { response } => Poll::Ready(Ok(refusal(response))),
        }
    }
}

/// How the body of an admitted (or exempt) request's response is wrapped: counted until it
/// ends (or, for HTTP/1.x, until its declared length is sent), and ended when draining begins
/// if `end_streams_when_draining` matched.
struct Wrap {
    guard: Option<Guard>,
    length: Option<u64>,
    ending: Option<Box<EndOnDrain>>,
}

impl Wrap {
    /// Decides the wrapping and edits the response's head where it must.
    ///
    /// No reference to the response escapes into a call: what must go out of line (a header
    /// inserted, the declared length looked up) gets the header map, moved out and back. An
    /// escaping reference would make the compiler keep the response in memory and copy it
    /// whole, on every request, into the wrapped one; so this is inlined, and the caller
    /// builds the wrapped response as its return value.
    #[inline(always)]
    fn new<B: http_body::Body>(
        response: &mut Response<B>,
        guard: Option<Guard>,
        close: Close,
        head: bool,
        ending: Option<Box<EndOnDrain>>,
    ) -> Self {
        // Accepted before the drain, answered during it: ask HTTP/1.x keep-alive clients to
        // reconnect elsewhere. Or picked by gradual closing. (`close` is `Never` but for
        // HTTP/1.x.)
        let close_now =
            should_close(close, guard.as_ref()) && reject::may_close(true, response.status());
        // The head is the whole response (RFC 9110, sections 9.3.2, 15.3.5 and 15.4.5), and
        // servers drop such bodies unpolled: that is no client gone. The request completes
        // now, as one with an empty body does.
        let guard = guard.filter(|_| !head && !has_no_body(response.status()));
        // HTTP/1.x servers stop at a declared length and may drop the body there; HTTP/2 ones
        // poll its end. Looked up only for a counted HTTP/1.x response whose body does not
        // know its own length: one that does (`Full`, `Bytes`, `String`) ends where hyper
        // stops. A stream to end on drain does not rely on it.
        let by_length = ending.is_none()
            && close != Close::Never
            && guard.is_some()
            && response.body().size_hint().exact().is_none();
        let mut length = None;
        if close_now || by_length {
            let headers = std::mem::take(response.headers_mut());
            let (headers, declared) = edit_headers(headers, close_now, by_length);
            *response.headers_mut() = headers;
            length = declared;
        }
        Self {
            guard,
            length,
            ending,
        }
    }

    #[inline(always)]
    fn body<B: http_body::Body>(self, body: B) -> DrainBody<B> {
        let mut body = DrainBody::counted(body, self.guard);
        if let Some(length) = self.length {
            body.complete_after(length);
        }
        if let Some(ending) = self.ending {
            let EndOnDrain { draining, grpc } = *ending;
            body.end_when_draining(draining, grpc);
        }
        body
    }
}

/// The rare work on a response's headers, out of line: with `close`, adds
/// `connection: close`; with `by_length`, returns the length they declare, if any.
#[cold]
#[inline(never)]
fn edit_headers(
    mut headers: http::HeaderMap,
    close: bool,
    by_length: bool,
) -> (http::HeaderMap, Option<u64>) {
    if close {
        headers.insert(http::header::CONNECTION, reject::CLOSE);
    }
    let declared = by_length.then(|| declared_length(&headers)).flatten();
    (headers, declared)
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

/// The refusal's response, out of line: keeping the rare path out of `poll` lets the compiler
/// inline the common one into the server's future. Polled again after completion, another
/// refusal rather than a panic.
#[cold]
#[inline(never)]
fn refusal<B>(response: &mut Option<Box<Response<Bytes>>>) -> Response<DrainBody<B>> {
    let response = match response.take() {
        Some(response) => *response,
        None => {
            let mut response = Response::new(Bytes::new());
            *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            response
        }
    };
    response.map(DrainBody::full)
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Called { guard, .. } if guard.get().is_some() => "counted",
            State::Called { .. } => "exempt",
            State::Refused { .. } => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
