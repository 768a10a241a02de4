//! One test per case of the WskInspectEvent contract
//! (shared/design/wsk-contract.md), run against the simulated provider.
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
use std::time::Duration;

const SEC: Duration = Duration::from_secs(5);

/// 1 connection/s per key, burst 1, pends up to 2 s, 8 pend slots.
fn pend_config() -> Vec<(&'static str, RegValue)> {
    vec![
        ("RateMilliPerSecond", RegValue::Dword(1000)),
        ("Burst", RegValue::Dword(1)),
        ("MaxPending", RegValue::Dword(8)),
        ("MaxPendDelayMs", RegValue::Dword(2000)),
    ]
}

/// Spends the key's burst, then makes a request that is pended.
fn pended(sim: &Sim, l: &ListenerInfo, port: u16) -> Request {
    let local = local_of(l);
    let first = sim.connect(addr(&format!("10.9.0.1:{port}")), local);
    if first.verdict() == Some(Verdict::Pend) {
        return first;
    }
    let r = sim.connect(addr(&format!("10.9.0.1:{}", port + 1)), local);
    assert_eq!(r.verdict(), Some(Verdict::Pend));
    r
}

#[test]
fn pend_is_completed_with_accept_when_the_token_is_due() {
    let sim = Sim::new();
    let (driver, l) = start(&sim, &pend_config());
    let r = pended(&sim, &l, 2000);
    assert_eq!(r.state(), RequestState::Pended);
    assert_eq!(snapshot().unwrap().pending_in_use, 1);
    sim.advance_ms(500);
    assert_eq!(r.state(), RequestState::Pended, "not before its time");
    assert_eq!(
        r.wait_resolved(&sim, 2_000_000_000),
        RequestState::Established
    );
    assert_eq!(r.info().completion, Some(Verdict::Accept));
    let s = snapshot().unwrap();
    assert_eq!(s.pending_in_use, 0);
    assert_eq!(s.gate.pends_outstanding, 0);
    assert_eq!(s.gate.event(Event::PendDone), 1);
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
    let evs = checked_events(&sim);
    let pended: Vec<_> = evs
        .iter()
        .filter(|e| e.name == "ConnectionPended")
        .collect();
    assert_eq!(pended.len(), 1);
    let done: Vec<_> = evs.iter().filter(|e| e.name == "PendCompleted").collect();
    assert_eq!(done.len(), 1);
    assert_eq!(
        done[0].u64("Action"),
        Some(gate_core::Action::Accept as u64)
    );
    assert_eq!(done[0].u64("InspectKey"), Some(r.id().Key as u64));
    // The addresses were copied in WskInspectEvent (the simulator
    // overwrites its buffers after the call).
    assert_eq!(
        done[0]
            .field("RemoteAddress")
            .and_then(|f| f.as_socket_addr()),
        Some(addr("10.9.0.1:2001"))
    );
    assert_eq!(
        pended[0].u64("InspectSerial"),
        Some(u64::from(r.id().SerialNumber))
    );
}

