//! What waiting costs: `cargo bench --bench waiters`, then `scripts/bench-report`.
//!
//! - `wake_10k/*`: 10,000 waiters registered and parked, then the last piece of work leaves;
//!   the time is from that exit to every waiter having completed, for 10,000 waiters (the
//!   report divides by 10,000). Peers in the same run: tokio-util `TaskTracker::wait` and the
//!   ideal guard's bare `Notify`.
//! - `request/*`: one request through `DrainLayer` with no waiter, with an `until_empty`
//!   waiter parked while other work is in flight (a shutdown in progress), and with one
//!   `until(pred)` waiter parked: predicate support must cost nothing while none exists.
//! - `scale`: 1,000,000 tracked futures in flight at once: the heap bytes tower-drain adds
//!   (counted by a global allocator), the bytes `Tracked`, `ResponseFuture` and `DrainBody` add
//!   to what they wrap, and the time from the last exit to a waiter's completion, on the same
//!   thread and across threads through a tokio runtime. Printed, and written to
//!   `target/criterion/scale.json` for the report.

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::{ready, Future, Ready};
use std::mem::size_of;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, Criterion};
use tokio::sync::Notify;
use tower::{service_fn, Layer, Service};
use tower_drain::Drain;

mod support;
use support::{is_pending, poll_now};

/// Counts the bytes allocated on the measuring thread while `COUNTING` is set.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Relaxed: the scale measurement runs on one thread; nothing else is ordered by it.
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const WAITERS: usize = 10_000;

/// Registers `WAITERS` waiters made by `make`, parks each (polled once), then times `release`
/// and the polls that complete them all.
fn wake_all<W, R>(iters: u64, mut setup: impl FnMut() -> (Vec<Pin<Box<W>>>, R)) -> Duration
where
    W: Future + ?Sized,
    R: FnOnce(),
{
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let (mut waiters, release) = setup();
        for waiter in &mut waiters {
            assert!(is_pending(waiter.as_mut()), "waiters wait until released");
        }
        let start = Instant::now();
        release();
        for waiter in &mut waiters {
            assert!(!is_pending(waiter.as_mut()), "every waiter completes");
        }
        total += start.elapsed();
    }
    total
}

fn wake_10k(c: &mut Criterion) {
    let mut group = c.benchmark_group("wake_10k");
    group.sample_size(20);
    group.bench_function("until_empty", |b| {
        b.iter_custom(|iters| {
            wake_all(iters, || {
                let drain = Drain::new();
                let guard = drain.guard();
                let waiters = (0..WAITERS)
                    .map(|_| Box::pin(drain.until_empty()))
                    .collect();
                (waiters, move || drop(guard))
            })
        })
    });
    group.bench_function("task_tracker", |b| {
        b.iter_custom(|iters| {
            wake_all(iters, || {
                let tracker = tokio_util::task::TaskTracker::new();
                tracker.close();
                let token = tracker.token();
                let tracker: &'static _ = Box::leak(Box::new(tracker));
                let waiters = (0..WAITERS).map(|_| Box::pin(tracker.wait())).collect();
                (waiters, move || drop(token))
            })
        })
    });
    group.bench_function("notify", |b| {
        b.iter_custom(|iters| {
            wake_all(iters, || {
                let notify: &'static Notify = Box::leak(Box::new(Notify::new()));
                let waiters = (0..WAITERS).map(|_| Box::pin(notify.notified())).collect();
                (waiters, move || notify.notify_waiters())
            })
        })
    });
    group.finish();
}

type Inner = tower::util::ServiceFn<fn(u64) -> Ready<Result<u64, std::convert::Infallible>>>;

fn request_with_waiters(c: &mut Criterion) {
    let mut group = c.benchmark_group("request");
    let request = |drain: &Drain| {
        let inner: Inner = service_fn(|x| ready(Ok(x)));
        let mut service = drain.layer().layer(inner);
        move |i: u64| {
            poll_now(std::future::poll_fn(|cx| service.poll_ready(cx))).unwrap();
            poll_now(service.call(i)).unwrap()
        }
    };

    let drain = Drain::new();
    let mut one = request(&drain);
    group.bench_function("no_waiter", |b| b.iter(|| one(black_box(1))));

    // A shutdown in progress: other work in flight, an empty-waiter parked.
    let drain = Drain::new();
    let busy = drain.guard();
    let mut waiter = Box::pin(drain.until_empty());
    assert!(is_pending(waiter.as_mut()));
    let mut one = request(&drain);
    group.bench_function("until_empty_waiter", |b| b.iter(|| one(black_box(1))));
    drop((busy, waiter));

    let drain = Drain::new();
    let mut waiter = Box::pin(drain.until(|snapshot| snapshot.completed == u64::MAX));
    assert!(is_pending(waiter.as_mut()));
    let mut one = request(&drain);
    group.bench_function("until_pred_waiter", |b| b.iter(|| one(black_box(1))));
    drop(waiter);
    group.finish();
}

