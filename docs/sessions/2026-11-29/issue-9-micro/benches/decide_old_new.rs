//! gate-core's `decide` bench cases (warm and cold keys in tables of 1k,
//! 64k and 1M keys, as in gate-core/benches/decide.rs) plus a 16-key warm
//! set accepted and rejected, for the old (42c2c11) and the new gate-core
//! in one criterion run.
//!
//! The machine is shared (load 5-8 on 2 CPUs while this was written), so
//! old and new alternate: `ROUNDS` rounds (default 5), each measuring every
//! case for old and then new (`NEW_FIRST=1`: new then old), each a
//! criterion benchmark `decide/<case>/<side>_r<round>`. `ratios.py` prints,
//! per case, the median over rounds of the round's new/old ratio (criterion's
//! median of each), and the spread.
//!
//! `ROUNDS=11 MEASURE_MS=400 cargo bench --bench decide_old_new` then
//! `python3 ratios.py` (defaults: 5 rounds of 1 s per benchmark).

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const T0: u64 = 10_000_000_000;
const TPS: u64 = 10_000_000;

fn addr(i: u32) -> IpAddr {
    IpAddr::from(i.wrapping_mul(0x9E37_79B1).to_be_bytes())
}

fn local() -> IpAddr {
    IpAddr::from([198, 51, 100, 1])
}

/// One case on one side: its state and one decision.
type Case = Box<dyn FnMut() -> u32>;

macro_rules! side {
    ($m:ident) => {{
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
        let mut cases: Vec<(String, Case)> = Vec::new();
        for (name, cap, n) in [
            ("1k", 1u32 << 11, 1_000u32),
            ("64k", 1 << 17, 64_000),
            ("1m", 1 << 21, 1_000_000),
        ] {
            // Rate 10^6/s: warm keys are accepted, cold keys take idle slots.
            let (g, warm) = filled(cap, n, 1_000_000_000);
            let g = std::rc::Rc::new(g);
            let now = std::rc::Rc::new(std::cell::Cell::new(T0 + 10 * TPS));
            let (gw, nw) = (g.clone(), now.clone());
            let mut i = 0usize;
            cases.push((
                format!("warm_{name}"),
                Box::new(move || {
                    i += 1;
                    if i >= warm.len() {
                        i = 0;
                    }
                    nw.set(nw.get() + 1);
                    black_box(gw.decide(warm[i], local(), nw.get())).tokens_milli
                }),
            ));
            let mut fresh = n;
            cases.push((
                format!("cold_{name}"),
                Box::new(move || {
                    fresh = fresh.wrapping_add(1);
                    now.set(now.get() + 1);
                    black_box(g.decide(addr(fresh), local(), now.get())).tokens_milli
                }),
            ));
        }
        // 16 warm keys: accepted (rate 10^6/s), and rejected (rate 0.001/s,
        // burst 1000 spent first).
        let (acc, _) = filled(1 << 11, 16, 1_000_000_000);
        let (rej, _) = filled(1 << 11, 16, 1);
        let mut now = T0 + 10 * TPS;
        for k in 0..16 * 1000 {
            rej.decide(addr(k & 15), local(), now);
        }
        let mut i = 0u32;
        cases.push((
            "accept16".to_string(),
            Box::new(move || {
                i = i.wrapping_add(1);
                now += 1;
                black_box(acc.decide(addr(i & 15), local(), now)).tokens_milli
            }),
        ));
        let mut j = 0u32;
        let mut now2 = T0 + 10 * TPS;
        cases.push((
            "reject16".to_string(),
            Box::new(move || {
                j = j.wrapping_add(1);
                now2 += 1;
                black_box(rej.decide(addr(j & 15), local(), now2)).tokens_milli
            }),
        ));
        cases
    }};
}

fn cases(c: &mut Criterion) {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let new_first = std::env::var_os("NEW_FIRST").is_some();
    let mut old = side!(old);
    let mut new = side!(new);
    let mut group = c.benchmark_group("decide");
    group.throughput(Throughput::Elements(1));
    // `MEASURE_MS`: criterion's measurement time per benchmark (warm-up: half).
    let ms: u64 = std::env::var("MEASURE_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    group.warm_up_time(Duration::from_millis(ms / 2));
    group.measurement_time(Duration::from_millis(ms));
    for r in 0..rounds {
        for k in 0..old.len() {
            let name = old[k].0.clone();
            let order: [(&str, &mut Case); 2] = if new_first {
                [("new", &mut new[k].1), ("old", &mut old[k].1)]
            } else {
                [("old", &mut old[k].1), ("new", &mut new[k].1)]
            };
            for (label, f) in order {
                group.bench_function(BenchmarkId::new(&name, format!("{label}_r{r}")), |b| {
                    b.iter(|| f())
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, cases);
criterion_main!(benches);
