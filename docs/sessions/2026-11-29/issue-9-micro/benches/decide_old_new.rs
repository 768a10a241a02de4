//! gate-core's `decide` bench cases (warm and cold keys in tables of 1k and
//! 64k keys, as in gate-core/benches/decide.rs, and of 1M keys) plus a 16-key warm set
//! accepted and rejected, for the old (42c2c11) and the new gate-core in
//! one criterion run: for each case old then new, so the ratio new/old of
//! one run compares like with like on a shared machine.
//!
//! `cargo bench --bench decide_old_new -- --warm-up-time 1 --measurement-time 3`
//! then `python3 ratios.py` (criterion's medians, new/old); `NEW_FIRST=1`
//! swaps the order within each case.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const T0: u64 = 10_000_000_000;
const TPS: u64 = 10_000_000;

fn addr(i: u32) -> IpAddr {
    IpAddr::from(i.wrapping_mul(0x9E37_79B1).to_be_bytes())
}

fn local() -> IpAddr {
    IpAddr::from([198, 51, 100, 1])
}

macro_rules! side {
    ($c:expr, $m:ident, $label:expr) => {{
        use $m::{Config, Gate};
        let filled = |capacity: u32, n: u32, rate_milli: u64| -> (Gate, Vec<IpAddr>) {
            let cfg = Config {
                capacity,
                shards: (capacity / 64).min(64),
                rate_milli,
                burst: 1000,
                ..Config::default()
            };
            let g: Gate = Gate::new(&cfg, [0xfeed, 0xbeef]).unwrap();
            let mut now = T0;
            for i in 0..n {
                now += 1;
                g.decide(addr(i), local(), now);
            }
            let warm: Vec<IpAddr> = (0..n).map(addr).filter(|a| g.is_tracked(*a)).collect();
            (g, warm)
        };
        (filled, $label)
    }};
}

/// `NEW_FIRST=1`: measure the new side of each case first (a second run
/// with the order swapped shows how much drift of the machine's load
/// between the two sides moves the ratio).
fn new_first() -> bool {
    std::env::var_os("NEW_FIRST").is_some()
}

fn cases(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide");
    group.throughput(Throughput::Elements(1));
    for (name, cap, n) in [
        ("1k", 1u32 << 11, 1_000u32),
        ("64k", 1 << 17, 64_000),
        ("1m", 1 << 21, 1_000_000),
    ] {
        macro_rules! warm_cold {
            ($m:ident, $label:expr) => {{
                let (filled, label) = side!(c, $m, $label);
                let (g, warm) = filled(cap, n, 1_000_000_000);
                let mut now = T0 + 10 * TPS;
                let mut i = 0usize;
                group.bench_function(BenchmarkId::new(format!("warm_{name}"), label), |b| {
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
                group.bench_function(BenchmarkId::new(format!("cold_{name}"), label), |b| {
                    b.iter(|| {
                        fresh = fresh.wrapping_add(1);
                        now += 1;
                        black_box(g.decide(addr(fresh), local(), now))
                    })
                });
            }};
        }
        if new_first() {
            warm_cold!(new, "new");
            warm_cold!(old, "old");
        } else {
            warm_cold!(old, "old");
            warm_cold!(new, "new");
        }
    }
    // 16 warm keys: accepted (rate 10^6/s), and rejected (rate 0.001/s).
    macro_rules! sixteen {
        ($m:ident, $label:expr) => {{
            let (filled, label) = side!(c, $m, $label);
            let (acc, _) = filled(1 << 11, 16, 1_000_000_000);
            let (rej, _) = filled(1 << 11, 16, 1);
            let mut now = T0 + 10 * TPS;
            let mut i = 0u32;
            group.bench_function(BenchmarkId::new("accept16", label), |b| {
                b.iter(|| {
                    i = i.wrapping_add(1);
                    now += 1;
                    black_box(acc.decide(addr(i & 15), local(), now))
                })
            });
            // Burst 1000 spent first, then every decision is RateExceeded.
            for k in 0..16 * 1000 {
                rej.decide(addr(k & 15), local(), now);
            }
            group.bench_function(BenchmarkId::new("reject16", label), |b| {
                b.iter(|| {
                    i = i.wrapping_add(1);
                    now += 1;
                    black_box(rej.decide(addr(i & 15), local(), now))
                })
            });
        }};
    }
    if new_first() {
        sixteen!(new, "new");
        sixteen!(old, "old");
    } else {
        sixteen!(old, "old");
        sixteen!(new, "new");
    }
    group.finish();
}

criterion_group!(benches, cases);
criterion_main!(benches);
