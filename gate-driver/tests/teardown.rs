//! No driver code runs after DriverUnload returns (issue 10, part 1).
//!
//! The simulation can hold any driver routine (IRP completion routine,
//! DPC, system thread) before any of its import calls (`gate_usersim::hold`).
//! A reference run records every routine the scenario runs and how many
//! points each reaches; then, for every routine and every point, the
//! scenario runs again with that routine held there while DriverUnload
//! runs on another thread. DriverUnload must not return while the routine
//! is held (it is still in driver code), and once released nothing of the
//! driver may run after DriverUnload returned (the simulation records any
//! import call made then as `CodeAfterUnload`).
//!
//! Completions run in `CompletionMode::Parallel` (each on a thread of its
//! own, as on many CPUs), so a held completion delays nothing else.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)] // test code: std allocation is fine

mod common;
use common::*;
use gate_driver::entry::snapshot;
use gate_usersim::hold::{self, Hold, HoldAt, Routine};
use gate_usersim::*;
use std::time::{Duration, Instant};

/// The scenario: a listener, an accepted request, pends completed with
/// Accept (asynchronously) when due, more at once than one timer DPC run
/// completes, so the listener worker completes the backlog (conditional
/// accept), another pend still waiting at
/// unload (rejected by the worker), then DriverUnload. Peers are slow to
/// close: the accepted connections' graceful disconnects are still pending
/// at unload, which gives them up (their completion routine runs then).
fn scenario(sim: &Sim, post_accept: bool) -> LeakReport {
    scenario_in(
        sim,
        if post_accept {
            Mode::PostAccept
        } else {
            Mode::Conditional
        },
    )
}

/// Which run the hold loop covers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Conditional,
    PostAccept,
    /// A backend configured (the relay runs): one relayed connection with
    /// a receive pending on each side at unload, so every relay completion
    /// routine (`slot_done`) and the relay worker run during DriverUnload.
    Relay,
}

const BACKEND: &str = "10.9.0.1:9000";

/// The relay run: a connection relayed (3 bytes client -> backend), both
/// directions' receives pending, then DriverUnload, which tears it down.
fn relay_scenario(sim: &Sim) -> LeakReport {
    sim.set_completion_mode(CompletionMode::Parallel);
    sim.backend_listen(addr(BACKEND), BackendMode::Accept);
    let (driver, l) = start(
        sim,
        &[
            ("BackendAddress", RegValue::Sz(BACKEND.into())),
            ("RateMilliPerSecond", RegValue::Dword(10_000_000)),
            ("Burst", RegValue::Dword(1_000_000)),
        ],
    );
    let local = local_of(&l);
    let c = sim
        .connect(addr("192.0.2.1:4000"), local)
        .conn()
        .expect("established");
    wait_for("the backend connection", Duration::from_secs(10), || {
        !sim.backend_conns(addr(BACKEND)).is_empty()
    });
    let b = *sim.backend_conns(addr(BACKEND)).last().expect("backend");
    c.peer_send(b"req");
    wait_for("the bytes relayed", Duration::from_secs(10), || {
        b.unread() == 3
    });
    driver.unload(sim)
}

