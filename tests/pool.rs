//! The pool's semantics, after Twisted's `DeferredPool`: waiters, reuse, statistics.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio_test::task::spawn;
use tokio_test::{assert_pending, assert_ready};
use tower_drain::{Drain, Snapshot};

fn assert_send_static<T: Send + 'static>(_: &T) {}

#[test]
fn until_empty_is_ready_at_once_when_empty() {
    let drain = Drain::new();
    let mut waiter = spawn(drain.until_empty());
    assert_ready!(waiter.poll());
}

#[test]
fn until_empty_waits_for_the_last_request() {
    let drain = Drain::new();
    let a = drain.guard();
    let b = drain.guard();
    let mut waiter = spawn(drain.until_empty());
    assert_pending!(waiter.poll());

    drop(a);
    assert!(!waiter.is_woken(), "one request still in flight");
    assert_pending!(waiter.poll());

    drop(b);
    assert!(waiter.is_woken());
    assert_ready!(waiter.poll());
}

#[test]
fn until_empty_registers_when_made_not_when_first_polled() {
    let drain = Drain::new();
    let guard = drain.guard();
    let mut waiter = spawn(drain.until_empty());
    // The pool empties and fills again before the waiter is ever polled.
    drop(guard);
    let _again = drain.guard();
    assert_ready!(waiter.poll());
}

#[test]
fn until_empty_is_not_completed_by_a_transition_before_it_was_made() {
    let drain = Drain::new();
    // An empty waiter exists, so transitions are published.
    let mut early = spawn(drain.until_empty());
    let first = drain.guard();
    let mut late_source = spawn(drain.until_empty());
    drop(first); // empties: completes both waiters made while it was in flight
    assert_ready!(early.poll());
    assert_ready!(late_source.poll());

    let second = drain.guard();
    let mut late = spawn(drain.until_empty());
    assert_pending!(late.poll());
    drop(second);
    assert_ready!(late.poll());
}

#[test]
fn next_empty_waits_for_a_real_transition_even_when_empty() {
    let drain = Drain::new();
    let mut next = spawn(drain.next_empty());
    assert_pending!(next.poll());

    let guard = drain.guard();
    assert_pending!(next.poll());
    drop(guard);
    assert!(next.is_woken());
    assert_ready!(next.poll());
}

#[test]
fn next_empty_ignores_transitions_before_it_was_made() {
    let drain = Drain::new();
    let _keeps_publishing = drain.until_empty();
    drop(drain.guard());
    let mut next = spawn(drain.next_empty());
    assert_pending!(next.poll());
    drop(drain.guard());
    assert_ready!(next.poll());
}

#[test]
fn next_empty_while_busy_completes_when_the_pool_empties() {
    let drain = Drain::new();
    let guard = drain.guard();
    let mut next = spawn(drain.next_empty());
    assert_pending!(next.poll());
    drop(guard);
    assert_ready!(next.poll());
}

#[test]
fn any_number_of_waiters_wake_on_one_transition() {
    let drain = Drain::new();
    let guard = drain.guard();
    let mut waiters: Vec<_> = (0..100)
        .map(|i| {
            if i % 2 == 0 {
                spawn(Box::pin(drain.until_empty()) as std::pin::Pin<Box<dyn Future<Output = ()>>>)
            } else {
                spawn(Box::pin(drain.next_empty()) as _)
            }
        })
        .collect();
    for waiter in &mut waiters {
        assert_pending!(waiter.poll());
    }
    drop(guard);
    for waiter in &mut waiters {
        assert!(waiter.is_woken());
        assert_ready!(waiter.poll());
    }
}

#[test]
fn the_pool_may_grow_while_waited_on() {
    let drain = Drain::new();
    let mut guards = vec![drain.guard()];
    let mut waiter = spawn(drain.until_empty());
    assert_pending!(waiter.poll());
    for _ in 0..10 {
        guards.push(drain.guard());
        assert_pending!(waiter.poll());
    }
    while guards.len() > 1 {
        guards.pop();
        assert_pending!(waiter.poll());
    }
    guards.pop();
    assert_ready!(waiter.poll());
}

