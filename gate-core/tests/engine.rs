//! Behaviour of the whole engine through its public API.

use core::net::IpAddr;
use gate_core::{
    Action, Cidr, Config, Event, Family, FullTablePolicy, Gate, Reason, NO_BUCKET, TICKS_PER_MS,
    TICKS_PER_SEC,
};

const SEC: u64 = TICKS_PER_SEC;
const T0: u64 = 1_000 * SEC;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn local() -> IpAddr {
    ip("198.51.100.1")
}

fn gate(cfg: Config) -> Gate {
    Gate::new(&cfg, [0x1234, 0x5678]).unwrap()
}

fn small(rate_milli: u64, burst: u32) -> Config {
    Config {
        capacity: 1024,
        shards: 4,
        rate_milli,
        burst,
        ..Config::default()
    }
}

#[test]
fn burst_then_rate_with_tokens_reported() {
    let g = gate(small(2000, 3)); // 2/s, burst 3
    let a = ip("192.0.2.1");
    let toks: Vec<u32> = (0..3)
        .map(|_| g.decide(a, local(), T0).tokens_milli)
        .collect();
    assert_eq!(toks, [2000, 1000, 0]);
    let d = g.decide(a, local(), T0);
    assert_eq!((d.action, d.reason), (Action::Reject, Reason::RateExceeded));
    // 0.25 s later: half a token; 0.5 s later: one.
    let d = g.decide(a, local(), T0 + SEC / 4);
    assert_eq!((d.action, d.tokens_milli), (Action::Reject, 500));
    let d = g.decide(a, local(), T0 + SEC / 2);
    assert_eq!(
        (d.action, d.reason, d.tokens_milli),
        (Action::Accept, Reason::WithinRate, 0)
    );
    // Another key is independent.
    assert_eq!(
        g.decide(ip("192.0.2.2"), local(), T0).action,
        Action::Accept
    );
}

#[test]
fn clock_going_back_never_creates_tokens() {
    let g = gate(small(1000, 1));
    let a = ip("192.0.2.1");
    assert_eq!(g.decide(a, local(), T0 + 10 * SEC).action, Action::Accept);
    // Much older readings: still empty.
    for back in [1, SEC, 5 * SEC, 10 * SEC] {
        let d = g.decide(a, local(), T0 + 10 * SEC - back);
        assert_eq!(d.action, Action::Reject, "back {back}");
    }
    // The bucket refills only from the latest time seen.
    assert_eq!(
        g.decide(a, local(), T0 + 10 * SEC + SEC - 1).action,
        Action::Reject
    );
    assert_eq!(g.decide(a, local(), T0 + 11 * SEC).action, Action::Accept);
}

#[test]
fn fractional_rate_half_per_second() {
    let g = gate(small(500, 1));
    let a = ip("192.0.2.1");
    let mut accepted = 0;
    for i in 0..100u64 {
        if g.decide(a, local(), T0 + i * SEC / 10).action == Action::Accept {
            accepted += 1;
        }
    }
    // 10 s at 0.5/s plus a burst of 1 (the first at T0): 1 + floor(9.9/2) = 5.
    assert_eq!(accepted, 5);
}

#[test]
fn ipv6_aggregates_by_64_and_mapped_counts_as_v4() {
    let g = gate(small(1000, 1));
    assert_eq!(
        g.decide(ip("2001:db8:0:1::1"), local(), T0).action,
        Action::Accept
    );
    let d = g.decide(ip("2001:db8:0:1:ffff::2"), local(), T0);
    assert_eq!(d.action, Action::Reject);
    assert_eq!(d.key.family(), Family::V6);
    assert_eq!(d.key.prefix_len(), 64);
    assert_eq!(
        g.decide(ip("2001:db8:0:2::1"), local(), T0).action,
        Action::Accept
    );
    assert_eq!(
        g.decide(ip("203.0.113.9"), local(), T0).action,
        Action::Accept
    );
    let d = g.decide(ip("::ffff:203.0.113.9"), local(), T0);
    assert_eq!((d.action, d.key.family()), (Action::Reject, Family::V4));
}

