//! Decision cost: warm keys (already tracked) and cold keys (never seen) in
//! tables of 1k, 64k and 1M keys; a flood of never-seen addresses against a
//! full table of active keys; one thread against two (pinned). Also prints
//! the bytes `Gate::new` really allocated (counting allocator) per slot and
//! per tracked key.
//!
//! The 1M-key cases run twice, with the table (and the baseline buffer) on
//! 4 KiB pages and on 2 MiB transparent huge pages (the bench's allocator
//! maps every allocation of 2 MiB or more itself and `madvise`s it; gate-core
//! does not know). Each prints, besides criterion's figures, a summary
//! measured in interleaved rounds with ratios to the dependent-read baseline
//! of the same page size (the machine is shared: compare ratios of one run).
//!
//! Short runs (the machine is shared):
//! `cargo bench -p gate-core --bench decide -- --warm-up-time 1 --measurement-time 2`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gate_core::{Config, Event, Gate, RawLock, TICKS_PER_SEC};

struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static BYTES: AtomicU64 = AtomicU64::new(0);

/// Page size for allocations of [`BIG`] bytes or more made from now on.
static PAGES: AtomicU8 = AtomicU8::new(PAGES_4K);
const PAGES_4K: u8 = 0;
const PAGES_THP: u8 = 1;
/// Allocations this large are mapped by the bench itself (2 MiB-aligned).
const BIG: usize = 2 << 20;

fn round_big(n: usize) -> usize {
    (n + BIG - 1) & !(BIG - 1)
}

/// Maps `size` bytes 2 MiB-aligned, advised for huge pages or against them.
///
/// # Safety
/// Plain `mmap`/`munmap`/`madvise` on a fresh private anonymous mapping.
unsafe fn map_big(size: usize, huge: bool) -> *mut u8 {
    let len = round_big(size);
    let span = len + BIG;
    // SAFETY: anonymous private mapping, no address hint.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            span,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    let start = p as usize;
    let aligned = round_big(start);
    // SAFETY: trims the unaligned head and the tail of our own mapping.
    unsafe {
        if aligned > start {
            libc::munmap(p, aligned - start);
        }
        let tail = start + span - (aligned + len);
        if tail > 0 {
            libc::munmap((aligned + len) as *mut libc::c_void, tail);
        }
        let advice = if huge {
            libc::MADV_HUGEPAGE
        } else {
            libc::MADV_NOHUGEPAGE
        };
        libc::madvise(aligned as *mut libc::c_void, len, advice);
    }
    aligned as *mut u8
}

// SAFETY: small allocations go to the system allocator unchanged; big ones
// (>= 2 MiB, alignment <= 2 MiB) are fresh zeroed mappings of at least the
// size asked, 2 MiB-aligned, unmapped in `dealloc` (which sees the same size,
// so takes the same branch). Only counts bytes besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        if layout.size() >= BIG && layout.align() <= BIG {
            // SAFETY: see `map_big`.
            return unsafe { map_big(layout.size(), PAGES.load(Ordering::Relaxed) == PAGES_THP) };
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= BIG && layout.align() <= BIG {
            // SAFETY: `ptr` came from `map_big` with this size.
            unsafe { libc::munmap(ptr as *mut libc::c_void, round_big(layout.size())) };
            return;
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Bytes of this process backed by transparent huge pages (Linux).
fn anon_huge_kib() -> u64 {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("AnonHugePages:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Pins the calling thread to `cpu` (best effort: ignored if not allowed).
fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it;
    // sched_setaffinity(0, ..) applies to the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
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
    IpAddr::from([198, 51, 100, 1])
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
    if !wanted("decide") {
        return;
    }
    report_memory();
    let sizes: [(&str, u32, u32); 2] = [("1k", 1 << 11, 1_000), ("64k", 1 << 17, 64_000)];
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
    }
    group.finish();
}

/// A random cyclic permutation of `0..n` (Sattolo), so that following it
/// makes every read depend on the last.
fn chase_buffer(n: usize) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n as u64).collect();
    let mut x = 0x1234_5678_9abc_def1u64;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let j = (x % i as u64) as usize;
        v.swap(i, j);
    }
    v
}

/// The state of the 1M-key cases on one page size.
struct Big {
    chase: Vec<u64>,
    p: usize,
    g: Gate,
    warm: Vec<IpAddr>,
    flood: Gate,
    now: u64,
    i: usize,
    fresh: u32,
    flood_fresh: u32,
}

