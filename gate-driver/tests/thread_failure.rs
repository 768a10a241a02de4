//! PsCreateSystemThread can fail (issue 10): DriverEntry's worker and the
//! relay's worker are the driver's two threads. Without the listener worker
//! DriverEntry returns the error with nothing left behind (WSK
//! deregistered, state freed, ETW unregistered: any later call would be
//! code after a failed DriverEntry); without the relay worker the gate
//! runs, closes the connections it cannot relay, and unloads cleanly.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)] // test code: std allocation is fine

mod common;
use common::*;
use gate_ksys::STATUS_INSUFFICIENT_RESOURCES;
use gate_usersim::*;
use std::time::Duration;

#[test]
fn no_worker_thread_refuses_the_start_with_nothing_left_behind() {
    let sim = Sim::new();
    sim.fail_thread_creations(0, 1);
    let r = sim.load_driver(gate_driver::DriverEntry, SERVICE_KEY);
    assert_eq!(r.err(), Some(STATUS_INSUFFICIENT_RESOURCES));
    let leaks = sim.leaks();
    assert!(leaks.is_clean(), "{leaks:#?}");
    assert_eq!(leaks.wsk_registrations, 0);
    assert_eq!(leaks.threads_running, 0);
    assert!(sim.listeners().is_empty(), "no listener without a worker");
    assert!(sim
        .debug_output()
        .iter()
        .any(|l| l.text.contains("worker thread failed")));
    // The driver can start again once threads can be created.
    let d = sim
        .load_driver(gate_driver::DriverEntry, SERVICE_KEY)
        .expect("second start");
    assert!(sim.wait_listener(Duration::from_secs(5)).is_some());
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn no_relay_thread_runs_the_gate_without_relay_and_unloads_cleanly() {
    let sim = Sim::new();
    let backend = addr("10.9.0.1:9000");
    sim.backend_listen(backend, BackendMode::Accept);
    // The listener worker starts, the relay worker (the second thread) fails.
    sim.fail_thread_creations(1, 1);
    let (driver, l) = start(
        &sim,
        &[("BackendAddress", RegValue::Sz("10.9.0.1:9000".into()))],
    );
    assert!(sim
        .debug_output()
        .iter()
        .any(|x| x.text.contains("relay worker failed")));
    assert!(gate_driver::relay::snapshot().is_none(), "no relay runs");
    let c = sim
        .connect(addr("10.50.0.1:1"), local_of(&l))
        .conn()
        .expect("accepted");
    wait_for("the connection closed", Duration::from_secs(5), || {
        c.info().is_some_and(|i| i.state == SocketState::Closed)
    });
    assert!(sim.backend_conns(backend).is_empty(), "nothing relayed");
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
}
