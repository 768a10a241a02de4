//! Review of c254a43 (issue 10 §3, DPC backlog to the worker): two
//! measurements of limits the review found, kept `#[ignore]`d because
//! what they count depends on the simulation's thread timing (the
//! simulation delivers WskAcceptEvent and IRP completions on its own
//! threads), so a strict bound would be a flaky test. Run with
//! `cargo test -p gate-driver --test dpc_review -- --ignored --nocapture`.
//! Both were reduced, not removed: the worker's slice is now what one pass
//! hands over (16, was 64), and a drain stops at the next batch once the
//! listener is reported dead. See docs/sessions/2026-11-29/issue-10.md,
//! "Third session".
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)] // test code

mod common;

use common::*;
use gate_driver::entry::with_running;
use gate_usersim::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

const N: u32 = 4096;

fn src(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8))
}

/// Suspected defect: the worker completes up to WORKER_SLICE (64) backlog
/// pends per pass but hands over / closes only CLOSES_PER_PASS (16)
/// accepted connections per pass, so during a backlog the accepted queue
/// (ACCEPT_QUEUE = 256) fills and WskAcceptEvent declines connections the
/// gate itself just accepted (STATUS_REQUEST_NOT_ACCEPTED: the client is
/// reset after its SYN was admitted). Every pend completed with Accept
/// should reach the worker as an accepted connection.
#[test]
#[ignore = "a measurement: declines depend on the simulation's accept-event timing (see the module doc)"]
fn backlog_drain_does_not_overflow_the_accept_queue() {
    let sim = Sim::new();
    sim.set_event_window(200_000);
    let (driver, l) = start(
        &sim,
        &[
            ("RateMilliPerSecond", RegValue::Dword(1000)),
            ("Burst", RegValue::Dword(1)),
            ("MaxPending", RegValue::Dword(N)),
            ("MaxPendDelayMs", RegValue::Dword(60_000)),
            ("Ipv4PrefixLength", RegValue::Dword(32)),
            ("TableCapacity", RegValue::Dword(1 << 16)),
        ],
    );
    let local = local_of(&l);
    for i in 0..N {
        sim.connect(SocketAddr::new(src(i), 1000), local);
        let r = sim.connect(SocketAddr::new(src(i), 1001), local);
        assert_eq!(r.verdict(), Some(Verdict::Pend), "request {i}");
    }
    // Let the first connections (burst) be taken before the backlog.
    wait_for(
        "burst accepted and handled",
        Duration::from_secs(20),
        || with_running(|d| d.accepted.lock().is_empty()).unwrap_or(false),
    );
    let s0 = with_running(|d| d.stats.snapshot()).expect("running");
    sim.advance_ms(1000);
    wait_for("every pend completed", Duration::from_secs(60), || {
        with_running(|d| d.stats.snapshot().completions).unwrap_or(0) - s0.completions
            == u64::from(N)
    });
    sim.quiesce();
    wait_for("accepted queue drained", Duration::from_secs(20), || {
        with_running(|d| d.accepted.lock().is_empty()).unwrap_or(false)
    });
    let s = with_running(|d| d.stats.snapshot()).expect("running");
    let declined = s.accept_queue_full - s0.accept_queue_full;
    let accepted = s.accepted_sockets - s0.accepted_sockets;
    eprintln!("accepted {accepted}, declined (accept queue full) {declined}");
    assert_eq!(
        declined, 0,
        "{declined} of {N} connections the gate accepted were declined at WskAcceptEvent \
         (accept queue full) while the worker drained the backlog"
    );
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

/// Suspected defect (low): once a WskInspectComplete of the worker's slice
/// reports STATUS_FILE_FORCED_CLOSED (the listener is dead), the worker
/// goes on issuing the rest of its WORKER_SLICE (up to 63 more calls) on
/// the dead listener: `complete_due` checks only `open`, which stays true
/// until `stop`. dpc_backlog.rs's listener_death_mid_backlog says "nothing
/// more is issued on it". Expected: the slice stops at the batch that saw
/// the death (at most BATCH = 8 calls on the dead socket). Observed 72 and
/// 200 calls: where the FORCED_CLOSED comes in the IRP's completion rather
/// than as the call's return, `listener_dead()` is only seen after it, so
/// more than one slice can go out (the old back-to-back DPCs issued all of
/// them; this is an improvement, not a regression).
#[test]
#[ignore = "a measurement: calls after the death depend on when the simulation completes the IRP (see the module doc)"]
fn forced_close_stops_the_worker_slice() {
    use gate_usersim::hold::{self, Hold, HoldAt, Routine};
    let sim = Sim::new();
    sim.set_event_window(200_000);
    let (driver, l) = start(
        &sim,
        &[
            ("RateMilliPerSecond", RegValue::Dword(1000)),
            ("Burst", RegValue::Dword(1)),
            ("MaxPending", RegValue::Dword(N)),
            ("MaxPendDelayMs", RegValue::Dword(60_000)),
            ("Ipv4PrefixLength", RegValue::Dword(32)),
            ("TableCapacity", RegValue::Dword(1 << 16)),
        ],
    );
    let local = local_of(&l);
    let old = sim.listeners()[0].socket;
    for i in 0..N {
        sim.connect(SocketAddr::new(src(i), 1000), local);
        let r = sim.connect(SocketAddr::new(src(i), 1001), local);
        assert_eq!(r.verdict(), Some(Verdict::Pend), "request {i}");
    }
    let completions = || with_running(|d| d.stats.snapshot().completions).expect("running");
    let done0 = completions();
    // Hold the worker at its next wait once it has taken up the backlog.
    hold::arm(Hold {
        routine: Routine::SystemThread,
        address: None,
        at: HoldAt::Import("KeWaitForSingleObject"),
    });
    sim.advance_ms(1000);
    assert!(hold::wait_held(Duration::from_secs(20)).is_some());
    sim.quiesce();
    let held_at = completions();
    assert!(held_at - done0 < u64::from(N));
    assert!(with_running(|d| d.pending.has_backlog()).unwrap_or(false));
    // The worker's next WskInspectComplete reports the listener dead.
    sim.force_close_next_inspect_complete();
    hold::release();
    let _new = wait_new_listener(&sim, old);
    sim.quiesce();
    let after_death = completions() - held_at;
    eprintln!("WskInspectComplete calls from the death on: {after_death}");
    assert!(
        after_death <= 8,
        "{after_death} WskInspectComplete calls issued by the worker's slice on a listener \
         already reported dead (STATUS_FILE_FORCED_CLOSED)"
    );
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
}