impl Big {
    fn new(pages: u8) -> Big {
        PAGES.store(pages, Ordering::SeqCst);
        let huge_before = anon_huge_kib();
        // The baseline: one buffer the size of the 1M table.
        let chase = chase_buffer(40 << 20 >> 3);
        // Rate 10^6/s: cold keys take idle slots, warm keys are accepted.
        let (g, warm, _) = filled(1 << 20, 1_000_000, 1_000_000_000);
        // A full table of active keys (one token per 1000 s): every
        // never-seen address evicts the least recently seen of its windows.
        let (flood, _, _) = filled(1 << 20, 2 << 20, 1);
        eprintln!(
            "pages {}: {} MiB of this process now on transparent huge pages (was {} MiB)",
            page_name(pages),
            anon_huge_kib() >> 10,
            huge_before >> 10
        );
        PAGES.store(PAGES_4K, Ordering::SeqCst);
        Big {
            chase,
            p: 0,
            g,
            warm,
            flood,
            now: T0 + 10 * TICKS_PER_SEC,
            i: 0,
            fresh: 1 << 24,
            flood_fresh: 1 << 28,
        }
    }

    fn baseline(&mut self) -> usize {
        self.p = self.chase[self.p] as usize;
        self.p
    }

    fn warm(&mut self) -> gate_core::Decision {
        self.i += 1;
        if self.i >= self.warm.len() {
            self.i = 0;
        }
        self.now += 1;
        self.g.decide(self.warm[self.i], local(), self.now)
    }

    fn cold(&mut self) -> gate_core::Decision {
        self.fresh = self.fresh.wrapping_add(1);
        self.now += 1;
        self.g.decide(addr(self.fresh), local(), self.now)
    }

    fn hot16(&mut self) -> gate_core::Decision {
        self.i = (self.i + 1) & 15;
        self.now += 1;
        self.g.decide(self.warm[self.i], local(), self.now)
    }

    fn flood(&mut self) -> gate_core::Decision {
        self.flood_fresh = self.flood_fresh.wrapping_add(1);
        self.now += 1;
        self.flood.decide(addr(self.flood_fresh), local(), self.now)
    }
}

fn page_name(pages: u8) -> &'static str {
    if pages == PAGES_THP {
        "thp_2MiB"
    } else {
        "4KiB"
    }
}

/// Median of `xs` (sorted in place).
fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

type Case = (&'static str, fn(&mut Big));

const BIG_CASES: [Case; 5] = [
    ("baseline: dependent random read in 40 MiB", |b| {
        black_box(b.baseline());
    }),
    ("warm 1M (entry not in cache)", |b| {
        black_box(b.warm());
    }),
    ("cold 1M (never-seen key, idle slot reused)", |b| {
        black_box(b.cold());
    }),
    ("hot16 in the 1M table (entry in cache)", |b| {
        black_box(b.hot16());
    }),
    ("flood vs full 1M table (LRU eviction)", |b| {
        black_box(b.flood());
    }),
];

/// Interleaved rounds of every case (so machine noise hits them alike);
/// prints the median ns per operation and the ratio to the baseline.
fn summary(b: &mut Big, pages: u8) {
    const ROUNDS: usize = 21;
    const OPS: u32 = 20_000;
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); BIG_CASES.len()];
    for _ in 0..ROUNDS {
        for (k, (_, f)) in BIG_CASES.iter().enumerate() {
            let start = Instant::now();
            for _ in 0..OPS {
                f(b);
            }
            ns[k].push(start.elapsed().as_nanos() as f64 / f64::from(OPS));
        }
    }
    let base = median(&mut ns[0]);
    eprintln!(
        "summary, pages {} (median of {ROUNDS} interleaved rounds of {OPS}):",
        page_name(pages)
    );
    for (k, (name, _)) in BIG_CASES.iter().enumerate() {
        let m = median(&mut ns[k]);
        eprintln!("  {name:<46} {m:7.1} ns  {:5.2} x baseline", m / base);
    }
}

/// Whether criterion's name filter (the first free argument, if any) can
/// match benchmarks of `group`: lets `-- threads` skip building 1M tables.
fn wanted(group: &str) -> bool {
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-') && a.parse::<f64>().is_err());
    filter.is_none_or(|f| group.contains(&f) || f.contains(group))
}

