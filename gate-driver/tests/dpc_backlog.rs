//! Issue 10 §3, third session: a backlog of due pends beyond one timer DPC
//! run is completed by the listener worker at PASSIVE_LEVEL, not by DPC
//! runs queued back to back at DISPATCH_LEVEL.
//!
//! The pends are made due at once by moving the virtual clock; the clock
//! then stands still while the worker (real time) drains, so any timer DPC
//! run counted meanwhile is the driver's own doing. The sim counts DPC runs
//! per routine ([`hold::timings`]); each run completes at most
//! `MAX_PER_DPC`, so the worker completed everything else.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)] // test code

mod common;

use common::*;
use gate_driver::entry::with_running;
use gate_driver::pending::{BACKLOG_RECHECK_MS, MAX_PER_DPC};
use gate_usersim::hold::{self, Hold, HoldAt, Routine};
use gate_usersim::*;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

const N: u32 = 4096;
/// Deadline groups: group g is pended g ms after group 0, so its deadline
/// is g ms later; all groups fall within one `BACKLOG_RECHECK_MS`.
const GROUPS: u32 = 4;

fn src(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8))
}

/// Loads the driver with room for `N` pends of 1 s each (one key per
/// request: its burst of 1 is spent, then it pends for 1 s).
fn load(sim: &Sim) -> (Driver, SocketAddr) {
    sim.set_event_window(200_000);
    let (d, l) = start(
        sim,
        &[
            ("RateMilliPerSecond", RegValue::Dword(1000)),
            ("Burst", RegValue::Dword(1)),
            ("MaxPending", RegValue::Dword(N)),
            ("MaxPendDelayMs", RegValue::Dword(60_000)),
            ("Ipv4PrefixLength", RegValue::Dword(32)),
            ("TableCapacity", RegValue::Dword(1 << 16)),
        ],
    );
    (d, local_of(&l))
}

/// Pends `N` requests in `GROUPS` groups 1 ms apart. Returns them and, by
/// inspect key, each one's group.
fn pend_groups(sim: &Sim, local: SocketAddr) -> (Vec<Request>, HashMap<u64, u32>) {
    let per = N / GROUPS;
    let mut reqs = Vec::with_capacity(N as usize);
    let mut group = HashMap::new();
    for g in 0..GROUPS {
        for j in 0..per {
            let i = g * per + j;
            sim.connect(SocketAddr::new(src(i), 1000), local);
            let r = sim.connect(SocketAddr::new(src(i), 1001), local);
            assert_eq!(r.verdict(), Some(Verdict::Pend), "request {i}");
            group.insert(r.id().Key as u64, g);
            reqs.push(r);
        }
        sim.advance_ms(1);
    }
    (reqs, group)
}

/// Timer DPC runs so far (every DPC routine of the driver: only the
/// pending table's timer queues one without a relay).
fn dpc_runs() -> u64 {
    hold::timings()
        .iter()
        .filter(|(k, _)| k.0 == Routine::Dpc)
        .map(|(_, t)| t.runs)
        .sum()
}

fn completions() -> u64 {
    with_running(|d| d.stats.snapshot().completions).expect("running")
}

fn backlog() -> bool {
    with_running(|d| d.pending.has_backlog()).expect("running")
}

/// The longest subsequence of `v` that never decreases.
fn longest_non_decreasing(v: &[u32]) -> usize {
    // Patience sorting with upper bounds (values are small).
    let mut tails: Vec<u32> = Vec::new();
    for &x in v {
        let at = tails.partition_point(|&t| t <= x);
        if at == tails.len() {
            tails.push(x);
        } else {
            tails[at] = x;
        }
    }
    tails.len()
}

/// The PendCompleted events: (inspect key, action, status).
fn pend_completed(sim: &Sim) -> Vec<(u64, u64, u64)> {
    checked_events(sim)
        .iter()
        .filter(|e| e.name == "PendCompleted")
        .map(|e| {
            (
                e.u64("InspectKey").unwrap(),
                e.u64("Action").unwrap(),
                e.u64("Status").unwrap(),
            )
        })
        .collect()
}

/// Moves the clock to group 0's deadline plus `GROUPS - 1` ms: every
/// request due, no `BACKLOG_RECHECK_MS` re-check reached.
fn make_all_due(sim: &Sim) {
    // Group g was pended at start + g ms (the clock then moved GROUPS ms).
    sim.advance_ms(1000 - 1);
    const { assert!((GROUPS as u64) < BACKLOG_RECHECK_MS) };
}

