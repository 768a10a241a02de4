//! The driver on a less friendly system: routines missing (as under Wine),
//! IRP allocation failures, WSK not ready, every IRP completion mode, and
//! the periodic counters.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)] // test code: std allocation is fine

mod common;
use common::*;
use gate_core::Event;
use gate_driver::entry::snapshot;
use gate_ksys::STATUS_INSUFFICIENT_RESOURCES;
use gate_usersim::*;
use std::time::Duration;

#[test]
fn runs_without_optional_routines_like_wine() {
    let sim = Sim::new();
    sim.hide_routine("ExAllocatePool2", true);
    sim.hide_routine("KeQueryInterruptTimePrecise", true);
    gate_usersim::etw::set_routines_available(false);
    let (driver, l) = start(&sim, &[("Burst", RegValue::Dword(1))]);
    let local = local_of(&l);
    assert_eq!(
        sim.connect(addr("10.0.0.1:1"), local).verdict(),
        Some(Verdict::Accept)
    );
    assert_eq!(
        sim.connect(addr("10.0.0.1:2"), local).verdict(),
        Some(Verdict::Reject)
    );
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
    assert!(sim.events().is_empty(), "no ETW without the routines");
    gate_usersim::etw::set_routines_available(true);
}

/// Wine 8 has neither KeQueryInterruptTimePrecise nor
/// KeQueryUnbiasedInterruptTime, and its KeQueryInterruptTime returns
/// milliseconds: the driver must take KeQueryPerformanceCounter (scaled by
/// its frequency) before it, or a bucket refills 10,000 times too slowly.
#[test]
fn the_clock_runs_at_the_right_speed_on_wines_routines() {
    let sim = Sim::new();
    sim.hide_routine("KeQueryInterruptTimePrecise", true);
    sim.hide_routine("KeQueryUnbiasedInterruptTime", true);
    sim.wine_interrupt_time(true);
    // One connection per second, no burst beyond it.
    let (driver, l) = start(
        &sim,
        &[
            ("Burst", RegValue::Dword(1)),
            ("RateMilliPerSecond", RegValue::Dword(1000)),
        ],
    );
    let local = local_of(&l);
    let mut verdicts = Vec::new();
    for i in 0..4u16 {
        verdicts.push(
            sim.connect(addr(&format!("10.0.0.1:{}", 100 + 2 * i)), local)
                .verdict(),
        );
        verdicts.push(
            sim.connect(addr(&format!("10.0.0.1:{}", 101 + 2 * i)), local)
                .verdict(),
        );
        sim.advance_ms(1000);
    }
    let want: Vec<_> = (0..4)
        .flat_map(|_| [Some(Verdict::Accept), Some(Verdict::Reject)])
        .collect();
    assert_eq!(verdicts, want, "one token a second, refilled each second");
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
    sim.wine_interrupt_time(false);
    sim.hide_routine("KeQueryInterruptTimePrecise", false);
    sim.hide_routine("KeQueryUnbiasedInterruptTime", false);
}

#[test]
fn irp_allocation_failure_in_the_pending_table_refuses_the_start() {
    let sim = Sim::new();
    sim.registry_set(PARAMS, "MaxPending", RegValue::Dword(4));
    sim.fail_next_irp_allocations(1);
    let r = sim.load_driver(gate_driver::DriverEntry, SERVICE_KEY);
    assert_eq!(r.err(), Some(STATUS_INSUFFICIENT_RESOURCES));
    sim.leaks().assert_clean();
    sim.assert_no_violations();
}

