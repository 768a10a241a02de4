//! `cargo xtask demo`: fair clients and floods through gate-core, on a
//! simulated clock, checked against what the token-bucket model predicts.
//!
//! The scenario (60 simulated seconds, fixed seed, runs in well under a second):
//!
//! | group | who | traffic |
//! |---|---|---|
//! | fair | 5 clients | 2 SYN/s each (under the 5/s rate) the whole time |
//! | bursty | 2 clients | 7 SYN/s each (above the rate): pends, then rejects |
//! | allow-listed | 1 client | 50 SYN/s, on the allow list |
//! | deny-listed | 1 client | 1 SYN/s, on the deny list |
//! | botnet flood | 200 addresses | 20 SYN/s each from 20 s to 30 s: rate limit, then bans |
//! | spoofed flood | 20 000 never-seen addresses | one SYN each, 5000/s from 40 s to 44 s: only the global cap stops it |
//!
//! For each group the model gives an interval for accepted connections
//! (pends count once completed): per key `burst + rate x time`, the ban
//! arithmetic for the botnet, and the global bucket's `burst + rate x time`
//! for the spoofed flood. A group passes when the engine's figure is inside
//! its interval; the demo exits non-zero otherwise.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;

use anyhow::{bail, Result};
use gate_core::{
    Action, Cidr, Config, Event, FullTablePolicy, Gate, PendTicket, Reason, TICKS_PER_MS,
    TICKS_PER_SEC,
};

#[derive(clap::Args)]
pub struct Args {
    /// Seed for the arrival jitter and the gate's hash key.
    #[arg(long, default_value_t = 0x5eed_0f_9a7e)]
    seed: u64,
}

const SEC: u64 = TICKS_PER_SEC;
/// Simulated start (any origin works; not zero, to look like interrupt time).
const T0: u64 = 3_600 * SEC;
const DURATION_S: u64 = 60;

// The policy under test.
const RATE_MILLI: u64 = 5_000; // 5 connections/s per key
const BURST: u32 = 10;
const GLOBAL_RATE_MILLI: u64 = 2_000_000; // 2000/s over all sources
const GLOBAL_BURST: u32 = 4_000;
const BAN_THRESHOLD: u32 = 50;
const BAN_WINDOW_MS: u32 = 10_000;
const BAN_MS: u32 = 60_000;
const MAX_PENDING: u32 = 64;
const MAX_DELAY_MS: u32 = 250;

fn config() -> Result<Config> {
    let cidr = |s: &str| Cidr::parse(s).map_err(|e| anyhow::anyhow!("{s}: {e}"));
    Ok(Config {
        capacity: 1 << 14,
        shards: 16,
        ipv4_prefix: 32,
        ipv6_prefix: 64,
        rate_milli: RATE_MILLI,
        burst: BURST,
        global_rate_milli: GLOBAL_RATE_MILLI,
        global_burst: GLOBAL_BURST,
        full_table: FullTablePolicy::EvictLru,
        observe: false,
        ban_threshold: BAN_THRESHOLD,
        ban_window_ms: BAN_WINDOW_MS,
        ban_ms: BAN_MS,
        max_pending: MAX_PENDING,
        max_delay_ms: MAX_DELAY_MS,
        allow: vec![cidr("198.51.100.0/28")?],
        deny: vec![cidr("203.0.113.66")?],
        nat64_prefixes: Vec::new(),
    })
}

/// xorshift64*: deterministic jitter, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Group {
    Fair,
    Bursty,
    Allow,
    Deny,
    Botnet,
    Spoofed,
}

const GROUPS: [Group; 6] = [
    Group::Fair,
    Group::Bursty,
    Group::Allow,
    Group::Deny,
    Group::Botnet,
    Group::Spoofed,
];

impl Group {
    fn name(self) -> &'static str {
        match self {
            Group::Fair => "fair (5 x 2/s)",
            Group::Bursty => "bursty (2 x 7/s)",
            Group::Allow => "allow-listed (50/s)",
            Group::Deny => "deny-listed (1/s)",
            Group::Botnet => "botnet (200 x 20/s, 10 s)",
            Group::Spoofed => "spoofed (20000 new, 4 s)",
        }
    }
}

/// One SYN of the scenario.
#[derive(Clone, Copy)]
struct Arrival {
    at: u64,
    group: Group,
    addr: IpAddr,
}

