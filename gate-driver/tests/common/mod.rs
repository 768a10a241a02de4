//! Shared helpers for the driver's simulation tests: registry paths, a
//! loader that writes the Parameters values first, and small waits.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)] // test code: std allocation is fine
#![allow(dead_code)]

use gate_usersim::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The service key DriverEntry receives.
pub const SERVICE_KEY: &str = r"\Registry\Machine\System\CurrentControlSet\Services\gate";
/// Its Parameters subkey (the driver's configuration).
pub const PARAMS: &str = r"\Registry\Machine\System\CurrentControlSet\Services\gate\Parameters";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Writes `values` under Parameters, loads the driver and waits for its
/// listener.
pub fn start(sim: &Sim, values: &[(&str, RegValue)]) -> (Driver, ListenerInfo) {
    for (n, v) in values {
        sim.registry_set(PARAMS, n, v.clone());
    }
    let d = sim
        .load_driver(gate_driver::DriverEntry, SERVICE_KEY)
        .expect("DriverEntry");
    let l = sim.wait_listener(Duration::from_secs(5)).expect("listener");
    (d, l)
}

/// The address clients connect to (the listener's port on 192.0.2.1).
pub fn local_of(l: &ListenerInfo) -> SocketAddr {
    SocketAddr::new("192.0.2.1".parse().unwrap(), l.addr.port())
}

/// Moves the virtual clock by `ms` and waits (real time) for `cond`, a
/// condition on events the worker writes when a timed wait of its ends
/// (a Counters event). The worker computes its wait's relative timeout from
/// the clock just before it waits; if the clock moves in between, the wait
/// counts from after the move and ends only `period_ms` later, a time the
/// test would never reach (seen once in CI: "timed out waiting for a
/// Counters event"). So, if `cond` is not met within 3 s, the clock is
/// moved by one more period, at most twice: what the event reports is the
/// same, only later.
pub fn advance_until(
    sim: &Sim,
    ms: u64,
    period_ms: u64,
    what: &str,
    mut cond: impl FnMut() -> bool,
) {
    sim.advance_ms(ms);
    for nudge in 0..=2 {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(3) {
            if cond() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if nudge < 2 {
            sim.advance_ms(period_ms);
        }
    }
    panic!(
        "timed out waiting for {what} (with the clock moved {ms} ms and twice {period_ms} ms more)"
    );
}

/// Waits (real time) for `cond`, giving the driver's worker thread time.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits for a listener other than `old` to be open and bound, moving the
/// virtual clock so the worker's back-off ends.
pub fn wait_new_listener(sim: &Sim, old: usize) -> ListenerInfo {
    let t = Instant::now();
    loop {
        if let Some(l) = sim
            .listeners()
            .into_iter()
            .find(|l| l.socket != old && l.state == SocketState::Open)
        {
            return l;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "no new listener");
        sim.advance_ms(10);
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Every captured event conforms to the manifest (etw-manifest's check)
/// and comes from the gate's provider; returns them.
pub fn checked_events(sim: &Sim) -> Vec<gate_usersim::etw::CapturedEvent> {
    let evs = sim.events();
    for e in &evs {
        if let Err(why) = etw_manifest::check_captured(e) {
            panic!("event does not conform to the manifest: {why}");
        }
    }
    evs
}

/// How many captured events have this name.
pub fn count(evs: &[gate_usersim::etw::CapturedEvent], name: &str) -> usize {
    evs.iter().filter(|e| e.name == name).count()
}

/// Decision events (accepted + rejected + pended).
pub fn decisions(evs: &[gate_usersim::etw::CapturedEvent]) -> usize {
    count(evs, "ConnectionAccepted")
        + count(evs, "ConnectionRejected")
        + count(evs, "ConnectionPended")
}
