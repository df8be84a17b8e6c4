//! Per-request overhead of tower-drain against the physical limit and its peers, measured in
//! one run: `cargo bench --bench overhead`, then `scripts/bench-report` for the ratio table.
//!
//! Every variant wraps the same always-ready inner service and is driven the same way:
//! `poll_ready`, `call`, poll the response future (and, for HTTP, the body to its end) with a
//! no-op waker, so no runtime or allocator noise enters the measurement.
//!
//! - `bare`: no layer.
//! - `floor`: two atomic read-modify-writes on a `&'static AtomicUsize`, no reference
//!   counting: the least any counting layer can do.
//! - `ideal`: a hand-written guard, `Arc<AtomicUsize>` incremented on call and decremented
//!   when the future (or body) completes, with a `Notify` only when it reaches zero while
//!   someone waits.
//! - `drain_layer` / `http_drain_layer`: tower-drain.
//! - peers: tokio-util `TaskTracker::track_future`, linkerd `drain` (`Retain`, as its docs
//!   suggest), tower `ConcurrencyLimit` with a huge limit, tower-http `InFlightRequests`.
//!
//! `contended/*` runs two threads, each on its own clone of the service, sharing one pool.
//! `threads_N/*` is the scaling table: the same at 1, 2, 4, ... threads, up to the machine's
//! parallelism. `switch/*` is what the change between per-worker and exact counting costs:
//! a waiter arriving and leaving, a snapshot, and a request while the pool drains.

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower::limit::ConcurrencyLimitLayer;
use tower::{service_fn, Layer, Service};
use tower_drain::Drain;

#[path = "support/ideal.rs"]
mod ideal;
mod support;
use ideal::{http_inner, one_http, IdealHttp, IdealPool, IdealToken};
use support::poll_now;

/// One request through `service`: ready, call, response.
#[inline]
fn one<S: Service<u64, Response = u64>>(service: &mut S, i: u64) -> u64
where
    S::Error: std::fmt::Debug,
{
    poll_now(std::future::poll_fn(|cx| service.poll_ready(cx))).unwrap();
    poll_now(service.call(i)).unwrap()
}

type Inner = tower::util::ServiceFn<fn(u64) -> Ready<Result<u64, Infallible>>>;

fn inner() -> Inner {
    service_fn(|x| ready(Ok(x)))
}

// ---- the floor and the ideal guard, as layers -------------------------------------------

/// A slot held until the response completes; dropping it leaves.
trait Token: Send + 'static {}

static FLOOR: AtomicUsize = AtomicUsize::new(0);

struct FloorToken;

impl Token for FloorToken {}

impl Drop for FloorToken {
    #[inline]
    fn drop(&mut self) {
        FLOOR.fetch_sub(1, Ordering::Release);
    }
}

impl Token for IdealToken {}

#[derive(Clone)]
struct Counted<S, M> {
    inner: S,
    make: M,
}

pin_project! {
    struct CountedFuture<F, T> {
        #[pin]
        inner: F,
        token: Option<T>,
    }
}

impl<F: Future, T> Future for CountedFuture<F, T> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        this.token.take();
        Poll::Ready(output)
    }
}

impl<S: Service<R>, R, M: Fn() -> T, T: Token> Service<R> for Counted<S, M> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = CountedFuture<S::Future, T>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: R) -> Self::Future {
        CountedFuture {
            token: Some((self.make)()),
            inner: self.inner.call(request),
        }
    }
}

fn floor<S>(inner: S) -> Counted<S, fn() -> FloorToken> {
    Counted {
        inner,
        make: || {
            FLOOR.fetch_add(1, Ordering::Relaxed);
            FloorToken
        },
    }
}

fn ideal<S>(inner: S, pool: Arc<IdealPool>) -> Counted<S, impl Fn() -> IdealToken + Clone> {
    Counted {
        inner,
        make: move || {
            pool.count.fetch_add(1, Ordering::Relaxed);
            IdealToken(pool.clone())
        },
    }
}

/// tokio-util's `TaskTracker::track_future` around each response future.
#[derive(Clone)]
struct Tracker<S> {
    inner: S,
    tracker: tokio_util::task::TaskTracker,
}

impl<S: Service<u64>> Service<u64> for Tracker<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = tokio_util::task::task_tracker::TrackedFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: u64) -> Self::Future {
        self.tracker.track_future(self.inner.call(request))
    }
}

// ---- the runs -------------------------------------------------------------------------

fn single<S>(c: &mut Criterion, name: &str, mut service: S)
where
    S: Service<u64, Response = u64>,
    S::Error: std::fmt::Debug,
{
    c.benchmark_group("single").bench_function(name, |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            black_box(one(&mut service, black_box(i)))
        })
    });
}

/// Two threads, each driving its own clone of `service` (one shared pool), `iters` requests
/// each; the time reported is per request per thread.
fn contended<S>(c: &mut Criterion, name: &str, service: S)
where
    S: Service<u64, Response = u64> + Clone + Send + 'static,
    S::Error: std::fmt::Debug,
{
    on_threads(c, "contended", name, 2, service);
}

/// `threads` threads, each driving its own clone of `service`, in group `group`.
fn on_threads<S>(c: &mut Criterion, group: &str, name: &str, threads: usize, service: S)
where
    S: Service<u64, Response = u64> + Clone + Send + 'static,
    S::Error: std::fmt::Debug,
{
    c.benchmark_group(group).bench_function(name, |b| {
        b.iter_custom(|iters| {
            let barrier = Arc::new(Barrier::new(threads));
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let (mut service, barrier) = (service.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        let start = Instant::now();
                        for i in 0..iters {
                            black_box(one(&mut service, black_box(i)));
                        }
                        start.elapsed()
                    })
                })
                .collect();
            let total: Duration = handles.into_iter().map(|t| t.join().unwrap()).sum();
            total / threads as u32
        })
    });
}

