//! Property tests: the engine against a plain token-bucket reference model.
//!
//! The model is the textbook bucket (a credit in ticks, refilled by elapsed
//! time up to `burst * t`, a take costs `t`), independent of the engine's
//! GCRA form. Below capacity (no evictions, checked) the two must agree on
//! every decision and on the tokens reported, for any arrival sequence,
//! including clocks that step back. A second property checks the bound
//! the operator relies on: per key, accepted connections (pends counted at
//! their accept time) in any window of length `w` never exceed
//! `burst + rate * w`.

use std::collections::HashMap;
use std::net::IpAddr;

use gate_core::time::ticks_per_token;
use gate_core::{Action, Config, Event, Gate, Reason, TICKS_PER_SEC};
use proptest::prelude::*;

#[derive(Clone, Copy)]
struct ModelBucket {
    credit: u64,
    last: u64,
}

struct Model {
    t: u64,
    cap: u64,
    keys: HashMap<usize, ModelBucket>,
}

impl Model {
    fn new(rate_milli: u64, burst: u32) -> Model {
        let t = ticks_per_token(rate_milli).unwrap();
        Model {
            t,
            cap: t * u64::from(burst),
            keys: HashMap::new(),
        }
    }

    /// (accepted, tokens left in thousandths)
    fn decide(&mut self, key: usize, now: u64) -> (bool, u32) {
        let cap = self.cap;
        let b = self.keys.entry(key).or_insert(ModelBucket {
            credit: cap,
            last: now,
        });
        if now > b.last {
            b.credit = (b.credit + (now - b.last)).min(cap);
            b.last = now;
        }
        let ok = b.credit >= self.t;
        if ok {
            b.credit -= self.t;
        }
        let milli = (u128::from(b.credit) * 1000 / u128::from(self.t)) as u32;
        (ok, milli)
    }
}

fn addr(i: usize) -> IpAddr {
    if i.is_multiple_of(2) {
        IpAddr::from([10, 0, 0, i as u8])
    } else {
        IpAddr::from([0x2001, 0xdb8, 0, i as u16, 0, 0, 0, 1])
    }
}

fn local() -> IpAddr {
    "198.51.100.1".parse().unwrap()
}

/// (key index, time step in ticks, step back by this much for this one arrival)
fn arrivals() -> impl Strategy<Value = Vec<(usize, u64, u64)>> {
    prop::collection::vec(
        (
            0usize..12,
            prop_oneof![
                Just(0u64),
                0u64..TICKS_PER_SEC / 10,
                0u64..5 * TICKS_PER_SEC
            ],
            prop_oneof![4 => Just(0u64), 1 => 0u64..2 * TICKS_PER_SEC],
        ),
        1..400,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn engine_equals_model_below_capacity(
        rate_milli in prop_oneof![1u64..2_000, 1_000u64..100_000, Just(500u64), Just(3_000u64)],
        burst in 1u32..20,
        seq in arrivals(),
    ) {
        let cfg = Config { capacity: 1024, shards: 1, rate_milli, burst, ..Config::default() };
        let g: Gate = Gate::new(&cfg, [3, 4]).unwrap();
        let mut m = Model::new(rate_milli, burst);
        let mut t = 1_000 * TICKS_PER_SEC;
        for (k, dt, back) in seq {
            t += dt;
            let now = t - back;
            let d = g.decide(addr(k), local(), now);
            let (ok, milli) = m.decide(k, now);
            prop_assert_eq!(d.action == Action::Accept, ok, "key {} at {}", k, now);
            prop_assert_eq!(d.reason, if ok { Reason::WithinRate } else { Reason::RateExceeded });
            prop_assert_eq!(d.tokens_milli, milli);
        }
        let c = g.counters();
        prop_assert_eq!(c.event(Event::EvictedIdle) + c.event(Event::TableFull), 0);
    }

    #[test]
    fn accepted_never_exceed_burst_plus_rate_times_window(
        rate_milli in prop_oneof![1u64..2_000, 1_000u64..100_000],
        burst in 1u32..10,
        max_pending in 0u32..4,
        max_delay_ms in 1u32..3_000,
        abort_every in 1usize..5,
        seq in arrivals(),
    ) {
        let cfg = Config {
            capacity: 1024, shards: 1, rate_milli, burst, max_pending, max_delay_ms,
            ..Config::default()
        };
        let g: Gate = Gate::new(&cfg, [5, 6]).unwrap();
        let mut accepted: HashMap<usize, Vec<u64>> = HashMap::new();
        let mut latest: HashMap<usize, u64> = HashMap::new();
        let mut t = 1_000 * TICKS_PER_SEC;
        let mut pends = 0usize;
        for (k, dt, back) in seq {
            t += dt;
            let now = t - back;
            let eff = latest.entry(k).or_insert(now);
            *eff = (*eff).max(now);
            let eff = *eff;
            let d = g.decide(addr(k), local(), now);
            match d.action {
                Action::Accept => accepted.entry(k).or_default().push(eff),
                Action::Pend => {
                    let p = d.pend.unwrap();
                    prop_assert!(p.at > eff && p.at - eff <= u64::from(max_delay_ms) * 10_000);
                    pends += 1;
                    if pends.is_multiple_of(abort_every) {
                        g.pend_abort(p.ticket).unwrap();
                    } else {
                        g.pend_done(p.ticket).unwrap();
                        accepted.entry(k).or_default().push(p.at);
                    }
                }
                Action::Reject => {}
            }
        }
        for (k, mut times) in accepted {
            times.sort_unstable();
            for i in 0..times.len() {
                for j in i..times.len() {
                    let n = (j - i + 1) as u128;
                    let w = u128::from(times[j] - times[i]);
                    // n <= burst + rate * w, with rate = rate_milli / 1000 per second.
                    prop_assert!(
                        n * 10_000_000_000 <= u128::from(burst) * 10_000_000_000 + w * u128::from(rate_milli),
                        "key {}: {} accepts within {} ticks", k, n, w
                    );
                }
            }
        }
        prop_assert_eq!(g.counters().pends_outstanding, 0);
    }
}
