//! Reading the pool and waiting on it beside live traffic: what a request costs on 1, 2 and 64
//! threads when something reads the pool inside every request, reads it in a loop on another
//! thread, or waits on it, against the serving path alone and against the peers' reads
//! (tokio-util's `TaskTracker::len`, and a tower-http-style gauge: an `Arc<AtomicUsize>`
//! raised and lowered per request and read with `get`).
//!
//! Each figure is CPU time per request: each request thread's own CPU time (the kernel's
//! per-thread clock), averaged over the threads and divided by the requests, so a thread
//! running beside them costs the figure only what it does to their caches and locks, not the
//! core time it takes. The summary prints each case's ratio to the serving path on the same
//! number of threads, in the same run.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use criterion::{black_box, Criterion};
use tower_drain::Drain;

/// The thread counts measured: one, two (this machine's cores), and many.
const THREADS: [usize; 3] = [1, 2, 64];

/// Polls `future` once with a waker that does nothing: registers a waiter, as a task would.
fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
    let waker = futures::task::noop_waker();
    future.poll(&mut Context::from_waker(&waker))
}

/// This thread's CPU time so far.
fn thread_cpu() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Runs `request` `iters` times on each of `threads` threads, with `beside` running on one
/// more thread until they are done; the CPU time per thread of the request threads.
fn measure(
    threads: usize,
    iters: u64,
    request: impl Fn() + Send + Sync + 'static,
    beside: Option<Box<dyn FnMut() + Send>>,
) -> Duration {
    let request = Arc::new(request);
    let done = Arc::new(AtomicBool::new(false));
    let beside = beside.map(|mut beside| {
        let done = done.clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                beside();
            }
        })
    });
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (request, barrier) = (request.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let start = thread_cpu();
                for _ in 0..iters {
                    request();
                }
                thread_cpu() - start
            })
        })
        .collect();
    barrier.wait();
    let cpu: Duration = handles.into_iter().map(|h| h.join().unwrap()).sum();
    done.store(true, Ordering::Relaxed);
    if let Some(beside) = beside {
        beside.join().unwrap();
    }
    // Criterion divides by `iters`.
    cpu / threads as u32
}

/// A waker that raises a flag: a waiter polled again whenever it is woken, as a task is.
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

/// A task beside the requests that polls `future` whenever it is woken: a waiter that looks
/// again after every wake-up, as one on a runtime does.
fn looking<F: Future + Send + 'static>(future: F) -> impl FnMut() + Send {
    let flag = Arc::new(Flag(AtomicBool::new(true)));
    let waker = Waker::from(flag.clone());
    let mut future = Box::pin(future);
    move || {
        if flag.0.swap(false, Ordering::Acquire) {
            let _ = future.as_mut().poll(&mut Context::from_waker(&waker));
        } else {
            std::thread::yield_now();
        }
    }
}

fn bench(c: &mut Criterion, threads: usize, name: &str, make: impl Fn() -> Case) {
    c.benchmark_group(format!("reads_{threads}"))
        .bench_function(name, |b| {
            b.iter_custom(|iters| {
                let Case { request, beside } = make();
                measure(threads, iters, request, beside)
            })
        });
}

/// One case: what each request does, and what runs beside the requests.
struct Case {
    request: Box<dyn Fn() + Send + Sync>,
    beside: Option<Box<dyn FnMut() + Send>>,
}

impl Case {
    fn new(request: impl Fn() + Send + Sync + 'static) -> Self {
        Self {
            request: Box::new(request),
            beside: None,
        }
    }

    fn beside(mut self, beside: impl FnMut() + Send + 'static) -> Self {
        self.beside = Some(Box::new(beside));
        self
    }
}

fn serving(drain: &Drain) -> impl Fn() + Send + Sync + 'static {
    let drain = drain.clone();
    move || drop(black_box(drain.guard()))
}

fn reads(c: &mut Criterion) {
    for threads in THREADS {
        bench(c, threads, "serving", || Case::new(serving(&Drain::new())));
        bench(c, threads, "in_flight_inside", || {
            let drain = Drain::new();
            Case::new(move || {
                let guard = drain.guard();
                black_box(drain.in_flight());
                drop(guard);
            })
        });
        bench(c, threads, "snapshot_inside", || {
            let drain = Drain::new();
            Case::new(move || {
                let guard = drain.guard();
                black_box(drain.snapshot());
                drop(guard);
            })
        });
        bench(c, threads, "phase_inside", || {
            let drain = Drain::new();
            Case::new(move || {
                let guard = drain.guard();
                black_box((drain.phase(), drain.is_draining()));
                drop(guard);
            })
        });
        bench(c, threads, "snapshot_loop_beside", || {
            let drain = Drain::new();
            let reader = drain.clone();
            Case::new(serving(&drain)).beside(move || {
                black_box(reader.snapshot());
            })
        });
        // The control for every case with a thread beside the requests: one that never
        // touches the pool, but keeps a core busy (on a machine whose cores share execution
        // units, as virtual CPUs often do, any busy neighbour slows the requests).
        bench(c, threads, "busy_beside", || {
            let drain = Drain::new();
            let mut spins = 0u64;
            Case::new(serving(&drain)).beside(move || {
                spins = black_box(spins.wrapping_add(1));
            })
        });
        bench(c, threads, "task_tracker_len_inside", || {
            let tracker = tokio_util::task::TaskTracker::new();
            Case::new(move || {
                let token = tracker.token();
                black_box(tracker.len());
                drop(token);
            })
        });
        bench(c, threads, "gauge_get_inside", || {
            let gauge = Arc::new(AtomicUsize::new(0));
            Case::new(move || {
                gauge.fetch_add(1, Ordering::Relaxed);
                black_box(gauge.load(Ordering::Relaxed));
                gauge.fetch_sub(1, Ordering::Relaxed);
            })
        });
    }
}