#[test]
fn the_pool_is_reusable_after_it_empties() {
    let drain = Drain::new();
    for round in 1..=3u64 {
        let guard = drain.guard();
        let mut waiter = spawn(drain.until_empty());
        assert_pending!(waiter.poll());
        drop(guard);
        assert_ready!(waiter.poll());
        assert_eq!(drain.snapshot().completed, round);
    }
}

#[test]
fn the_pool_is_reusable_after_resume() {
    let drain = Drain::new();
    assert!(drain.start_draining());
    assert!(drain.try_guard().is_err());
    let mut empty = spawn(drain.until_empty());
    assert_ready!(empty.poll());

    assert!(drain.resume());
    assert!(!drain.resume(), "resume is idempotent");
    let guard = drain.try_guard().expect("accepting again");
    let mut waiter = spawn(drain.until_empty());
    assert_pending!(waiter.poll());
    drop(guard);
    assert_ready!(waiter.poll());

    assert!(drain.start_draining(), "a second drain begins afresh");
}

#[test]
fn start_draining_is_idempotent_and_reports_who_began_it() {
    let drain = Drain::new();
    assert!(!drain.is_draining());
    assert!(drain.start_draining());
    assert!(!drain.start_draining());
    assert!(drain.is_draining());
}

#[test]
fn until_empty_does_not_start_draining() {
    let drain = Drain::new();
    let guard = drain.guard();
    let _waiter = drain.until_empty();
    assert!(!drain.is_draining());
    assert!(drain.try_guard().is_ok());
    drop(guard);
}

#[test]
fn predicate_is_checked_at_once_and_after_every_change() {
    let drain = Drain::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let mut waiter = spawn(drain.until(move |s: &Snapshot| {
        seen.fetch_add(1, Ordering::Relaxed);
        s.completed >= 3
    }));
    assert_pending!(waiter.poll());
    assert_eq!(calls.load(Ordering::Relaxed), 1, "checked at once");

    let guards: Vec<_> = (0..3).map(|_| drain.guard()).collect();
    assert!(waiter.is_woken(), "an entry is a change");
    assert_pending!(waiter.poll());

    for (i, guard) in guards.into_iter().enumerate() {
        let before = calls.load(Ordering::Relaxed);
        drop(guard);
        assert!(waiter.is_woken(), "an exit is a change");
        if i < 2 {
            assert_pending!(waiter.poll());
        } else {
            let snapshot = assert_ready!(waiter.poll());
            assert_eq!(snapshot.completed, 3);
        }
        assert_eq!(
            calls.load(Ordering::Relaxed),
            before + 1,
            "one check per change"
        );
    }
}

/// The first change after a look wakes the waiter; the changes that follow until it looks
/// again are checked together, in one call of the predicate, against the newest snapshot.
#[test]
fn changes_between_two_looks_are_checked_together() {
    let drain = Drain::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let mut waiter = spawn(drain.until(move |s: &Snapshot| {
        seen.fetch_add(1, Ordering::Relaxed);
        s.completed >= 100
    }));
    assert_pending!(waiter.poll());
    for _ in 0..100 {
        drop(drain.guard());
    }
    assert!(waiter.is_woken());
    assert_eq!(assert_ready!(waiter.poll()).completed, 100);
    assert_eq!(calls.load(Ordering::Relaxed), 2, "one look, one look");
}

/// A change after every look (here the predicate itself makes one, as steady traffic does):
/// each poll looks once, then yields with a wake-up, rather than looking again and again
/// inside one poll for as long as changes keep coming. (Before, this poll never returned.)
#[test]
fn a_predicate_waiter_looks_once_per_poll_under_steady_changes() {
    let drain = Drain::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let (seen, changer) = (calls.clone(), drain.clone());
    let mut waiter = spawn(drain.until(move |_: &Snapshot| {
        let call = seen.fetch_add(1, Ordering::Relaxed);
        assert!(call < 100, "looking again and again inside one poll");
        drop(changer.guard());
        false
    }));
    for polls in 1..=3 {
        assert_pending!(waiter.poll());
        assert_eq!(calls.load(Ordering::Relaxed), polls, "one look per poll");
        assert!(
            waiter.is_woken(),
            "a change came after the look: poll again"
        );
    }
}

