//! Drain trees: child pools count in their parents, drain on their own, and drain with them.

mod support;

use std::future::IntoFuture;

use tokio_test::{assert_pending, assert_ready, task};
use tower_drain::{Drain, Phase};

use support::bounded;

#[test]
fn a_childs_work_counts_in_every_ancestor() {
    let root = Drain::new();
    let child = root.child();
    let grandchild = child.child();

    let guard = grandchild.try_guard().unwrap();
    let tracked = child.track(std::future::pending::<()>());
    assert_eq!(
        (root.in_flight(), child.in_flight(), grandchild.in_flight()),
        (2, 2, 1)
    );

    drop(guard);
    drop(tracked);
    let (r, c, g) = (root.snapshot(), child.snapshot(), grandchild.snapshot());
    assert_eq!(
        (r.started, r.completed, r.cancelled, r.in_flight),
        (2, 1, 1, 0)
    );
    assert_eq!(
        (c.started, c.completed, c.cancelled, c.in_flight),
        (2, 1, 1, 0)
    );
    assert_eq!(
        (g.started, g.completed, g.cancelled, g.in_flight),
        (1, 1, 0, 0)
    );
}

#[test]
fn a_child_drains_on_its_own_while_its_parent_serves() {
    let root = Drain::new();
    let child = root.child();
    let busy = child.try_guard().unwrap();

    assert!(child.start_draining());
    assert!(child.try_guard().is_err());
    assert!(!root.is_draining());
    let other = root.try_guard().expect("the parent still serves");

    let mut child_empty = task::spawn(child.until_empty());
    assert_pending!(child_empty.poll());
    drop(busy);
    assert!(child_empty.is_woken());
    assert_ready!(child_empty.poll());
    assert_eq!(child.phase(), Phase::Drained);
    assert_eq!((root.in_flight(), root.phase()), (1, Phase::Serving));

    // The refusal counts in the child, and as a refused attempt nowhere else.
    assert_eq!(child.snapshot().rejected, 1);
    assert_eq!(root.snapshot().rejected, 0);
    drop(other);
}

#[test]
fn draining_the_parent_drains_every_child_even_one_made_later() {
    let root = Drain::new();
    let child = root.child();
    let grandchild = child.child();
    let mut child_draining = task::spawn(child.draining());
    assert_pending!(child_draining.poll());
    let in_child = grandchild.try_guard().unwrap();

    assert!(root.start_draining());
    assert!(child_draining.is_woken());
    assert_ready!(child_draining.poll());
    assert!(child.is_draining() && grandchild.is_draining());
    assert!(grandchild.try_guard().is_err());
    assert!(
        root.child().is_draining(),
        "a child made while the parent drains"
    );

    // The parent's drain waits for the grandchild's work.
    let mut root_empty = task::spawn(root.until_empty());
    assert_pending!(root_empty.poll());
    drop(in_child);
    assert_ready!(root_empty.poll());
}

#[test]
fn resuming_the_parent_resumes_the_children_it_drained_only() {
    let root = Drain::new();
    let drained_by_root = root.child();
    let drained_alone = root.child();
    assert!(drained_alone.start_draining());

    root.start_draining();
    assert!(root.resume());
    assert!(!drained_by_root.is_draining());
    assert!(
        drained_alone.is_draining(),
        "drained on its own, it stays drained"
    );
    assert!(drained_by_root.try_guard().is_ok());
}

#[test]
fn a_parent_refusal_undoes_the_childs_entry() {
    let root = Drain::new();
    let child = root.child();
    // The parent drains, but the child was made before and is drained through propagation;
    // resume the child alone so that only the parent refuses.
    root.start_draining();
    child.resume();
    assert!(!child.is_draining());

    let refused = child.try_guard().unwrap_err();
    assert_eq!(refused.to_string(), "service is draining");
    let (r, c) = (root.snapshot(), child.snapshot());
    assert_eq!((c.in_flight, c.started, c.rejected), (0, 0, 1));
    assert_eq!((r.in_flight, r.started, r.rejected), (0, 0, 1));
    // `guard` is for work that already exists: admitted at every level, draining or not.
    let guard = child.guard();
    assert_eq!((root.in_flight(), child.in_flight()), (1, 1));
    drop(guard);
}

#[test]
fn a_child_keeps_its_parent_alive_and_children_come_and_go() {
    let root = Drain::new();
    let child = root.child();
    let observer = root.clone();
    drop(root);
    let guard = child.try_guard().unwrap();
    assert_eq!(observer.in_flight(), 1);
    drop((child, guard));
    assert_eq!(observer.in_flight(), 0);

    // Children made and dropped again and again reuse their memory and stay correct.
    for _ in 0..1_000 {
        let child = observer.child();
        let guard = child.try_guard().unwrap();
        assert_eq!((child.in_flight(), child.snapshot().started), (1, 1));
        drop(guard);
    }
    assert_eq!(observer.snapshot().completed, 1_001);
}

#[tokio::test]
async fn a_shutdown_of_the_parent_waits_for_work_in_children() {
    let root = Drain::new();
    let child = root.child();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let work = tokio::spawn(child.track(async move { rx.await.unwrap() }));

    let shutdown = tokio::spawn(root.shutdown().into_future());
    bounded("the child drains", child.draining()).await;
    assert!(!shutdown.is_finished());
    tx.send(()).unwrap();
    work.await.unwrap();
    let report = bounded("the shutdown", shutdown).await.unwrap();
    assert_eq!((report.completed, report.abandoned), (1, 0));
}

#[test]
fn a_child_on_the_memory_of_a_former_root_counts_in_its_parent() {
    // A root counts on per-thread shards, and this thread remembers its shard by the pool's
    // memory; a child never does. Roots made, used and dropped here hand their memory (and
    // this thread's memory of it) to the children made next: each child's requests must
    // still count in its parent, however often the child is read in between.
    let parent = Drain::new();
    for round in 0..1_000 {
        let root = Drain::new();
        drop(root.try_guard().unwrap());
        assert_eq!(root.in_flight(), 0);
        drop(root);

        let child = parent.child();
        let first = child.try_guard().unwrap();
        assert_eq!(child.snapshot().in_flight, 1);
        let second = child.guard();
        let tracked = child.track(std::future::pending::<()>());
        assert_eq!(
            (parent.in_flight(), child.in_flight()),
            (3, 3),
            "round {round}"
        );
        drop((first, second, tracked));
        assert_eq!((parent.in_flight(), child.in_flight()), (0, 0));
    }
    let snapshot = parent.snapshot();
    assert_eq!((snapshot.completed, snapshot.cancelled), (2_000, 1_000));
}
