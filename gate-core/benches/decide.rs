//! Decision cost: warm keys (already tracked) and cold keys (never seen) in
//! tables of 1k, 64k and 1M keys; a flood of never-seen addresses against a
//! full table of active keys; one thread against two. Also prints the bytes
//! `Gate::new` really allocated (counting allocator) per slot and per
//! tracked key.
//!
//! Short runs (the machine is shared):
//! `cargo bench -p gate-core --bench decide -- --warm-up-time 1 --measurement-time 2`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gate_core::{Config, Event, Gate, TICKS_PER_SEC};

struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const T0: u64 = 1000 * TICKS_PER_SEC;

/// The i-th distinct IPv4 address (an odd multiplier is a bijection on u32).
fn addr(i: u32) -> IpAddr {
    IpAddr::from(i.wrapping_mul(0x9E37_79B1).to_be_bytes())
}

fn local() -> IpAddr {
    "198.51.100.1".parse().unwrap()
}

/// A gate of `capacity` slots holding `n` keys (those in the returned list are tracked).
fn filled(capacity: u32, n: u32, rate_milli: u64) -> (Gate, Vec<IpAddr>, u64) {
    let cfg = Config {
        capacity,
        shards: (capacity / 64).min(64),
        rate_milli,
        burst: 1000,
        ..Config::default()
    };
    BYTES.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let g: Gate = Gate::new(&cfg, [0xfeed, 0xbeef]).unwrap();
    COUNTING.store(false, Ordering::SeqCst);
    let bytes = BYTES.load(Ordering::SeqCst);
    let mut now = T0;
    for i in 0..n {
        now += 1;
        g.decide(addr(i), local(), now);
    }
    let warm: Vec<IpAddr> = (0..n).map(addr).filter(|a| g.is_tracked(*a)).collect();
    (g, warm, bytes)
}

fn report_memory() {
    for log2 in [10u32, 16, 20] {
        let cap = 1u32 << log2;
        let (g, warm, bytes) = filled(cap, cap, 1);
        eprintln!(
            "memory: capacity 2^{log2}: Gate::new allocated {bytes} bytes = {:.2} bytes/slot; \
             after {cap} distinct active keys {} tracked ({:.1}%) = {:.2} bytes/tracked key; \
             full table (after a flood) = {:.2} bytes/tracked key",
            bytes as f64 / f64::from(cap),
            warm.len(),
            warm.len() as f64 * 100.0 / f64::from(cap),
            bytes as f64 / warm.len() as f64,
            bytes as f64 / g.capacity() as f64,
        );
    }
}

fn bench_warm_cold(c: &mut Criterion) {
    report_memory();
    let sizes: [(&str, u32, u32); 3] = [
        ("1k", 1 << 11, 1_000),
        ("64k", 1 << 17, 64_000),
        ("1M", 1 << 20, 1_000_000),
    ];
    let mut group = c.benchmark_group("decide");
    group.throughput(Throughput::Elements(1));
    for (name, cap, n) in sizes {
        // Rate 10^6/s: buckets refill within 10 ticks, so cold keys take
        // idle slots (the common case) and warm keys are accepted.
        let (g, warm, _) = filled(cap, n, 1_000_000_000);
        let mut now = T0 + 10 * TICKS_PER_SEC;
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("warm", name), |b| {
            b.iter(|| {
                i += 1;
                if i >= warm.len() {
                    i = 0;
                }
                now += 1;
                black_box(g.decide(warm[i], local(), now))
            })
        });
        let mut fresh = n;
        group.bench_function(BenchmarkId::new("cold", name), |b| {
            b.iter(|| {
                fresh = fresh.wrapping_add(1);
                now += 1;
                black_box(g.decide(addr(fresh), local(), now))
            })
        });
        eprintln!("{name}: {:?}", g.counters().events);
    }
    group.finish();
}

fn bench_flood(c: &mut Criterion) {
    // A full table of active keys (one token per 1000 s), then never-seen
    // addresses: every one evicts the least recently seen of its windows.
    let cap = 1 << 20;
    let (g, _, _) = filled(cap, 2 * cap, 1);
    let mut group = c.benchmark_group("flood");
    group.throughput(Throughput::Elements(1));
    let mut now = T0 + TICKS_PER_SEC;
    let mut fresh = 4 * cap;
    let before = g.counters();
    group.bench_function("never_seen_vs_full_1M", |b| {
        b.iter(|| {
            fresh = fresh.wrapping_add(1);
            now += 1;
            black_box(g.decide(addr(fresh), local(), now))
        })
    });
    let after = g.counters();
    eprintln!(
        "flood: {} LRU evictions, {} idle evictions during the run",
        after.event(Event::EvictedLru) - before.event(Event::EvictedLru),
        after.event(Event::EvictedIdle) - before.event(Event::EvictedIdle)
    );
    group.finish();
}

/// `iters` warm decisions over `keys` on this thread; returns elapsed time.
fn run(g: &Gate, keys: &[IpAddr], iters: u64, mut now: u64) -> Duration {
    let start = Instant::now();
    let mut i = 0usize;
    for _ in 0..iters {
        i += 1;
        if i >= keys.len() {
            i = 0;
        }
        now += 1;
        black_box(g.decide(keys[i], local(), now));
    }
    start.elapsed()
}

fn bench_threads(c: &mut Criterion) {
    let (g, warm, _) = filled(1 << 17, 64_000, 1_000_000_000);
    let (a, b) = warm.split_at(warm.len() / 2);
    let mut group = c.benchmark_group("threads_warm_64k");
    group.throughput(Throughput::Elements(1));
    group.bench_function("1", |bch| bch.iter_custom(|iters| run(&g, a, iters, T0)));
    group.throughput(Throughput::Elements(2));
    group.bench_function("2", |bch| {
        bch.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                s.spawn(|| run(&g, a, iters, T0));
                s.spawn(|| run(&g, b, iters, T0));
            });
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = bench_warm_cold, bench_flood, bench_threads
}
criterion_main!(benches);