const SCALE: usize = 1_000_000;

/// Bytes allocated by `f` while the counter is on.
fn allocated_by(f: impl FnOnce()) -> usize {
    ALLOCATED.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    f();
    COUNTING.store(false, Ordering::Relaxed);
    ALLOCATED.load(Ordering::Relaxed)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// 1,000,000 in flight: heap bytes, sizes, and the last exit's wake-up, as a summary.
fn scale() {
    const RUNS: usize = 11;
    let drain = Drain::new();

    // Heap: the vector is the bench's own; whatever else is allocated is tower-drain's.
    // `Ready<u64>` stands for any word-aligned future, so no padding blurs the sizes.
    let mut tracked = Vec::with_capacity(SCALE);
    let heap = allocated_by(|| tracked.extend((0..SCALE).map(|_| drain.track(ready(0u64)))));
    assert_eq!(drain.in_flight(), SCALE);
    drop(tracked);
    type Fut = Ready<Result<u64, std::convert::Infallible>>;
    type FullBody = http_body_util::Full<bytes::Bytes>;
    let tracked_added = size_of::<tower_drain::Tracked<Fut>>() - size_of::<Fut>();
    let future_added = size_of::<tower_drain::ResponseFuture<Fut>>() - size_of::<Fut>();
    let body_added = size_of::<tower_drain::DrainBody<FullBody>>() - size_of::<FullBody>();

    // Same thread: the last of 1,000,000 exits, then the parked waiter's poll.
    let same_thread = median(
        (0..RUNS)
            .map(|_| {
                let mut guards: Vec<_> = (0..SCALE).map(|_| drain.guard()).collect();
                let mut waiter = Box::pin(drain.until_empty());
                assert!(is_pending(waiter.as_mut()));
                let last = guards.pop().unwrap();
                drop(guards);
                let start = Instant::now();
                drop(last);
                assert!(!is_pending(waiter.as_mut()));
                start.elapsed()
            })
            .collect(),
    );

    // Across threads: a waiter task on a 2-worker runtime, the last exit on this thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let cross_thread = median(
        (0..RUNS)
            .map(|_| {
                let mut guards: Vec<_> = (0..SCALE).map(|_| drain.guard()).collect();
                let last = guards.pop().unwrap();
                drop(guards);
                let (parked_tx, parked_rx) = std::sync::mpsc::channel();
                let waiter = {
                    let drain = drain.clone();
                    runtime.spawn(async move {
                        let mut waiter = std::pin::pin!(drain.until_empty());
                        std::future::poll_fn(|cx| {
                            let poll = waiter.as_mut().poll(cx);
                            if poll.is_pending() {
                                let _ = parked_tx.send(());
                            }
                            poll
                        })
                        .await;
                        Instant::now()
                    })
                };
                parked_rx.recv().unwrap();
                let start = Instant::now();
                drop(last);
                runtime.block_on(waiter).unwrap() - start
            })
            .collect(),
    );

    println!("\nscale: {SCALE} tracked futures in flight at once");
    println!(
        "  heap bytes from tower-drain: {heap} ({} per request)",
        heap / SCALE
    );
    println!("  bytes added: Tracked {tracked_added}, ResponseFuture {future_added}, DrainBody {body_added}");
    println!("  last exit -> waiter done: {same_thread:?} same thread, {cross_thread:?} across threads (median of {RUNS})");
    let json = format!(
        "{{\"in_flight\":{SCALE},\"heap_bytes\":{heap},\"tracked_added\":{tracked_added},\
         \"future_added\":{future_added},\"body_added\":{body_added},\
         \"wake_same_thread_ns\":{},\"wake_cross_thread_ns\":{}}}\n",
        same_thread.as_nanos(),
        cross_thread.as_nanos()
    );
    // Where `cargo bench` puts criterion's results: the workspace's target directory.
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("criterion");
    let _ =
        std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join("scale.json"), json));
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = wake_10k, request_with_waiters
}

fn main() {
    benches();
    // `cargo bench --no-run` builds this; a filtered run (`cargo bench -- wake`) skips it.
    if std::env::args().skip(1).all(|arg| arg.starts_with("--")) {
        scale();
    }
    Criterion::default().configure_from_args().final_summary();
}