/// The 1M-key cases and their baseline, on 4 KiB pages then on huge pages.
fn bench_big(c: &mut Criterion) {
    for pages in [PAGES_4K, PAGES_THP] {
        if !wanted(&format!("pages_{}", page_name(pages))) {
            continue;
        }
        let mut b = Big::new(pages);
        summary(&mut b, pages);
        let mut group = c.benchmark_group(format!("pages_{}", page_name(pages)));
        group.throughput(Throughput::Elements(1));
        for (name, f) in [
            ("baseline_read_40MiB", BIG_CASES[0].1),
            ("warm_1M", BIG_CASES[1].1),
            ("cold_1M", BIG_CASES[2].1),
            ("hot16_1M", BIG_CASES[3].1),
            ("flood_full_1M", BIG_CASES[4].1),
        ] {
            group.bench_function(name, |bch| bch.iter(|| f(&mut b)));
        }
        group.finish();
        let ev = b.flood.counters();
        eprintln!(
            "flood ({}): {} LRU evictions, {} idle evictions",
            page_name(pages),
            ev.event(Event::EvictedLru),
            ev.event(Event::EvictedIdle)
        );
    }
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

/// Two threads pinned to CPUs 0 and 1, `iters` decisions each, started
/// together; returns the wall time until both are done.
fn run2<L: RawLock>(
    ga: &Gate<L>,
    a: &[IpAddr],
    gb: &Gate<L>,
    b: &[IpAddr],
    iters: u64,
) -> Duration {
    let go = std::sync::Barrier::new(3);
    std::thread::scope(|s| {
        let ta = s.spawn(|| {
            pin(0);
            go.wait();
            run(ga, a, iters, T0)
        });
        let tb = s.spawn(|| {
            pin(1);
            go.wait();
            run(gb, b, iters, T0)
        });
        go.wait();
        let start = Instant::now();
        let _ = ta.join();
        let _ = tb.join();
        start.elapsed()
    })
}

/// One pinned thread: `iters` decisions.
fn run1<L: RawLock + Sync>(g: &Gate<L>, a: &[IpAddr], iters: u64) -> Duration {
    std::thread::scope(|s| {
        s.spawn(|| {
            pin(0);
            run(g, a, iters, T0)
        })
        .join()
        .unwrap_or_default()
    })
}

fn threads_gate(global: bool) -> Gate<YieldingLock> {
    let cfg = Config {
        capacity: 1 << 17,
        shards: 64,
        rate_milli: 1_000_000_000,
        burst: 1000,
        global_rate_milli: if global { 10_000_000_000 } else { 0 },
        global_burst: 100_000_000,
        ..Config::default()
    };
    Gate::new(&cfg, [0xfeed, 0xbeef]).unwrap()
}

/// Throughput of two threads deciding for distinct sources (half the keys
/// each: the flood shape) against one thread, warm 64k keys; a control with
/// two separate gates; and the same with the global limit on (one shared
/// atomic bucket, written by every decision of both CPUs by design).
fn bench_threads(c: &mut Criterion) {
    if !wanted("threads_warm_64k") {
        return;
    }
    let g = threads_gate(false);
    let gg = threads_gate(true);
    for i in 0..64_000 {
        g.decide(addr(i), local(), T0 + u64::from(i));
        gg.decide(addr(i), local(), T0 + u64::from(i));
    }
    let warm: Vec<IpAddr> = (0..64_000).map(addr).filter(|a| g.is_tracked(*a)).collect();
    let (a, b) = warm.split_at(warm.len() / 2);
    // Control: two separate gates (nothing shared). If this does not scale
    // either, the machine (not the gate) is the limit.
    let g2 = threads_gate(false);
    for k in b {
        g2.decide(*k, local(), T0);
    }

    // Interleaved rounds, ratios of throughput to one thread.
    const ROUNDS: usize = 15;
    const OPS: u64 = 200_000;
    let (mut one, mut two, mut sep, mut one_g, mut two_g) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        one.push(run1(&g, a, OPS).as_secs_f64());
        two.push(run2(&g, a, &g, b, OPS).as_secs_f64());
        sep.push(run2(&g, a, &g2, b, OPS).as_secs_f64());
        one_g.push(run1(&gg, a, OPS).as_secs_f64());
        two_g.push(run2(&gg, a, &gg, b, OPS).as_secs_f64());
    }
    let (one, two, sep) = (median(&mut one), median(&mut two), median(&mut sep));
    let (one_g, two_g) = (median(&mut one_g), median(&mut two_g));
    let ns = |t: f64, n: u64| t * 1e9 / n as f64;
    eprintln!(
        "summary, threads, warm 64k (median of {ROUNDS} interleaved rounds of {OPS} per thread):"
    );
    eprintln!(
        "  one thread                      {:6.1} ns/decision",
        ns(one, OPS)
    );
    eprintln!(
        "  two threads, one gate           {:6.1} ns/decision  {:4.2} x one thread",
        ns(two, 2 * OPS),
        2.0 * one / two
    );
    eprintln!(
        "  two threads, separate gates     {:6.1} ns/decision  {:4.2} x one thread",
        ns(sep, 2 * OPS),
        2.0 * one / sep
    );
    eprintln!(
        "  global limit on: one thread {:6.1} ns, two threads {:6.1} ns/decision  {:4.2} x",
        ns(one_g, OPS),
        ns(two_g, 2 * OPS),
        2.0 * one_g / two_g
    );

    let mut group = c.benchmark_group("threads_warm_64k");
    group.throughput(Throughput::Elements(1));
    group.bench_function("1", |bch| bch.iter_custom(|iters| run1(&g, a, iters)));
    group.throughput(Throughput::Elements(2));
    group.bench_function("2", |bch| {
        bch.iter_custom(|iters| run2(&g, a, &g, b, iters))
    });
    group.bench_function("2_separate_gates", |bch| {
        bch.iter_custom(|iters| run2(&g, a, &g2, b, iters))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = bench_big, bench_warm_cold, bench_threads
}
criterion_main!(benches);
