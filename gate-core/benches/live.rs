//! What the live configuration costs, as ratios within one run:
//! `decide` on a warm 64k table with nothing configured, with 1024 manual
//! bans and with a 4096-entry deny list (neither matching the keys), and
//! after 1000 live changes; and one live change (`reconfigure`, a swap and
//! a grace period over 64 shards).
//!
//! `cargo bench -p gate-core --bench live -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gate_core::{Cidr, Config, Gate, TICKS_PER_SEC};

const T0: u64 = 1000 * TICKS_PER_SEC;

fn addr(i: u32) -> IpAddr {
    IpAddr::from(
        (0x0a00_0000 | (i & 0x00ff_ffff))
            .wrapping_mul(1)
            .to_be_bytes(),
    )
}

fn warm_gate() -> (Gate, Vec<IpAddr>) {
    let cfg = Config {
        capacity: 1 << 17,
        shards: 64,
        rate_milli: 1_000_000_000,
        burst: 1000,
        ..Config::default()
    };
    let g: Gate = Gate::new(&cfg, [1, 2]).unwrap();
    let keys: Vec<IpAddr> = (0..64_000).map(addr).collect();
    for (i, k) in keys.iter().enumerate() {
        g.decide(*k, IpAddr::from([198, 51, 100, 1]), T0 + i as u64);
    }
    (g, keys)
}

/// A benchmark's name and how it sets the gate up.
type Case = (&'static str, fn(&Gate));

fn bench(c: &mut Criterion) {
    let local = IpAddr::from([198, 51, 100, 1]);
    let mut group = c.benchmark_group("live");
    group.throughput(Throughput::Elements(1));
    let cases: [Case; 4] = [
        ("plain", |_| {}),
        ("1024_manual_bans", |g| {
            for i in 0..1024u32 {
                let a = IpAddr::from((0xc000_0000u32 | (i << 8)).to_be_bytes());
                g.ban(Cidr::new(a, 24).unwrap(), u64::MAX, T0).unwrap();
            }
        }),
        ("4096_deny", |g| {
            g.reconfigure(|c| {
                c.deny = (0..4096u32)
                    .map(|i| {
                        Cidr::new(IpAddr::from((0xc000_0000u32 | (i << 8)).to_be_bytes()), 24)
                            .unwrap()
                    })
                    .collect()
            })
            .unwrap();
        }),
        ("after_1000_changes", |g| {
            for i in 0..1000u32 {
                g.reconfigure(|c| c.burst = 1000 + (i % 2)).unwrap();
            }
        }),
    ];
    for (name, setup) in cases {
        let (g, keys) = warm_gate();
        setup(&g);
        let mut now = T0 + 10 * TICKS_PER_SEC;
        let mut i = 0usize;
        group.bench_function(format!("decide_warm_64k/{name}"), |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                now += 1;
                black_box(g.decide(keys[i], local, now))
            })
        });
    }
    let (g, _) = warm_gate();
    let mut flip = 0u32;
    group.bench_function("reconfigure_64_shards", |b| {
        b.iter(|| {
            flip ^= 1;
            black_box(g.reconfigure(|c| c.burst = 1000 + flip).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
