//! Property test: random sequences of operations on a pool, checked after every step against a
//! reference model that is too simple to be wrong: which waiters must be complete, and every
//! `Snapshot` field.

use std::future::{pending, Future, Pending};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::task::noop_waker_ref;
use proptest::prelude::*;
use tower_drain::{Drain, Guard, Snapshot, Tracked};

/// A predicate for `until`, as data so that the model can evaluate it too.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Predicate {
    InFlightAtMost(usize),
    CompletedAtLeast(u64),
    Draining,
}

impl Predicate {
    fn holds(self, snapshot: &Snapshot) -> bool {
        match self {
            Predicate::InFlightAtMost(n) => snapshot.in_flight <= n,
            Predicate::CompletedAtLeast(n) => snapshot.completed >= n,
            Predicate::Draining => snapshot.draining,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// `guard()`: admitted even while draining.
    Guard,
    /// `try_guard()`: refused while draining.
    TryGuard,
    /// `track(pending())`, kept alive.
    Track,
    /// Drop member `i` (modulo the count): a guard completes, a tracked future is cancelled.
    Release(usize),
    /// `track(ready)` polled to completion at once.
    TrackReady,
    StartDraining,
    Resume,
    UntilEmpty,
    NextEmpty,
    Until(Predicate),
    /// Drop waiter `i` (modulo the count), complete or not.
    DropWaiter(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Guard),
        3 => Just(Op::TryGuard),
        2 => Just(Op::Track),
        6 => any::<usize>().prop_map(Op::Release),
        1 => Just(Op::TrackReady),
        1 => Just(Op::StartDraining),
        1 => Just(Op::Resume),
        2 => Just(Op::UntilEmpty),
        2 => Just(Op::NextEmpty),
        1 => (0usize..4).prop_map(|n| Op::Until(Predicate::InFlightAtMost(n))),
        1 => (0u64..6).prop_map(|n| Op::Until(Predicate::CompletedAtLeast(n))),
        1 => Just(Op::Until(Predicate::Draining)),
        1 => any::<usize>().prop_map(Op::DropWaiter),
    ]
}

enum Member {
    Guard(Guard),
    Tracked(Tracked<Pending<()>>),
}

/// What the model says a waiter is waiting for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Done,
    NextTransitionToEmpty,
    Holds(Predicate),
}

struct Waiter {
    future: Pin<Box<dyn Future<Output = ()> + Send>>,
    expect: Expect,
}

/// The reference model: plain counters.
#[derive(Debug, Default, PartialEq)]
struct Model {
    in_flight: usize,
    started: u64,
    completed: u64,
    cancelled: u64,
    rejected: u64,
    draining: bool,
}

impl Model {
    fn assert_matches(&self, snapshot: &Snapshot, context: &str) {
        let seen = Model {
            in_flight: snapshot.in_flight,
            started: snapshot.started,
            completed: snapshot.completed,
            cancelled: snapshot.cancelled,
            rejected: snapshot.rejected,
            draining: snapshot.draining,
        };
        assert_eq!(&seen, self, "{context}");
    }

    /// What a predicate waiter sees now.
    fn holds(&self, predicate: Predicate) -> bool {
        match predicate {
            Predicate::InFlightAtMost(n) => self.in_flight <= n,
            Predicate::CompletedAtLeast(n) => self.completed >= n,
            Predicate::Draining => self.draining,
        }
    }
}

/// Drops a future's output, and (unlike an `async` block) may be polled after completion, so
/// that the waiter's own behaviour then is what is checked.
struct Discard<F>(Pin<Box<F>>);

impl<F: Future> Future for Discard<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx).map(drop)
    }
}

fn poll(future: Pin<&mut (dyn Future<Output = ()> + Send)>) -> bool {
    future
        .poll(&mut Context::from_waker(noop_waker_ref()))
        .is_ready()
}

