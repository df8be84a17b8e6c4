//! One HTTP request after another through `HttpDrainLayer`, or through the ideal body-aware
//! guard of `benches/overhead.rs`, for `scripts/http-copies`: under `callgrind`, the
//! instructions and the `memcpy` work per request are exact counts, where criterion's
//! nanoseconds swing with code layout from one build to the next.
//!
//! `http_copies <ideal|drain|bare> [requests]` prints the time per request.

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower::{service_fn, Layer, Service};
use tower_drain::Drain;

fn cx() -> Context<'static> {
    Context::from_waker(futures::task::noop_waker_ref())
}

#[inline(always)]
fn poll_now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut cx()) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("always ready"),
    }
}

#[inline]
fn one_http<S, B>(service: &mut S) -> usize
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

type HttpInner =
    tower::util::ServiceFn<fn(Request<()>) -> Ready<Result<Response<Full<Bytes>>, Infallible>>>;

fn http_inner() -> HttpInner {
    service_fn(|_| ready(Ok(Response::new(Full::new(Bytes::from_static(b"hello"))))))
}

#[derive(Default)]
struct IdealPool {
    count: AtomicUsize,
}
struct IdealToken(Arc<IdealPool>);
impl Drop for IdealToken {
    #[inline]
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::Release);
    }
}

/// The ideal guard for HTTP: the token moves from the future into the body.
#[derive(Clone)]
struct IdealHttp<S> {
    inner: S,
    pool: Arc<IdealPool>,
}

pin_project! {
    struct IdealBody<B> {
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
    struct IdealHttpFuture<F> {
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

fn run<S, B>(mut s: S, n: u64) -> usize
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
    B::Error: std::fmt::Debug,
{
    let mut t = 0;
    for _ in 0..n {
        t += std::hint::black_box(one_http(&mut s));
    }
    t
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (which, requests) = (args.next(), args.next());
    let requests = match requests.as_deref().map(str::parse::<u64>) {
        None => 10_000_000,
        Some(Ok(requests)) if requests > 0 => requests,
        Some(_) => usage(),
    };
    let start = std::time::Instant::now();
    let drain = Drain::new();
    let frames = match which.as_deref() {
        Some("bare") => run(http_inner(), requests),
        Some("ideal") => {
            let pool = Arc::new(IdealPool::default());
            run(
                IdealHttp {
                    inner: http_inner(),
                    pool,
                },
                requests,
            )
        }
        Some("drain") => run(drain.http_layer().layer(http_inner()), requests),
        _ => usage(),
    };
    assert_eq!(frames as u64, requests, "one frame per response");
    let per_request = start.elapsed().as_nanos() as f64 / requests as f64;
    println!(
        "{}: {per_request:.1} ns per request",
        which.unwrap_or_default()
    );
}

fn usage() -> ! {
    eprintln!("usage: http_copies <bare|ideal|drain> [requests, default 10000000]");
    std::process::exit(2)
}
