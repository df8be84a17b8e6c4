//! Regression tests for the lifecycle races: real threads, bounded in count and time, each
//! printing what it tried. CI runs them in release builds too (`cargo test --release --test
//! soundness`), where the races are tight enough to hit; `STRESS_ROUNDS` scales them.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::task::Context;
use std::thread;
use std::time::{Duration, Instant};

use futures::task::noop_waker_ref;
use tower_drain::{Drain, Phase};

/// How many rounds a race gets: `base` in release builds, a tenth of it in debug builds (whose
/// slower code still races, less tightly), times `STRESS_ROUNDS` if set.
fn rounds(base: usize) -> usize {
    let scale = std::env::var("STRESS_ROUNDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(1.0);
    let base = if cfg!(debug_assertions) {
        base / 10
    } else {
        base
    };
    ((base as f64 * scale) as usize).max(1)
}

/// Whether `future` is ready on its first poll.
fn ready_at_once<F: Future>(future: F) -> bool {
    let mut cx = Context::from_waker(noop_waker_ref());
    pin!(future).poll(&mut cx).is_ready()
}

/// Runs `a` and `b` on two threads released together by a barrier, `rounds` times, each round
/// with a value from `setup` split between them; `check` runs after both are done.
fn race<T, A, B>(
    rounds: usize,
    mut setup: impl FnMut() -> (A, B, T),
    a: impl Fn(A) + Send + Sync + 'static,
    b: impl Fn(B) + Send + Sync + 'static,
    mut check: impl FnMut(T),
) where
    A: Send + 'static,
    B: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(3));
    let slot_a: Arc<Mutex<Option<A>>> = Arc::new(Mutex::new(None));
    let slot_b: Arc<Mutex<Option<B>>> = Arc::new(Mutex::new(None));
    let threads = [
        spawn_worker(rounds, barrier.clone(), slot_a.clone(), a),
        spawn_worker(rounds, barrier.clone(), slot_b.clone(), b),
    ];
    for _ in 0..rounds {
        let (for_a, for_b, rest) = setup();
        *slot_a.lock().unwrap() = Some(for_a);
        *slot_b.lock().unwrap() = Some(for_b);
        barrier.wait();
        barrier.wait();
        check(rest);
    }
    for thread in threads {
        thread.join().unwrap();
    }
}

/// One side of `race`: each round, waits for its value, runs, and waits for the other side.
fn spawn_worker<T: Send + 'static>(
    rounds: usize,
    barrier: Arc<Barrier>,
    slot: Arc<Mutex<Option<T>>>,
    run: impl Fn(T) + Send + Sync + 'static,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for _ in 0..rounds {
            barrier.wait();
            let value = slot.lock().unwrap().take().expect("set before the barrier");
            run(value);
            barrier.wait();
        }
    })
}

/// The last guard of a draining pool and its last handle go on two threads, and the second
/// makes a new pool at once, which may reuse the memory: that pool must be a new one, whose
/// waiters wait for its own work.
#[test]
fn a_recycled_pool_never_sees_the_late_exit_of_the_one_before() {
    let rounds = rounds(200_000);
    let fresh: Arc<Mutex<Option<(Drain, tower_drain::Guard)>>> = Arc::default();
    let (slot, mut early) = (fresh.clone(), 0);
    race(
        rounds,
        || {
            let drain = Drain::new();
            let guard = drain.guard();
            drain.start_draining();
            (guard, drain, ())
        },
        drop,
        move |drain| {
            drop(drain);
            let fresh = Drain::new();
            let guard = fresh.guard();
            *slot.lock().unwrap() = Some((fresh, guard));
        },
        |()| {
            let (fresh, guard) = fresh.lock().unwrap().take().unwrap();
            let snapshot = fresh.snapshot();
            assert_eq!(
                (snapshot.in_flight, snapshot.started, snapshot.draining),
                (1, 1, false),
                "{snapshot:?}"
            );
            if ready_at_once(fresh.until_empty()) || ready_at_once(fresh.next_empty()) {
                early += 1;
            }
            drop(guard);
            // A wrapped count would show here: the next entry would not count.
            let guard = fresh.guard();
            assert!(!ready_at_once(fresh.next_empty()), "a broken count");
            assert_eq!(fresh.in_flight(), 1);
            drop(guard);
        },
    );
    println!("{rounds} rounds of last guard vs last handle and Drain::new");
    assert_eq!(early, 0, "early wake-ups of a new pool");
}

/// The same race with a predicate waiter's exit still waking it: the late wake must not
/// reach the next pool's waiters.
#[test]
fn a_late_exit_never_completes_the_next_pools_waiter() {
    let rounds = rounds(50_000);
    race(
        rounds,
        || {
            let drain = Drain::new();
            let guards = (drain.guard(), drain.guard());
            drain.start_draining();
            (guards, drain, ())
        },
        |(a, b)| {
            drop(a);
            drop(b);
        },
        drop,
        |()| {
            let fresh = Drain::new();
            let guard = fresh.guard();
            let mut empty = pin!(fresh.until_empty());
            let mut cx = Context::from_waker(noop_waker_ref());
            assert!(empty.as_mut().poll(&mut cx).is_pending());
            assert!(empty.as_mut().poll(&mut cx).is_pending(), "completed early");
            drop(guard);
            assert!(empty.as_mut().poll(&mut cx).is_ready());
        },
    );
    println!("{rounds} rounds of two guards vs last handle vs Drain::new");
}