#[test]
fn null_inspect_id_closes_the_listener_on_the_worker_and_recreates_it() {
    let sim = Sim::new();
    let (driver, l) = start(&sim, &[]);
    assert!(sim.null_inspect().is_some());
    let l2 = wait_new_listener(&sim, l.socket);
    assert_eq!(l2.addr, l.addr);
    assert!(l2.conditional_accept && l2.accept_event);
    let old = sim.listeners().into_iter().find(|x| x.socket == l.socket);
    assert!(
        old.is_none_or(|o| o.state == SocketState::Closed),
        "old listener closed: {old:?}"
    );
    // The listener is open in the provider before the worker's create()
    // returns and counts it: wait for the count.
    wait_for("the worker counting the new listener", SEC, || {
        snapshot().unwrap().stats.listeners_up >= 2
    });
    let s = snapshot().unwrap();
    assert_eq!(s.stats.null_inspect, 1);
    assert_eq!(s.stats.listeners_up, 2);
    let text: Vec<String> = sim.debug_output().into_iter().map(|d| d.text).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("closing listener") && t.contains("null_inspect_id")),
        "{text:?}"
    );
    // The new listener decides.
    let r = sim.connect(addr("10.1.1.1:5"), local_of(&l2));
    assert_eq!(r.verdict(), Some(Verdict::Accept));
    // A second death: attempts count from 1 again.
    assert!(sim.null_inspect().is_some());
    let _l3 = wait_new_listener(&sim, l2.socket);
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
    let evs = checked_events(&sim);
    let closed: Vec<_> = evs.iter().filter(|e| e.name == "ListenerClosed").collect();
    assert_eq!(closed.len(), 3, "NULL InspectID twice, then unload");
    assert_eq!(closed[0].u64("Cause"), Some(0), "null_inspect_id");
    assert_eq!(closed[1].u64("Cause"), Some(0), "null_inspect_id");
    assert_eq!(closed[2].u64("Cause"), Some(2), "unload");
    let again: Vec<_> = evs
        .iter()
        .filter(|e| e.name == "ListenerRecreated")
        .collect();
    assert_eq!(again.len(), 2);
    for e in &again {
        assert_eq!(e.u64("Attempt"), Some(1), "{e:?}");
        assert_eq!(e.u64("Status"), Some(0), "{e:?}");
    }
    assert_eq!(count(&evs, "ListenerUp"), 3);
}

#[test]
fn abort_while_pended_returns_the_token_and_never_completes() {
    let sim = Sim::new();
    let (driver, l) = start(&sim, &pend_config());
    let r = pended(&sim, &l, 3000);
    assert_eq!(snapshot().unwrap().gate.pends_outstanding, 1);
    r.abort().unwrap();
    assert_eq!(r.state(), RequestState::Aborted);
    let s = snapshot().unwrap();
    assert_eq!(s.pending_in_use, 0, "entry dropped");
    assert_eq!(s.gate.pends_outstanding, 0);
    assert_eq!(s.gate.event(Event::PendAborted), 1, "token given back");
    assert_eq!(s.stats.aborts_pended, 1);
    // Past its due time: no WskInspectComplete for it.
    sim.advance_ms(3000);
    sim.quiesce();
    assert_eq!(r.info().completion, None);
    assert!(!r.info().late_completion);
    assert_eq!(snapshot().unwrap().stats.completions, 0);
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
    let evs = checked_events(&sim);
    let ab: Vec<_> = evs
        .iter()
        .filter(|e| e.name == "ConnectionAborted")
        .collect();
    assert_eq!(ab.len(), 1);
    assert_eq!(
        ab[0].value("WasPended"),
        Some(&gate_usersim::etw::Value::Bool(true))
    );
    assert_eq!(
        ab[0].value("TokenReturned"),
        Some(&gate_usersim::etw::Value::Bool(true))
    );
    assert_eq!(count(&evs, "PendCompleted"), 0);
}

#[test]
fn abort_after_accept_is_counted() {
    let sim = Sim::new();
    let (driver, l) = start(&sim, &[]);
    let r = sim.connect_held(addr("10.2.0.1:7"), local_of(&l));
    assert_eq!(r.verdict(), Some(Verdict::Accept));
    r.abort().unwrap();
    let s = snapshot().unwrap();
    assert_eq!(s.stats.aborts, 1);
    assert_eq!(s.stats.aborts_not_pended, 1);
    assert_eq!(s.stats.aborts_pended, 0);
    assert_eq!(s.gate.event(Event::PendAborted), 0);
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
    let evs = checked_events(&sim);
    let ab: Vec<_> = evs
        .iter()
        .filter(|e| e.name == "ConnectionAborted")
        .collect();
    assert_eq!(ab.len(), 1);
    assert_eq!(
        ab[0].value("WasPended"),
        Some(&gate_usersim::etw::Value::Bool(false))
    );
}

