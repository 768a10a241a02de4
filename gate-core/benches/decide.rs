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
use gate_core::{Config, Event, Gate, RawLock, TICKS_PER_SEC};

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
        if n == 1_000_000 {
            // A few keys seen over and over (in cache) in the 1M-key table.
            let hot = &warm[..16];
            let mut j = 0usize;
            group.bench_function(BenchmarkId::new("hot16", name), |b| {
                b.iter(|| {
                    j = (j + 1) & 15;
                    now += 1;
                    black_box(g.decide(hot[j], local(), now))
                })
            });
        }
    }
    group.finish();
}

/// The machine's floor: one dependent random read in a buffer the size of
/// the 1M table (what any hash table pays for a key not in cache).
fn bench_baseline(c: &mut Criterion) {
    let n: usize = 40 << 20 >> 3; // 40 MiB of u64
    let mut v: Vec<u64> = (0..n as u64).collect();
    // A random cyclic permutation (Sattolo), so every read depends on the last.
    let mut x = 0x1234_5678_9abc_def1u64;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let j = (x % i as u64) as usize;
        v.swap(i, j);
    }
    let mut p = 0usize;
    let mut group = c.benchmark_group("baseline");
    group.bench_function("dependent_random_read_40MiB", |b| {
        b.iter(|| {
            p = v[p] as usize;
            black_box(p)
        })
    });
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

/// A spin lock that yields to the OS scheduler after a short spin. In the
/// kernel a spin-lock holder runs at DISPATCH_LEVEL and cannot be preempted;
/// in user space on a shared 2-core machine it can be, and a plain spin lock
/// then spins for the holder's whole time slice. Yielding approximates the
/// kernel's behaviour for the two-thread measurement.
struct YieldingLock(std::sync::atomic::AtomicBool);

// SAFETY: `lock` returns only after swapping false -> true with Acquire;
// `unlock` stores false with Release: one holder at a time.
unsafe impl RawLock for YieldingLock {
    type State = ();
    fn new() -> Self {
        YieldingLock(AtomicBool::new(false))
    }
    fn lock(&self) {
        let mut spins = 0u32;
        while self
            .0
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins > 64 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
    unsafe fn unlock(&self, _: ()) {
        self.0.store(false, Ordering::Release);
    }
}

/// `iters` warm decisions over `keys` on this thread; returns elapsed time.
fn run<L: RawLock>(g: &Gate<L>, keys: &[IpAddr], iters: u64, mut now: u64) -> Duration {
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
    let cfg = Config {
        capacity: 1 << 17,
        shards: 64,
        rate_milli: 1_000_000_000,
        burst: 1000,
        ..Config::default()
    };
    let g: Gate<YieldingLock> = Gate::new(&cfg, [0xfeed, 0xbeef]).unwrap();
    for i in 0..64_000 {
        g.decide(addr(i), local(), T0 + u64::from(i));
    }
    let warm: Vec<IpAddr> = (0..64_000).map(addr).filter(|a| g.is_tracked(*a)).collect();
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
    // Control: two threads on two separate gates (nothing shared). If this
    // does not scale either, the machine (not the gate) is the limit.
    let g2: Gate<YieldingLock> = Gate::new(&cfg, [0xfeed, 0xbeef]).unwrap();
    for a in b {
        g2.decide(*a, local(), T0);
    }
    group.bench_function("2_separate_gates", |bch| {
        bch.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                s.spawn(|| run(&g, a, iters, T0));
                s.spawn(|| run(&g2, b, iters, T0));
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
    targets = bench_baseline, bench_warm_cold, bench_flood, bench_threads
}
criterion_main!(benches);
