//! Simulated IRQL, one per thread, and small per-thread identities.
//!
//! Every thread starts at PASSIVE_LEVEL. Spin locks raise to DISPATCH_LEVEL;
//! the simulation runs DPCs, IRP completions from its I/O thread and the WSK
//! event callbacks at DISPATCH_LEVEL. Routines that must not run that high
//! check the level and record a violation.

use crate::violation::{record, ViolationKind};
use gate_ksys::{DISPATCH_LEVEL, KIRQL, PASSIVE_LEVEL};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

thread_local! {
    static IRQL: Cell<KIRQL> = const { Cell::new(PASSIVE_LEVEL) };
    static TOKEN: Cell<usize> = const { Cell::new(0) };
    static LOCKS_HELD: Cell<u32> = const { Cell::new(0) };
}

/// Spin locks the calling thread holds.
pub fn locks_held() -> u32 {
    LOCKS_HELD.with(|c| c.get())
}

pub(crate) fn lock_acquired() {
    LOCKS_HELD.with(|c| c.set(c.get().saturating_add(1)));
}

pub(crate) fn lock_released() {
    LOCKS_HELD.with(|c| c.set(c.get().saturating_sub(1)));
}

static NEXT_TOKEN: AtomicUsize = AtomicUsize::new(1);

/// The calling thread's simulated IRQL.
pub fn current() -> KIRQL {
    IRQL.with(|c| c.get())
}

/// Sets the calling thread's simulated IRQL.
pub fn set(level: KIRQL) {
    IRQL.with(|c| c.set(level));
}

/// A small odd number identifying the calling thread (never 0), used as the
/// value of a held spin lock.
pub fn token() -> usize {
    TOKEN.with(|t| {
        if t.get() == 0 {
            let n = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
            t.set((n << 1) | 1);
        }
        t.get()
    })
}

/// Records `IrqlTooHigh` when the caller is above PASSIVE_LEVEL.
pub fn require_passive(routine: &str) {
    let l = current();
    if l > PASSIVE_LEVEL {
        record(
            ViolationKind::IrqlTooHigh,
            format!("{routine} called at IRQL {l}; it requires PASSIVE_LEVEL"),
        );
    }
}

/// Records `IrqlTooHigh` when the caller is above DISPATCH_LEVEL.
pub fn require_at_most_dispatch(routine: &str) {
    let l = current();
    if l > DISPATCH_LEVEL {
        record(
            ViolationKind::IrqlTooHigh,
            format!("{routine} called at IRQL {l}; it requires <= DISPATCH_LEVEL"),
        );
    }
}

/// Runs `f` at `level`, then restores the previous level and records
/// `IrqlLeak` if `f` returned at another level than it was called at.
pub fn run_at<R>(level: KIRQL, what: &str, f: impl FnOnce() -> R) -> R {
    let before = current();
    let held = locks_held();
    set(level);
    let r = f();
    let after = current();
    if after != level {
        record(
            ViolationKind::IrqlLeak,
            format!(
                "{what} returned at IRQL {after}, was called at {level} (spin lock left held?)"
            ),
        );
    } else if locks_held() > held {
        record(
            ViolationKind::IrqlLeak,
            format!(
                "{what} returned holding {} spin lock(s) it acquired",
                locks_held() - held
            ),
        );
    }
    set(before);
    r
}
