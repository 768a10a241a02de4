//! Fuzzes configuration and arrival sequences: `Gate::new` must return an
//! error (never panic) for a bad configuration, and for a good one no
//! sequence of decisions, pend completions and aborts may panic or break
//! the invariants checked below.
//!
//! `cargo +nightly fuzz run decide` (from gate-core/).
#![no_main]

use std::net::IpAddr;

use arbitrary::Arbitrary;
use gate_core::{Action, Cidr, Config, FullTablePolicy, Gate, PendTicket, NO_BUCKET};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct FuzzConfig {
    capacity_log2: u8,
    shards_log2: u8,
    ipv4_prefix: u8,
    ipv6_prefix: u8,
    rate_milli: u64,
    burst: u32,
    global_rate_milli: u64,
    global_burst: u32,
    policy: u8,
    observe: bool,
    ban_threshold: u32,
    ban_window_ms: u32,
    ban_ms: u32,
    max_pending: u16,
    max_delay_ms: u32,
    allow: Vec<([u8; 16], bool, u8)>,
    deny: Vec<([u8; 16], bool, u8)>,
    nat64: Vec<([u8; 16], bool, u8)>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Decide {
        addr: [u8; 16],
        v6: bool,
        dt: u32,
        back: u32,
    },
    Done(u8),
    Abort(u8),
    Stale(u64),
}

#[derive(Arbitrary, Debug)]
struct Input {
    seed: [u64; 2],
    config: FuzzConfig,
    ops: Vec<Op>,
}

fn addr(b: [u8; 16], v6: bool) -> IpAddr {
    if v6 {
        IpAddr::from(b)
    } else {
        IpAddr::from([b[0], b[1], b[2], b[3] & 0x0f])
    }
}

fn cidrs(v: &[([u8; 16], bool, u8)]) -> Vec<Cidr> {
    v.iter()
        .take(64)
        .filter_map(|(b, v6, len)| Cidr::new(addr(*b, *v6), *len).ok())
        .collect()
}

fuzz_target!(|input: Input| {
    let f = &input.config;
    let cfg = Config {
        // Keep tables small so runs are fast; validation still sees odd values.
        capacity: 1u32
            .checked_shl(u32::from(f.capacity_log2 % 14))
            .unwrap_or(0),
        shards: 1u32.checked_shl(u32::from(f.shards_log2 % 12)).unwrap_or(0),
        ipv4_prefix: f.ipv4_prefix,
        ipv6_prefix: f.ipv6_prefix,
        rate_milli: f.rate_milli,
        burst: f.burst,
        global_rate_milli: f.global_rate_milli,
        global_burst: f.global_burst,
        full_table: FullTablePolicy::from_u8(f.policy % 3).unwrap_or(FullTablePolicy::EvictLru),
        observe: f.observe,
        ban_threshold: f.ban_threshold,
        ban_window_ms: f.ban_window_ms,
        ban_ms: f.ban_ms,
        max_pending: u32::from(f.max_pending),
        max_delay_ms: f.max_delay_ms,
        allow: cidrs(&f.allow),
        deny: cidrs(&f.deny),
        nat64_prefixes: cidrs(&f.nat64),
    };
    let valid = cfg.validate().is_ok();
    let gate: Gate = match Gate::new(&cfg, input.seed) {
        Ok(g) => g,
        Err(_) => {
            assert!(!valid, "a valid config was refused");
            return;
        }
    };
    assert_eq!(gate.memory_bytes(), cfg.memory_bytes());
    let local: IpAddr = "192.0.2.1".parse().unwrap();
    let mut t: u64 = 1 << 40;
    let mut tickets: Vec<PendTicket> = Vec::new();
    let mut decisions = 0u64;
    for op in input.ops.iter().take(2000) {
        match *op {
            Op::Decide {
                addr: a,
                v6,
                dt,
                back,
            } => {
                t = t.saturating_add(u64::from(dt));
                let now = t.saturating_sub(u64::from(back));
                let d = gate.decide(addr(a, v6), local, now);
                decisions += 1;
                assert!(
                    d.tokens_milli == NO_BUCKET
                        || u64::from(d.tokens_milli) <= u64::from(cfg.burst) * 1000
                );
                match (d.action, d.pend) {
                    (Action::Pend, Some(p)) => {
                        assert!(p.at > now);
                        tickets.push(p.ticket);
                    }
                    (Action::Pend, None) => panic!("Pend without ticket"),
                    (_, Some(_)) => panic!("ticket without Pend"),
                    _ => {}
                }
                if cfg.observe {
                    assert_ne!(d.action, Action::Reject, "observe mode rejected");
                }
            }
            Op::Done(i) | Op::Abort(i) if !tickets.is_empty() => {
                let k = usize::from(i) % tickets.len();
                let tk = tickets.swap_remove(k);
                let r = if matches!(op, Op::Done(_)) {
                    gate.pend_done(tk)
                } else {
                    gate.pend_abort(tk)
                };
                assert!(r.is_ok(), "outstanding ticket refused");
                assert!(gate.pend_done(tk).is_err(), "ticket accepted twice");
            }
            Op::Done(_) | Op::Abort(_) => {}
            Op::Stale(v) => {
                let tk = PendTicket::from_u64(v);
                if !tickets.contains(&tk) {
                    assert!(gate.pend_abort(tk).is_err());
                }
            }
        }
    }
    let c = gate.counters();
    assert_eq!(c.decisions(), decisions);
    assert_eq!(c.pends_outstanding, tickets.len() as u64);
});
