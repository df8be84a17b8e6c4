//! The ideal guard and the request loop shared by `benches/overhead.rs` and
//! `integration/examples/http_copies.rs`, so that both measure the same ideal.
//!
//! The ideal guard is a hand-written `Arc<AtomicUsize>` count, with a `Notify` for the empty
//! case; for HTTP its token moves from the response future into the body.

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use pin_project_lite::pin_project;
use tokio::sync::Notify;
use tower::{service_fn, Service};

use super::support::{cx, poll_now};

/// One HTTP request through `service`, its body read to the end.
#[inline]
pub fn one_http<S, B>(service: &mut S) -> usize
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
    B::Error: std::fmt::Debug,
{
    poll_now(std::future::poll_fn(|cx| service.poll_ready(cx))).unwrap();
    let response = poll_now(service.call(Request::new(()))).unwrap();
    let mut body = pin!(response.into_body());
    let mut frames = 0;
    while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx()) {
        frame.unwrap();
        frames += 1;
    }
    frames
}

pub type HttpInner =
    tower::util::ServiceFn<fn(Request<()>) -> Ready<Result<Response<Full<Bytes>>, Infallible>>>;

pub fn http_inner() -> HttpInner {
    service_fn(|_| ready(Ok(Response::new(Full::new(Bytes::from_static(b"hello"))))))
}

#[derive(Default)]
pub struct IdealPool {
    pub count: AtomicUsize,
    waiting: AtomicBool,
    notify: Notify,
}

pub struct IdealToken(pub Arc<IdealPool>);

impl Drop for IdealToken {
    #[inline]
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1
            && self.0.waiting.load(Ordering::Acquire)
        {
            self.0.notify.notify_waiters();
        }
    }
}

/// The ideal guard for HTTP: the token moves from the future into the body.
#[derive(Clone)]
pub struct IdealHttp<S> {
    pub inner: S,
    pub pool: Arc<IdealPool>,
}

pin_project! {
    pub struct IdealBody<B> {
        #[pin]
        inner: B,
        token: Option<IdealToken>,
    }
}

impl<B: Body> Body for IdealBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let frame = std::task::ready!(this.inner.as_mut().poll_frame(cx));
        if frame.is_none() || this.inner.is_end_stream() {
            this.token.take();
        }
        Poll::Ready(frame)
    }
}

pin_project! {
    /// Moves the token from the response future into the body, as any body-aware layer must.
    pub struct IdealHttpFuture<F> {
        #[pin]
        inner: F,
        token: Option<IdealToken>,
    }
}

impl<F, B, E> Future for IdealHttpFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<IdealBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx))?;
        let token = this.token.take();
        Poll::Ready(Ok(response.map(|inner| IdealBody { inner, token })))
    }
}

impl<S, B> Service<Request<()>> for IdealHttp<S>
where
    S: Service<Request<()>, Response = Response<B>>,
{
    type Response = Response<IdealBody<B>>;
    type Error = S::Error;
    type Future = IdealHttpFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<()>) -> Self::Future {
        self.pool.count.fetch_add(1, Ordering::Relaxed);
        IdealHttpFuture {
            token: Some(IdealToken(self.pool.clone())),
            inner: self.inner.call(request),
        }
    }
}
