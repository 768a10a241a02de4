//! What the operator sees must be true (issue 10, part 4).
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)] // test code: std allocation is fine

mod common;
use common::*;
use gate_driver::etw::CloseCause;
use gate_usersim::*;

fn pend_config() -> Vec<(&'static str, RegValue)> {
    vec![
        ("RateMilliPerSecond", RegValue::Dword(1000)),
        ("Burst", RegValue::Dword(1)),
        ("MaxPending", RegValue::Dword(8)),
        ("MaxPendDelayMs", RegValue::Dword(2000)),
    ]
}

/// Each ListenerClosed reports its own listener's cause and status: after
/// a forced close (0xC00000B6) and a re-created listener, the unload's
/// close reports Unload with status 0.
#[test]
fn listener_closed_reports_each_close_its_own_status() {
    let sim = Sim::new();
    let (driver, l) = start(&sim, &pend_config());
    let local = local_of(&l);
    sim.connect(addr("10.7.0.1:1"), local);
    let p = sim.connect(addr("10.7.0.1:2"), local);
    assert_eq!(p.verdict(), Some(Verdict::Pend));
    sim.force_close_next_inspect_complete();
    sim.advance_ms(1100);
    sim.quiesce();
    wait_new_listener(&sim, l.socket);
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
    let evs = checked_events(&sim);
    let closed: Vec<_> = evs.iter().filter(|e| e.name == "ListenerClosed").collect();
    assert_eq!(closed.len(), 2, "{closed:#?}");
    assert_eq!(
        closed[0].u64("Cause"),
        Some(CloseCause::FileForcedClosed as u64)
    );
    assert_eq!(
        closed[0].u64("Status"),
        Some(u64::from(gate_ksys::STATUS_FILE_FORCED_CLOSED as u32))
    );
    assert_eq!(closed[1].u64("Cause"), Some(CloseCause::Unload as u64));
    assert_eq!(closed[1].u64("Status"), Some(0), "unload: no status");
}

/// Connections the stack accepted but the driver declined (hand-off queue
/// full) are counted (Counters.Declined) and reported one by one
/// (ConnectionDeclined, verbose).
#[test]
fn declined_connections_are_counted_and_reported() {
    use gate_usersim::hold::{self, Hold, HoldAt, Routine};
    use std::time::Duration;
    let sim = Sim::new();
    let (driver, l) = start(&sim, &[("CountersIntervalMs", RegValue::Dword(1000))]);
    let local = local_of(&l);
    // Hold the worker at its next wait (after its counters timeout) so it
    // closes nothing meanwhile.
    hold::arm(Hold {
        routine: Routine::SystemThread,
        address: None,
        at: HoldAt::Import("KeWaitForSingleObject"),
    });
    sim.advance_ms(1100);
    assert!(hold::wait_held(Duration::from_secs(5)).is_some());
    let queue = gate_driver::state::ACCEPT_QUEUE;
    let extra = 10;
    for i in 0..(queue + extra) as u32 {
        let src = std::net::Ipv4Addr::from(0x0A09_0000 + i);
        sim.connect(std::net::SocketAddr::new(src.into(), 1000), local);
    }
    let s = gate_driver::entry::snapshot().unwrap();
    assert_eq!(s.stats.accept_queue_full, extra as u64);
    hold::release();
    let before = count(&sim.events(), "Counters");
    advance_until(&sim, 1100, 1000, "a Counters event", || {
        count(&sim.events(), "Counters") > before
    });
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
    let evs = checked_events(&sim);
    let declined: Vec<_> = evs
        .iter()
        .filter(|e| e.name == "ConnectionDeclined")
        .collect();
    assert_eq!(declined.len(), extra);
    assert_eq!(declined[0].u64("Queued"), Some(queue as u64));
    let c = evs.iter().rfind(|e| e.name == "Counters").unwrap();
    assert_eq!(c.u64("Declined"), Some(extra as u64));
    assert_eq!(c.u64("AcceptedSockets"), Some(queue as u64));
    // No BackendAddress: no relay runs, its figures are zero.
    assert_eq!(c.u64("RelaysActive"), Some(0));
    assert_eq!(c.u64("RelaysOpened"), Some(0));
}

