//! `HttpDrainService`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_service::Service;

use super::body::DrainBody;
use super::future::{Close, EndOnDrain, HttpResponseFuture};
use super::layer::Settings;
use super::reject;
use super::request_signal::DrainWatch;
use crate::wait::DrainStarted;

/// Counts each HTTP request in a [`Drain`](crate::Drain)'s pool until its response body ends
/// or is dropped; answers requests that arrive while draining with `503` (gRPC: `UNAVAILABLE`)
/// without calling the inner service.
///
/// `Error` is the inner service's. `poll_ready` is the inner one's while serving; while
/// draining it is ready at once, since a refusal needs no capacity of the inner service: a
/// request arriving behind a full `ConcurrencyLimit`, say, gets its `503` without waiting for
/// a permit, and a `poll_ready` already waiting for one is woken when draining begins. (A
/// request whose readiness was decided while draining is refused even if the pool resumes
/// before it is called. With [`exempt`](crate::HttpDrainLayer::exempt), `poll_ready` stays
/// the inner one's throughout, since an exempt request may come next.) Made by
/// [`HttpDrainLayer`](crate::HttpDrainLayer), whose documentation describes the behaviour.
/// Clones share one pool.
///
/// # Examples
///
/// ```
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use bytes::Bytes;
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_drain::Drain;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let drain = Drain::new();
/// let service = drain.http_layer().layer(service_fn(|_: Request<()>| async {
///     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("hi"))))
/// }));
///
/// drain.start_draining();
/// let response = service.oneshot(Request::new(())).await.unwrap();
/// assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
/// # }
/// ```
pub struct HttpDrainService<S> {
    inner: S,
    settings: Arc<Settings>,
    /// `poll_ready` answered for the drain, not for the inner service: refuse the next call.
    refusing: bool,
    /// The layer has per-request options (`Settings::has_request_options`): fixed when the
    /// service is made.
    options: bool,
    /// Made when the inner service is not ready, so that draining wakes the waiting task.
    draining: Option<Pin<Box<DrainStarted>>>,
}

// By hand: the readiness state belongs to one instance, as in tower's `LoadShed`.
impl<S: Clone> Clone for HttpDrainService<S> {
    fn clone(&self) -> Self {
        Self::from_settings(self.inner.clone(), self.settings.clone())
    }
}

impl<S: fmt::Debug> fmt::Debug for HttpDrainService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpDrainService")
            .field("inner", &self.inner)
            .field("settings", &self.settings)
            .field("refusing", &self.refusing)
            .finish()
    }
}

impl<S> HttpDrainService<S> {
    pub(crate) fn from_settings(inner: S, settings: Arc<Settings>) -> Self {
        Self {
            inner,
            options: settings.has_request_options(),
            settings,
            refusing: false,
            draining: None,
        }
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HttpDrainService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
    ResBody::Data: From<bytes::Bytes>,
{
    type Response = Response<DrainBody<ResBody>>;
    type Error = S::Error;
    type Future = HttpResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self.inner.poll_ready(cx) {
            Poll::Ready(ready) => {
                self.refusing = false;
                Poll::Ready(ready)
            }
            Poll::Pending => self.poll_ready_draining(cx),
        }
    }

    #[inline]
    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let mut plan = Plan {
            close: if reject::is_http1(request.version()) {
                Close::IfDraining
            } else {
                Close::Never
            },
            ending: None,
            exempt: false,
        };
        if self.options {
            // Out of line, through the request's head: every response future is still built
            // here, so the compiler can build it in place (an out-of-line call returning one
            // makes it copy the result on every path).
            let (mut parts, body) = request.into_parts();
            plan = self.plan(&mut parts, plan.close);
            request = Request::from_parts(parts, body);
        }
        let (guard, close, head) = if plan.exempt {
            (None, Close::Never, false)
        } else {
            // `poll_ready` answered for the drain, not for the inner service: refuse, whatever
            // the pool does meanwhile. (Never so with exemptions: see `poll_ready_draining`.)
            let guard = if self.refusing {
                self.refusing = false;
                None
            } else {
                self.settings.drain.try_guard().ok()
            };
            let Some(guard) = guard else {
                return refuse(request, &self.settings);
            };
            let head = request.method() == http::Method::HEAD;
            (Some(guard), plan.close, head)
        };
        // One call and one future for every request the inner service sees, built in place.
        HttpResponseFuture::called(self.inner.call(request), guard, close, head, plan.ending)
    }
}

impl<S> HttpDrainService<S> {
    /// The inner service is not ready: ready anyway once draining, when every request that is
    /// not exempt is refused without it.
    #[cold]
    fn poll_ready_draining<E>(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        if self.settings.exempt.is_some() {
            return Poll::Pending;
        }
        let drain = &self.settings.drain;
        let draining = self
            .draining
            .get_or_insert_with(|| Box::pin(drain.draining()));
        if draining.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.draining = None;
        self.refusing = true;
        Poll::Ready(Ok(()))
    }

    /// What the layer's per-request options make of a request, from its head: the request
    /// signal inserted, exemption and stream ending tested, gradual closing drawn. Out of
    /// line, so that a layer without options pays one branch for all of them.
    #[cold]
    #[inline(never)]
    fn plan(&mut self, parts: &mut http::request::Parts, close: Close) -> Plan {
        let settings = &*self.settings;
        if settings.request_signal {
            let signal = DrainWatch::new(settings.drain.clone());
            parts.extensions.insert(signal);
        }
        let exempt = (settings.exempt.as_ref()).is_some_and(|exempt| exempt(parts));
        let ending = (settings.end_streams.as_ref())
            .is_some_and(|test| test(parts))
            .then(|| EndOnDrain::new(settings.drain.draining(), reject::is_grpc(parts)));
        if exempt {
            // So that a `RecordRequestsLayer` inside never names it in a report.
            parts.extensions.insert(NotCounted);
        }
        // `close` is what the request's version allows (decided in `call`); gradual closing
        // draws only for an HTTP/1.x request it may close, and an exempt one is never closed
        // (`call` ignores `close` for it).
        let close = if !exempt
            && close == Close::IfDraining
            && (settings.gradual.as_ref())
                .is_some_and(|gradual| gradual.should_close(settings.drain.shared()))
        {
            Close::Always
        } else {
            close
        };
        Plan {
            close,
            ending,
            exempt,
        }
    }
}

/// How `call` treats a request: decided inline for a layer without per-request options, and
/// completed by `plan` otherwise.
struct Plan {
    /// When its response asks the client to close the connection.
    close: Close,
    /// `end_streams_when_draining` matched: the body ends when draining begins.
    ending: Option<Box<EndOnDrain>>,
    /// Exempted: not counted, never refused.
    exempt: bool,
}

/// Marks a request that the drain exempted: it is not the pool's, so nothing reports it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NotCounted;

/// The refusal of `request`, as a response future.
#[inline]
fn refuse<ReqBody, F>(request: Request<ReqBody>, settings: &Settings) -> HttpResponseFuture<F> {
    HttpResponseFuture::refused(refusal(request, settings))
}

/// Out of line, so the refusal's code stays off the admitted request's path; boxed, so that
/// only a pointer comes back from the call (see `HttpResponseFuture`'s `Refused`).
#[cold]
#[inline(never)]
fn refusal<ReqBody>(request: Request<ReqBody>, settings: &Settings) -> Box<Response<Bytes>> {
    let (parts, _body) = request.into_parts();
    Box::new(reject::refusal(&parts, settings))
}