fn check(ops: Vec<Op>) {
    let drain = Drain::new();
    let mut model = Model::default();
    let mut members: Vec<Member> = Vec::new();
    let mut waiters: Vec<Waiter> = Vec::new();

    for (step, op) in ops.into_iter().enumerate() {
        // Whether this step takes the pool through empty: a last exit.
        let mut emptied = false;
        match op {
            Op::Guard => {
                members.push(Member::Guard(drain.guard()));
                model.in_flight += 1;
                model.started += 1;
            }
            Op::TryGuard => match drain.try_guard() {
                Ok(guard) => {
                    assert!(!model.draining, "step {step}: admitted while draining");
                    members.push(Member::Guard(guard));
                    model.in_flight += 1;
                    model.started += 1;
                }
                Err(_) => {
                    assert!(model.draining, "step {step}: refused while serving");
                    // Never counted, not even for an instant: nothing empties.
                    model.rejected += 1;
                }
            },
            Op::Track => {
                members.push(Member::Tracked(drain.track(pending())));
                model.in_flight += 1;
                model.started += 1;
            }
            Op::Release(i) if !members.is_empty() => {
                match members.swap_remove(i % members.len()) {
                    Member::Guard(guard) => {
                        drop(guard);
                        model.completed += 1;
                    }
                    Member::Tracked(tracked) => {
                        drop(tracked);
                        model.cancelled += 1;
                    }
                }
                model.in_flight -= 1;
                emptied = model.in_flight == 0;
            }
            Op::Release(_) => {}
            Op::TrackReady => {
                let mut tracked = Box::pin(drain.track(std::future::ready(())));
                assert!(poll(tracked.as_mut()));
                model.started += 1;
                model.completed += 1;
                emptied = model.in_flight == 0;
            }
            Op::StartDraining => {
                assert_eq!(drain.start_draining(), !model.draining, "step {step}");
                model.draining = true;
            }
            Op::Resume => {
                assert_eq!(drain.resume(), model.draining, "step {step}");
                model.draining = false;
            }
            Op::UntilEmpty => waiters.push(Waiter {
                future: Box::pin(drain.until_empty()),
                expect: if model.in_flight == 0 {
                    Expect::Done
                } else {
                    Expect::NextTransitionToEmpty
                },
            }),
            Op::NextEmpty => waiters.push(Waiter {
                future: Box::pin(drain.next_empty()),
                expect: Expect::NextTransitionToEmpty,
            }),
            Op::Until(predicate) => waiters.push(Waiter {
                future: Box::pin(Discard(Box::pin(drain.until(move |s| predicate.holds(s))))),
                expect: Expect::Holds(predicate),
            }),
            Op::DropWaiter(i) if !waiters.is_empty() => {
                waiters.swap_remove(i % waiters.len());
            }
            Op::DropWaiter(_) => {}
        }

        model.assert_matches(&drain.snapshot(), &format!("step {step}: {op:?}"));
        assert_eq!(drain.in_flight(), model.in_flight);
        assert_eq!(drain.is_draining(), model.draining);

        for (i, waiter) in waiters.iter_mut().enumerate() {
            waiter.expect = match waiter.expect {
                Expect::NextTransitionToEmpty if emptied => Expect::Done,
                Expect::Holds(predicate) if model.holds(predicate) => Expect::Done,
                other => other,
            };
            // Polled after every step, even once complete: it must stay complete.
            let ready = poll(waiter.future.as_mut());
            assert_eq!(
                ready,
                waiter.expect == Expect::Done,
                "step {step}: {op:?}: waiter {i} expected {:?}",
                waiter.expect
            );
        }
    }

    // Whatever is left leaves; the books balance and the pool is empty.
    let left = members.len() as u64;
    drop(members);
    let end = drain.snapshot();
    assert_eq!(end.in_flight, 0);
    assert_eq!(end.started, end.completed + end.cancelled);
    assert_eq!(end.started, model.started);
    assert!(end.completed + end.cancelled >= model.completed + model.cancelled + left);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_pool_matches_its_reference_model(ops in prop::collection::vec(op(), 1..120)) {
        check(ops);
    }
}

#[test]
fn a_refusal_of_an_empty_pool_leaves_next_empty_waiting() {
    // A refused entry is never counted, so the pool never went through empty.
    check(vec![Op::StartDraining, Op::NextEmpty, Op::TryGuard]);
}