/// A client sending at a steady rate with ±10 % jitter, between two times.
fn steady(
    out: &mut Vec<Arrival>,
    rng: &mut Rng,
    group: Group,
    addr: IpAddr,
    per_sec: u64,
    from: u64,
    to: u64,
) {
    let gap = SEC / per_sec;
    let mut t = from + rng.below(gap);
    while t < to {
        out.push(Arrival { at: t, group, addr });
        t += gap - gap / 10 + rng.below(gap / 5 + 1);
    }
}

fn scenario(rng: &mut Rng) -> Vec<Arrival> {
    let end = T0 + DURATION_S * SEC;
    let mut v = Vec::new();
    for i in 0..5u8 {
        steady(
            &mut v,
            rng,
            Group::Fair,
            IpAddr::from([192, 0, 2, 10 + i]),
            2,
            T0,
            end,
        );
    }
    // One bursty client over IPv4, one over IPv6 (aggregated by /64).
    steady(
        &mut v,
        rng,
        Group::Bursty,
        IpAddr::from([192, 0, 2, 20]),
        7,
        T0,
        end,
    );
    let v6: IpAddr = "2001:db8:20::21".parse().expect("literal address");
    steady(&mut v, rng, Group::Bursty, v6, 7, T0, end);
    steady(
        &mut v,
        rng,
        Group::Allow,
        IpAddr::from([198, 51, 100, 7]),
        50,
        T0,
        end,
    );
    steady(
        &mut v,
        rng,
        Group::Deny,
        IpAddr::from([203, 0, 113, 66]),
        1,
        T0,
        end,
    );
    for i in 0..200u32 {
        let a = IpAddr::from((0x6440_0000u32 + i * 7).to_be_bytes()); // 100.64.0.0/10
        steady(
            &mut v,
            rng,
            Group::Botnet,
            a,
            20,
            T0 + 20 * SEC,
            T0 + 30 * SEC,
        );
    }
    // Spoofed: 20 000 distinct sources (IPv4 from 10/8, every fourth an IPv6 /64).
    let start = T0 + 40 * SEC;
    for i in 0..20_000u64 {
        let r = rng.next();
        let addr = if i % 4 == 3 {
            IpAddr::from(
                ((0x2001_0db8_u128 << 96) | (u128::from(r as u32) << 64) | 1).to_be_bytes(),
            )
        } else {
            IpAddr::from((0x0a00_0000u32 | (r as u32 & 0x00ff_ffff)).to_be_bytes())
        };
        v.push(Arrival {
            at: start + i * SEC / 5_000,
            group: Group::Spoofed,
            addr,
        });
    }
    v.sort_by_key(|a| a.at);
    v
}

#[derive(Default, Clone)]
struct Tally {
    attempts: u64,
    accepted: u64,
    pended: u64,
    rejected: u64,
    reasons: [u64; gate_core::REASON_COUNT],
}

/// The model's interval for accepted + pended, with how it was derived.
struct Prediction {
    lo: u64,
    hi: u64,
    why: String,
}

/// Per key: accepted <= min(attempts, burst + rate x (span + max_delay)).
fn per_key_bound(attempts: u64, span_ticks: u64) -> u64 {
    let tokens = u64::from(BURST)
        + (span_ticks + u64::from(MAX_DELAY_MS) * TICKS_PER_MS) * RATE_MILLI / (1000 * SEC);
    attempts.min(tokens)
}

