//! The generator's steady state allocates nothing per connection: ten times
//! the connections must not cost (noticeably) more allocations.

use load_tests::listener::Background;
use load_tests::scenario::Scenario;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator, which
// upholds the GlobalAlloc contract; counting has no effect on the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from System.alloc/realloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The count is process-wide: the tests take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn allocations_for(rate: u32, target: std::net::SocketAddr) -> (u64, u64) {
    allocations_with(rate, target, "")
}

/// Allocations of a 1 s run at `rate` with `extra` TOML (e.g. a payload)
/// appended; returns them and the accepted count.
fn allocations_with(rate: u32, target: std::net::SocketAddr, extra: &str) -> (u64, u64) {
    let sc = Scenario::parse(&format!(
        "name = \"alloc\"\n[[group]]\nname = \"g\"\nsources = \"127.60.0.0/24\"\nrate = {rate}\nduration_s = 1\n{extra}"
    ))
    .unwrap();
    let opts = load_tests::engine::RunOptions {
        target,
        progress: false,
        max_in_flight: 10_000,
        pin_cpu: None,
    };
    let before = ALLOCS.load(Ordering::Relaxed);
    let r = load_tests::engine::run(&sc, &opts).unwrap();
    let used = ALLOCS.load(Ordering::Relaxed) - before;
    (used, r.report.groups[0].counts.accepted)
}

#[test]
fn ten_times_the_connections_cost_no_more_allocations() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let l = Background::start("127.0.0.1:0".parse().unwrap(), Duration::ZERO, None).unwrap();
    let (small, n_small) = allocations_for(300, l.addr);
    let (large, n_large) = allocations_for(3000, l.addr);
    assert_eq!((n_small, n_large), (300, 3000));
    eprintln!("allocations: {small} for 300 connections, {large} for 3000");
    // Growth of the slot table and queues is amortized (a handful of
    // reallocations); per-connection allocation would add ~2700.
    assert!(
        large.saturating_sub(small) < 100,
        "300 connections: {small} allocations, 3000 connections: {large}"
    );
}

#[test]
fn payload_exchanges_cost_no_more_allocations() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let l = Background::start_mode(
        "127.0.0.1:0".parse().unwrap(),
        load_tests::payload::ServeMode::Echo,
        Duration::ZERO,
        None,
    )
    .unwrap();
    let echo = "[payload]\nmode = \"echo\"\nrequest_bytes = 3000\n";
    let (small, n_small) = allocations_with(300, l.addr, echo);
    let (large, n_large) = allocations_with(3000, l.addr, echo);
    assert_eq!((n_small, n_large), (300, 3000));
    eprintln!("echo payload: {small} allocations for 300 connections, {large} for 3000");
    assert!(
        large.saturating_sub(small) < 100,
        "300 connections: {small} allocations, 3000 connections: {large}"
    );
}
