//! The listener's life cycle and the basic decision path, end to end
//! against the simulated kernel and WSK provider.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)] // test code: std allocation is fine

mod common;
use common::*;
use gate_usersim::*;

#[test]
fn load_listen_decide_unload_clean() {
    let sim = Sim::new();
    let (driver, l) = start(
        &sim,
        &[
            ("Burst", RegValue::Dword(2)),
            ("ListenPort", RegValue::Dword(9000)),
        ],
    );
    assert_eq!(l.addr, addr("[::]:9000"));
    assert!(l.conditional_accept, "SO_CONDITIONAL_ACCEPT set");
    assert!(l.accept_event, "accept event enabled");
    assert!(!l.v6only, "dual-stack");
    let local = local_of(&l);
    let a = sim.connect(addr("10.0.0.1:1000"), local);
    let b = sim.connect(addr("10.0.0.1:1001"), local);
    let c = sim.connect(addr("10.0.0.1:1002"), local);
    assert_eq!(a.verdict(), Some(Verdict::Accept));
    assert_eq!(b.verdict(), Some(Verdict::Accept));
    assert_eq!(c.verdict(), Some(Verdict::Reject), "burst of 2 spent");
    assert_eq!(c.state(), RequestState::Rejected);
    // Another source has its own bucket.
    let d = sim.connect(addr("10.0.0.2:1000"), local);
    assert_eq!(d.verdict(), Some(Verdict::Accept));
    // The same IPv4 client arriving v4-mapped on the dual-stack listener
    // is the same key (its burst is spent); an IPv6 client has its own.
    let v6local = addr("[2001:db8::100]:9000");
    let mapped = sim.connect(addr("[::ffff:10.0.0.1]:1003"), v6local);
    assert_eq!(
        mapped.verdict(),
        Some(Verdict::Reject),
        "v4-mapped = IPv4 key"
    );
    let v6 = sim.connect(addr("[2001:db8::7]:1000"), v6local);
    assert_eq!(v6.verdict(), Some(Verdict::Accept));
    // Accepted connections are taken and closed by the worker.
    for r in [a, b, d, v6] {
        let conn = r.conn().expect("established");
        wait_for(
            "connection closed",
            std::time::Duration::from_secs(5),
            || conn.info().map(|i| i.state) == Some(SocketState::Closed),
        );
        assert_eq!(conn.info().unwrap().disconnected, Some(false), "graceful");
    }
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
    // ETW: every event conforms to the manifest; one per decision; the
    // life cycle is reported in order.
    let evs = checked_events(&sim);
    assert_eq!(count(&evs, "ConnectionAccepted"), 4);
    assert_eq!(count(&evs, "ConnectionRejected"), 2);
    let rejs: Vec<_> = evs
        .iter()
        .filter(|e| e.name == "ConnectionRejected")
        .collect();
    assert_eq!(
        rejs[1]
            .field("RemoteAddress")
            .and_then(|f| f.as_socket_addr()),
        Some(addr("10.0.0.1:1003")),
        "reported as the IPv4 address"
    );
    let rej = rejs[0];
    assert_eq!(
        rej.field("RemoteAddress").and_then(|f| f.as_socket_addr()),
        Some(addr("10.0.0.1:1002"))
    );
    assert_eq!(
        rej.u64("Reason"),
        Some(gate_core::Reason::RateExceeded as u64)
    );
    let order: Vec<&str> = evs
        .iter()
        .map(|e| e.name.as_str())
        .filter(|n| !n.starts_with("Connection"))
        // Without BackendAddress the worker says so once (RelayOff, issue
        // 12), at a moment of its own: checked apart.
        .filter(|n| *n != "RelayOff")
        .collect();
    assert_eq!(count(&evs, "RelayOff"), 1);
    // The worker starts inside DriverEntry, so ListenerUp may come before
    // or after DriverLoaded; everything else is in a fixed order.
    let mut start = order[..3].to_vec();
    start.sort_unstable();
    assert_eq!(order[0], "ConfigLoaded", "{order:?}");
    assert_eq!(
        start,
        ["ConfigLoaded", "DriverLoaded", "ListenerUp"],
        "{order:?}"
    );
    assert_eq!(
        order[3..],
        // The last Counters (issue 12): the final totals, at unload.
        [
            "DriverUnloading",
            "ListenerClosed",
            "ListenerDown",
            "Counters"
        ],
        "{order:?}"
    );
}
