//! The token-bucket model of the gate and `validate`: replays the scenario's
//! schedule (every attempt at its intended time) through per-key buckets
//! (`per_key_burst` capacity, `per_key_rate` refill, a new key starts full,
//! keys are addresses cut to the prefix length) and an optional global bucket,
//! and compares each group's expected accepted count with a report.
//!
//! An attempt is accepted when both its key's bucket and the global bucket
//! hold a whole token; both then lose one. A refused attempt costs nothing.
//! For one key sending faster than its rate this gives the familiar
//! `burst + rate x time`, capped overall by `global_burst + global_rate x time`.

use crate::addrs::prefix_key;
use crate::report::Report;
use crate::scenario::{GateConfig, Scenario};
use anyhow::{bail, Result};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Write as _;

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    last_ns: u64,
}

impl Bucket {
    fn full(burst: f64, now: u64) -> Self {
        Bucket {
            tokens: burst,
            last_ns: now,
        }
    }
    fn refill(&mut self, now: u64, rate: f64, burst: f64) {
        let dt = now.saturating_sub(self.last_ns) as f64 / 1e9;
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.last_ns = now;
    }
}

/// Expected accepted attempts per group, in scenario order.
pub fn expected_accepted(sc: &Scenario, gate: &GateConfig) -> Vec<u64> {
    expected_accepted_per_second(sc, gate)
        .iter()
        .map(|g| g.iter().sum())
        .collect()
}

/// Expected accepted attempts per group (scenario order) and per second of
/// intended start (index 0 = the run's first second), as drawn over the
/// observed counts by [`crate::plot`].
pub fn expected_accepted_per_second(sc: &Scenario, gate: &GateConfig) -> Vec<Vec<u64>> {
    let mut out = vec![Vec::<u64>::new(); sc.groups.len()];
    let mut keys: HashMap<(bool, u128), Bucket> = HashMap::new();
    let gburst = gate.global_burst.or(gate.global_rate).unwrap_or(0.0);
    let mut global: Option<Bucket> = None;
    let mut heap: BinaryHeap<Reverse<(u64, usize, u64)>> = BinaryHeap::new();
    for (gi, g) in sc.groups.iter().enumerate() {
        heap.push(Reverse((g.intended_ns(0), gi, 0)));
    }
    while let Some(Reverse((t, gi, i))) = heap.pop() {
        let Some(g) = sc.groups.get(gi) else { continue };
        if i + 1 < g.count {
            heap.push(Reverse((g.intended_ns(i + 1), gi, i + 1)));
        }
        let key = prefix_key(g.source(i), gate.ipv4_prefix, gate.ipv6_prefix);
        let b = keys
            .entry(key)
            .or_insert_with(|| Bucket::full(gate.per_key_burst, t));
        b.refill(t, gate.per_key_rate, gate.per_key_burst);
        let global_ok = match gate.global_rate {
            None => true,
            Some(rate) => {
                let gb = global.get_or_insert_with(|| Bucket::full(gburst, t));
                gb.refill(t, rate, gburst);
                gb.tokens >= 1.0
            }
        };
        if b.tokens >= 1.0 && global_ok {
            b.tokens -= 1.0;
            if let Some(gb) = global.as_mut() {
                gb.tokens -= 1.0;
            }
            if let Some(o) = out.get_mut(gi) {
                let sec = usize::try_from(t / 1_000_000_000).unwrap_or(usize::MAX);
                if o.len() <= sec {
                    o.resize(sec + 1, 0);
                }
                if let Some(c) = o.get_mut(sec) {
                    *c += 1;
                }
            }
        }
    }
    out
}

/// One group's verdict.
#[derive(Clone, Debug)]
pub struct GroupVerdict {
    pub name: String,
    pub expected: u64,
    pub observed: u64,
    pub allowed_error: u64,
    pub pass: bool,
}