#[test]
fn worker_without_an_irp_retries_with_back_off_and_unloads_clean() {
    let sim = Sim::new();
    // MaxPending 0: the worker's own IRP is the first allocation.
    sim.fail_next_irp_allocations(1);
    let driver = sim
        .load_driver(gate_driver::DriverEntry, SERVICE_KEY)
        .expect("DriverEntry does not wait for the worker");
    // No listener until the back-off (100 ms, virtual) has passed.
    assert!(sim.wait_listener(Duration::from_millis(100)).is_none());
    sim.advance_ms(100);
    assert!(sim.wait_listener(Duration::from_secs(5)).is_some());
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn unload_while_the_worker_waits_for_memory() {
    let sim = Sim::new();
    sim.fail_next_irp_allocations(1);
    let driver = sim
        .load_driver(gate_driver::DriverEntry, SERVICE_KEY)
        .expect("DriverEntry does not wait for the worker");
    assert!(sim.wait_listener(Duration::from_millis(50)).is_none());
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn unload_while_waiting_for_wsk_stops_the_capture_loop() {
    let sim = Sim::new();
    sim.set_provider_ready(false);
    let driver = sim
        .load_driver(gate_driver::DriverEntry, SERVICE_KEY)
        .expect("DriverEntry never blocks on WSK");
    let t = std::time::Instant::now();
    while !sim
        .wsk_log()
        .iter()
        .any(|l| l.contains("waiting for the provider"))
    {
        assert!(t.elapsed() < Duration::from_secs(5), "no capture waits");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(sim.listeners().is_empty());
    // Unload joins the worker before WskDeregister; the worker sees unload
    // when its bounded capture wait (virtual time) runs out. Let time pass
    // while unload waits.
    let done = std::sync::atomic::AtomicBool::new(false);
    let report = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                sim.advance_ms(u64::from(gate_driver::listener::CAPTURE_WAIT_MS) / 5);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let r = driver.unload(&sim);
        done.store(true, std::sync::atomic::Ordering::Release);
        r
    });
    report.assert_clean();
    // No capture was waiting in, or started after, WskDeregister.
    sim.assert_no_violations();
    assert!(
        !sim.wsk_log()
            .iter()
            .any(|l| l.contains("wait ended by WskDeregister")),
        "unload deregistered while a capture was waiting: {:#?}",
        sim.wsk_log()
    );
}

#[test]
fn capture_is_retried_until_wsk_is_ready() {
    let sim = Sim::new();
    sim.set_provider_ready(false);
    let driver = sim
        .load_driver(gate_driver::DriverEntry, SERVICE_KEY)
        .expect("DriverEntry");
    for _ in 0..50 {
        sim.advance_ms(100);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(sim.listeners().is_empty());
    sim.set_provider_ready(true);
    let t = std::time::Instant::now();
    while sim.listeners().is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no listener once WSK is ready"
        );
        sim.advance_ms(100);
        std::thread::sleep(Duration::from_millis(1));
    }
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

fn pend_abort_unload(mode: CompletionMode) {
    let sim = Sim::new();
    sim.set_completion_mode(mode);
    let (driver, l) = start(
        &sim,
        &[
            ("RateMilliPerSecond", RegValue::Dword(1000)),
            ("Burst", RegValue::Dword(1)),
            ("MaxPending", RegValue::Dword(16)),
            ("MaxPendDelayMs", RegValue::Dword(3000)),
        ],
    );
    let local = local_of(&l);
    let mut pends = Vec::new();
    for i in 0..6u16 {
        sim.connect(addr(&format!("10.11.0.{}:1", i + 1)), local);
        let p = sim.connect(addr(&format!("10.11.0.{}:2", i + 1)), local);
        assert_eq!(p.verdict(), Some(Verdict::Pend), "{mode:?}");
        // A second pend for the same key comes due a second later.
        let q = sim.connect(addr(&format!("10.11.0.{}:3", i + 1)), local);
        assert_eq!(q.verdict(), Some(Verdict::Pend), "{mode:?}");
        pends.push((p, q));
    }
    pends[0].0.abort().unwrap();
    for (p, _) in &pends[1..] {
        assert_eq!(
            p.wait_resolved(&sim, 1_500_000_000),
            RequestState::Established,
            "{mode:?}"
        );
    }
    // The second pends are still held: unload rejects them.
    let s = snapshot().unwrap();
    assert_eq!(s.gate.event(Event::PendDone), 5, "{mode:?}");
    driver.unload(&sim).assert_clean();
    for (_, q) in &pends {
        assert_eq!(q.state(), RequestState::CompletedReject, "{mode:?}");
    }
    sim.assert_no_violations();
}

#[test]
fn every_completion_mode() {
    for mode in [
        CompletionMode::Inline,
        CompletionMode::Async,
        CompletionMode::Alternate,
    ] {
        pend_abort_unload(mode);
    }
}

#[test]
fn counters_are_reported_periodically() {
    let sim = Sim::new();
    let (driver, l) = start(&sim, &[("CountersIntervalMs", RegValue::Dword(1000))]);
    let local = local_of(&l);
    for i in 0..7u16 {
        sim.connect(addr(&format!("10.12.0.1:{}", i + 1)), local);
    }
    let t = std::time::Instant::now();
    while count(&sim.events(), "Counters") < 2 {
        assert!(t.elapsed() < Duration::from_secs(10), "no Counters events");
        sim.advance_ms(250);
        std::thread::sleep(Duration::from_millis(1));
    }
    driver.unload(&sim).assert_clean();
    let evs = checked_events(&sim);
    // The periodic ones, before the unload, each cover a full period.
    let unloading = evs
        .iter()
        .position(|e| e.name == "DriverUnloading")
        .unwrap();
    let c = evs[..unloading]
        .iter()
        .rfind(|e| e.name == "Counters")
        .unwrap();
    assert_eq!(c.u64("WithinRate"), Some(7));
    assert!(c.u64("IntervalMs").unwrap() >= 1000);
    assert_eq!(c.u64("TableOccupancy"), Some(1));
    // The last one is written at unload (issue 12) with the final totals
    // and the time since the previous one (virtual time stood still).
    let last = evs.iter().rfind(|e| e.name == "Counters").unwrap();
    assert!(evs[unloading..].iter().any(|e| std::ptr::eq(e, last)));
    assert_eq!(last.u64("WithinRate"), Some(7));
    assert!(last.u64("IntervalMs").unwrap() < 1000);
    sim.assert_no_violations();
}
