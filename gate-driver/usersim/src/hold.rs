//! Holding a driver routine at any point, and catching driver code that
//! runs after DriverUnload returned.
//!
//! The simulation knows when it runs a driver routine of each kind
//! ([`Routine`]): an IRP completion routine, a DPC, a system thread's start
//! routine. Every import the driver calls from inside one is a *point*
//! ([`point`]): the n-th point of a routine is the n-th import call it made.
//! A test arms a hold ([`arm`]) naming a routine (its kind, optionally its
//! address) and a point (the n-th, or the first call of a named import);
//! the first thread to reach it blocks there until [`release`]. While a
//! routine is held the test can run DriverUnload on another thread and see
//! whether it returns (it must not: the routine is still in driver code).
//!
//! Independently of holds, every import call made after the harness saw
//! DriverUnload return (and before the next DriverEntry) is recorded as
//! [`ViolationKind::CodeAfterUnload`]. A reference run records which
//! routines ran and how many points each reached ([`seen`]), so a test can
//! hold every routine at every point.

use crate::violation::{record, ViolationKind};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The kinds of driver routine the simulation calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Routine {
    /// An IRP completion routine (IoCompleteRequest).
    IrpCompletion,
    /// A DPC routine (timer expiry).
    Dpc,
    /// A system thread's start routine (PsCreateSystemThread).
    SystemThread,
}

/// Where to hold a routine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldAt {
    /// Before its n-th import call (1-based).
    Nth(u32),
    /// Before its first call of the named import.
    Import(&'static str),
}

/// A hold request: a routine (kind, and address if `Some`) and a point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    pub routine: Routine,
    pub address: Option<usize>,
    pub at: HoldAt,
}

#[derive(Default)]
struct State {
    armed: Option<Hold>,
    /// A thread is held now (with the import it is about to call).
    held: Option<&'static str>,
    /// The held thread may go on.
    released: bool,
    /// (kind, address) -> most points one run of it reached.
    seen: BTreeMap<(Routine, usize), u32>,
    /// (kind, address) -> runs, longest run, total time (real time).
    timings: BTreeMap<(Routine, usize), Timing>,
}

/// How long the runs of one routine took (host real time, including the
/// simulation's own work inside the imports it called).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    pub runs: u64,
    pub longest: Duration,
    pub total: Duration,
    /// Runs that took at least 100 us.
    pub over_100us: u64,
    /// Of `total`, the time spent inside simulated WSK provider calls
    /// (WskInspectComplete: the simulation's own work, plus any completion
    /// routine it ran inline), so `total - in_provider` is the routine's own.
    pub in_provider: Duration,
    /// The longest run's own time (without provider calls).
    pub longest_own: Duration,
    /// Runs whose own time was at least 100 us.
    pub own_over_100us: u64,
    /// Runs by time, log2 buckets: bucket `i` counts runs of `[2^i, 2^(i+1))`
    /// microseconds (bucket 0 also counts runs under 1 us; the last, longer).
    pub hist: [u64; HIST_BUCKETS],
    /// The same for the runs' own time (without provider calls).
    pub own_hist: [u64; HIST_BUCKETS],
}

/// Buckets of [`Timing::hist`].
pub const HIST_BUCKETS: usize = 20;

/// The bucket of a run that took `d`.
pub fn hist_bucket(d: Duration) -> usize {
    let us = d.as_micros().max(1);
    (127 - us.leading_zeros() as usize).min(HIST_BUCKETS - 1)
}

/// The smallest bucket upper bound (us) under which at least `q` (0..=1)
/// of the runs counted in `hist` fall: a percentile to within a factor 2.
pub fn hist_quantile_us(hist: &[u64; HIST_BUCKETS], q: f64) -> u64 {
    let n: u64 = hist.iter().sum();
    let want = (q * n as f64).ceil() as u64;
    let mut seen = 0;
    for (i, c) in hist.iter().enumerate() {
        seen += c;
        if seen >= want.max(1) {
            return 1u64 << (i + 1);
        }
    }
    1u64 << HIST_BUCKETS
}

static STATE: Mutex<Option<State>> = Mutex::new(None);
static CV: Condvar = Condvar::new();
static UNLOADED: AtomicBool = AtomicBool::new(false);

fn state() -> MutexGuard<'static, Option<State>> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let mut g = state();
    f(g.get_or_insert_with(State::default))
}