fn waiters(c: &mut Criterion) {
    for threads in THREADS {
        bench(c, threads, "until_false_parked", || {
            let drain = Drain::new();
            let mut waiter = Box::pin(drain.until(|_| false));
            assert!(poll_once(waiter.as_mut()).is_pending());
            let serve = serving(&drain);
            Case::new(move || {
                let _keep = &waiter;
                serve()
            })
        });
        bench(c, threads, "until_false_looking_beside", || {
            let drain = Drain::new();
            let waiter = drain.until(|_| false);
            Case::new(serving(&drain)).beside(looking(waiter))
        });
        bench(c, threads, "until_churn_beside", || {
            let drain = Drain::new();
            let churner = drain.clone();
            Case::new(serving(&drain)).beside(move || {
                let mut waiter = Box::pin(churner.until(|s| s.in_flight > 1_000_000));
                black_box(poll_once(waiter.as_mut()).is_pending());
            })
        });
        bench(c, threads, "until_empty_satisfied_unpolled", || {
            let drain = Drain::new();
            let guard = drain.guard();
            let mut waiter = Box::pin(drain.until_empty());
            assert!(poll_once(waiter.as_mut()).is_pending());
            drop(guard);
            let serve = serving(&drain);
            Case::new(move || {
                let _keep = &waiter;
                serve()
            })
        });
        bench(c, threads, "until_empty_parked_behind_a_guard", || {
            let drain = Drain::new();
            let held = drain.guard();
            let mut waiter = Box::pin(drain.until_empty());
            assert!(poll_once(waiter.as_mut()).is_pending());
            let serve = serving(&drain);
            Case::new(move || {
                let _keep = (&waiter, &held);
                serve()
            })
        });
        bench(c, threads, "next_empty_parked_behind_a_guard", || {
            let drain = Drain::new();
            let held = drain.guard();
            let mut waiter = Box::pin(drain.next_empty());
            assert!(poll_once(waiter.as_mut()).is_pending());
            let serve = serving(&drain);
            Case::new(move || {
                let _keep = (&waiter, &held);
                serve()
            })
        });
        bench(c, threads, "until_empty_churn_beside", || {
            let drain = Drain::new();
            let held = drain.guard();
            let churner = drain.clone();
            Case::new(serving(&drain)).beside(move || {
                let _keep = &held;
                let mut waiter = Box::pin(churner.until_empty());
                black_box(poll_once(waiter.as_mut()).is_pending());
            })
        });
        bench(c, threads, "draining_parked", || {
            let drain = Drain::new();
            let mut waiter = Box::pin(drain.draining());
            assert!(poll_once(waiter.as_mut()).is_pending());
            let serve = serving(&drain);
            Case::new(move || {
                let _keep = &waiter;
                serve()
            })
        });
        bench(c, threads, "shutdown_unready_parked", || {
            // A shutdown in its unready period: still serving, its own waiters parked.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            let drain = Drain::new();
            let shutdown = {
                let _enter = runtime.enter();
                let mut shutdown = Box::pin(
                    drain
                        .shutdown()
                        .unready_for(Duration::from_secs(3600))
                        .into_future(),
                );
                assert!(poll_once(shutdown.as_mut()).is_pending());
                shutdown
            };
            let serve = serving(&drain);
            let keep = std::sync::Mutex::new((shutdown, runtime));
            Case::new(move || {
                let _keep = &keep;
                serve()
            })
        });
    }
}

/// The ratios of each case to the serving path, from criterion's estimates.
fn summary() {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("criterion");
    let estimate = |group: &str, name: &str| -> Option<f64> {
        let path = dir.join(group).join(name).join("new/estimates.json");
        let text = std::fs::read_to_string(path).ok()?;
        let at = text.find("\"median\"")?;
        let rest = &text[at..];
        let at = rest.find("\"point_estimate\":")? + "\"point_estimate\":".len();
        rest[at..].split([',', '}']).next()?.trim().parse().ok()
    };
    println!("\nreads and waiters beside traffic: ns per request (x the serving path)");
    for threads in THREADS {
        let group = format!("reads_{threads}");
        let Some(base) = estimate(&group, "serving") else {
            continue;
        };
        println!("  {threads} threads: serving {base:.1} ns");
        for name in [
            "in_flight_inside",
            "snapshot_inside",
            "phase_inside",
            "snapshot_loop_beside",
            "busy_beside",
            "task_tracker_len_inside",
            "gauge_get_inside",
            "until_false_parked",
            "until_false_looking_beside",
            "until_churn_beside",
            "until_empty_satisfied_unpolled",
            "until_empty_parked_behind_a_guard",
            "next_empty_parked_behind_a_guard",
            "until_empty_churn_beside",
            "draining_parked",
            "shutdown_unready_parked",
        ] {
            if let Some(ns) = estimate(&group, name) {
                println!("    {name:36} {ns:8.1} ns  {:6.2}x", ns / base);
            }
        }
    }
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(10)
        .configure_from_args();
    reads(&mut c);
    waiters(&mut c);
    if std::env::args().skip(1).all(|arg| arg.starts_with("--")) {
        summary();
    }
    c.final_summary();
}