fn scenario_in(sim: &Sim, mode: Mode) -> LeakReport {
    if mode == Mode::Relay {
        return relay_scenario(sim);
    }
    let post_accept = mode == Mode::PostAccept;
    sim.set_completion_mode(CompletionMode::Parallel);
    sim.set_slow_peer_close(true);
    if post_accept {
        sim.set_conditional_accept_supported(false);
    }
    let (driver, l) = start(
        sim,
        &[
            ("RateMilliPerSecond", RegValue::Dword(1000)),
            ("Burst", RegValue::Dword(1)),
            ("MaxPending", RegValue::Dword(24)),
            ("MaxPendDelayMs", RegValue::Dword(2000)),
        ],
    );
    let local = local_of(&l);
    if !post_accept {
        // More pends due at once than one DPC run completes
        // (MAX_PER_DPC): the worker completes the backlog.
        for k in 2..=(gate_driver::pending::MAX_PER_DPC as u8 + 4) {
            sim.connect(addr(&format!("10.1.0.{k}:1000")), local);
            sim.connect(addr(&format!("10.1.0.{k}:1001")), local);
        }
    }
    sim.connect(addr("10.1.0.1:1000"), local);
    if post_accept {
        // The worker's WskAccept completes and it decides.
        wait_for("the accepted connection", Duration::from_secs(5), || {
            snapshot().is_some_and(|s| s.stats.inspects >= 1)
        });
    }
    sim.connect(addr("10.1.0.1:1001"), local);
    // To the deadline, then (clock standing) give the worker time to
    // complete the backlog, unless a routine is held.
    sim.advance_ms(1000);
    if !post_accept {
        let pended = u64::from(gate_driver::pending::MAX_PER_DPC as u8 + 4);
        let t = Instant::now();
        while snapshot().is_none_or(|s| s.stats.completions < pended)
            && !hold::is_held()
            && t.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    sim.advance_ms(100);
    sim.connect(addr("10.1.0.1:1002"), local);
    sim.advance_ms(10);
    if !post_accept {
        wait_for("graceful closes pending", Duration::from_secs(5), || {
            sim.pending_disconnects() >= 1
        });
    }
    driver.unload(sim)
}

/// Runs the scenario with `h` armed. Returns whether the hold was reached.
fn run_held(h: Hold, mode: Mode) -> bool {
    let sim = Sim::new();
    hold::arm(h);
    let mut reached = false;
    let report = std::thread::scope(|s| {
        let t = s.spawn(|| scenario_in(&sim, mode));
        let started = Instant::now();
        loop {
            if hold::wait_held(Duration::from_millis(5)).is_some() {
                reached = true;
                // Give the scenario time to reach DriverUnload and
                // DriverUnload time to (wrongly) return.
                let t0 = Instant::now();
                while t0.elapsed() < Duration::from_millis(40) && !hold::unloaded() {
                    std::thread::sleep(Duration::from_millis(2));
                }
                assert!(
                    !hold::unloaded(),
                    "DriverUnload returned while {h:?} was held inside driver code"
                );
                hold::release();
                break;
            }
            if t.is_finished() {
                hold::disarm();
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "scenario stuck with {h:?}"
            );
        }
        t.join().expect("scenario")
    });
    report.assert_clean();
    sim.assert_no_violations();
    reached
}

fn every_routine_at_every_point(mode: Mode) {
    // Reference run: which routines run, and how far.
    let seen = {
        let sim = Sim::new();
        scenario_in(&sim, mode).assert_clean();
        sim.assert_no_violations();
        hold::seen()
    };
    let completions = seen
        .keys()
        .filter(|(k, _)| *k == Routine::IrpCompletion)
        .count();
    let dpcs = seen.keys().filter(|(k, _)| *k == Routine::Dpc).count();
    match mode {
        Mode::Conditional => assert!(completions >= 2 && dpcs >= 1, "{seen:?}"),
        Mode::PostAccept => assert!(completions >= 2, "{seen:?}"),
        // The listener's and the relay's (`slot_done`) completion routines.
        Mode::Relay => assert!(completions >= 2, "{seen:?}"),
    }
    let mut cases = 0;
    for (&(routine, address), &points) in &seen {
        for n in 1..=points {
            let h = Hold {
                routine,
                address: Some(address),
                at: HoldAt::Nth(n),
            };
            if run_held(h, mode) {
                cases += 1;
            }
        }
    }
    eprintln!("{cases} holds reached over {seen:?}");
    assert!(cases > 0, "no hold was reached: {seen:?}");
}

#[test]
fn no_routine_outlives_unload_conditional_accept() {
    every_routine_at_every_point(Mode::Conditional);
}

#[test]
fn no_routine_outlives_unload_post_accept() {
    every_routine_at_every_point(Mode::PostAccept);
}

/// The relay's completion routine and worker (review item 2): held at
/// every point while DriverUnload runs, DriverUnload must not return.
#[test]
fn no_routine_outlives_unload_with_a_relay() {
    every_routine_at_every_point(Mode::Relay);
}

#[test]
fn unload_waits_for_the_worker_to_terminate() {
    // The worker's last import: unload must wait until it terminated.
    let h = Hold {
        routine: Routine::SystemThread,
        address: None,
        at: HoldAt::Import("PsTerminateSystemThread"),
    };
    assert!(
        run_held(h, Mode::Conditional),
        "the worker never terminated"
    );
}

/// A completion with STATUS_FILE_FORCED_CLOSED that arrives after the
/// worker closed its listener must not kill the listener that replaced it.
#[test]
fn late_forced_close_does_not_kill_the_new_listener() {
    let seen = {
        let sim = Sim::new();
        scenario(&sim, false).assert_clean();
        hold::seen()
    };
    for (&(routine, address), &points) in &seen {
        if routine != Routine::IrpCompletion {
            continue;
        }
        for n in 1..=points {
            let sim = Sim::new();
            sim.set_completion_mode(CompletionMode::Parallel);
            let (driver, l) = start(
                &sim,
                &[
                    ("RateMilliPerSecond", RegValue::Dword(1000)),
                    ("Burst", RegValue::Dword(1)),
                    ("MaxPending", RegValue::Dword(8)),
                    ("MaxPendDelayMs", RegValue::Dword(2000)),
                ],
            );
            let local = local_of(&l);
            // Two pends due together: the first WskInspectComplete kills the
            // listener, the second also completes with FORCED_CLOSED.
            for src in ["10.2.0.1", "10.2.0.2"] {
                sim.connect(addr(&format!("{src}:1000")), local);
                let p = sim.connect(addr(&format!("{src}:1001")), local);
                assert_eq!(p.verdict(), Some(Verdict::Pend));
            }
            sim.force_close_next_inspect_complete();
            hold::arm(Hold {
                routine,
                address: Some(address),
                at: HoldAt::Nth(n),
            });
            // Time moves on another thread: the held routine may hold a
            // spin lock a DPC needs, and only this thread releases it.
            let stop = std::sync::atomic::AtomicBool::new(false);
            std::thread::scope(|s| {
                s.spawn(|| {
                    sim.advance_ms(1100);
                    while !stop.load(std::sync::atomic::Ordering::Acquire) {
                        sim.advance_ms(10);
                        std::thread::sleep(Duration::from_millis(1));
                    }
                });
                if let Some(at) = hold::wait_held(Duration::from_millis(100)) {
                    eprintln!("held {routine:?} {address:#x} at {n} ({at})");
                    // Let the worker re-create the listener if it can while
                    // the completion is held, then let the completion finish.
                    let t0 = Instant::now();
                    while t0.elapsed() < Duration::from_millis(40)
                        && !sim
                            .listeners()
                            .iter()
                            .any(|x| x.socket != l.socket && x.state == SocketState::Open)
                    {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    hold::release();
                } else {
                    hold::disarm();
                }
                stop.store(true, std::sync::atomic::Ordering::Release);
            });
            let new = wait_new_listener(&sim, l.socket);
            // Time for a wrongly killed listener to be replaced again.
            for _ in 0..50 {
                sim.advance_ms(10);
                std::thread::sleep(Duration::from_millis(1));
            }
            sim.quiesce();
            let open: Vec<_> = sim
                .listeners()
                .into_iter()
                .filter(|x| x.state == SocketState::Open)
                .collect();
            assert_eq!(open.len(), 1, "hold at {n}: {open:?}");
            assert_eq!(
                open[0].socket, new.socket,
                "hold at {n}: the new listener died"
            );
            // Open in the provider before the worker's create() returns
            // and counts it: wait for the count.
            wait_for(
                "the worker counting the new listener",
                Duration::from_secs(5),
                || snapshot().expect("running").stats.listeners_up >= 2,
            );
            assert_eq!(
                snapshot().expect("running").stats.listeners_up,
                2,
                "hold at {n}: one forced close, one re-creation"
            );
            driver.unload(&sim).assert_clean();
            sim.assert_no_violations();
        }
    }
}
