//! The longest control-lock hold of a live change (issue 13): the gate is
//! built over a lock that times its own holds, and each change's longest
//! hold of the control lock (the lock `Gate::with_config` takes) is
//! reported, next to the longest hold of any lock (the grace period's
//! shard locks included) and the change's whole time, with 1024 shards, full
//! allow and deny lists (4096 + 4096) and 1000 manual bans. Three change
//! shapes: a manual ban, a one-entry list add made the way the driver makes
//! it (edit, then sort the whole list inside the closure), a rate change.
//!
//! The machine is shared: compare figures within one run (hold next to
//! whole change), not across runs. Holds are wall time in user mode, so
//! a hold the host preempted (an interrupt, another process) counts whole:
//! the "any lock" figure's occasional tens of microseconds are such
//! preemptions of a single shard lock's lock-unlock pair in the grace
//! period (a kernel spin lock at DISPATCH_LEVEL is not preempted by the
//! scheduler).
//!
//! `cargo bench -p gate-core --bench control_hold`
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)] // bench code

use std::cell::Cell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gate_core::{Cidr, Config, Gate, RawLock, SpinLock, TICKS_PER_SEC};

const T0: u64 = 1000 * TICKS_PER_SEC;

fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

thread_local! {
    /// The lock this thread took last (to find the control lock).
    static LAST: Cell<usize> = const { Cell::new(0) };
}

/// The longest hold of any lock (shard, pend or control) since reset.
static ANY_LONGEST: AtomicU64 = AtomicU64::new(0);

/// A spin lock that records its longest hold.
struct TimedLock {
    inner: SpinLock,
    since: AtomicU64,
    longest: AtomicU64,
}

// SAFETY: mutual exclusion is `SpinLock`'s; the timing is bookkeeping.
unsafe impl RawLock for TimedLock {
    type State = ();
    fn new() -> Self {
        TimedLock {
            inner: SpinLock::new(),
            since: AtomicU64::new(0),
            longest: AtomicU64::new(0),
        }
    }
    fn lock(&self) {
        self.inner.lock();
        self.since.store(now_ns(), Ordering::Relaxed);
        LAST.with(|l| l.set(self as *const TimedLock as usize));
    }
    unsafe fn unlock(&self, _: ()) {
        let held = now_ns().saturating_sub(self.since.load(Ordering::Relaxed));
        self.longest.fetch_max(held, Ordering::Relaxed);
        ANY_LONGEST.fetch_max(held, Ordering::Relaxed);
        // SAFETY: held by the caller (the trait's contract).
        unsafe { self.inner.unlock(()) };
    }
}

fn c24(base: u32, i: u32) -> Cidr {
    Cidr::new(IpAddr::from((base | (i << 8)).to_be_bytes()), 24).unwrap()
}

/// The gate's control lock (the one `with_config` holds).
fn control_lock(g: &Gate<TimedLock>) -> &TimedLock {
    let addr = g.with_config(|_, _| LAST.with(|l| l.get()));
    // SAFETY: the address of a lock inside `g`, which outlives the borrow.
    unsafe { &*(addr as *const TimedLock) }
}

fn gate() -> Gate<TimedLock> {
    let cfg = Config {
        capacity: 1 << 20,
        shards: 1024,
        ..Config::default()
    };
    let g: Gate<TimedLock> = Gate::new(&cfg, [1, 2]).unwrap();
    g.reconfigure(|c| {
        c.allow = (0..4096).map(|i| c24(0x0a00_0000, i)).collect();
        c.deny = (0..4096).map(|i| c24(0xc000_0000, i)).collect();
    })
    .unwrap();
    for i in 0..1000 {
        g.ban(c24(0x2000_0000, i), u64::MAX, T0).unwrap();
    }
    g
}

fn measure(name: &str, g: &Gate<TimedLock>, mut change: impl FnMut(u32)) {
    let ctl = control_lock(g);
    let n = 50u32;
    let mut hold = Duration::ZERO;
    let mut any = Duration::ZERO;
    let mut whole = Vec::new();
    for i in 0..n {
        ctl.longest.store(0, Ordering::Relaxed);
        ANY_LONGEST.store(0, Ordering::Relaxed);
        let t = Instant::now();
        change(i);
        whole.push(t.elapsed());
        hold = hold.max(Duration::from_nanos(ctl.longest.load(Ordering::Relaxed)));
        any = any.max(Duration::from_nanos(ANY_LONGEST.load(Ordering::Relaxed)));
    }
    whole.sort();
    let med = whole[whole.len() / 2];
    println!(
        "{name:<28} longest hold: control lock {hold:>10.1?}, any lock {any:>10.1?}; median whole change {med:>10.1?} ({n} changes)"
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benches
    }
    let g = gate();
    println!("1024 shards, allow 4096 + deny 4096, 1000 manual bans:");
    measure("ban (replace one)", &g, |i| {
        g.ban(c24(0x2000_0000, i % 16), u64::MAX, T0).unwrap();
    });
    measure("deny add 1 (driver's sort)", &g, |i| {
        g.reconfigure(|c| {
            c.deny.pop();
            c.deny.push(c24(0xc000_0000, 4096 + i % 200));
            c.deny.sort_unstable_by_key(|c| (c.addr(), c.prefix_len()));
            c.deny.dedup();
        })
        .unwrap();
    });
    measure("rate change", &g, |i| {
        g.reconfigure(|c| c.rate_milli = 10_000 + u64::from(i))
            .unwrap();
    });
}
