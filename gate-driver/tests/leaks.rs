//! Heap balance across load/unload. In host tests the driver's Rust
//! allocations (gate-core's table, the Driver object, queues) go to the
//! test's global allocator rather than the simulated pool (the simulator
//! keeps its own books on the heap, so it cannot sit behind the pool
//! itself). This test counts live heap bytes with a wrapping allocator:
//! loading must allocate the table (megabytes, so a leak would show), and
//! after unload the live bytes must come back to the same level, start
//! after start. Pool, IRPs, sockets, threads, handles and timers are
//! checked by the simulator's LeakReport.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)] // test code: std allocation is fine

mod common;
use common::*;
use gate_usersim::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};

struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: same layout contract as the caller's.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            LIVE.fetch_add(l.size() as i64, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as i64, Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            LIVE.fetch_add(new as i64 - l.size() as i64, Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

#[test]
fn heap_returns_to_its_level_after_each_unload() {
    let mut levels = Vec::new();
    let mut load_cost = 0;
    for _ in 0..4 {
        let sim = Sim::new();
        sim.quiesce();
        levels.push(live());
        let before = live();
        let (driver, l) = start(
            &sim,
            &[
                ("MaxPending", RegValue::Dword(64)),
                ("RateMilliPerSecond", RegValue::Dword(1000)),
                ("Burst", RegValue::Dword(1)),
            ],
        );
        load_cost = live() - before;
        let local = local_of(&l);
        for i in 0..20u16 {
            let src = addr(&format!("10.8.0.{}:{}", i % 5 + 1, 1000 + i));
            sim.connect(src, local);
        }
        sim.advance_ms(1500);
        driver.unload(&sim).assert_clean();
        sim.assert_no_violations();
    }
    assert!(
        load_cost > 1 << 20,
        "the table is allocated at load: {load_cost} bytes"
    );
    let first = levels[1];
    for (i, l) in levels.iter().enumerate().skip(2) {
        let grew = l - first;
        assert!(
            grew.abs() < 64 * 1024,
            "start {i}: live heap moved by {grew} bytes (levels {levels:?}, a start costs {load_cost})"
        );
    }
}
