//! How full the table gets before the full-table policy applies: inserts
//! distinct, all-active keys and reports the fill at the first eviction and
//! when 1% of inserts have evicted, plus bytes per tracked key.
//!
//! `cargo run --release -p gate-core --example fill`

use std::net::IpAddr;

use gate_core::{Config, Event, Gate, TICKS_PER_SEC};

fn main() {
    for log2 in [16u32, 20] {
        let cfg = Config {
            capacity: 1 << log2,
            rate_milli: 1, // one token per 1000 s: every key stays active
            burst: 1,
            ..Config::default()
        };
        let g: Gate = Gate::new(&cfg, [11, 12]).unwrap();
        let local: IpAddr = "198.51.100.1".parse().unwrap();
        let cap = cfg.capacity as u64;
        let mut first = None;
        let mut one_pct = None;
        for i in 0..cap {
            let a = IpAddr::from(((i as u32).wrapping_mul(2_654_435_761)).to_be_bytes());
            g.decide(a, local, 1000 * TICKS_PER_SEC + i);
            let ev = g.counters().event(Event::TableFull);
            if ev > 0 && first.is_none() {
                first = Some(i);
            }
            if ev * 100 > i && i > 1000 && one_pct.is_none() {
                one_pct = Some(i);
            }
        }
        let tracked = g.tracked_keys() as u64;
        println!(
            "capacity 2^{log2}: first eviction at {:.1}% fill, 1% of inserts evicting at {:.1}%; after {cap} inserts {tracked} tracked ({:.1}%), {:.2} bytes/slot, {:.2} bytes/tracked key",
            first.map_or(100.0, |f| f as f64 * 100.0 / cap as f64),
            one_pct.map_or(100.0, |f| f as f64 * 100.0 / cap as f64),
            tracked as f64 * 100.0 / cap as f64,
            g.memory_bytes() as f64 / cap as f64,
            g.memory_bytes() as f64 / tracked as f64,
        );
    }
}
