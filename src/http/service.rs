//! `HttpDrainService`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::body::DrainBody;
use super::future::{Close, ResponseFuture};
use super::layer::Settings;
use super::reject;
use super::request_signal::DrainSignal;
use crate::wait::Draining;

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
    /// Made when the inner service is not ready, so that draining wakes the waiting task.
    draining: Option<Pin<Box<Draining>>>,
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
    type Future = ResponseFuture<S::Future>;

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
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if self.refusing {
            return self.refuse_unready(request);
        }
        let settings = &*self.settings;
        if settings.has_request_options() {
            return self.call_with_options(request);
        }
        let close = if reject::is_http1(request.version()) {
            Close::IfDraining
        } else {
            Close::Never
        };
        self.admit(request, close, None)
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

    /// Refuses a request for which `poll_ready` answered for the drain: the inner service was
    /// not ready, so it must not be called, whatever the pool does meanwhile.
    #[cold]
    #[inline(never)]
    fn refuse_unready<ReqBody, F>(&mut self, request: Request<ReqBody>) -> ResponseFuture<F> {
        self.refusing = false;
        refuse(request, &self.settings)
    }

    /// Counts `request` and calls the inner service, or refuses it while draining. `ending`:
    /// the response body ends when draining begins (`end_streams_when_draining`).
    #[inline]
    fn admit<ReqBody, ResBody>(
        &mut self,
        request: Request<ReqBody>,
        close: Close,
        ending: Option<(Draining, bool)>,
    ) -> ResponseFuture<S::Future>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    {
        match self.settings.drain.try_guard() {
            Ok(guard) => {
                let head = request.method() == http::Method::HEAD;
                let future = self.inner.call(request);
                match ending {
                    None => ResponseFuture::counted(future, guard, close, head),
                    Some((draining, grpc)) => {
                        ResponseFuture::ending(future, Some(guard), close, head, draining, grpc)
                    }
                }
            }
            Err(_) => refuse(request, &self.settings),
        }
    }

    /// `call` with any of the layer's per-request options: exemptions, the request signal,
    /// gradual closing. Out of line, so that a layer without them pays one branch for all.
    #[inline(never)]
    fn call_with_options<ReqBody, ResBody>(
        &mut self,
        mut request: Request<ReqBody>,
    ) -> ResponseFuture<S::Future>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    {
        let settings = &*self.settings;
        if settings.request_signal {
            let signal = DrainSignal::new(settings.drain.clone());
            request.extensions_mut().insert(signal);
        }
        let (mut exempted, mut ending) = (false, None);
        // The tests take the request's head; taking it apart is only worth it for them.
        if settings.exempt.is_some() || settings.end_streams.is_some() {
            let (parts, body) = request.into_parts();
            exempted = (settings.exempt.as_ref()).is_some_and(|exempt| exempt(&parts));
            ending = (settings.end_streams.as_ref())
                .is_some_and(|test| test(&parts))
                .then(|| (settings.drain.draining(), reject::is_grpc(&parts)));
            request = Request::from_parts(parts, body);
        }
        if exempted {
            // So that a `RecordRequestsLayer` inside never names it in a report.
            request.extensions_mut().insert(NotCounted);
            let future = self.inner.call(request);
            return match ending {
                Some((draining, grpc)) => {
                    ResponseFuture::ending(future, None, Close::Never, false, draining, grpc)
                }
                None => ResponseFuture::exempt(future),
            };
        }
        let close = if !reject::is_http1(request.version()) {
            Close::Never
        } else if (settings.gradual.as_ref())
            .is_some_and(|gradual| gradual.should_close(settings.drain.shared()))
        {
            Close::Always
        } else {
            Close::IfDraining
        };
        self.admit(request, close, ending)
    }
}

/// Marks a request that the drain exempted: it is not the pool's, so nothing reports it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NotCounted;

/// Out of line, so the refusal's code stays off the admitted request's path.
#[cold]
#[inline(never)]
fn refuse<ReqBody, F>(request: Request<ReqBody>, settings: &Settings) -> ResponseFuture<F> {
    let (parts, _body) = request.into_parts();
    ResponseFuture::refused(reject::refusal(&parts, settings))
}