#[test]
fn configurable_prefixes() {
    let g = gate(Config {
        ipv4_prefix: 24,
        ipv6_prefix: 48,
        ..small(1000, 1)
    });
    assert_eq!(
        g.decide(ip("192.0.2.1"), local(), T0).action,
        Action::Accept
    );
    assert_eq!(
        g.decide(ip("192.0.2.200"), local(), T0).action,
        Action::Reject
    );
    assert_eq!(
        g.decide(ip("2001:db8:1:1::1"), local(), T0).action,
        Action::Accept
    );
    assert_eq!(
        g.decide(ip("2001:db8:1:ffff::1"), local(), T0).action,
        Action::Reject
    );
}

#[test]
fn allow_and_deny_lists() {
    let g = gate(Config {
        allow: vec![
            Cidr::parse("10.0.0.0/8").unwrap(),
            Cidr::parse("2001:db8::/32").unwrap(),
        ],
        deny: vec![
            Cidr::parse("10.66.0.0/16").unwrap(),
            Cidr::parse("192.0.2.13").unwrap(),
        ],
        ..small(1000, 1)
    });
    for _ in 0..50 {
        let d = g.decide(ip("10.1.2.3"), local(), T0);
        assert_eq!(
            (d.action, d.reason, d.tokens_milli),
            (Action::Accept, Reason::AllowListed, NO_BUCKET)
        );
        assert_eq!(
            g.decide(ip("2001:db8::5"), local(), T0).reason,
            Reason::AllowListed
        );
    }
    // Deny wins over allow, and is rejected even with tokens.
    let d = g.decide(ip("10.66.1.1"), local(), T0);
    assert_eq!((d.action, d.reason), (Action::Reject, Reason::DenyListed));
    assert_eq!(
        g.decide(ip("::ffff:192.0.2.13"), local(), T0).reason,
        Reason::DenyListed
    );
    let c = g.counters();
    assert_eq!(c.reason(Reason::AllowListed), 100);
    assert_eq!(c.reason(Reason::DenyListed), 2);
    // Lists take no table slots.
    assert_eq!(g.tracked_keys(), 0);
}

#[test]
fn observe_mode_accepts_but_counts_what_it_would_reject() {
    let g = gate(Config {
        observe: true,
        deny: vec![Cidr::parse("192.0.2.66").unwrap()],
        ..small(1000, 2)
    });
    let a = ip("192.0.2.1");
    let mut reasons = vec![];
    for _ in 0..5 {
        let d = g.decide(a, local(), T0);
        assert_eq!(d.action, Action::Accept);
        reasons.push((d.reason, d.observed));
    }
    assert_eq!(reasons[..2], [(Reason::WithinRate, None); 2]);
    assert_eq!(
        reasons[2..],
        [(Reason::ObserveWouldReject, Some(Reason::RateExceeded)); 3]
    );
    let d = g.decide(ip("192.0.2.66"), local(), T0);
    assert_eq!(
        (d.action, d.observed),
        (Action::Accept, Some(Reason::DenyListed))
    );
    let c = g.counters();
    assert_eq!(c.reason(Reason::ObserveWouldReject), 4);
    assert_eq!(c.observed(Reason::RateExceeded), 3);
    assert_eq!(c.observed(Reason::DenyListed), 1);
    assert_eq!(c.reason(Reason::RateExceeded), 0);
}

#[test]
fn global_bucket_caps_all_sources() {
    let g = gate(Config {
        global_rate_milli: 10_000, // 10/s over everyone
        global_burst: 5,
        ..small(1000, 10)
    });
    let mut acc = 0;
    let mut global = 0;
    for i in 0..20u8 {
        let d = g.decide(IpAddr::from([192, 0, 2, i]), local(), T0);
        match d.reason {
            Reason::WithinRate => acc += 1,
            Reason::GlobalLimit => global += 1,
            r => panic!("unexpected {r:?}"),
        }
    }
    assert_eq!((acc, global), (5, 15));
    // A key rejected by the global limit kept its own tokens: 10, minus this one.
    let d = g.decide(IpAddr::from([192, 0, 2, 19]), local(), T0 + SEC / 10);
    assert_eq!((d.reason, d.tokens_milli), (Reason::WithinRate, 9000));
}

