//! Post-accept mode on a stack without conditional accept: the simulated
//! WskControlSocket(SO_CONDITIONAL_ACCEPT) behaves like Wine 8's stub
//! (STATUS_NOT_IMPLEMENTED, IRP not completed). The driver must not hang on
//! that IRP, must still bring its listener up (in post-accept mode), and
//! must decide on every connection the stack accepted: refused ones closed
//! abortively, pends accepted at once.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)] // test code: std allocation is fine

mod common;
use common::*;
use gate_core::{Event, Reason};
use gate_driver::entry::snapshot;
use gate_usersim::*;
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(5);

/// ListenerModeMap value of post-accept mode.
const POST_ACCEPT: u64 = 1;

/// Connects from `remote` and waits until the driver has closed the
/// connection the stack accepted; returns Some(abortive) from its
/// WskDisconnect.
fn connect_and_wait_closed(sim: &Sim, remote: &str, local: std::net::SocketAddr) -> Option<bool> {
    let r = sim.connect(addr(remote), local);
    assert_eq!(r.verdict(), None, "no inspect without conditional accept");
    assert_eq!(r.state(), RequestState::Established, "{remote}");
    let c = r.conn().expect("the stack made a connection socket");
    wait_for(&format!("the driver closing {remote}"), SEC, || {
        c.info().is_some_and(|i| i.state == SocketState::Closed)
    });
    let i = c.info().unwrap();
    assert!(i.owned_by_driver, "{remote}: delivered through WskAccept");
    i.disconnected
}

#[test]
fn without_conditional_accept_the_driver_decides_after_accepting() {
    for mode in [
        CompletionMode::Async,
        CompletionMode::Inline,
        CompletionMode::Alternate,
    ] {
        decides_after_accepting(mode);
    }
}

fn decides_after_accepting(mode: CompletionMode) {
    let sim = Sim::new();
    sim.set_completion_mode(mode);
    sim.set_conditional_accept_supported(false);
    let (driver, l) = start(
        &sim,
        &[
            // As a Wine run must (Wine cannot bind the dual-stack [::]).
            ("ListenAddress", RegValue::Sz("0.0.0.0".into())),
            ("RateMilliPerSecond", RegValue::Dword(1000)),
            ("Burst", RegValue::Dword(1)),
            ("MaxPending", RegValue::Dword(8)),
            ("MaxPendDelayMs", RegValue::Dword(1500)),
        ],
    );
    assert!(!l.conditional_accept, "the stub did not set it");
    assert!(!l.accept_event, "post-accept mode uses WskAccept");
    assert_eq!(l.addr, addr(&format!("0.0.0.0:{}", l.addr.port())));
    assert!(sim
        .wsk_log()
        .iter()
        .any(|x| x.contains("SO_CONDITIONAL_ACCEPT") && x.contains("Wine stub")));
    let local = local_of(&l);

    // Within rate: accepted, then closed gracefully (AbortiveClose 0).
    assert_eq!(
        connect_and_wait_closed(&sim, "10.20.0.1:1", local),
        Some(false)
    );
    // Over rate, next token due in 1 s (<= MaxPendDelayMs): gate-core says
    // pend; an established connection cannot wait, so it is accepted at
    // once and its pend completed.
    assert_eq!(
        connect_and_wait_closed(&sim, "10.20.0.1:2", local),
        Some(false)
    );
    let s = snapshot().unwrap();
    assert_eq!(s.gate.event(Event::PendDone), 1);
    assert_eq!(s.gate.pends_outstanding, 0);
    assert_eq!(s.pending_in_use, 0, "no WskInspectComplete pend slot used");
    // Over rate, next token 2 s away (> MaxPendDelayMs): rejected, and the
    // accepted connection is reset (abortive disconnect).
    assert_eq!(
        connect_and_wait_closed(&sim, "10.20.0.1:3", local),
        Some(true)
    );
    // Another source has its own bucket.
    assert_eq!(
        connect_and_wait_closed(&sim, "10.20.0.2:1", local),
        Some(false)
    );

    // The worker counts a close after WskCloseSocket returned.
    wait_for("4 closes counted", SEC, || {
        snapshot().unwrap().stats.closed_sockets == 4
    });
    let s = snapshot().unwrap();
    assert_eq!(s.stats.inspects, 4, "one decision per accepted connection");
    assert_eq!(s.stats.accepted_sockets, 3);
    assert_eq!(s.stats.closed_sockets, 4);
    assert_eq!(s.stats.completions, 0, "no WskInspectComplete");
    assert_eq!(s.stats.listeners_up, 1);
    assert_eq!(s.gate.reason(Reason::WithinRate), 2);
    assert_eq!(s.gate.reason(Reason::PendDelayed), 1);
    assert_eq!(s.gate.reason(Reason::RateExceeded), 1);

    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
    let evs = checked_events(&sim);
    let up: Vec<_> = evs.iter().filter(|e| e.name == "ListenerUp").collect();
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].u64("Mode"), Some(POST_ACCEPT));
    assert_eq!(up[0].u64("Port"), Some(u64::from(l.addr.port())));
    assert_eq!(count(&evs, "ConnectionAccepted"), 3, "the pend included");
    assert_eq!(count(&evs, "ConnectionRejected"), 1);
    assert_eq!(count(&evs, "ConnectionPended"), 0, "a pend is not held");
    assert_eq!(count(&evs, "PendCompleted"), 0);
    let accepted: Vec<_> = evs
        .iter()
        .filter(|e| e.name == "ConnectionAccepted")
        .collect();
    assert_eq!(
        accepted[1]
            .field("RemoteAddress")
            .and_then(|f| f.as_socket_addr()),
        Some(addr("10.20.0.1:2"))
    );
    assert_eq!(
        accepted[1].u64("Reason"),
        Some(Reason::PendDelayed as u64),
        "the accept keeps gate-core's reason"
    );
    let rejected = evs.iter().find(|e| e.name == "ConnectionRejected").unwrap();
    assert_eq!(rejected.u64("Reason"), Some(Reason::RateExceeded as u64));
    assert_eq!(
        rejected
            .field("RemoteAddress")
            .and_then(|f| f.as_socket_addr()),
        Some(addr("10.20.0.1:3"))
    );
    assert_eq!(count(&evs, "ListenerDown"), 1, "at unload");
}