fn predict(group: Group, arrivals: &[Arrival], tallies: &[Tally]) -> Prediction {
    let mine: Vec<&Arrival> = arrivals.iter().filter(|a| a.group == group).collect();
    let attempts = mine.len() as u64;
    // Per address: attempts and time span.
    let mut per_addr: std::collections::BTreeMap<IpAddr, (u64, u64, u64)> = Default::default();
    for a in &mine {
        let e = per_addr.entry(a.addr).or_insert((0, a.at, a.at));
        e.0 += 1;
        e.2 = a.at;
    }
    match group {
        Group::Allow => Prediction {
            lo: attempts,
            hi: attempts,
            why: "allow list: every attempt".into(),
        },
        Group::Deny => Prediction {
            lo: 0,
            hi: 0,
            why: "deny list: none".into(),
        },
        Group::Fair | Group::Bursty => {
            let hi: u64 = per_addr
                .values()
                .map(|&(n, first, last)| per_key_bound(n, last - first))
                .sum();
            // Fair: under the rate, so only the global cap can refuse them,
            // and it is saturated only during the spoofed flood (40-44 s).
            // Bursty: pends catch each token as it comes (tolerance 2 %), less
            // the same global-cap window.
            let in_flood = mine
                .iter()
                .filter(|a| a.at >= T0 + 40 * SEC && a.at < T0 + 45 * SEC)
                .count() as u64;
            let lo = if group == Group::Fair {
                hi - in_flood
            } else {
                (hi - in_flood) * 98 / 100
            };
            Prediction {
                lo,
                hi,
                why: format!(
                    "per key min(attempts, {BURST} + {}/s x span); minus {in_flood} sent while the global cap was saturated{}",
                    RATE_MILLI / 1000,
                    if group == Group::Bursty { ", -2 %" } else { "" }
                ),
            }
        }
        Group::Botnet => {
            // Per key: after the burst, rejections grow at (a - rate)/s until
            // they reach the ban threshold at t_ban = (threshold + burst) / (a - rate);
            // accepted = burst + rate x t_ban. Tolerance 15 %.
            let keys = per_addr.len() as u64;
            let a = 20u64;
            let rate = RATE_MILLI / 1000;
            let t_ban_milli = (u64::from(BAN_THRESHOLD) + u64::from(BURST)) * 1000 / (a - rate);
            let per_key = u64::from(BURST) + rate * t_ban_milli / 1000;
            let mid = per_key * keys;
            Prediction {
                lo: mid * 85 / 100,
                hi: mid * 115 / 100,
                why: format!(
                    "banned after {BAN_THRESHOLD} rejections at t={}.{:03} s: {per_key}/key ±15 %",
                    t_ban_milli / 1000,
                    t_ban_milli % 1000
                ),
            }
        }
        Group::Spoofed => {
            // Every source is new (per-key buckets never bind); the global
            // bucket admits at most burst + rate x duration over everyone.
            let (first, last) = (
                mine.first().map_or(0, |a| a.at),
                mine.last().map_or(0, |a| a.at),
            );
            let cap = u64::from(GLOBAL_BURST) + (last - first) * GLOBAL_RATE_MILLI / (1000 * SEC);
            let others: u64 = arrivals
                .iter()
                .filter(|a| {
                    a.at >= first
                        && a.at <= last
                        && matches!(a.group, Group::Fair | Group::Bursty | Group::Botnet)
                })
                .count() as u64;
            let _ = tallies;
            Prediction {
                lo: cap.saturating_sub(others).min(attempts),
                hi: cap.min(attempts),
                why: format!(
                    "global {GLOBAL_BURST} + {}/s x {} ms, less the {others} other limited SYNs then",
                    GLOBAL_RATE_MILLI / 1000,
                    (last - first) / TICKS_PER_MS
                ),
            }
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let started = std::time::Instant::now();
    let cfg = config()?;
    let gate: Gate = Gate::new(&cfg, [args.seed, args.seed.rotate_left(32) ^ 0x9e37_79b9])
        .map_err(|e| anyhow::anyhow!("gate config: {e}"))?;
    let mut rng = Rng(args.seed | 1);
    let arrivals = scenario(&mut rng);
    let local: IpAddr = "192.0.2.1".parse().expect("literal address");

    let mut tallies = vec![Tally::default(); GROUPS.len()];
    // Pends to complete, earliest first: (at, ticket, group index).
    let mut pends: BinaryHeap<Reverse<(u64, u64, usize)>> = BinaryHeap::new();
    for a in &arrivals {
        while let Some(&Reverse((at, t, g))) = pends.peek() {
            if at > a.at {
                break;
            }
            pends.pop();
            gate.pend_done(PendTicket::from_u64(t))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            tallies[g].pended += 1;
        }
        let gi = GROUPS.iter().position(|g| *g == a.group).unwrap_or(0);
        let d = gate.decide(a.addr, local, a.at);
        let t = &mut tallies[gi];
        t.attempts += 1;
        t.reasons[d.reason as usize] += 1;
        match d.action {
            Action::Accept => t.accepted += 1,
            Action::Reject => t.rejected += 1,
            Action::Pend => {
                let p = d
                    .pend
                    .ok_or_else(|| anyhow::anyhow!("Pend without ticket"))?;
                pends.push(Reverse((p.at, p.ticket.to_u64(), gi)));
            }
        }
    }
    while let Some(Reverse((_, t, g))) = pends.pop() {
        gate.pend_done(PendTicket::from_u64(t))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        tallies[g].pended += 1;
    }

    println!(
        "gate-core demo: {} SYNs over {DURATION_S} simulated s; per key {}/s burst {BURST}; global {}/s burst {GLOBAL_BURST};",
        arrivals.len(),
        RATE_MILLI as f64 / 1000.0,
        GLOBAL_RATE_MILLI / 1000
    );
    println!(
        "ban after {BAN_THRESHOLD} rejections in {} s for {} s; pend up to {MAX_DELAY_MS} ms, {MAX_PENDING} at once; seed {:#x}\n",
        BAN_WINDOW_MS / 1000,
        BAN_MS / 1000,
        args.seed
    );
    println!(
        "{:<27} {:>8} {:>8} {:>7} {:>8}  {:>15}  {:<4}  main reasons",
        "group", "attempts", "accepted", "pended", "rejected", "model accepted", "ok"
    );
    let mut failed = Vec::new();
    let mut whys = Vec::new();
    for (g, t) in GROUPS.iter().zip(&tallies) {
        let p = predict(*g, &arrivals, &tallies);
        let got = t.accepted + t.pended;
        let ok = (p.lo..=p.hi).contains(&got);
        if !ok {
            failed.push(g.name());
        }
        let mut reasons: Vec<(u64, Reason)> = Reason::ALL
            .iter()
            .map(|r| (t.reasons[*r as usize], *r))
            .filter(|(n, _)| *n > 0)
            .collect();
        reasons.sort_by_key(|r| Reverse(r.0));
        let reasons: Vec<String> = reasons
            .iter()
            .take(3)
            .map(|(n, r)| format!("{}={n}", r.name()))
            .collect();
        let range = if p.lo == p.hi {
            format!("{}", p.lo)
        } else {
            format!("{}..{}", p.lo, p.hi)
        };
        println!(
            "{:<27} {:>8} {:>8} {:>7} {:>8}  {:>15}  {:<4}  {}",
            g.name(),
            t.attempts,
            t.accepted,
            t.pended,
            t.rejected,
            range,
            if ok { "PASS" } else { "FAIL" },
            reasons.join(" ")
        );
        whys.push(format!("  {:<27} {}", g.name(), p.why));
    }
    println!("\nmodel (accepted + pended must fall in the interval):");
    for w in &whys {
        println!("{w}");
    }

    // Global cap over every limited source, whole run.
    let limited: u64 = GROUPS
        .iter()
        .zip(&tallies)
        .filter(|(g, _)| **g != Group::Allow)
        .map(|(_, t)| t.accepted + t.pended)
        .sum();
    let global_cap = u64::from(GLOBAL_BURST) + DURATION_S * GLOBAL_RATE_MILLI / 1000;
    let global_ok = limited <= global_cap;
    println!(
        "  {:<27} {limited} accepted over all limited sources <= {global_cap} (global burst + rate x {DURATION_S} s): {}",
        "global cap",
        if global_ok { "PASS" } else { "FAIL" }
    );
    if !global_ok {
        failed.push("global cap");
    }

    let c = gate.counters();
    println!(
        "\ntable: {} slots, {} keys tracked at the end, {} bytes allocated ({:.1} bytes/slot; Config::memory_bytes() = {})",
        gate.capacity(),
        gate.tracked_keys(),
        gate.memory_bytes(),
        cfg.table_bytes() as f64 / gate.capacity() as f64,
        cfg.memory_bytes()
    );
    println!("counters by reason:");
    for r in Reason::ALL {
        println!("  {:<22} {:>8}", r.name(), c.reason(r));
    }
    println!("events:");
    for e in Event::ALL {
        println!("  {:<22} {:>8}", e.name(), c.event(e));
    }
    println!("  {:<22} {:>8}", "pends_outstanding", c.pends_outstanding);
    let elapsed = started.elapsed();
    println!("\nran in {:.0} ms", elapsed.as_secs_f64() * 1000.0);
    if !failed.is_empty() {
        bail!(
            "demo: the gate disagrees with the model for: {}",
            failed.join(", ")
        );
    }
    println!("all groups agree with the model");
    Ok(())
}