#[test]
fn ban_after_threshold_for_duration() {
    let g = gate(Config {
        ban_threshold: 3,
        ban_window_ms: 10_000,
        ban_ms: 30_000,
        ..small(1000, 1)
    });
    let a = ip("192.0.2.1");
    assert_eq!(g.decide(a, local(), T0).action, Action::Accept);
    for _ in 0..3 {
        assert_eq!(g.decide(a, local(), T0).reason, Reason::RateExceeded);
    }
    assert_eq!(g.counters().event(Event::BanStarted), 1);
    // Banned even once tokens are back.
    let d = g.decide(a, local(), T0 + 20 * SEC);
    assert_eq!((d.action, d.reason), (Action::Reject, Reason::Banned));
    assert!(d.tokens_milli >= 1000);
    // Exactly 30 s from the rejection that started it.
    let d = g.decide(a, local(), T0 + 30 * SEC - 1);
    assert_eq!(d.reason, Reason::Banned);
    let d = g.decide(a, local(), T0 + 30 * SEC);
    assert_eq!((d.action, d.reason), (Action::Accept, Reason::WithinRate));
}

#[test]
fn pend_with_delay_done_and_abort() {
    let g = gate(Config {
        max_pending: 2,
        max_delay_ms: 600,
        ..small(2000, 1) // one token per 0.5 s
    });
    let a = ip("192.0.2.1");
    assert_eq!(g.decide(a, local(), T0).action, Action::Accept);
    let d = g.decide(a, local(), T0);
    assert_eq!((d.action, d.reason), (Action::Pend, Reason::PendDelayed));
    let p1 = d.pend.unwrap();
    assert_eq!(p1.at, T0 + SEC / 2);
    // Next token is 1 s away: beyond max_delay.
    let d = g.decide(a, local(), T0);
    assert_eq!((d.action, d.reason), (Action::Reject, Reason::RateExceeded));
    // Another key can still pend; a third cannot (budget 2).
    let b = ip("192.0.2.2");
    let c = ip("192.0.2.3");
    g.decide(b, local(), T0);
    let p2 = g.decide(b, local(), T0).pend.unwrap();
    g.decide(c, local(), T0);
    let d = g.decide(c, local(), T0);
    assert_eq!(
        (d.action, d.reason),
        (Action::Reject, Reason::PendBudgetSpent)
    );
    assert_eq!(g.counters().pends_outstanding, 2);
    // Done frees budget; done twice is refused.
    g.pend_done(p1.ticket).unwrap();
    assert!(g.pend_done(p1.ticket).is_err());
    // Abort returns b's reserved token: b may go again at T0 + 0.5 s instead of T0 + 1 s.
    g.pend_abort(p2.ticket).unwrap();
    assert!(g.pend_abort(p2.ticket).is_err());
    assert_eq!(g.decide(b, local(), T0 + SEC / 2).action, Action::Accept);
    let cn = g.counters();
    assert_eq!(cn.pends_outstanding, 0);
    assert_eq!(cn.event(Event::PendDone), 1);
    assert_eq!(cn.event(Event::PendAborted), 1);
    assert_eq!(cn.event(Event::StaleTicket), 2);
}

fn fill_and_flood(policy: FullTablePolicy) -> (Gate, Vec<Reason>) {
    // 1024 slots; each key takes its one token and stays active (rate 1/1000 s).
    let g = gate(Config {
        full_table: policy,
        ..small(1, 1)
    });
    let mut reasons = vec![];
    for i in 0..20_000u32 {
        let d = g.decide(
            IpAddr::from((0x0a00_0000u32 + i).to_be_bytes()),
            local(),
            T0 + u64::from(i),
        );
        reasons.push(d.reason);
    }
    (g, reasons)
}