/// A botnet getting its addresses banned reaches the Event Log as one
/// BansStarted summary per Counters interval (Operational channel), not one
/// event per ban: the counts add up with the Counters event, an interval
/// without a new ban writes none.
#[test]
fn a_botnet_triggering_bans_writes_one_bans_started_per_interval() {
    use gate_driver::etw::channel;
    let sim = Sim::new();
    let (driver, l) = start(
        &sim,
        &[
            ("CountersIntervalMs", RegValue::Dword(1000)),
            ("Burst", RegValue::Dword(1)),
            ("RateMilliPerSecond", RegValue::Dword(1000)),
            ("BanThreshold", RegValue::Dword(2)),
            ("BanWindowMs", RegValue::Dword(10_000)),
            ("BanMs", RegValue::Dword(600_000)),
        ],
    );
    let local = local_of(&l);
    let bots = 60u32;
    // Each bot sends 4 SYNs in the same instant: accepted, 2 rejected (the
    // ban starts), then rejected as banned.
    let flood = |round: u32| {
        for i in 0..bots {
            let src = std::net::Ipv4Addr::new(10, 20 + round as u8, i as u8, 1);
            for p in 0..4u16 {
                sim.connect(std::net::SocketAddr::new(src.into(), 1000 + p), local);
            }
        }
    };
    let interval = |n: usize| {
        advance_until(&sim, 1100, 1000, "a Counters event", || {
            count(&sim.events(), "Counters") >= n
        });
    };
    flood(0);
    interval(1);
    flood(1);
    interval(2);
    // No new ban in the third interval.
    interval(3);
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
    let evs = checked_events(&sim);
    let counters: Vec<_> = evs.iter().filter(|e| e.name == "Counters").collect();
    let bans: Vec<_> = evs.iter().filter(|e| e.name == "BansStarted").collect();
    assert_eq!(
        bans.len(),
        2,
        "one summary per interval with bans: {bans:?}"
    );
    for b in &bans {
        assert_eq!(b.channel, channel::OPERATIONAL);
    }
    let c0 = counters[0].u64("BanStartedEvents").unwrap();
    assert_eq!(c0, u64::from(bots), "every bot banned");
    assert_eq!(bans[0].u64("BansStarted"), Some(c0));
    assert_eq!(bans[0].u64("BansStartedTotal"), Some(c0));
    assert_eq!(bans[0].u64("BannedRejections"), counters[0].u64("Banned"));
    assert!(bans[0].u64("BannedRejections").unwrap() >= u64::from(bots));
    let c1 = counters[1].u64("BanStartedEvents").unwrap();
    assert_eq!(c1, 2 * u64::from(bots));
    assert_eq!(bans[1].u64("BansStarted"), Some(c1 - c0));
    assert_eq!(bans[1].u64("BansStartedTotal"), Some(c1));
    assert_eq!(
        bans[1].u64("BannedRejections"),
        Some(counters[1].u64("Banned").unwrap() - counters[0].u64("Banned").unwrap())
    );
}

/// The worker handles at most `CLOSES_PER_PASS` accepted connections per
/// pass of its loop, so a hand-off backlog does not delay the Counters
/// event (it came 3-12 s late under a flood when the worker drained the
/// whole queue first): with a full queue and the Counters period due, the
/// first Counters event is written after one pass's closes, the backlog
/// still queued.
#[test]
fn counters_stay_on_time_under_a_hand_off_backlog() {
    use gate_driver::listener::CLOSES_PER_PASS;
    use gate_driver::state::ACCEPT_QUEUE;
    use gate_usersim::hold::{self, Hold, HoldAt, Routine};
    use std::time::Duration;
    let sim = Sim::new();
    let (driver, l) = start(
        &sim,
        &[
            ("CountersIntervalMs", RegValue::Dword(1000)),
            // Closes counted as they are made (no background close).
            ("AbortiveClose", RegValue::Dword(1)),
        ],
    );
    let local = local_of(&l);
    // Hold the worker at its next wait, after its Counters event.
    hold::arm(Hold {
        routine: Routine::SystemThread,
        address: None,
        at: HoldAt::Import("KeWaitForSingleObject"),
    });
    sim.advance_ms(1100);
    assert!(hold::wait_held(Duration::from_secs(5)).is_some());
    for i in 0..ACCEPT_QUEUE as u32 {
        let src = std::net::Ipv4Addr::from(0x0A0B_0000 + i);
        sim.connect(std::net::SocketAddr::new(src.into(), 1000), local);
    }
    // The next Counters event is due when the worker goes on.
    sim.advance_ms(1100);
    let before = count(&sim.events(), "Counters");
    hold::release();
    wait_for("the Counters event", Duration::from_secs(5), || {
        count(&sim.events(), "Counters") > before
    });
    let evs = sim.events();
    let first = evs
        .iter()
        .filter(|e| e.name == "Counters")
        .nth(before)
        .unwrap();
    assert_eq!(first.u64("AcceptedSockets"), Some(ACCEPT_QUEUE as u64));
    assert_eq!(
        first.u64("ClosedSockets"),
        Some(CLOSES_PER_PASS as u64),
        "written after one pass, not after the whole backlog"
    );
    // The rest follows in the next passes, without waiting for a timeout.
    wait_for("the backlog closed", Duration::from_secs(5), || {
        gate_driver::entry::snapshot().unwrap().stats.closed_sockets == ACCEPT_QUEUE as u64
    });
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
    checked_events(&sim);
}

/// Counters keeps its period while the listener is down (review item 4):
/// the listener dies (NULL InspectID) and every re-creation fails (post-
/// accept, no memory for the Acceptor), so the worker only backs off —
/// up to `BACKOFF_MAX_MS` (30 s) per wait. Counters must still come about
/// once a second (`CountersIntervalMs` 1000), not once per back-off.
#[test]
fn counters_keep_coming_while_every_re_creation_fails() {
    let sim = Sim::new();
    let (driver, _l) = start(&sim, &[("CountersIntervalMs", RegValue::Dword(1000))]);
    let count = |sim: &Sim| sim.events().iter().filter(|e| e.name == "Counters").count();
    sim.set_conditional_accept_supported(false);
    sim.inject_pool_failures(0, 1_000_000);
    assert!(sim.null_inspect().is_some());
    let before = count(&sim);
    for _ in 0..600 {
        sim.advance_ms(100);
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    sim.quiesce();
    let down = count(&sim) - before;
    let recreations = sim
        .events()
        .iter()
        .filter(|e| e.name == "ListenerRecreated")
        .count();
    assert!(recreations >= 5, "the listener kept failing: {recreations}");
    // 60 s of virtual time at a 1 s period: about 60 (the worker may lag
    // virtual time a little on this shared host).
    assert!(
        (50..=61).contains(&down),
        "{down} Counters in 60 s with the listener down ({recreations} re-creations)"
    );
    sim.inject_pool_failures(0, 0);
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
}
