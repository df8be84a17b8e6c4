//! Loom models of the pool's state machine.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --lib loom`. Tokio's `Notify` is not
//! modelled by loom, so these models drive `State` directly and reproduce the few lines of
//! `Shared` that decide who is woken: publishing a transition (`emptied_at`) and a waiter's
//! registration reading. A waiter "fires" exactly when `emptied_at >= target`.

use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;

use crate::state::{self, Entry, Outcome, State};

/// `Shared::after_exit`'s publication step; returns whether the exit must recycle the pool.
fn publish(state: &State, emptied_at: &AtomicU64, outcome: Outcome) -> bool {
    let exit = state.exit(outcome);
    if let Some(at) = exit.emptied_at {
        emptied_at.fetch_max(at, Ordering::Release);
    }
    exit.recycle
}

/// `EmptyWait::new`'s target for an `until_empty` waiter, after `Shared::register`:
/// `None` means ready at once.
fn register_until_empty(state: &State) -> (Option<u64>, state::Reading) {
    state.set_flag(state::EMPTY_WAITERS, true);
    let reading = state.read();
    let target = (reading.in_flight() > 0).then_some(reading.attempts);
    (target, reading)
}

#[test]
fn no_admission_after_a_drained_pool_was_observed() {
    loom::model(|| {
        let state = Arc::new(State::new());
        let observed_empty = Arc::new(AtomicBool::new(false));

        let admitter = {
            let (state, observed_empty) = (state.clone(), observed_empty.clone());
            thread::spawn(move || match state.try_enter() {
                Entry::Admitted | Entry::AdmittedChanged => {
                    assert!(
                        !observed_empty.load(Ordering::SeqCst),
                        "admitted after the drained pool was seen empty"
                    );
                    state.exit(Outcome::Completed);
                }
                Entry::Draining | Entry::Full => {
                    state.exit(Outcome::Refused);
                }
            })
        };

        state.start_draining();
        if state::in_flight(state.load()) == 0 {
            observed_empty.store(true, Ordering::SeqCst);
        }
        admitter.join().unwrap();

        let reading = state.read();
        assert_eq!(reading.in_flight(), 0);
        assert_eq!(reading.attempts, 1);
    });
}

#[test]
fn a_waiter_fires_exactly_for_transitions_after_it_registered() {
    loom::model(|| {
        let state = Arc::new(State::new());
        let emptied_at = Arc::new(AtomicU64::new(0));
        // One request in flight before the race.
        assert_eq!(state.enter(), Entry::Admitted);

        // The last request leaves, while a new one arrives and a waiter registers.
        let leaver = {
            let (state, emptied_at) = (state.clone(), emptied_at.clone());
            thread::spawn(move || {
                let exit = state.exit(Outcome::Completed);
                if let Some(at) = exit.emptied_at {
                    emptied_at.fetch_max(at, Ordering::Release);
                }
                exit.emptied_at.is_some()
            })
        };
        let arriver = {
            let state = state.clone();
            thread::spawn(move || {
                state.enter();
            })
        };
        let (target, reading) = register_until_empty(&state);
        let published = leaver.join().unwrap();
        arriver.join().unwrap();

        // Ground truth from the registration reading (attempts, in flight):
        // (1, 1) registered before both: fire iff the leaver then emptied the pool, which it
        //        publishes because it saw the waiter's flag;
        // (1, 0) between the leaver and the arriver: ready at once;
        // (2, _) after the arriver: any transition came before registration: never fire.
        let fired = target.map(|t| emptied_at.load(Ordering::Acquire) >= t);
        match (reading.attempts, reading.in_flight()) {
            (1, 1) => assert_eq!(fired, Some(published), "lost or spurious wake-up"),
            (1, 0) => assert_eq!(fired, None),
            (2, _) => assert_eq!(fired, Some(false), "fired for an earlier transition"),
            other => panic!("impossible reading {other:?}"),
        }
    });
}

#[test]
fn the_last_exit_is_never_missed_by_a_registering_waiter() {
    loom::model(|| {
        let state = Arc::new(State::new());
        let emptied_at = Arc::new(AtomicU64::new(0));
        state.enter();
        state.enter();

        let leavers: Vec<_> = (0..2)
            .map(|_| {
                let (state, emptied_at) = (state.clone(), emptied_at.clone());
                thread::spawn(move || {
                    publish(&state, &emptied_at, Outcome::Completed);
                })
            })
            .collect();
        let (target, _) = register_until_empty(&state);
        for leaver in leavers {
            leaver.join().unwrap();
        }
        // The pool ended empty with no new entries: the waiter is ready, one way or the other.
        if let Some(target) = target {
            assert!(emptied_at.load(Ordering::Acquire) >= target, "lost wake-up");
        }
    });
}

#[test]
fn snapshots_never_split_a_cancellation() {
    loom::model(|| {
        let state = Arc::new(State::new());
        state.enter();
        let canceller = {
            let state = state.clone();
            thread::spawn(move || {
                state.exit(Outcome::Cancelled);
            })
        };
        let reading = state.read();
        let counted = (reading.in_flight(), reading.cancelled);
        // Either before the cancellation or after it; never gone from the count but not yet
        // counted as cancelled (which would look like a completion).
        assert!(counted == (1, 0) || counted == (0, 1), "{counted:?}");
        canceller.join().unwrap();
    });
}

#[test]
fn exactly_one_of_detach_and_the_last_exit_recycles() {
    loom::model(|| {
        let state = Arc::new(State::new());
        let emptied_at = Arc::new(AtomicU64::new(0));
        state.enter();
        let leaver = {
            let (state, emptied_at) = (state.clone(), emptied_at.clone());
            thread::spawn(move || publish(&state, &emptied_at, Outcome::Completed))
        };
        let detach_recycles = state.detach();
        let exit_recycles = leaver.join().unwrap();
        assert!(
            detach_recycles ^ exit_recycles,
            "detach {detach_recycles}, exit {exit_recycles}"
        );
    });
}

#[test]
fn resume_and_start_draining_race_with_admission() {
    loom::model(|| {
        let state = Arc::new(State::new());
        state.start_draining();
        let resumer = {
            let state = state.clone();
            thread::spawn(move || {
                state.resume();
            })
        };
        let entry = state.try_enter();
        match entry {
            Entry::Admitted | Entry::AdmittedChanged => {
                // Admitted only after the resume, which then must be visible in the word.
                assert_eq!(state.load() & state::DRAINING, 0);
                state.exit(Outcome::Completed);
            }
            _ => {
                state.exit(Outcome::Refused);
            }
        }
        resumer.join().unwrap();
        let reading = state.read();
        assert_eq!(reading.in_flight(), 0);
        assert_eq!(reading.attempts, 1);
    });
}