#[test]
fn full_table_policies() {
    let (g, r) = fill_and_flood(FullTablePolicy::EvictLru);
    assert!(r.iter().all(|r| *r == Reason::WithinRate));
    let c = g.counters();
    assert!(c.event(Event::EvictedLru) > 15_000, "{c:?}");
    assert_eq!(c.event(Event::TableFull), c.event(Event::EvictedLru));
    assert!(
        g.tracked_keys() >= 1000,
        "table nearly full: {}",
        g.tracked_keys()
    );

    let (g, r) = fill_and_flood(FullTablePolicy::FailOpen);
    let full = r.iter().filter(|r| **r == Reason::TableFull).count() as u64;
    assert!(full > 15_000);
    assert_eq!(g.counters().event(Event::TableFull), full);
    assert_eq!(
        g.decide(ip("11.0.0.1"), local(), T0).action,
        g.decide(ip("11.0.0.1"), local(), T0).action
    );

    let (g, r) = fill_and_flood(FullTablePolicy::FailClosed);
    assert!(r.iter().filter(|r| **r == Reason::TableFull).count() > 15_000);
    // Keys already tracked are still served.
    let d = g.decide(ip("10.0.0.0"), local(), T0 + 2000 * SEC);
    assert_eq!(d.reason, Reason::WithinRate);
    let _ = g.counters();
}

#[test]
fn idle_keys_are_evicted_for_free() {
    // rate 1000/s: every bucket is full again 1 ms after its key's last take;
    // arrivals 2 ms apart, so every earlier key is idle when a new one comes.
    let g = gate(small(1_000_000, 1));
    for i in 0..8000u32 {
        let a = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
        let now = T0 + u64::from(i) * 2 * TICKS_PER_MS;
        assert_eq!(g.decide(a, local(), now).reason, Reason::WithinRate);
    }
    let c = g.counters();
    assert_eq!(c.event(Event::EvictedLru), 0, "{c:?}");
    assert_eq!(c.event(Event::TableFull), 0, "{c:?}");
    assert!(c.event(Event::EvictedIdle) > 6000, "{c:?}");
}

#[test]
fn memory_is_exactly_as_configured_and_40_bytes_a_key() {
    let cfg = Config {
        capacity: 1 << 20,
        shards: 64,
        max_pending: 1000,
        allow: vec![Cidr::parse("10.0.0.0/8").unwrap()],
        ..Config::default()
    };
    let g = gate(cfg.clone());
    assert_eq!(g.memory_bytes(), cfg.memory_bytes());
    assert_eq!(g.capacity(), 1 << 20);
    let per_key = cfg.table_bytes() as f64 / f64::from(cfg.capacity);
    assert!(per_key < 40.1, "{per_key}");
}

#[test]
fn counters_sum_to_decisions() {
    let g = gate(small(1000, 2));
    for i in 0..100u32 {
        g.decide(IpAddr::from([10, 0, (i % 7) as u8, 1]), local(), T0);
    }
    let c = g.counters();
    assert_eq!(c.decisions(), 100);
    assert_eq!(c.reason(Reason::WithinRate), 14);
    assert_eq!(c.reason(Reason::RateExceeded), 86);
}

#[test]
fn shared_across_threads() {
    let g = gate(small(1000, 5));
    std::thread::scope(|s| {
        for t in 0..2u8 {
            let g = &g;
            s.spawn(move || {
                for i in 0..1000u32 {
                    g.decide(IpAddr::from([10, t, (i % 50) as u8, 1]), local(), T0);
                }
            });
        }
    });
    let c = g.counters();
    assert_eq!(c.decisions(), 2000);
    assert_eq!(c.reason(Reason::WithinRate), 2 * 50 * 5);
}