#[test]
fn aborted_pends_are_never_completed_and_the_rest_exactly_once() {
    let sim = Sim::new();
    let (driver, l) = start(&sim, &pend_config());
    let local = local_of(&l);
    let mut reqs = Vec::new();
    for i in 0..8u16 {
        // Distinct keys: each spends its burst, then pends once.
        let a = sim.connect(addr(&format!("10.3.0.{}:1", i + 1)), local);
        assert_eq!(a.verdict(), Some(Verdict::Accept));
        let p = sim.connect(addr(&format!("10.3.0.{}:2", i + 1)), local);
        assert_eq!(p.verdict(), Some(Verdict::Pend));
        reqs.push(p);
    }
    for r in reqs.iter().step_by(2) {
        r.abort().unwrap();
    }
    for r in &reqs {
        r.wait_resolved(&sim, 3_000_000_000);
    }
    for (i, r) in reqs.iter().enumerate() {
        let info = r.info();
        if i % 2 == 0 {
            assert_eq!(info.state, RequestState::Aborted);
            assert_eq!(
                info.completion, None,
                "request {i}: no completion after abort"
            );
            assert!(!info.late_completion);
        } else {
            assert_eq!(info.state, RequestState::Established, "request {i}");
            assert_eq!(info.completion, Some(Verdict::Accept));
        }
    }
    let s = snapshot().unwrap();
    assert_eq!(
        s.stats.completions, 4,
        "one WskInspectComplete per live pend"
    );
    assert_eq!(s.gate.pends_outstanding, 0);
    assert_eq!(s.gate.event(Event::PendDone), 4);
    assert_eq!(s.gate.event(Event::PendAborted), 4);
    assert_eq!(s.gate.event(Event::StaleTicket), 0);
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn file_forced_closed_recreates_the_listener_and_returns_the_token() {
    let sim = Sim::new();
    let (driver, l) = start(&sim, &pend_config());
    let r = pended(&sim, &l, 4000);
    sim.force_close_next_inspect_complete();
    sim.advance_ms(1100);
    sim.quiesce();
    let l2 = wait_new_listener(&sim, l.socket);
    assert!(l2.conditional_accept);
    let s = snapshot().unwrap();
    assert_eq!(s.stats.forced_closed, 1);
    assert_eq!(s.gate.pends_outstanding, 0);
    assert_eq!(
        s.gate.event(Event::PendAborted),
        1,
        "not accepted: token back"
    );
    assert_ne!(r.state(), RequestState::Established);
    let text: Vec<String> = sim.debug_output().into_iter().map(|d| d.text).collect();
    assert!(
        text.iter().any(|t| t.contains("file_forced_closed")),
        "{text:?}"
    );
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
    let evs = checked_events(&sim);
    let closed = evs.iter().find(|e| e.name == "ListenerClosed").unwrap();
    assert_eq!(closed.u64("Cause"), Some(1), "file_forced_closed");
    let done = evs.iter().find(|e| e.name == "PendCompleted").unwrap();
    // NTSTATUS is decoded as its unsigned 32-bit pattern.
    assert_eq!(
        done.u64("Status"),
        Some(u64::from(gate_ksys::STATUS_FILE_FORCED_CLOSED as u32))
    );
}

#[test]
fn unload_rejects_every_pended_request_and_leaks_nothing() {
    let sim = Sim::new();
    let (driver, l) = start(&sim, &pend_config());
    let local = local_of(&l);
    let mut reqs = Vec::new();
    for i in 0..6u16 {
        sim.connect(addr(&format!("10.4.0.{}:1", i + 1)), local);
        let p = sim.connect(addr(&format!("10.4.0.{}:2", i + 1)), local);
        assert_eq!(p.verdict(), Some(Verdict::Pend));
        reqs.push(p);
    }
    assert_eq!(snapshot().unwrap().pending_in_use, 6);
    let report = driver.unload(&sim);
    report.assert_clean();
    for r in &reqs {
        assert_eq!(r.state(), RequestState::CompletedReject);
        assert_eq!(r.info().completion, Some(Verdict::Reject));
    }
    assert!(snapshot().is_none());
    sim.assert_no_violations();
    let evs = checked_events(&sim);
    let done: Vec<_> = evs.iter().filter(|e| e.name == "PendCompleted").collect();
    assert_eq!(done.len(), 6);
    assert!(done
        .iter()
        .all(|e| e.u64("Action") == Some(gate_core::Action::Reject as u64)));
}

#[test]
fn full_pending_table_rejects_and_counts() {
    let sim = Sim::new();
    let mut cfg = pend_config();
    cfg[2] = ("MaxPending", RegValue::Dword(2));
    let (driver, l) = start(&sim, &cfg);
    let local = local_of(&l);
    let mut verdicts = Vec::new();
    for i in 0..4u16 {
        sim.connect(addr(&format!("10.5.0.{}:1", i + 1)), local);
        verdicts.push(
            sim.connect(addr(&format!("10.5.0.{}:2", i + 1)), local)
                .verdict(),
        );
    }
    assert_eq!(
        verdicts,
        vec![
            Some(Verdict::Pend),
            Some(Verdict::Pend),
            Some(Verdict::Reject),
            Some(Verdict::Reject)
        ]
    );
    let s = snapshot().unwrap();
    assert_eq!(s.gate.reason(Reason::PendBudgetSpent), 2);
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn callbacks_on_several_threads_at_once() {
    let sim = Sim::new();
    let (driver, l) = start(
        &sim,
        &[
            ("Burst", RegValue::Dword(50)),
            ("RateMilliPerSecond", RegValue::Dword(1)),
        ],
    );
    let local = local_of(&l);
    let per_thread = 200u32;
    let results: Vec<(u32, u32)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4u32)
            .map(|t| {
                let sim = &sim;
                s.spawn(move || {
                    let (mut acc, mut rej) = (0, 0);
                    for i in 0..per_thread {
                        // Two threads share each source address.
                        let src = format!("10.6.0.{}:{}", t % 2 + 1, 1000 + i + t * 1000);
                        match sim.connect(addr(&src), local).verdict() {
                            Some(Verdict::Accept) => acc += 1,
                            Some(Verdict::Reject) => rej += 1,
                            v => panic!("unexpected verdict {v:?}"),
                        }
                    }
                    (acc, rej)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted: u32 = results.iter().map(|r| r.0).sum();
    let rejected: u32 = results.iter().map(|r| r.1).sum();
    assert_eq!(accepted + rejected, 4 * per_thread);
    // Two sources, burst 50 each, no refill worth a token: exactly 100.
    assert_eq!(accepted, 100);
    let s = snapshot().unwrap();
    assert_eq!(s.stats.inspects, u64::from(4 * per_thread));
    assert_eq!(s.gate.decisions(), u64::from(4 * per_thread));
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn close_racing_callbacks_is_never_concurrent() {
    let sim = Sim::new();
    let (driver, l) = start(&sim, &pend_config());
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..3u32 {
            let (sim, stop) = (&sim, &stop);
            s.spawn(move || {
                let mut i = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Whatever listener is open now.
                    if let Some(l) = sim
                        .listeners()
                        .into_iter()
                        .find(|l| l.state == SocketState::Open)
                    {
                        let src = format!("10.7.{}.{}:{}", t, i % 200 + 1, 1000 + i % 50000);
                        let _ = sim.connect(addr(&src), local_of(&l));
                    }
                    i = i.wrapping_add(1);
                }
            });
        }
        let mut current = l.socket;
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(5));
            sim.null_inspect();
            current = wait_new_listener(&sim, current).socket;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    // The last listener is open in the provider before the worker's
    // create() returns and counts it: wait for the count.
    wait_for("the worker counting 6 listeners", SEC, || {
        snapshot().unwrap().stats.listeners_up >= 6
    });
    let s = snapshot().unwrap();
    assert!(s.stats.null_inspect >= 5);
    assert!(s.stats.listeners_up >= 6);
    let report = driver.unload(&sim);
    report.assert_clean();
    sim.assert_no_violations();
}