thread_local! {
    /// The routine this thread is running: kind, address, points so far.
    static CURRENT: Cell<Option<(Routine, usize, u32)>> = const { Cell::new(None) };
    /// Time the current routine spent inside provider calls so far.
    static PROVIDER: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// Runs a WSK provider function the driver called (`f`), adding its time
/// to the current routine's `in_provider` (see [`Timing`]).
pub(crate) fn provider_call<R>(f: impl FnOnce() -> R) -> R {
    if CURRENT.with(|c| c.get()).is_none() {
        return f();
    }
    let started = Instant::now();
    let r = f();
    let took = started.elapsed();
    PROVIDER.with(|p| p.set(p.get() + took));
    r
}

/// Runs the driver routine `address` of kind `kind` (calling `f`), counting
/// its points. Nested routines (a completion routine run inline from a
/// call the DPC made) count as their own.
pub(crate) fn in_routine<R>(kind: Routine, address: usize, f: impl FnOnce() -> R) -> R {
    let outer = CURRENT.with(|c| c.replace(Some((kind, address, 0))));
    let outer_provider = PROVIDER.with(|p| p.replace(Duration::ZERO));
    let started = Instant::now();
    let r = f();
    let took = started.elapsed();
    let mine = CURRENT.with(|c| c.replace(outer));
    let provider = PROVIDER.with(|p| p.replace(outer_provider));
    let own = took.saturating_sub(provider);
    if let Some((k, a, n)) = mine {
        with(|s| {
            let e = s.seen.entry((k, a)).or_insert(0);
            *e = (*e).max(n);
            let t = s.timings.entry((k, a)).or_default();
            t.runs += 1;
            t.longest = t.longest.max(took);
            t.total += took;
            if took >= Duration::from_micros(100) {
                t.over_100us += 1;
            }
            t.in_provider += provider;
            t.hist[hist_bucket(took)] += 1;
            t.own_hist[hist_bucket(own)] += 1;
            t.longest_own = t.longest_own.max(own);
            if own >= Duration::from_micros(100) {
                t.own_over_100us += 1;
            }
        });
    }
    r
}

/// An import call: counts it as a point of the current routine, holds the
/// thread if a hold names this point, and records code run after unload.
pub(crate) fn point(import: &'static str) {
    if UNLOADED.load(Ordering::Acquire) {
        record(
            ViolationKind::CodeAfterUnload,
            format!("{import} called by driver code after DriverUnload returned"),
        );
    }
    point_after(import);
}

/// A point as an import returns (e.g. just after a spin lock is released):
/// counted and holdable like [`point`]; not checked against unload (the
/// import itself may be what let unload finish).
pub(crate) fn point_after(import: &'static str) {
    let Some((kind, address, n)) = CURRENT.with(|c| c.get()) else {
        return;
    };
    let n = n.saturating_add(1);
    CURRENT.with(|c| c.set(Some((kind, address, n))));
    let mut g = state();
    let s = g.get_or_insert_with(State::default);
    let Some(h) = s.armed else { return };
    let routine_matches = h.routine == kind && h.address.is_none_or(|a| a == address);
    let point_matches = match h.at {
        HoldAt::Nth(k) => k == n,
        HoldAt::Import(name) => name == import,
    };
    if !(routine_matches && point_matches) {
        return;
    }
    s.armed = None;
    s.held = Some(import);
    s.released = false;
    CV.notify_all();
    while !g.as_ref().is_some_and(|s| s.released) {
        g = CV.wait(g).unwrap_or_else(|e| e.into_inner());
    }
    if let Some(s) = g.as_mut() {
        s.held = None;
        s.released = false;
    }
    CV.notify_all();
}

/// Arms a hold (replacing any armed one).
pub fn arm(h: Hold) {
    with(|s| {
        s.armed = Some(h);
        s.released = false;
    });
}

/// Disarms a hold that was not reached.
pub fn disarm() {
    with(|s| s.armed = None);
}

/// Waits (real time) until a thread is held; returns the import it is
/// about to call, or `None` on timeout.
pub fn wait_held(timeout: Duration) -> Option<&'static str> {
    let t = Instant::now();
    let mut g = state();
    loop {
        if let Some(held) = g.as_ref().and_then(|s| s.held) {
            return Some(held);
        }
        let left = timeout.checked_sub(t.elapsed())?;
        g = CV
            .wait_timeout(g, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// Whether a thread is held now.
pub fn is_held() -> bool {
    with(|s| s.held.is_some())
}

/// Lets the held thread go on.
pub fn release() {
    with(|s| s.released = true);
    CV.notify_all();
}

/// The routines that ran since the last reset and the most points one run
/// of each reached.
pub fn seen() -> BTreeMap<(Routine, usize), u32> {
    with(|s| s.seen.clone())
}

/// How long each routine's runs took since the last reset.
pub fn timings() -> BTreeMap<(Routine, usize), Timing> {
    with(|s| s.timings.clone())
}

/// The harness saw DriverUnload return (`true`) or calls DriverEntry (`false`).
pub(crate) fn set_unloaded(on: bool) {
    UNLOADED.store(on, Ordering::Release);
}

/// Whether DriverUnload returned (and no DriverEntry ran since).
pub fn unloaded() -> bool {
    UNLOADED.load(Ordering::Acquire)
}

pub(crate) fn reset() {
    UNLOADED.store(false, Ordering::Release);
    let mut g = state();
    // A thread still held from an earlier test is let go.
    if let Some(s) = g.as_mut() {
        s.released = true;
        s.armed = None;
        s.seen.clear();
        s.timings.clear();
    }
    CV.notify_all();
}
