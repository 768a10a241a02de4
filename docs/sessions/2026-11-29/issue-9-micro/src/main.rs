//! Old (42c2c11) vs new gate-core, same process, interleaved rounds.
use std::hint::black_box;
use std::net::IpAddr;
use std::time::Instant;

const T0: u64 = 10_000_000_000;

fn addr(i: u32) -> IpAddr {
    IpAddr::from(i.wrapping_mul(0x9E37_79B1).to_be_bytes())
}

macro_rules! cases {
    ($m:ident) => {{
        use $m::{Config, Gate};
        let local: IpAddr = "198.51.100.1".parse().unwrap();
        let mk = |global: bool, rate: u64| -> Gate {
            let cfg = Config {
                capacity: 1 << 11,
                shards: 32,
                rate_milli: rate,
                burst: 1000,
                global_rate_milli: if global { 10_000_000_000 } else { 0 },
                global_burst: 100_000_000,
                ..Config::default()
            };
            Gate::new(&cfg, [0xfeed, 0xbeef]).unwrap()
        };
        let warm = mk(false, 1_000_000_000);
        let glob = mk(true, 1_000_000_000);
        let rej = mk(false, 1);
        let cold = mk(false, 1_000_000_000);
        let banned: Gate = Gate::new(
            &Config {
                capacity: 1 << 11,
                shards: 32,
                rate_milli: 1,
                burst: 1,
                ban_threshold: 1,
                ban_window_ms: 1000,
                ban_ms: 86_400_000,
                ..Config::default()
            },
            [0xfeed, 0xbeef],
        )
        .unwrap();
        let mut now = T0;
        let mut fresh = 0u32;
        let f: Vec<(&'static str, Box<dyn FnMut(u32) -> u32>)> = vec![
            ("warm16 (accept)", Box::new(move |i| { now += 1; black_box(warm.decide(addr(i & 15), local, now)).tokens_milli })),
            ("warm16, global on", Box::new(move |i| { now += 1; black_box(glob.decide(addr(i & 15), local, now)).tokens_milli })),
            ("reject16 (rate exceeded)", Box::new(move |i| { black_box(rej.decide(addr(i & 15), local, T0 + u64::from(i))).tokens_milli })),
            ("banned16 (auto ban)", Box::new(move |i| { black_box(banned.decide(addr(i & 15), local, T0 + u64::from(i))).tokens_milli })),
            ("cold (idle slot reused)", Box::new(move |_| { fresh = fresh.wrapping_add(1); black_box(cold.decide(addr(fresh), local, T0 + 100 * 10_000_000 + u64::from(fresh))).tokens_milli })),
        ];
        f
    }};
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    // `micro one <old|new> <case> <ops>`: one side, one case (for perf stat).
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("one") {
        let k: usize = args[3].parse().unwrap();
        let ops: u32 = args[4].parse().unwrap();
        let mut fs = if args[2] == "old" { cases!(old) } else { cases!(new) };
        let mut acc = 0u32;
        for i in 0..ops {
            acc = acc.wrapping_add((fs[k].1)(i));
        }
        println!("{acc}");
        return;
    }
    let rounds: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(31);
    const OPS: u32 = 200_000;
    let mut old = cases!(old);
    let mut new = cases!(new);
    let n = old.len();
    let mut t = vec![(Vec::new(), Vec::new()); n];
    for _ in 0..rounds {
        for k in 0..n {
            for (side, fs) in [(0, &mut old), (1, &mut new)] {
                let f = &mut fs[k].1;
                let s = Instant::now();
                let mut acc = 0u32;
                for i in 0..OPS {
                    acc = acc.wrapping_add(f(i));
                }
                black_box(acc);
                let ns = s.elapsed().as_nanos() as f64 / f64::from(OPS);
                if side == 0 { t[k].0.push(ns) } else { t[k].1.push(ns) }
            }
        }
    }
    println!("old = the base gate-core, new = this branch; median of {rounds} interleaved rounds of {OPS}");
    for k in 0..n {
        let (o, nw) = (median(&mut t[k].0), median(&mut t[k].1));
        println!("  {:<28} old {:6.1} ns  new {:6.1} ns  new/old {:5.3}", old[k].0, o, nw, nw / o);
    }
}