#[test]
fn a_backlog_is_completed_by_the_worker_in_deadline_order() {
    let sim = Sim::new();
    let (driver, local) = load(&sim);
    let (reqs, group) = pend_groups(&sim, local);
    let (runs0, done0) = (dpc_runs(), completions());
    make_all_due(&sim);
    // The clock stands still from here: only the worker can finish.
    wait_for("every pend completed", Duration::from_secs(60), || {
        completions() - done0 == u64::from(N)
    });
    sim.quiesce();
    let runs = dpc_runs() - runs0;
    // One DPC run per group deadline at most (a group's timer fires only
    // if the worker had finished the earlier ones); each run completes at
    // most MAX_PER_DPC: the worker completed the rest.
    assert!(
        (1..=u64::from(GROUPS)).contains(&runs),
        "{runs} DPC runs for {N} due pends"
    );
    let by_dpc = runs as usize * MAX_PER_DPC;
    assert!(by_dpc * 100 < N as usize, "the worker did most");
    assert!(!backlog(), "backlog cleared once drained");
    for r in &reqs {
        assert!(
            !matches!(r.state(), RequestState::Pended | RequestState::Inspecting),
            "{:?} left pended",
            r.id()
        );
    }
    let done = pend_completed(&sim);
    assert_eq!(done.len(), N as usize);
    let accept = gate_core::Action::Accept as u64;
    assert!(done.iter().all(|&(_, a, st)| a == accept && st == 0));
    // Deadline order: the completions' groups never go back, except for
    // the DPC runs' few, which may overlap the worker's.
    let groups: Vec<u32> = done.iter().map(|(k, _, _)| group[k]).collect();
    let in_order = longest_non_decreasing(&groups);
    assert!(
        in_order + by_dpc >= groups.len(),
        "completions out of deadline order: {in_order} of {} in order",
        groups.len()
    );
    assert_eq!(with_running(|d| d.pending.in_use()), Some(0));
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

/// Holds the listener worker at its next wait (after it took up the
/// backlog); returns the completions made by then.
fn hold_worker_mid_backlog(sim: &Sim) -> u64 {
    hold::arm(Hold {
        routine: Routine::SystemThread,
        address: None,
        at: HoldAt::Import("KeWaitForSingleObject"),
    });
    make_all_due(sim);
    assert!(
        hold::wait_held(Duration::from_secs(20)).is_some(),
        "worker never held"
    );
    sim.quiesce();
    completions()
}

#[test]
fn a_held_up_worker_does_not_strand_the_backlog() {
    let sim = Sim::new();
    let (driver, local) = load(&sim);
    let (_reqs, _) = pend_groups(&sim, local);
    let done0 = completions();
    let held_at = hold_worker_mid_backlog(&sim);
    assert!(held_at - done0 < u64::from(N), "backlog left");
    assert!(backlog());
    // The worker is stuck: the timer re-checks every BACKLOG_RECHECK_MS,
    // one DPC run (MAX_PER_DPC completions) each.
    let runs0 = dpc_runs();
    for _ in 0..5 {
        sim.advance_ms(BACKLOG_RECHECK_MS);
        sim.quiesce();
    }
    assert_eq!(dpc_runs() - runs0, 5);
    assert_eq!(completions() - held_at, 5 * MAX_PER_DPC as u64);
    hold::release();
    wait_for(
        "the worker drains the rest",
        Duration::from_secs(60),
        || completions() - done0 == u64::from(N),
    );
    sim.quiesce();
    assert_eq!(pend_completed(&sim).len(), N as usize);
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn unload_while_the_worker_drains_a_backlog_is_clean() {
    let sim = Sim::new();
    let (driver, local) = load(&sim);
    let (reqs, _) = pend_groups(&sim, local);
    let done0 = completions();
    let held_at = hold_worker_mid_backlog(&sim);
    assert!(backlog());
    let accepted_before = held_at - done0;
    assert!(accepted_before < u64::from(N));
    let report = std::thread::scope(|s| {
        let t = s.spawn(|| driver.unload(&sim));
        // DriverUnload waits for the worker, which is held mid-backlog.
        std::thread::sleep(Duration::from_millis(20));
        assert!(!hold::unloaded(), "unload returned with the worker held");
        hold::release();
        t.join().expect("unload")
    });
    report.assert_clean();
    sim.assert_no_violations();
    // Every request was answered once: accepted before unload, rejected
    // by unload's stop (the listener still worked).
    let done = pend_completed(&sim);
    assert_eq!(done.len(), N as usize);
    let accept = gate_core::Action::Accept as u64;
    let accepted = done.iter().filter(|&&(_, a, _)| a == accept).count() as u64;
    assert!(accepted >= accepted_before && accepted < u64::from(N));
    for r in &reqs {
        assert!(!matches!(
            r.state(),
            RequestState::Pended | RequestState::Inspecting
        ));
    }
}

/// The listener dies mid-backlog (`kill`): nothing more is issued on it,
/// the rest is dropped (tokens back), every slot is freed, and a new
/// listener comes up.
fn listener_death_mid_backlog(kill: impl FnOnce(&Sim)) {
    let sim = Sim::new();
    let (driver, local) = load(&sim);
    let old = sim.listeners()[0].socket;
    let (_reqs, _) = pend_groups(&sim, local);
    let done0 = completions();
    let held_at = hold_worker_mid_backlog(&sim);
    assert!(held_at - done0 < u64::from(N));
    kill(&sim);
    hold::release();
    let _new = wait_new_listener(&sim, old);
    sim.quiesce();
    wait_for("every slot freed", Duration::from_secs(20), || {
        with_running(|d| d.pending.in_use()) == Some(0)
    });
    // Nothing was issued after the death was handled: the completions are
    // the ones made before the worker was let go, plus at most the
    // DPC runs' that raced with it.
    let issued = completions() - done0;
    assert!(issued < u64::from(N), "{issued} issued");
    assert!(!backlog());
    assert_eq!(pend_completed(&sim).len() as u64, issued);
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn null_inspect_id_mid_backlog_is_clean() {
    listener_death_mid_backlog(|sim| {
        assert!(sim.null_inspect().is_some());
    });
}

#[test]
fn forced_close_mid_backlog_is_clean() {
    listener_death_mid_backlog(|sim| {
        // The next WskInspectComplete (a re-check DPC run's) reports the
        // listener forcibly closed.
        sim.force_close_next_inspect_complete();
        sim.advance_ms(BACKLOG_RECHECK_MS);
        sim.quiesce();
    });
}
