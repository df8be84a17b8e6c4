//! `DrainService`.

use std::task::{Context, Poll};

use tower_service::Service;

use crate::drain::Drain;
use crate::future::ResponseFuture;
use crate::BoxError;

/// Counts each request in a [`Drain`]'s pool until its response future completes, fails, panics
/// or is dropped; refuses requests with [`Rejected`](crate::Rejected) once the pool drains.
///
/// `poll_ready` is the inner service's: draining never makes the service unready, so callers
/// such as `Buffer` and load balancers see the refusal as a response error, not a stall. A
/// refused request never reaches the inner service. Clones share one pool.
///
/// Made by [`DrainLayer`](crate::DrainLayer). For HTTP servers, where a response is not done
/// until its body is, prefer the body-aware HTTP layer.
///
/// # Examples
///
/// ```
/// use tower::{service_fn, Service, ServiceExt};
/// use tower_drain::{Drain, DrainService};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let drain = Drain::new();
/// let inner = service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x * 2) });
/// let mut service = DrainService::new(inner, drain.clone());
///
/// let response = service.ready().await.unwrap().call(21);
/// assert_eq!(drain.in_flight(), 1, "counted from `call`");
/// assert_eq!(response.await.unwrap(), 42);
/// assert_eq!(drain.in_flight(), 0);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct DrainService<S> {
    inner: S,
    drain: Drain,
}

impl<S> DrainService<S> {
    /// Wraps `inner` so that its requests are counted in `drain`'s pool.
    ///
    /// # Examples
    ///
    /// ```
    /// let service = tower_drain::DrainService::new(
    ///     tower::service_fn(|()| async { Ok::<_, std::io::Error>(()) }),
    ///     tower_drain::Drain::new(),
    /// );
    /// # drop(service);
    /// ```
    pub fn new(inner: S, drain: Drain) -> Self {
        Self { inner, drain }
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

impl<S, Request> Service<Request> for DrainService<S>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Request) -> Self::Future {
        match self.drain.try_guard() {
            Ok(guard) => ResponseFuture::called(self.inner.call(request), guard),
            Err(rejected) => ResponseFuture::rejected(rejected),
        }
    }
}
