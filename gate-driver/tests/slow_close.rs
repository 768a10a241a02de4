//! Graceful closes in the background (issue 10, part 4): a peer that never
//! finishes a graceful disconnect (`Sim::set_slow_peer_close`) must not
//! stall the listener worker: the listener is re-created, the Counters event
//! stays on time, the close is given up at `CloseTimeoutMs` (the socket
//! closed over the pending disconnect), at most 32 closes are in flight,
//! and unload neither waits for the peer nor leaves anything behind.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)] // test code: std allocation is fine

mod common;
use common::*;
use gate_driver::closer::CLOSES_IN_FLIGHT;
use gate_driver::entry::snapshot;
use gate_usersim::*;
use std::time::Duration;

const SEC: Duration = Duration::from_secs(5);

fn slow_start(sim: &Sim, close_timeout_ms: u32) -> (Driver, ListenerInfo) {
    sim.set_slow_peer_close(true);
    start(
        sim,
        &[
            ("CloseTimeoutMs", RegValue::Dword(close_timeout_ms)),
            ("CountersIntervalMs", RegValue::Dword(1000)),
        ],
    )
}

fn stats() -> gate_driver::state::StatsSnapshot {
    snapshot().expect("driver running").stats
}

fn counters_events(sim: &Sim) -> usize {
    count(&sim.events(), "Counters")
}

#[test]
fn slow_peers_do_not_stall_recovery_or_counters_and_finish_gracefully() {
    let sim = Sim::new();
    let (driver, l) = slow_start(&sim, 60_000);
    let local = local_of(&l);
    let reqs: Vec<Request> = (1..=3)
        .map(|i| sim.connect(addr(&format!("10.40.0.{i}:1")), local))
        .collect();
    for r in &reqs {
        assert_eq!(r.state(), RequestState::Established);
    }
    wait_for("3 graceful disconnects pending", SEC, || {
        sim.pending_disconnects() == 3
    });
    assert_eq!(stats().closed_sockets, 0, "no close finished yet");

    // The listener dies: the worker re-creates it although 3 closes wait
    // for their peers (a synchronous close would hold it forever).
    assert!(sim.null_inspect().is_some());
    let l2 = wait_new_listener(&sim, l.socket);
    assert_ne!(l2.socket, l.socket);
    assert_eq!(sim.pending_disconnects(), 3, "still waiting for the peers");

    // Counters on time: one per period while the closes wait.
    let before = counters_events(&sim);
    for n in 1..=3 {
        sim.advance_ms(1000);
        wait_for(&format!("Counters #{n} on time"), SEC, || {
            counters_events(&sim) >= before + n
        });
    }
    assert_eq!(sim.pending_disconnects(), 3);

    // The peers finish: each close completes gracefully.
    assert_eq!(sim.finish_disconnects(), 3);
    wait_for("3 closes counted", SEC, || stats().closed_sockets == 3);
    assert_eq!(stats().graceful_closes_aborted, 0);
    for r in &reqs {
        let i = r.conn().unwrap().info().unwrap();
        assert_eq!(i.state, SocketState::Closed);
        assert_eq!(i.disconnected, Some(false), "graceful");
    }
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
    let evs = checked_events(&sim);
    let last = evs.iter().rev().find(|e| e.name == "Counters").unwrap();
    assert_eq!(last.u64("GracefulClosesAborted"), Some(0));
}

#[test]
fn a_close_past_its_deadline_is_aborted_and_unload_does_not_wait_for_the_peer() {
    let sim = Sim::new();
    let (driver, l) = slow_start(&sim, 2000);
    let local = local_of(&l);
    let slow = sim.connect(addr("10.41.0.1:1"), local);
    wait_for("a graceful disconnect pending", SEC, || {
        sim.pending_disconnects() == 1
    });
    sim.advance_ms(1000);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(sim.pending_disconnects(), 1, "not before its deadline");
    assert_eq!(stats().closed_sockets, 0);
    sim.advance_ms(1000);
    wait_for("the close given up at its deadline", SEC, || {
        stats().graceful_closes_aborted == 1 && stats().closed_sockets == 1
    });
    assert_eq!(
        sim.pending_disconnects(),
        0,
        "closing completed the disconnect"
    );
    assert_eq!(
        slow.conn().unwrap().info().unwrap().state,
        SocketState::Closed
    );

    // Another slow peer, then unload at once: no wait for the peer.
    let last = sim.connect(addr("10.41.0.2:1"), local);
    wait_for("a graceful disconnect pending", SEC, || {
        sim.pending_disconnects() == 1
    });
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
    assert_eq!(sim.pending_disconnects(), 0);
    assert_eq!(
        last.conn().unwrap().info().unwrap().state,
        SocketState::Closed
    );
    checked_events(&sim);
}

#[test]
fn at_most_32_closes_in_flight_the_next_is_closed_abortively() {
    let sim = Sim::new();
    let (driver, l) = slow_start(&sim, 600_000);
    let local = local_of(&l);
    let extra = 3;
    let n = CLOSES_IN_FLIGHT + extra;
    let mut reqs = Vec::new();
    for i in 0..n {
        reqs.push(sim.connect(addr(&format!("10.42.{}.{}:1", i / 200, 1 + i % 200)), local));
        // One at a time, so which ones overflow is known.
        wait_for("the worker handled it", SEC, || {
            sim.pending_disconnects() + stats().closed_sockets as usize == i + 1
        });
    }
    assert_eq!(sim.pending_disconnects(), CLOSES_IN_FLIGHT);
    assert_eq!(stats().closed_sockets, extra as u64);
    assert_eq!(stats().graceful_closes_aborted, extra as u64);
    for r in &reqs[CLOSES_IN_FLIGHT..] {
        let i = r.conn().unwrap().info().unwrap();
        assert_eq!(i.state, SocketState::Closed);
        assert_eq!(i.disconnected, Some(true), "abortive: the pool was full");
    }
    // A slot frees when its peer finishes: graceful again.
    sim.finish_disconnects();
    wait_for("all closed", SEC, || stats().closed_sockets == n as u64);
    let r = sim.connect(addr("10.43.0.1:1"), local);
    wait_for("graceful again", SEC, || sim.pending_disconnects() == 1);
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
    assert_eq!(r.conn().unwrap().info().unwrap().state, SocketState::Closed);
}

#[test]
fn wine_style_disconnect_stub_with_graceful_close_still_closes_at_once() {
    // Wine's WskDisconnect returns STATUS_NOT_IMPLEMENTED without touching
    // the IRP: the close must not wait for a completion that never comes.
    let sim = Sim::new();
    sim.set_disconnect_supported(false);
    let (driver, l) = slow_start(&sim, 600_000);
    let local = local_of(&l);
    let r = sim.connect(addr("10.44.0.1:1"), local);
    wait_for("closed", SEC, || stats().closed_sockets == 1);
    assert_eq!(stats().graceful_closes_aborted, 0);
    assert_eq!(r.conn().unwrap().info().unwrap().state, SocketState::Closed);
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
}
