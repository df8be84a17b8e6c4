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
        },
        // `end_streams_when_draining`: as `Called`, with a body that ends when draining
        // begins. `None` once resolved.
        // Everything but the future boxed: only matching requests pay for it, and the
        // variant stays smaller than `Called`.
        Ending {
            #[pin]
            future: F,
            rest: Box<EndingRest>,
        },
        Refused {
            response: Option<Response<Bytes>>,
        },
    }
}

/// What an `Ending` response future keeps beside its future.
struct EndingRest {
    guard: CancelOnDrop,
    close: Close,
    head: bool,
    /// `None` once resolved.
    draining: Option<Draining>,
    grpc: bool,
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
    #[inline]
    pub(crate) fn counted(future: F, guard: Guard, close: Close, head: bool) -> Self {
        Self {
            state: State::Called {
                future,
                guard: CancelOnDrop::new(Some(guard)),
                close,
                head,
            },
        }
    }

    pub(crate) fn exempt(future: F) -> Self {
        Self {
            state: State::Called {
                future,
                guard: CancelOnDrop::new(None),
                close: Close::Never,
                head: false,
            },
        }
    }

    /// As `counted` (or `exempt`, without a guard), with a body that ends when draining
    /// begins: gRPC ones with `UNAVAILABLE` trailers.
    pub(crate) fn ending(
        future: F,
        guard: Option<Guard>,
        close: Close,
        head: bool,
        draining: Draining,
        grpc: bool,
    ) -> Self {
        Self {
            state: State::Ending {
                future,
                rest: Box::new(EndingRest {
                    guard: CancelOnDrop::new(guard),
                    close,
                    head,
                    draining: Some(draining),
                    grpc,
                }),
            },
        }
    }

    pub(crate) fn refused(response: Response<Bytes>) -> Self {
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
            } => {
                let result = ready!(future.poll(cx));
                // Taken before the `?` in `respond`: an inner error ends the request as
                // completed.
                let guard = guard.take();
                Poll::Ready(respond(
                    result,
                    guard,
                    *close,
                    *head,
                    |body, guard, length| match length {
                        Some(length) => DrainBody::sized(body, guard, length),
                        None => DrainBody::counted(body, guard),
                    },
                ))
            }
            StateProj::Ending { future, rest } => {
                let result = ready!(future.poll(cx));
                let guard = rest.guard.take();
                let (draining, grpc) = (rest.draining.take(), rest.grpc);
                Poll::Ready(respond(
                    result,
                    guard,
                    rest.close,
                    rest.head,
                    // A stream to end on drain: its declared length, if any, is not relied on.
                    |body, guard, _| match draining {
                        Some(draining) => DrainBody::ending(body, guard, draining, grpc),
                        None => DrainBody::counted(body, guard),
                    },
                ))
            }
            StateProj::Refused { response } => Poll::Ready(Ok(refusal(response))),
        }
    }
}

/// The response of an admitted (or exempt) request, its body wrapped by `wrap`.
#[inline]
fn respond<B: http_body::Body, E>(
    result: Result<Response<B>, E>,
    guard: Option<Guard>,
    close: Close,
    head: bool,
    wrap: impl FnOnce(B, Option<Guard>, Option<u64>) -> DrainBody<B>,
) -> Result<Response<DrainBody<B>>, E> {
    let mut response = result?;
    // Accepted before the drain, answered during it: ask HTTP/1.x keep-alive clients to
    // reconnect elsewhere. Or picked by gradual closing.
    if should_close(close, guard.as_ref()) {
        reject::add_connection_close(&mut response, true);
    }
    // The head is the whole response (RFC 9110, sections 9.3.2, 15.3.5 and 15.4.5), and
    // servers drop such bodies unpolled: that is no client gone. The request completes now,
    // as one with an empty body does.
    let guard = guard.filter(|_| !head && !has_no_body(response.status()));
    // HTTP/1.x servers stop at a declared length and may drop the body there; HTTP/2 ones
    // poll its end. Looked up only for a counted HTTP/1.x response whose body does not know
    // its own length: one that does (`Full`, `Bytes`, `String`) ends where hyper stops.
    let length =
        (close != Close::Never && guard.is_some() && response.body().size_hint().exact().is_none())
            .then(|| declared_length(&response))
            .flatten();
    Ok(response.map(|body| wrap(body, guard, length)))
}

/// The `content-length` a response declares, if any.
#[inline]
fn declared_length<B>(response: &Response<B>) -> Option<u64> {
    let value = response.headers().get(http::header::CONTENT_LENGTH)?;
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
/// inline the common one into the server's future and avoid copying the response around.
#[cold]
#[inline(never)]
fn refusal<B>(response: &mut Option<Response<Bytes>>) -> Response<DrainBody<B>> {
    // Polled again after completion: answer with another refusal, not a panic.
    let response = response.take().unwrap_or_else(|| {
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        response
    });
    response.map(DrainBody::full)
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Called { guard, .. } if guard.get().is_some() => "counted",
            State::Ending { rest, .. } if rest.guard.get().is_some() => "counted",
            State::Called { .. } | State::Ending { .. } => "exempt",
            State::Refused { .. } => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
