//! Property test of a pool's whole life: random sequences over a root and its children, with
//! handles dropped (so that memory is recycled and reused), the shutdown procedure on paused
//! time and `resume` at any step, and `watch_phase` receivers, checked after every step
//! against a reference model: every snapshot, every phase, what every receiver has seen, and
//! at the end how every shutdown ended.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use futures::task::noop_waker_ref;
use proptest::prelude::*;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_drain::{Drain, Guard, Phase, ShutdownReport, Snapshot};

const UNREADY: u64 = 10;
const GRACE: u64 = 20;

#[derive(Debug, Clone)]
enum Op {
    /// `guard()` on pool slot `p` (0 the root, 1 and 2 children).
    Guard(usize),
    /// `try_guard()` on pool slot `p`.
    TryGuard(usize),
    /// Drop member `i` (modulo the count), of whatever pool it belongs to.
    Release(usize),
    StartDraining(usize),
    Resume(usize),
    UntilEmpty(usize),
    NextEmpty(usize),
    DropWaiter(usize),
    Watch(usize),
    /// A child of the root in the first free child slot.
    MakeChild,
    /// Drop the handle in child slot `c`, and the waiters on it.
    DropChild(usize),
    /// Drop every handle and waiter, keep the members, and make a new root.
    Restart,
    /// `shutdown().unready_for(10 s).grace(20 s)` on the root, spawned.
    Shutdown,
    /// Let `n` seconds of paused time pass.
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..3).prop_map(Op::Guard),
        4 => (0usize..3).prop_map(Op::TryGuard),
        8 => any::<usize>().prop_map(Op::Release),
        2 => (0usize..3).prop_map(Op::StartDraining),
        2 => (0usize..3).prop_map(Op::Resume),
        1 => (0usize..3).prop_map(Op::UntilEmpty),
        1 => (0usize..3).prop_map(Op::NextEmpty),
        1 => any::<usize>().prop_map(Op::DropWaiter),
        2 => (0usize..3).prop_map(Op::Watch),
        2 => Just(Op::MakeChild),
        1 => (1usize..3).prop_map(Op::DropChild),
        1 => Just(Op::Restart),
        2 => Just(Op::Shutdown),
        3 => (1u64..16).prop_map(Op::Advance),
    ]
}

/// One pool as the model sees it.
#[derive(Debug, Clone)]
struct PoolModel {
    parent: Option<usize>,
    in_flight: usize,
    started: u64,
    completed: u64,
    cancelled: u64,
    rejected: u64,
    draining: bool,
    drained_by_parent: bool,
    unready: bool,
    /// The phase last published to receivers.
    published: Phase,
    /// A shutdown of this cycle exists (running or ended): `shutdown()` would join it.
    shutdown_cell: bool,
}

impl Default for PoolModel {
    fn default() -> Self {
        Self {
            parent: None,
            in_flight: 0,
            started: 0,
            completed: 0,
            cancelled: 0,
            rejected: 0,
            draining: false,
            drained_by_parent: false,
            unready: false,
            published: Phase::Serving,
            shutdown_cell: false,
        }
    }
}

impl PoolModel {
    fn phase(&self) -> Phase {
        match (self.draining, self.in_flight, self.unready) {
            (true, 0, _) => Phase::Drained,
            (true, _, _) => Phase::Draining,
            (false, _, true) => Phase::Unready,
            (false, _, false) => Phase::Serving,
        }
    }