/// Compares `report` with the model of `sc`'s gate.
pub fn validate(sc: &Scenario, report: &Report) -> Result<Vec<GroupVerdict>> {
    let Some(gate) = &sc.gate else {
        bail!(
            "scenario {:?} has no [gate] section: nothing to validate against",
            sc.name
        );
    };
    let exp = expected_accepted(sc, gate);
    let mut out = Vec::new();
    for (g, e) in sc.groups.iter().zip(exp) {
        let Some(r) = report.group(&g.name) else {
            bail!("report has no group {:?} of scenario {:?}", g.name, sc.name);
        };
        let allowed = (e as f64 * sc.tolerance.relative).ceil() as u64 + sc.tolerance.absolute;
        let observed = r.counts.accepted;
        out.push(GroupVerdict {
            name: g.name.clone(),
            expected: e,
            observed,
            allowed_error: allowed,
            pass: observed.abs_diff(e) <= allowed,
        });
    }
    Ok(out)
}

/// A readable table of verdicts.
pub fn verdict_table(v: &[GroupVerdict]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "  {:<16} {:>9} {:>9} {:>8} {:>9}  verdict",
        "group", "expected", "observed", "ratio", "allowed±"
    );
    for g in v {
        let ratio = if g.expected == 0 {
            if g.observed == 0 {
                1.0
            } else {
                f64::INFINITY
            }
        } else {
            g.observed as f64 / g.expected as f64
        };
        let _ = writeln!(
            s,
            "  {:<16} {:>9} {:>9} {:>8.3} {:>9}  {}",
            g.name,
            g.expected,
            g.observed,
            ratio,
            g.allowed_error,
            if g.pass { "PASS" } else { "FAIL" }
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc(extra_gate: &str, groups: &str) -> Scenario {
        Scenario::parse(&format!(
            "name='m'\n[gate]\nper_key_rate = 10\nper_key_burst = 5\n{extra_gate}\n{groups}"
        ))
        .unwrap()
    }

    #[test]
    fn one_key_gets_burst_plus_rate_times_time() {
        // 100/s for 2 s from one address: 200 attempts at t = 0..1.99 s.
        let s = sc(
            "",
            "[[group]]\nname='a'\nsources='127.0.0.2'\nrate=100\nduration_s=2",
        );
        let e = expected_accepted(&s, s.gate.as_ref().unwrap());
        // burst 5 + 10/s x 1.99 s = 24.9 -> 24 whole tokens spent.
        assert_eq!(e, vec![24]);
    }

    #[test]
    fn slow_sources_are_all_accepted_and_prefix_merges_keys() {
        let s = sc(
            "",
            "[[group]]\nname='a'\nsources='127.0.0.0/29'\nrate_per_source=5\nduration_s=2",
        );
        assert_eq!(expected_accepted(&s, s.gate.as_ref().unwrap()), vec![60]);
        // One /24 key for all six addresses: 30/s offered, 10/s + 5 allowed.
        let s = sc(
            "ipv4_prefix = 24",
            "[[group]]\nname='a'\nsources='127.0.0.0/29'\nrate_per_source=5\nduration_s=2",
        );
        let e = expected_accepted(&s, s.gate.as_ref().unwrap())[0];
        assert!((24..=25).contains(&e), "{e}");
    }

    #[test]
    fn global_cap_limits_many_keys() {
        let s = sc(
            "global_rate = 50\nglobal_burst = 10",
            "[[group]]\nname='a'\nsources='127.1.0.0/16'\nrate=1000\nduration_s=1\nchurn=true",
        );
        let e = expected_accepted(&s, s.gate.as_ref().unwrap())[0];
        // 10 + 50 x 0.999 s
        assert!((59..=60).contains(&e), "{e}");
    }

    #[test]
    fn per_second_expectation_sums_to_the_total() {
        // One key at 100/s for 2 s: by the last attempt of second 0 (0.99 s)
        // it has had 5 + 10 x 0.99 = 14.9 tokens, so 14 there and the other
        // 10 of its 24 in second 1.
        let s = sc(
            "",
            "[[group]]\nname='a'\nsources='127.0.0.2'\nrate=100\nduration_s=2",
        );
        let ps = expected_accepted_per_second(&s, s.gate.as_ref().unwrap());
        assert_eq!(ps, vec![vec![14, 10]]);
    }
}