/// `started` never goes backwards, and every snapshot keeps its invariant, while entries are
/// refused and draining is toggled.
#[test]
fn started_never_goes_backwards_while_refusing() {
    let drain = Drain::new();
    let stop = Arc::new(AtomicBool::new(false));
    let deadline =
        Instant::now() + Duration::from_millis(if cfg!(debug_assertions) { 300 } else { 1_000 });
    let workers: Vec<_> = (0..2)
        .map(|i| {
            let (drain, stop) = (drain.clone(), stop.clone());
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if i == 0 && n % 64 == 0 {
                        if n % 128 == 0 {
                            drain.start_draining();
                        } else {
                            drain.resume();
                        }
                    }
                    drop(drain.try_guard());
                    n += 1;
                }
            })
        })
        .collect();
    let (mut last, mut readings) = (drain.snapshot(), 0u64);
    while Instant::now() < deadline {
        let now = drain.snapshot();
        assert!(now.started >= last.started, "started {last:?} then {now:?}");
        assert!(now.completed >= last.completed, "{last:?} then {now:?}");
        assert!(now.rejected >= last.rejected, "{last:?} then {now:?}");
        assert_eq!(
            now.started,
            now.completed + now.cancelled + now.in_flight as u64
        );
        last = now;
        readings += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    println!("{readings} snapshots, last {last:?}");
    assert!(
        last.rejected > 0 && last.started > 0,
        "the race was not run"
    );
}

/// A parent's `start_draining` racing its `resume`: however they interleave, a child ends
/// draining only if its parent does.
#[test]
fn a_child_follows_its_parent_when_draining_races_resume() {
    let rounds = rounds(20_000);
    let mut stuck = 0;
    race(
        rounds,
        || {
            let root = Drain::new();
            let child = root.child();
            (root.clone(), root.clone(), (root, child))
        },
        |root| {
            root.start_draining();
        },
        |root| {
            root.resume();
        },
        |(root, child)| {
            if !root.is_draining() && child.is_draining() {
                stuck += 1;
            }
        },
    );
    println!("{rounds} rounds of parent drain vs resume");
    assert_eq!(stuck, 0, "children left draining under a serving parent");
}

/// `child()` racing `resume()` on a draining root.
#[test]
fn a_new_child_follows_its_parent_when_made_during_resume() {
    let rounds = rounds(50_000);
    let made = Arc::new(Mutex::new(None));
    let mut stuck = 0;
    let slot = made.clone();
    race(
        rounds,
        || {
            let root = Drain::new();
            root.start_draining();
            (root.clone(), root.clone(), root)
        },
        move |root: Drain| {
            *slot.lock().unwrap() = Some(root.child());
        },
        |root| {
            root.resume();
        },
        |root| {
            let child = made.lock().unwrap().take().unwrap();
            if !root.is_draining() && child.is_draining() {
                stuck += 1;
            }
        },
    );
    println!("{rounds} rounds of child() vs resume");
    assert_eq!(
        stuck, 0,
        "new children left draining under a serving parent"
    );
}

/// A phase receiver ends once its pool is gone, and never sees the pool that reuses its
/// memory.
#[test]
fn a_phase_receiver_ends_with_its_pool() {
    let drain = Drain::new();
    let mut phases = drain.watch_phase();
    drop(drain);
    let next = Drain::new();
    next.start_draining();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let changed = tokio::time::timeout(Duration::from_secs(5), phases.changed())
            .await
            .expect("a receiver of a dropped pool must end, not wait");
        assert!(changed.is_err(), "saw {:?}", *phases.borrow());
    });
    assert_eq!(*phases.borrow(), Phase::Serving);
    drop(next);
}

/// A pool whose handles are gone but whose work is still in flight is still that pool: its
/// receiver sees it drain, then ends.
#[test]
fn a_phase_receiver_sees_the_last_guard_then_ends() {
    let drain = Drain::new();
    let mut phases = drain.watch_phase();
    let guard = drain.guard();
    drain.start_draining();
    drop(drain);
    drop(guard);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut seen = vec![*phases.borrow_and_update()];
        while tokio::time::timeout(Duration::from_secs(5), phases.changed())
            .await
            .expect("a receiver of a dropped pool must end, not wait")
            .is_ok()
        {
            seen.push(*phases.borrow_and_update());
        }
        assert_eq!(seen.last(), Some(&Phase::Drained), "{seen:?}");
    });
}

/// Making a child costs the same whatever the number of live children.
#[test]
fn many_live_children_are_made_in_linear_time() {
    let root = Drain::new();
    let n = if cfg!(debug_assertions) {
        40_000
    } else {
        100_000
    };
    let start = Instant::now();
    let children: Vec<Drain> = (0..n).map(|_| root.child()).collect();
    let made = start.elapsed();
    root.start_draining();
    assert!(children.iter().all(Drain::is_draining));
    root.resume();
    drop(children);
    println!("{n} live children made in {made:?}");
    // Quadratic adoption took 6.7 s for 80,000 in a release build.
    assert!(made < Duration::from_secs(5), "{n} children took {made:?}");
}
