//! End to end through the tiny test driver: load, listen, inspect → accept,
//! unload clean.

mod common;
use common::*;
use gate_usersim::*;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[test]
fn load_listen_accept_unload_clean() {
    let sim = Sim::new();
    reset_globals();
    let driver = sim
        .load_driver(driver_entry, SERVICE_KEY)
        .expect("DriverEntry");
    let l = sim.wait_listener(Duration::from_secs(5)).expect("listener");
    assert_eq!(l.addr, v4("0.0.0.0:8080"));
    assert!(l.conditional_accept && l.accept_event);
    let req = sim.connect(v4("10.1.2.3:40000"), v4("192.0.2.1:8080"));
    assert_eq!(req.verdict(), Some(Verdict::Accept));
    assert_eq!(req.state(), RequestState::Established);
    assert_eq!(ACCEPT_CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(
        CALLBACK_IRQL_MASK.load(Ordering::SeqCst),
        1 << 2,
        "callbacks at DISPATCH_LEVEL"
    );
    let report = driver.unload(&sim);
    report.assert_clean();
    sim.assert_no_violations();
}