#[test]
fn predicate_sees_draining_begin_and_end() {
    let drain = Drain::new();
    let mut began = spawn(drain.until(|s| s.draining));
    assert_pending!(began.poll());
    drain.start_draining();
    assert!(began.is_woken());
    assert!(assert_ready!(began.poll()).draining);

    let mut ended = spawn(drain.until(|s| !s.draining));
    assert_pending!(ended.poll());
    drain.resume();
    assert!(ended.is_woken());
    assert_ready!(ended.poll());
}

#[test]
fn predicate_sees_refusals() {
    let drain = Drain::new();
    drain.start_draining();
    let mut refused = spawn(drain.until(|s| s.rejected == 2));
    assert_pending!(refused.poll());
    assert!(drain.try_guard().is_err());
    assert_pending!(refused.poll());
    assert!(drain.try_guard().is_err());
    assert_ready!(refused.poll());
}

#[test]
fn a_dropped_waiter_leaves_nothing_behind() {
    let drain = Drain::new();
    let guard = drain.guard();
    let mut waiter = spawn(drain.until_empty());
    assert_pending!(waiter.poll());
    let mut watcher = spawn(drain.until(|s| s.in_flight == 0));
    assert_pending!(watcher.poll());
    drop(waiter);
    drop(watcher);

    // A new waiter works as before, and nothing else was disturbed.
    let mut fresh = spawn(drain.until_empty());
    assert_pending!(fresh.poll());
    drop(guard);
    assert_ready!(fresh.poll());
    assert_eq!(drain.in_flight(), 0);
}

#[test]
fn a_waiter_polled_after_completion_stays_ready() {
    let drain = Drain::new();
    let mut empty = spawn(drain.until_empty());
    assert_ready!(empty.poll());
    assert_ready!(empty.poll());

    let mut pred = spawn(drain.until(|s| s.in_flight == 0));
    assert_ready!(pred.poll());
    assert_ready!(pred.poll());

    let mut draining = spawn(drain.draining());
    drain.start_draining();
    assert_ready!(draining.poll());
    assert_ready!(draining.poll());
}

#[test]
fn draining_completes_when_draining_begins() {
    let drain = Drain::new();
    let mut signal = spawn(drain.draining());
    assert_pending!(signal.poll());
    drain.start_draining();
    assert!(signal.is_woken());
    assert_ready!(signal.poll());

    let mut already = spawn(drain.draining());
    assert_ready!(already.poll(), "ready at once while draining");
}

#[test]
fn draining_completes_even_if_resumed_before_it_was_polled() {
    let drain = Drain::new();
    let mut signal = spawn(drain.draining());
    drain.start_draining();
    drain.resume();
    assert_ready!(signal.poll());
}

#[test]
fn tracked_future_counts_until_complete() {
    let drain = Drain::new();
    let (tx, rx) = tokio::sync::oneshot::channel::<&str>();
    let mut tracked = spawn(drain.track(rx));
    assert_eq!(drain.in_flight(), 1);
    assert_pending!(tracked.poll());
    tx.send("done").unwrap();
    assert_eq!(assert_ready!(tracked.poll()), Ok("done"));
    assert_eq!(drain.in_flight(), 0);
    let snapshot = drain.snapshot();
    assert_eq!((snapshot.completed, snapshot.cancelled), (1, 0));
}

#[test]
fn tracked_future_dropped_early_counts_as_cancelled() {
    let drain = Drain::new();
    let tracked = drain.track(std::future::pending::<()>());
    let mut waiter = spawn(drain.until_empty());
    assert_pending!(waiter.poll());
    drop(tracked);
    assert_ready!(waiter.poll());
    let snapshot = drain.snapshot();
    assert_eq!(snapshot.cancelled, 1);
    assert_eq!(snapshot.completed, 0);
    assert_eq!(snapshot.started, 1);
}

#[test]
fn tracked_futures_are_counted_while_draining() {
    let drain = Drain::new();
    drain.start_draining();
    let tracked = drain.track(async {});
    assert_eq!(drain.in_flight(), 1);
    drop(tracked);
}

#[tokio::test]
async fn a_panic_inside_a_tracked_future_releases_its_slot() {
    let drain = Drain::new();
    let task = tokio::spawn(drain.track(async {
        panic!("handler failed");
    }));
    assert!(task.await.unwrap_err().is_panic());
    assert_eq!(drain.in_flight(), 0);
    assert_eq!(drain.snapshot().cancelled, 1);
    drain.until_empty().await;
}

