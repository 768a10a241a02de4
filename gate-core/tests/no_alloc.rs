//! The decision path allocates nothing after `Gate::new`, eviction, pends,
//! lists and counters included; and `Gate::new` allocates exactly
//! `Config::memory_bytes()`. Measured with a counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use gate_core::{Cidr, Config, Event, FullTablePolicy, Gate, TICKS_PER_SEC};

struct Counting;

thread_local! {
    /// Set on the test's own thread while `counted` runs: libtest's main
    /// thread allocates now and then (output capture), and must not count.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

/// Whether this allocation happens on the thread being measured.
fn counting() -> bool {
    // `try_with`: the allocator can run while thread-locals are torn down.
    COUNTING.try_with(|c| c.get()).unwrap_or(false)
}
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Counts allocations made by `f` on this thread (the decision path runs
/// entirely on the caller's thread).
fn counted<R>(f: impl FnOnce() -> R) -> (R, u64, u64) {
    ALLOCS.store(0, Ordering::SeqCst);
    BYTES.store(0, Ordering::SeqCst);
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (
        r,
        ALLOCS.load(Ordering::SeqCst),
        BYTES.load(Ordering::SeqCst),
    )
}

#[test]
fn no_allocation_after_init_and_exact_init_size() {
    let cfg = Config {
        capacity: 1 << 12,
        shards: 16,
        rate_milli: 1000,
        burst: 1,
        global_rate_milli: 50_000_000,
        global_burst: 100_000,
        full_table: FullTablePolicy::EvictLru,
        ban_threshold: 2,
        max_pending: 64,
        max_delay_ms: 1500,
        allow: vec![
            Cidr::parse("10.0.0.0/8").unwrap(),
            Cidr::parse("2001:db8::/32").unwrap(),
        ],
        deny: vec![Cidr::parse("192.0.2.0/24").unwrap()],
        ..Config::default()
    };
    let local: IpAddr = "198.51.100.1".parse().unwrap();
    let (gate, n_init, bytes_init) =
        counted(|| Gate::<gate_core::SpinLock>::new(&cfg, [7, 9]).unwrap());
    assert_eq!(
        bytes_init,
        cfg.memory_bytes(),
        "init allocates exactly memory_bytes()"
    );
    assert!(n_init > 0);

    let t0 = 1000 * TICKS_PER_SEC;
    let (tickets, n, _) = counted(|| {
        let mut tickets = [None; 32];
        let mut held = 0usize;
        // A flood of never-seen addresses, well past capacity (forces LRU eviction),
        // v4 and v6, with repeats (rejections, bans, pends) and listed addresses.
        for i in 0..50_000u32 {
            let now = t0 + u64::from(i) * 10;
            let a = if i % 3 == 0 {
                IpAddr::from(
                    ((i as u128) << 64 | 0x2a00_0000_0000_0000_0000_0000_0000_0000).to_be_bytes(),
                )
            } else {
                IpAddr::from((0x6400_0000u32.wrapping_add(i / 8)).to_be_bytes())
            };
            let d = gate.decide(a, local, now);
            if let Some(p) = d.pend {
                if let Some(slot) = tickets.get_mut(held % 32) {
                    if let Some(old) = slot.replace(p.ticket) {
                        let _ = gate.pend_abort(old);
                    }
                }
                held += 1;
            }
            gate.decide("10.1.1.1".parse().unwrap(), local, now);
            gate.decide("192.0.2.9".parse().unwrap(), local, now);
        }
        let c = gate.counters();
        (tickets, c)
    });
    assert_eq!(n, 0, "the decision path allocated {n} times");
    let (tickets, c) = tickets;
    assert!(c.event(Event::EvictedLru) > 0, "eviction exercised: {c:?}");
    assert!(c.event(Event::BanStarted) > 0, "bans exercised: {c:?}");
    assert!(
        c.reason(gate_core::Reason::PendDelayed) > 0,
        "pends exercised: {c:?}"
    );
    assert!(c.event(Event::PendAborted) > 0, "aborts exercised: {c:?}");
    // Completing pends allocates nothing either.
    let (_, n, _) = counted(|| {
        for t in tickets.into_iter().flatten() {
            let _ = gate.pend_done(t);
        }
    });
    assert_eq!(n, 0);
}
