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

fn allocations_for(rate: u32, target: std::net::SocketAddr) -> (u64, u64) {
    let sc = Scenario::parse(&format!(
        "name = \"alloc\"\n[[group]]\nname = \"g\"\nsources = \"127.60.0.0/24\"\nrate = {rate}\nduration_s = 1\n"
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