#[test]
fn post_accept_unload_cancels_the_outstanding_accept() {
    let sim = Sim::new();
    sim.set_conditional_accept_supported(false);
    let (driver, l) = start(&sim, &[]);
    let local = local_of(&l);
    // One connection goes through, so WskAccept is re-armed and waiting.
    assert_eq!(
        connect_and_wait_closed(&sim, "10.21.0.1:1", local),
        Some(false)
    );
    wait_for("the accept re-armed", SEC, || {
        sim.irp_stats().in_flight >= 1
    });
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
    // The listener is closed: later connections find nobody.
    let r = sim.connect(addr("10.21.0.1:2"), local);
    assert_eq!(r.state(), RequestState::NoListener);
}

/// Found while writing these tests: when the Acceptor's IRP cannot be
/// allocated, `listener.rs` keeps the post-accept listener up with no
/// WskAccept ever issued: connections sit in the backlog, nothing is
/// decided, no event says so. Expected: that listener is treated as failed
/// (closed, back-off, re-created), so connections are decided again.
#[test]
fn post_accept_listener_without_memory_for_its_accept_irp_recovers() {
    let sim = Sim::new();
    sim.set_conditional_accept_supported(false);
    sim.set_provider_ready(false);
    sim.registry_set(PARAMS, "ListenAddress", RegValue::Sz("0.0.0.0".into()));
    let driver = sim
        .load_driver(gate_driver::DriverEntry, SERVICE_KEY)
        .expect("DriverEntry");
    // The worker has its own IRP and waits for WSK: the next IRP allocated
    // (MaxPending 0: the pending table has none) is the Acceptor's.
    wait_for("the capture waiting", SEC, || {
        sim.wsk_log()
            .iter()
            .any(|l| l.contains("waiting for the provider"))
    });
    assert_eq!(sim.irp_stats().allocated, 1);
    sim.fail_next_irp_allocations(1);
    sim.set_provider_ready(true);
    // Connect once to every listener the worker opens until a connection
    // is decided. The first listener has no accept IRP: the driver must
    // close it (not leave connections undecided in its backlog) and
    // re-create one after its back-off, whose Acceptor decides. The wait is
    // on that state, bounded in real time (the worker, the completions and
    // this thread share a loaded machine), while the virtual clock moves so
    // the back-off ends; a listener that stays up without WskAccept never
    // decides and fails here.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut tried: Vec<usize> = Vec::new();
    let mut port = 0u16;
    while snapshot().unwrap().stats.inspects == 0 {
        assert!(
            Instant::now() < deadline,
            "no connection decided in 30 s (listeners connected to: {tried:?}, now {:?}): \
             the listener stayed up without WskAccept",
            sim.listeners()
        );
        if let Some(l) = sim
            .listeners()
            .into_iter()
            .find(|l| l.state == SocketState::Open && !tried.contains(&l.socket))
        {
            port = port.wrapping_add(1);
            sim.connect(addr(&format!("10.40.0.1:{port}")), local_of(&l));
            tried.push(l.socket);
        }
        sim.advance_ms(10);
        std::thread::sleep(Duration::from_millis(1));
    }
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
}