fn http<S, B>(c: &mut Criterion, name: &str, mut service: S)
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
    B::Error: std::fmt::Debug,
{
    c.benchmark_group("http")
        .bench_function(name, |b| b.iter(|| black_box(one_http(&mut service))));
}

fn generic(c: &mut Criterion) {
    let drain = Drain::new();
    let pool = Arc::new(IdealPool::default());
    let tracker = tokio_util::task::TaskTracker::new();
    let (_signal, watch) = drain::channel();
    let limit = ConcurrencyLimitLayer::new(usize::MAX >> 4);

    single(c, "bare", inner());
    single(c, "floor", floor(inner()));
    single(c, "ideal", ideal(inner(), pool.clone()));
    single(c, "drain_layer", drain.layer().layer(inner()));
    // A child pool: each request enters and leaves the child and its parent.
    single(c, "drain_layer_child", drain.child().layer().layer(inner()));
    single(
        c,
        "task_tracker",
        Tracker {
            inner: inner(),
            tracker: tracker.clone(),
        },
    );
    single(
        c,
        "linkerd_drain",
        drain::Retain::new(watch.clone(), inner()),
    );
    single(c, "concurrency_limit", limit.layer(inner()));

    contended(c, "bare", inner());
    contended(c, "floor", floor(inner()));
    contended(c, "ideal", ideal(inner(), pool));
    contended(c, "drain_layer", drain.layer().layer(inner()));
    contended(
        c,
        "task_tracker",
        Tracker {
            inner: inner(),
            tracker,
        },
    );
    contended(c, "linkerd_drain", drain::Retain::new(watch, inner()));
    contended(c, "concurrency_limit", limit.layer(inner()));
}

/// The scaling table: each variant at 1, 2, 4, ... threads, up to the machine's parallelism.
fn scaling(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let drain = Drain::new();
    let pool = Arc::new(IdealPool::default());
    let tracker = tokio_util::task::TaskTracker::new();
    let limit = ConcurrencyLimitLayer::new(usize::MAX >> 4);
    let (_signal, watch) = drain::channel();
    let mut threads = 1;
    while threads <= cores {
        let group = format!("threads_{threads}");
        on_threads(c, &group, "floor", threads, floor(inner()));
        on_threads(c, &group, "ideal", threads, ideal(inner(), pool.clone()));
        on_threads(
            c,
            &group,
            "drain_layer",
            threads,
            drain.layer().layer(inner()),
        );
        let tracked = Tracker {
            inner: inner(),
            tracker: tracker.clone(),
        };
        on_threads(c, &group, "task_tracker", threads, tracked);
        on_threads(
            c,
            &group,
            "concurrency_limit",
            threads,
            limit.layer(inner()),
        );
        let retained = drain::Retain::new(watch.clone(), inner());
        on_threads(c, &group, "linkerd_drain", threads, retained);
        threads *= 2;
    }
}

/// What the switch between per-worker and exact counting costs.
fn switch(c: &mut Criterion) {
    let mut group = c.benchmark_group("switch");
    let drain = Drain::new();
    // A guard in flight, so that an empty-waiter registers rather than completing at once.
    let _held = drain.guard();
    // Arrives and leaves: folds the shards into the exact count, then opens them again.
    group.bench_function("waiter_arrives_and_leaves", |b| {
        b.iter(|| drop(black_box(drain.until_empty())))
    });
    group.bench_function("snapshot", |b| b.iter(|| black_box(drain.snapshot())));
    group.finish();

    // A request while serving (per-worker counts) and while draining (the exact count), on
    // two threads: `Drain::guard`, as work that a drain keeps counting does.
    let serving = Drain::new();
    let draining = Drain::new();
    draining.start_draining();
    let _draining_held = draining.guard();
    on_threads(
        c,
        "switch",
        "request_serving_2_threads",
        2,
        guarding(serving),
    );
    on_threads(
        c,
        "switch",
        "request_draining_2_threads",
        2,
        guarding(draining),
    );
}

/// A service whose requests hold `drain.guard()` until they are answered.
fn guarding(drain: Drain) -> Counted<Inner, impl Fn() -> tower_drain::Guard + Clone + Send> {
    Counted {
        inner: inner(),
        make: move || drain.guard(),
    }
}

impl Token for tower_drain::Guard {}

fn http_group(c: &mut Criterion) {
    let drain = Drain::new();
    let pool = Arc::new(IdealPool::default());
    let (in_flight, _counter) = tower_http::metrics::InFlightRequestsLayer::pair();

    http(c, "bare", http_inner());
    http(
        c,
        "ideal",
        IdealHttp {
            inner: http_inner(),
            pool,
        },
    );
    http(
        c,
        "http_drain_layer",
        drain.http_layer().layer(http_inner()),
    );
    // Opt-in features, for their cost: the per-request record for the shutdown report, and
    // the request signal in the extensions.
    let recorded = drain
        .http_layer()
        .layer(drain.record_requests().layer(http_inner()));
    http(c, "http_drain_layer_recorded", recorded);
    let signalled = drain.http_layer().with_request_signal().layer(http_inner());
    http(c, "http_drain_layer_signal", signalled);
    http(c, "in_flight_requests", in_flight.layer(http_inner()));
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = generic, http_group, scaling, switch
}
criterion_main!(benches);