    fn check(&self, snapshot: &Snapshot, context: &str) {
        let seen = (
            snapshot.in_flight,
            snapshot.started,
            snapshot.completed,
            snapshot.cancelled,
            snapshot.rejected,
            snapshot.draining,
        );
        let expected = (
            self.in_flight,
            self.started,
            self.completed,
            self.cancelled,
            self.rejected,
            self.draining,
        );
        assert_eq!(seen, expected, "{context}");
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ShutdownState {
    Unready { until: u64 },
    Draining { until: u64 },
    Ended(End),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Drained,
    TimedOut,
    Resumed,
}

struct ShutdownModel {
    pool: usize,
    state: ShutdownState,
    task: JoinHandle<ShutdownReport>,
}

struct Waiter {
    pool: usize,
    _drain: Drain,
    future: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Complete, or waiting for the next transition of its pool to empty.
    done: bool,
}

struct Receiver {
    pool: usize,
    rx: watch::Receiver<Phase>,
}

struct World {
    now: u64,
    pools: Vec<PoolModel>,
    /// The handle of each slot: root, child 1, child 2, by pool index.
    slots: [Option<(usize, Drain)>; 3],
    /// Members: the pool each belongs to, and its guard.
    members: Vec<(usize, Guard)>,
    waiters: Vec<Waiter>,
    receivers: Vec<Receiver>,
    shutdowns: Vec<ShutdownModel>,
}

fn poll_once(future: Pin<&mut (dyn Future<Output = ()> + Send)>) -> bool {
    future
        .poll(&mut Context::from_waker(noop_waker_ref()))
        .is_ready()
}

impl World {
    fn new() -> Self {
        let mut world = World {
            now: 0,
            pools: Vec::new(),
            slots: [None, None, None],
            members: Vec::new(),
            waiters: Vec::new(),
            receivers: Vec::new(),
            shutdowns: Vec::new(),
        };
        world.new_root();
        world
    }

    fn new_root(&mut self) {
        self.pools.push(PoolModel::default());
        self.slots[0] = Some((self.pools.len() - 1, Drain::new()));
    }

    fn slot(&self, p: usize) -> Option<(usize, Drain)> {
        self.slots[p].as_ref().map(|(i, d)| (*i, d.clone()))
    }

    /// Whether pool `i` still has a handle: its slot, a waiter, a running shutdown, or a
    /// child with a handle of its own (which holds its parent's).
    fn has_handle(&self, i: usize) -> bool {
        self.slots.iter().flatten().any(|(j, _)| *j == i)
            || self.waiters.iter().any(|w| w.pool == i)
            || self
                .shutdowns
                .iter()
                .any(|s| s.pool == i && !matches!(s.state, ShutdownState::Ended(_)))
            || (0..self.pools.len()).any(|c| self.pools[c].parent == Some(i) && self.has_handle(c))
    }

    fn members_of(&self, i: usize) -> usize {
        self.pools[i].in_flight
    }

    fn gone(&self, i: usize) -> bool {
        !self.has_handle(i) && self.members_of(i) == 0
    }

    /// Whether exits of pool `i` must publish an emptying: draining, or an empty-waiter.
    fn empty_flag(&self, i: usize) -> bool {
        self.pools[i].draining || self.waiters.iter().any(|w| w.pool == i && !w.done)
    }

    /// The chain from pool `i` to its root.
    fn chain(&self, i: usize) -> Vec<usize> {
        let mut chain = vec![i];
        while let Some(parent) = self.pools[*chain.last().unwrap()].parent {
            chain.push(parent);
        }
        chain
    }

    fn drain_pool(&mut self, i: usize, by_parent: bool) -> bool {
        if self.pools[i].draining {
            return false;
        }
        let pool = &mut self.pools[i];
        pool.draining = true;
        pool.drained_by_parent = by_parent;
        pool.published = pool.phase();
        for c in self.attached_children(i) {
            self.drain_pool(c, true);
        }
        true
    }

    fn resume_pool(&mut self, i: usize, by_parent: bool) -> bool {
        if by_parent && !self.pools[i].drained_by_parent {
            return false;
        }
        let pool = &mut self.pools[i];
        let was = pool.draining;
        let ends_shutdown = was || pool.unready || pool.shutdown_cell;
        pool.shutdown_cell = false;
        pool.draining = false;
        pool.drained_by_parent = false;
        pool.unready = false;
        pool.published = pool.phase();
        if ends_shutdown {
            for s in &mut self.shutdowns {
                if s.pool == i && !matches!(s.state, ShutdownState::Ended(_)) {
                    s.state = ShutdownState::Ended(End::Resumed);
                }
            }
        }
        if was {
            for c in self.attached_children(i) {
                self.resume_pool(c, true);
            }
        }
        was
    }

    /// Children of `i` in its list: made of it, with a handle.
    fn attached_children(&self, i: usize) -> Vec<usize> {
        (0..self.pools.len())
            .filter(|&c| self.pools[c].parent == Some(i) && self.has_handle(c))
            .collect()
    }

    /// A member of pool `i` leaves; `completed` or cancelled.
    fn leave(&mut self, i: usize, completed: bool) {
        for p in self.chain(i) {
            let flag = self.empty_flag(p);
            let pool = &mut self.pools[p];
            pool.in_flight -= 1;
            if completed {
                pool.completed += 1;
            } else {
                pool.cancelled += 1;
            }
            if pool.in_flight == 0 {
                if flag {
                    pool.published = pool.phase();
                }
                for w in &mut self.waiters {
                    if w.pool == p {
                        w.done = true;
                    }
                }
                for s in &mut self.shutdowns {
                    if s.pool == p && matches!(s.state, ShutdownState::Draining { .. }) {
                        s.state = ShutdownState::Ended(End::Drained);
                    }
                }
            }
        }
    }

    fn enter(&mut self, i: usize) {
        for p in self.chain(i) {
            self.pools[p].in_flight += 1;
            self.pools[p].started += 1;
        }
    }

    /// Paused time passes to `until`, one second at a time, as the procedure sees it.
    fn advance_model(&mut self, until: u64) {
        for t in self.now + 1..=until {
            for k in 0..self.shutdowns.len() {
                let (pool, state) = (self.shutdowns[k].pool, self.shutdowns[k].state);
                match state {
                    ShutdownState::Unready { until } if t == until => {
                        self.drain_pool(pool, false);
                        self.shutdowns[k].state = if self.pools[pool].in_flight == 0 {
                            ShutdownState::Ended(End::Drained)
                        } else {
                            ShutdownState::Draining { until: t + GRACE }
                        };
                    }
                    ShutdownState::Draining { until } if t == until => {
                        self.shutdowns[k].state = ShutdownState::Ended(End::TimedOut);
                    }
                    _ => {}
                }
            }
        }
        self.now = until;
    }

    fn check(&mut self, step: usize, op: &Op) {
        for p in 0..3 {
            if let Some((i, drain)) = self.slot(p) {
                let context = format!("step {step}: {op:?}: slot {p} (pool {i})");
                self.pools[i].check(&drain.snapshot(), &context);
                assert_eq!(drain.phase(), self.pools[i].phase(), "{context}");
            }
        }
        for (k, receiver) in self.receivers.iter().enumerate() {
            let pool = &self.pools[receiver.pool];
            let context = format!(
                "step {step}: {op:?}: receiver {k} of pool {}",
                receiver.pool
            );
            if self.gone(receiver.pool) {
                assert!(receiver.rx.has_changed().is_err(), "{context}: still open");
            } else {
                assert!(receiver.rx.has_changed().is_ok(), "{context}: closed early");
                assert_eq!(*receiver.rx.borrow(), pool.published, "{context}");
            }
        }
        for (k, waiter) in self.waiters.iter_mut().enumerate() {
            let ready = poll_once(waiter.future.as_mut());
            assert_eq!(ready, waiter.done, "step {step}: {op:?}: waiter {k}");
        }
    }
}

fn check(ops: Vec<Op>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let _context = runtime.enter();
    // Lets the spawned shutdowns run what is ready, then returns: no time passes.
    let run_ready = |runtime: &tokio::runtime::Runtime| {
        runtime.block_on(tokio::task::yield_now());
    };
    let mut world = World::new();

    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Guard(p) => {
                if let Some((i, drain)) = world.slot(p) {
                    world.members.push((i, drain.guard()));
                    world.enter(i);
                }
            }
            Op::TryGuard(p) => {
                if let Some((i, drain)) = world.slot(p) {
                    let chain = world.chain(i);
                    match chain.iter().position(|&q| world.pools[q].draining) {
                        None => {
                            let guard = drain.try_guard().expect("admitted while serving");
                            world.members.push((i, guard));
                            world.enter(i);
                        }
                        Some(refuser) => {
                            assert!(drain.try_guard().is_err(), "step {step}: admitted");
                            for &q in &chain[..=refuser] {
                                world.pools[q].rejected += 1;
                            }
                        }
                    }
                }
            }
            Op::Release(k) if !world.members.is_empty() => {
                let (i, guard) = world.members.swap_remove(k % world.members.len());
                drop(guard);
                world.leave(i, true);
            }
            Op::Release(_) => {}
            Op::StartDraining(p) => {
                if let Some((i, drain)) = world.slot(p) {
                    let began = world.drain_pool(i, false);
                    assert_eq!(drain.start_draining(), began, "step {step}");
                }
            }
            Op::Resume(p) => {
                if let Some((i, drain)) = world.slot(p) {
                    let was = world.resume_pool(i, false);
                    assert_eq!(drain.resume(), was, "step {step}");
                }
            }
            Op::UntilEmpty(p) | Op::NextEmpty(p) => {
                if let Some((i, drain)) = world.slot(p) {
                    let until_empty = matches!(op, Op::UntilEmpty(_));
                    let future: Pin<Box<dyn Future<Output = ()> + Send>> = if until_empty {
                        Box::pin(drain.until_empty())
                    } else {
                        Box::pin(drain.next_empty())
                    };
                    world.waiters.push(Waiter {
                        pool: i,
                        _drain: drain,
                        future,
                        done: until_empty && world.pools[i].in_flight == 0,
                    });
                }
            }
            Op::DropWaiter(k) if !world.waiters.is_empty() => {
                let k = k % world.waiters.len();
                world.waiters.swap_remove(k);
            }
            Op::DropWaiter(_) => {}
            Op::Watch(p) => {
                if let Some((i, drain)) = world.slot(p) {
                    world.receivers.push(Receiver {
                        pool: i,
                        rx: drain.watch_phase(),
                    });
                }
            }
            Op::MakeChild => {
                if let (Some((root, drain)), Some(c)) =
                    (world.slot(0), (1..3).find(|&c| world.slots[c].is_none()))
                {
                    let child = drain.child();
                    world.pools.push(PoolModel {
                        parent: Some(root),
                        ..PoolModel::default()
                    });
                    let i = world.pools.len() - 1;
                    world.slots[c] = Some((i, child));
                    if world.pools[root].draining {
                        world.drain_pool(i, true);
                    }
                    let snapshot = world.slots[c].as_ref().unwrap().1.snapshot();
                    assert_eq!(snapshot.started, 0, "step {step}: a reused child is new");
                }
            }
            Op::DropChild(c) => {
                if let Some((i, _)) = world.slots[c].take() {
                    world.waiters.retain(|w| w.pool != i);
                }
            }
            Op::Restart => {
                world.slots = [None, None, None];
                world.waiters.clear();
                world.new_root();
                let (_, root) = world.slot(0).unwrap();
                let snapshot = root.snapshot();
                assert_eq!(
                    (snapshot.in_flight, snapshot.started, snapshot.draining),
                    (0, 0, false),
                    "step {step}: a reused root is new"
                );
            }
            Op::Shutdown => {
                let root = world.slots[0].as_ref().unwrap().0;
                if let (Some((i, drain)), false) = (world.slot(0), world.pools[root].shutdown_cell)
                {
                    let task = tokio::spawn(
                        drain
                            .shutdown()
                            .unready_for(Duration::from_secs(UNREADY))
                            .grace(Duration::from_secs(GRACE))
                            .into_future(),
                    );
                    world.shutdowns.push(ShutdownModel {
                        pool: i,
                        state: ShutdownState::Unready {
                            until: world.now + UNREADY,
                        },
                        task,
                    });
                    let pool = &mut world.pools[i];
                    pool.shutdown_cell = true;
                    if !pool.unready {
                        pool.unready = true;
                        pool.published = pool.phase();
                    }
                }
            }
            Op::Advance(seconds) => {
                runtime.block_on(tokio::time::sleep(Duration::from_secs(seconds)));
                world.advance_model(world.now + seconds);
            }
        }
        run_ready(&runtime);
        world.check(step, op);
    }

    // Everything leaves, time runs out: every shutdown ends as the model says.
    while let Some((i, guard)) = world.members.pop() {
        drop(guard);
        world.leave(i, true);
    }
    run_ready(&runtime);
    runtime.block_on(tokio::time::sleep(Duration::from_secs(UNREADY + GRACE + 1)));
    world.advance_model(world.now + UNREADY + GRACE + 1);
    for (k, shutdown) in world.shutdowns.drain(..).enumerate() {
        let ShutdownState::Ended(end) = shutdown.state else {
            panic!("shutdown {k} never ended in the model");
        };
        let report = runtime.block_on(shutdown.task).unwrap();
        let seen = if report.resumed() {
            End::Resumed
        } else if report.timed_out() {
            End::TimedOut
        } else {
            End::Drained
        };
        assert_eq!(seen, end, "shutdown {k}: {report}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_pools_whole_life_matches_its_reference_model(ops in prop::collection::vec(op(), 1..80)) {
        check(ops);
    }
}