#[test]
fn snapshot_counts_every_kind_of_outcome() {
    let drain = Drain::new();
    let held = drain.guard();
    drop(drain.guard());
    drop(drain.track(async {}));
    drain.start_draining();
    assert!(drain.try_guard().is_err());
    assert!(drain.try_guard().is_err());

    let snapshot = drain.snapshot();
    assert_eq!(snapshot.in_flight, 1);
    assert_eq!(snapshot.started, 3);
    assert_eq!(snapshot.completed, 1);
    assert_eq!(snapshot.cancelled, 1);
    assert_eq!(snapshot.rejected, 2);
    assert!(snapshot.draining);
    drop(held);
    assert_eq!(drain.snapshot().completed, 2);
}

#[test]
fn clones_share_one_pool() {
    let drain = Drain::new();
    let other = drain.clone();
    let guard = other.guard();
    assert_eq!(drain.in_flight(), 1);
    drain.start_draining();
    assert!(other.is_draining());
    drop(guard);
    assert_eq!(drain.in_flight(), 0);
}

#[test]
fn a_guard_outlives_every_drain_handle() {
    let drain = Drain::new();
    let guard = drain.guard();
    drop(drain);
    // The pool stays alive for the guard; a new pool made meanwhile is separate.
    let fresh = Drain::new();
    assert_eq!(fresh.in_flight(), 0);
    std::thread::spawn(move || drop(guard)).join().unwrap();
    let after = Drain::new();
    assert_eq!(after.snapshot().started, 0, "a recycled pool starts afresh");
    assert_eq!(fresh.snapshot().started, 0);
}

#[test]
fn debug_shows_in_flight_and_draining() {
    let drain = Drain::new();
    let _guard = drain.guard();
    drain.start_draining();
    assert_eq!(
        format!("{drain:?}"),
        "Drain { in_flight: 1, draining: true }"
    );
}

#[test]
fn rejected_is_a_clear_error() {
    let drain = Drain::default();
    drain.start_draining();
    let err = drain.try_guard().unwrap_err();
    assert_eq!(err.to_string(), "service is draining");
    let boxed: tower_drain::BoxError = Box::new(err.clone());
    assert_eq!(boxed.downcast_ref::<tower_drain::Rejected>(), Some(&err));
}

#[test]
fn waiters_are_send_and_static() {
    let drain = Drain::new();
    assert_send_static(&drain.until_empty());
    assert_send_static(&drain.next_empty());
    assert_send_static(&drain.until(|s| s.in_flight == 0));
    assert_send_static(&drain.draining());
    assert_send_static(&drain.guard());
    assert_send_static(&drain.track(async {}));
    fn assert_sync<T: Sync + Send + Clone + Default + std::fmt::Debug>() {}
    assert_sync::<Drain>();
}

#[test]
fn tracked_adds_one_pointer_to_the_future() {
    let drain = Drain::new();
    // A pointer-aligned inner future, so no padding hides or adds to the difference.
    let inner = std::future::ready(0u64);
    let inner_size = std::mem::size_of_val(&inner);
    let tracked = drain.track(inner);
    assert_eq!(
        std::mem::size_of_val(&tracked),
        inner_size + std::mem::size_of::<usize>()
    );
    assert_eq!(
        std::mem::size_of::<tower_drain::Guard>(),
        std::mem::size_of::<usize>()
    );
}

#[test]
fn debug_never_folds_the_per_thread_counts() {
    // A `{:?}` in a per-request log line must not make every request count on one shared
    // word: while the pool counts per thread, Debug leaves the count out rather than fold.
    let drain = Drain::new();
    let guards: Vec<_> = (0..3).map(|_| drain.guard()).collect();
    assert_eq!(format!("{drain:?}"), "Drain { draining: false, .. }");
    // Asked twice: had the first folded (and opened the shards again), the second would be
    // no different; a fold would show the count.
    assert_eq!(format!("{drain:?}"), "Drain { draining: false, .. }");
    assert_eq!(drain.in_flight(), 3);
    drop(guards);
}
