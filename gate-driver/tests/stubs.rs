//! WSK calls that fail without completing their IRP, as Wine's netio stubs
//! do (Windows always completes the IRP of a call it was given). The
//! driver's synchronous calls must take the returned status as the answer
//! instead of waiting for a completion that never comes: no hang, the
//! connection still closed, nothing leaked.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)] // test code: std allocation is fine

mod common;
use common::*;
use gate_driver::entry::snapshot;
use gate_usersim::*;
use std::time::Duration;

const SEC: Duration = Duration::from_secs(5);

/// Connects and waits until the driver closed the connection; returns its
/// `disconnected` (None: WskDisconnect never took effect).
fn closed_by_driver(sim: &Sim, remote: &str, local: std::net::SocketAddr) -> Option<bool> {
    let r = sim.connect(addr(remote), local);
    assert_eq!(r.state(), RequestState::Established, "{remote}");
    let c = r.conn().expect("a connection socket");
    wait_for(&format!("the driver closing {remote}"), SEC, || {
        c.info().is_some_and(|i| i.state == SocketState::Closed)
    });
    c.info().unwrap().disconnected
}

fn disconnect_stub_with(abortive_close: u32) {
    let sim = Sim::new();
    sim.set_disconnect_supported(false);
    let (driver, l) = start(&sim, &[("AbortiveClose", RegValue::Dword(abortive_close))]);
    assert!(l.conditional_accept && l.accept_event);
    let local = local_of(&l);
    for i in 1..=3u16 {
        assert_eq!(
            closed_by_driver(&sim, &format!("10.30.0.{i}:1"), local),
            None,
            "AbortiveClose {abortive_close}: the stub did nothing, the close still happened"
        );
    }
    let stubbed = sim
        .wsk_log()
        .iter()
        .filter(|x| x.contains("WskDisconnect") && x.contains("stub"))
        .count();
    assert_eq!(stubbed, 3, "the driver called WskDisconnect each time");
    // The worker counts a close after WskCloseSocket returned.
    wait_for("3 closes counted", SEC, || {
        snapshot().unwrap().stats.closed_sockets == 3
    });
    let s = snapshot().unwrap();
    assert_eq!(s.stats.accepted_sockets, 3);
    assert_eq!(s.stats.closed_sockets, 3);
    // The worker is not stuck: the listener still decides, and unload ends.
    let r = sim.connect(addr("10.30.0.9:1"), local);
    assert_eq!(r.verdict(), Some(Verdict::Accept));
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
    assert_eq!(
        r.conn().unwrap().info().unwrap().state,
        SocketState::Closed,
        "closed at the latest by unload"
    );
}

#[test]
fn disconnect_that_never_completes_its_irp_does_not_hang_the_close() {
    disconnect_stub_with(0);
    disconnect_stub_with(1);
}

#[test]
fn post_accept_with_both_stubs_still_closes_refused_connections() {
    let sim = Sim::new();
    sim.set_conditional_accept_supported(false);
    sim.set_disconnect_supported(false);
    let (driver, l) = start(
        &sim,
        &[
            ("ListenAddress", RegValue::Sz("0.0.0.0".into())),
            ("Burst", RegValue::Dword(1)),
            ("RateMilliPerSecond", RegValue::Dword(1000)),
        ],
    );
    assert!(!l.conditional_accept);
    let local = local_of(&l);
    // Accepted, then refused (MaxPending 0: over rate is a reject): both
    // closed although neither disconnect did anything.
    assert_eq!(closed_by_driver(&sim, "10.31.0.1:1", local), None);
    assert_eq!(closed_by_driver(&sim, "10.31.0.1:2", local), None);
    // The worker counts a close after WskCloseSocket returned.
    wait_for("2 closes counted", SEC, || {
        snapshot().unwrap().stats.closed_sockets == 2
    });
    let s = snapshot().unwrap();
    assert_eq!(s.stats.inspects, 2);
    assert_eq!(s.stats.accepted_sockets, 1);
    assert_eq!(s.stats.closed_sockets, 2);
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
    let evs = checked_events(&sim);
    assert_eq!(count(&evs, "ConnectionAccepted"), 1);
    assert_eq!(count(&evs, "ConnectionRejected"), 1);
}
