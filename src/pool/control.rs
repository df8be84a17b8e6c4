//! Phase changes and the pool tree: draining, resuming, the unready period, children, and the
//! shutdown in progress.
//!
//! Each pool's changes of phase run whole under its `control` lock, and reach its children
//! under theirs, always parent before child. So a parent's `start_draining`, its `resume` and
//! its `child()` are serialised: a child can never be left draining under a serving parent, nor
//! miss a drain that began while it was made. A resume also moves the pool to a new *cycle*,
//! which ends any shutdown procedure begun in the cycle before.
//!
//! Notifications and trace events run under the lock; no waker or subscriber of ours calls
//! back into the pool.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{state, Shared};
use crate::loom::Ordering;
use crate::trace;

/// What changes only with the pool's phase or its tree.
#[derive(Debug, Default)]
pub(super) struct Control {
    /// Live children by id. A child leaves this map (under this lock) before its memory can
    /// be recycled, so every entry is a live child of this pool.
    children: BTreeMap<u32, &'static Shared>,
    /// Set on a child while the drain of its parent, not its own, keeps it draining.
    drained_by_parent: bool,
    /// How many times the pool has been resumed: a shutdown procedure belongs to one cycle.
    cycle: u64,
    /// When the unready period began and how long it lasts, for gradual closing.
    unready_window: Option<(Instant, Duration)>,
    /// What the layer above keeps for this cycle (the shutdown's shared outcome), dropped by
    /// `resume`. The pool only holds it: its type is the shutdown's business, so that the
    /// pool needs nothing from above it.
    cycle_slot: Option<Arc<dyn Any + Send + Sync>>,
}

impl Shared {
    /// Begins draining, here and in every child. Returns whether this call began it.
    pub(crate) fn start_draining(&'static self) -> bool {
        let mut control = self.lock_control();
        self.drain_locked(&mut control, false)
    }

    /// Begins draining if the pool is still in `cycle`: `None` if it has been resumed since.
    pub(crate) fn start_draining_in(&'static self, cycle: u64) -> Option<bool> {
        let mut control = self.lock_control();
        (control.cycle == cycle).then(|| self.drain_locked(&mut control, false))
    }

    fn drain_locked(&'static self, control: &mut Control, by_parent: bool) -> bool {
        let prev = {
            let mut counts = self.lock_waiters();
            let prev = self.state.start_draining();
            if prev & state::DRAINING == 0 {
                // While draining, the exit that empties the pool must publish `Drained`: an
                // internal empty-waiter, registered with the flip under the same lock.
                self.add_draining_waiter(&mut counts);
            }
            prev
        };
        let began = prev & state::DRAINING == 0;
        if !began {
            return false;
        }
        control.drained_by_parent = by_parent;
        trace::info!(
            in_flight = state::in_flight(prev),
            "draining: refusing new work"
        );
        self.draining.notify_waiters();
        if prev & state::CHANGE_WATCHERS != 0 {
            self.changed_now();
        }
        self.refresh_phase();
        for child in control.children.values() {
            child.drain_locked(&mut child.lock_control(), true);
        }
        true
    }

    /// Ends draining and the unready period, here and in the children this pool's drain
    /// began, and ends the cycle. Returns whether the pool was draining.
    pub(crate) fn resume(&'static self) -> bool {
        let mut control = self.lock_control();
        self.resume_locked(&mut control, false)
    }

    fn resume_locked(&'static self, control: &mut Control, by_parent: bool) -> bool {
        if by_parent && !control.drained_by_parent {
            // Drained on its own: it stays so.
            return false;
        }
        let prev = {
            let mut counts = self.lock_waiters();
            let prev = self.state.resume();
            if prev & state::DRAINING != 0 {
                self.remove_waiter(&mut counts);
            }
            prev
        };
        let was_draining = prev & state::DRAINING != 0;
        control.drained_by_parent = false;
        control.unready_window = None;
        // AcqRel: Release pairs with the Acquire load in `phase`; under the lock anyway.
        let was_unready = self.unready.swap(false, Ordering::AcqRel);
        // Relaxed: a hint for the log line alone.
        self.abandoned.store(false, Ordering::Relaxed);
        if was_draining || was_unready || control.cycle_slot.is_some() {
            // A running shutdown ends; a later one runs the whole procedure afresh.
            control.cycle += 1;
            control.cycle_slot = None;
            self.resumed.notify_waiters();
        }
        if was_draining && prev & state::CHANGE_WATCHERS != 0 {
            self.changed_now();
        }
        self.refresh_phase();
        if was_draining {
            for child in control.children.values() {
                child.resume_locked(&mut child.lock_control(), true);
            }
        }
        was_draining
    }

    /// Makes `child`, at the start of its life, a child of this pool; it drains at once if
    /// this pool is draining.
    pub(super) fn adopt(&'static self, child: &'static Shared) {
        let mut control = self.lock_control();
        // Relaxed: the child is not yet shared; its handle's `Arc` publishes this.
        child.parent.store(self.id + 1, Ordering::Relaxed);
        control.children.insert(child.id, child);
        if self.state.load() & state::DRAINING != 0 {
            child.drain_locked(&mut child.lock_control(), true);
        }
    }

    /// Removes a child whose last handle is going.
    pub(super) fn disown(&self, child: &Shared) {
        self.lock_control().children.remove(&child.id);
    }

    /// Marks the pool unready for `period`: the first step of a shutdown. Returns the cycle
    /// it began in. A zero period has no unready step: the pool goes straight to draining.
    pub(crate) fn begin_unready(&self, period: Duration) -> u64 {
        let mut control = self.lock_control();
        if period.is_zero() {
            return control.cycle;
        }
        // Before the flag, so that whoever sees the flag finds the window too.
        control.unready_window = Some((Instant::now(), period));
        // AcqRel: pairs with the Acquire loads in `phase` and `unready_progress`.
        let was_unready = self.unready.swap(true, Ordering::AcqRel);
        if !was_unready {
            self.refresh_phase();
        }
        control.cycle
    }

    /// The current cycle: it changes with every `resume` that ends something.
    pub(crate) fn cycle(&self) -> u64 {
        self.lock_control().cycle
    }

    /// This cycle's slot, made by `make` if it is empty (or holds another type): whatever a
    /// layer above keeps for one cycle and shares between its callers, such as the outcome of
    /// a shutdown. `resume` empties it.
    pub(crate) fn cycle_slot<T: Any + Send + Sync>(&self, make: impl FnOnce() -> T) -> Arc<T> {
        let mut control = self.lock_control();
        if let Some(slot) = control.cycle_slot.clone() {
            if let Ok(slot) = slot.downcast::<T>() {
                return slot;
            }
        }
        let slot = Arc::new(make());
        control.cycle_slot = Some(slot.clone());
        slot
    }

    /// How far through its unready period the pool is, from 0 to 1; `None` when it is not
    /// unready. Only gradual closing asks, and only for HTTP/1.x requests.
    #[cfg(feature = "http")]
    pub(crate) fn unready_progress(&self) -> Option<f64> {
        // Acquire: pairs with the AcqRel swap in `begin_unready`, so the window is there.
        if !self.unready.load(Ordering::Acquire) {
            return None;
        }
        let (start, period) = self.lock_control().unready_window?;
        if period.is_zero() {
            return Some(1.0);
        }
        Some((start.elapsed().as_secs_f64() / period.as_secs_f64()).min(1.0))
    }
}
