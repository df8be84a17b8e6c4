//! `RecordRequestsLayer`: records each request's method, path, age and stage, so that a
//! shutdown cut short by its grace period can say which requests it abandoned.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::body::is_last;
use super::service::NotCounted;
use crate::drain::Drain;
use crate::pool::Shared;

/// Records every request of the service it wraps, so that a [`ShutdownReport`] whose grace
/// period ran out lists each abandoned request in
/// [`abandoned`](crate::ShutdownReport::abandoned): method, path, age, and whether it was
/// sending its body.
///
/// Opt-in, and separate from [`HttpDrainLayer`](crate::HttpDrainLayer) so that the drain's own
/// request path stays free of it: recording costs a lock and two small allocations per
/// request (see the README's performance table). Layer it *inside* the drain layer, so that
/// refused requests are never recorded; requests that layer
/// [exempts](crate::HttpDrainLayer::exempt) are not recorded either, since the pool does not
/// count them.
///
/// [`ShutdownReport`]: crate::ShutdownReport
///
/// # Examples
///
/// ```
/// use axum::{routing::get, Router};
///
/// let drain = tower_drain::Drain::new();
/// let app: Router = Router::new()
///     .route("/export", get(|| async { "a long download" }))
///     .layer(drain.record_requests()) // inner: sees admitted requests only
///     .layer(drain.http_layer());
/// # drop(app);
/// ```
#[derive(Clone)]
pub struct RecordRequestsLayer {
    drain: Drain,
}

impl RecordRequestsLayer {
    /// A layer that records requests for `drain`'s shutdown report.
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = tower_drain::RecordRequestsLayer::new(tower_drain::Drain::new());
    /// # drop(layer);
    /// ```
    pub fn new(drain: Drain) -> Self {
        Self { drain }
    }
}

impl<S> Layer<S> for RecordRequestsLayer {
    type Service = RecordRequests<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecordRequests {
            inner,
            drain: self.drain.clone(),
        }
    }
}

impl fmt::Debug for RecordRequestsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordRequestsLayer")
            .field("drain", &self.drain)
            .finish()
    }
}

impl Drain {
    /// A [`RecordRequestsLayer`] for this pool: abandoned requests are then listed by name in
    /// the shutdown report.
    ///
    /// # Examples
    ///
    /// ```
    /// let drain = tower_drain::Drain::new();
    /// let layer = drain.record_requests();
    /// # drop(layer);
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn record_requests(&self) -> RecordRequestsLayer {
        RecordRequestsLayer::new(self.clone())
    }
}

/// The service of [`RecordRequestsLayer`]. Clones share one pool.
///
/// # Examples
///
/// ```
/// use http::{Request, Response};
/// use tower::{service_fn, Layer};
///
/// let drain = tower_drain::Drain::new();
/// let service: tower_drain::RecordRequests<_> = drain.record_requests().layer(service_fn(
///     |_: Request<()>| async { Ok::<_, std::convert::Infallible>(Response::new(String::new())) },
/// ));
/// # drop(service);
/// ```
#[derive(Clone)]
pub struct RecordRequests<S> {
    inner: S,
    drain: Drain,
}

impl<S> RecordRequests<S> {
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

impl<S: fmt::Debug> fmt::Debug for RecordRequests<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordRequests")
            .field("inner", &self.inner)
            .field("drain", &self.drain)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RecordRequests<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<RecordedBody<ResBody>>;
    type Error = S::Error;
    type Future = RecordedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if request.extensions().get::<NotCounted>().is_some() {
            // Exempted by the drain layer outside: not in the pool, so not in its report.
            return RecordedFuture {
                inner: self.inner.call(request),
                entry: None,
            };
        }
        let shared = self.drain.shared();
        let id = shared.record.insert(
            request.method().to_string(),
            request.uri().path().to_owned(),
        );
        RecordedFuture {
            inner: self.inner.call(request),
            entry: Some(Recorded { shared, id }),
        }
    }
}

/// One recorded request; dropping it removes the record.
struct Recorded {
    // The pool's memory is never freed, and record ids are never reused, so this stays
    // harmless even if the pool is recycled before the body is dropped.
    shared: &'static Shared,
    id: u64,
}

impl Drop for Recorded {
    fn drop(&mut self) {
        self.shared.record.remove(self.id);
    }
}

pin_project! {
    /// The response future of [`RecordRequests`]: the request is recorded until the body it
    /// resolves to ends or is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use http::{Request, Response};
    /// use tower::{service_fn, Layer, Service};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let drain = tower_drain::Drain::new();
    /// let mut service = drain.record_requests().layer(service_fn(|_: Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(Response::new(String::from("hi")))
    /// }));
    /// let future: tower_drain::RecordedFuture<_> = service.call(Request::new(()));
    /// let response = future.await.unwrap();
    /// # drop(response);
    /// # }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct RecordedFuture<F> {
        #[pin]
        inner: F,
        entry: Option<Recorded>,
    }
}

impl<F, B, E> Future for RecordedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<RecordedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let entry = this.entry.take();
        if let Some(entry) = &entry {
            entry.shared.record.sending_body(entry.id);
        }
        Poll::Ready(Ok(response.map(|body| RecordedBody { body, entry })))
    }
}

impl<F> fmt::Debug for RecordedFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedFuture").finish_non_exhaustive()
    }
}

pin_project! {
    /// The response body of [`RecordRequests`]: the request stays recorded until the body
    /// ends or is dropped. Frames, `size_hint` and `is_end_stream` pass through.
    ///
    /// # Examples
    ///
    /// ```
    /// use http::{Request, Response};
    /// use http_body_util::BodyExt;
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let drain = tower_drain::Drain::new();
    /// let service = drain.record_requests().layer(service_fn(|_: Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(Response::new(String::from("hi")))
    /// }));
    /// let body: tower_drain::RecordedBody<String> =
    ///     service.oneshot(Request::new(())).await.unwrap().into_body();
    /// assert_eq!(body.collect().await.unwrap().to_bytes(), "hi");
    /// # }
    /// ```
    pub struct RecordedBody<B> {
        #[pin]
        body: B,
        entry: Option<Recorded>,
    }
}

impl<B: Body> Body for RecordedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.body.as_mut().poll_frame(cx));
        if is_last(&frame, &*this.body) {
            this.entry.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B> fmt::Debug for RecordedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedBody")
            .field("recorded", &self.entry.is_some())
            .finish_non_exhaustive()
    }
}
