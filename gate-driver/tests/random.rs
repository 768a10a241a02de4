//! Randomized, seeded interleavings of connection requests, aborts, pend
//! completions (clock moves), listener deaths (NULL InspectID, forced
//! close) and unloads, driven from several threads at once. After each
//! round it checks: no simulator violation (so no double or concurrent
//! completion, no call on a closed socket, no close racing a call), no
//! request left pended, every pend ticket accounted for (tokens
//! conserved), one decision per inspect call, and nothing leaked after
//! unload. Set GATE_RANDOM_SEED to replay a seed; the seed is printed.
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
use std::sync::Mutex;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const PORT: u16 = 8080;
const THREADS: u64 = 3;
const OPS_PER_THREAD: u64 = 500;
const ROUNDS: u64 = 6;

fn round(seed: u64) {
    let sim = Sim::new();
    let (driver, _l) = start(
        &sim,
        &[
            ("RateMilliPerSecond", RegValue::Dword(2000)),
            ("Burst", RegValue::Dword(2)),
            ("MaxPending", RegValue::Dword(16)),
            ("MaxPendDelayMs", RegValue::Dword(1000)),
            ("ListenPort", RegValue::Dword(u32::from(PORT))),
        ],
    );
    let local = addr(&format!("192.0.2.1:{PORT}"));
    let all: Mutex<Vec<Request>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (sim, all) = (&sim, &all);
            s.spawn(move || {
                let mut rng = Rng(seed ^ (t + 1).wrapping_mul(0xA076_1D64_78BD_642F));
                let mut mine: Vec<Request> = Vec::new();
                for i in 0..OPS_PER_THREAD {
                    let src = addr(&format!("10.{}.0.{}:{}", t, rng.below(12) + 1, 1024 + i));
                    match rng.below(1000) {
                        0..=549 => {
                            let r = sim.connect(src, local);
                            if r.state() == RequestState::NoListener {
                                // The listener is being re-created: let the
                                // worker's back-off run out.
                                sim.advance_ms(20);
                                std::thread::sleep(std::time::Duration::from_millis(1));
                            }
                            mine.push(r);
                        }
                        550..=629 => {
                            let r = sim.connect_held(src, local);
                            if rng.below(2) == 0 {
                                let _ = r.abort();
                            } else {
                                let _ = r.establish();
                            }
                            mine.push(r);
                        }
                        630..=799 => {
                            if !mine.is_empty() {
                                let k = rng.below(mine.len() as u64) as usize;
                                if mine[k].state() == RequestState::Pended {
                                    let _ = mine[k].abort();
                                }
                            }
                        }
                        800..=993 => sim.advance_ms(rng.below(300)),
                        994..=996 => {
                            let _ = sim.null_inspect();
                        }
                        _ => sim.force_close_next_inspect_complete(),
                    }
                }
                all.lock().unwrap().extend(mine);
            });
        }
    });
    // Let every pend come due and every listener come back.
    for _ in 0..40 {
        sim.advance_ms(100);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    sim.quiesce();
    let reqs = all.into_inner().unwrap();
    let s = snapshot().expect("running");
    // Tokens conserved: every pend decision ended in done or abort, or is
    // still held in the pending table.
    let pends = s.gate.reason(Reason::PendDelayed);
    let ended = s.gate.event(Event::PendDone) + s.gate.event(Event::PendAborted);
    assert_eq!(
        s.gate.pends_outstanding as usize, s.pending_in_use,
        "seed {seed:#x}: outstanding tickets == table slots in use"
    );
    // A pend rejected because the table was full is aborted at once too.
    assert_eq!(
        pends,
        ended + s.gate.pends_outstanding,
        "seed {seed:#x}: pends {pends} = done + aborted {ended} + outstanding"
    );
    assert_eq!(s.gate.event(Event::StaleTicket), 0, "seed {seed:#x}");
    // One decision per inspect call answered.
    let answered = reqs.iter().filter(|r| r.verdict().is_some()).count() as u64;
    assert_eq!(s.stats.inspects, answered, "seed {seed:#x}");
    assert_eq!(s.gate.decisions(), answered, "seed {seed:#x}");
    let mut hist = std::collections::BTreeMap::new();
    for r in &reqs {
        *hist.entry(format!("{:?}", r.state())).or_insert(0u32) += 1;
    }
    eprintln!("seed {seed:#x}: states {hist:?}");
    eprintln!(
        "seed {seed:#x}: {} requests, {answered} inspected, {} pends ({} done, {} aborted), {} aborts, {} listeners, {} forced closes",
        reqs.len(),
        pends,
        s.gate.event(Event::PendDone),
        s.gate.event(Event::PendAborted),
        s.stats.aborts,
        s.stats.listeners_up,
        s.stats.forced_closed
    );
    // The run must have exercised the interesting paths.
    assert!(
        pends > 0 && s.stats.aborts > 0 && s.stats.listeners_up > 1,
        "seed {seed:#x}: too tame"
    );
    let evs = checked_events(&sim);
    assert_eq!(
        decisions(&evs) as u64,
        answered,
        "seed {seed:#x}: one decision event per inspect"
    );
    assert_eq!(
        count(&evs, "ConnectionAborted") as u64,
        s.stats.aborts,
        "seed {seed:#x}: one event per abort"
    );
    let report = driver.unload(&sim);
    assert!(report.is_clean(), "seed {seed:#x}: {report:#?}");
    for r in &reqs {
        let st = r.state();
        assert!(
            !matches!(st, RequestState::Pended | RequestState::Inspecting),
            "seed {seed:#x}: request left {st:?}"
        );
        let info = r.info();
        if info.verdict != Some(Verdict::Pend) {
            assert_eq!(
                info.completion, None,
                "seed {seed:#x}: completed a request never pended"
            );
        }
    }
    let v = sim.violations();
    assert!(v.is_empty(), "seed {seed:#x}: {v:#?}");
}

#[test]
fn random_interleavings_keep_the_invariants() {
    let base = std::env::var("GATE_RANDOM_SEED")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0x6A7E_2026_1123);
    eprintln!("GATE_RANDOM_SEED={base:#x}");
    for r in 0..ROUNDS {
        round(base.wrapping_add(r));
    }
}
