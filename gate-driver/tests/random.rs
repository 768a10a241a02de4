//! Randomized, seeded interleavings of connection requests, aborts, pend
//! completions (clock moves), listener deaths (NULL InspectID, forced
//! close) and unloads, driven from several threads at once. After each
//! round it checks: no simulator violation (so no double or concurrent
//! completion, no call on a closed socket, no close racing a call), no
//! request left pended, every pend ticket accounted for (tokens
//! conserved), one decision per inspect call, and nothing leaked after
//! unload. Set GATE_RANDOM_SEED to replay a seed; the seed is printed.
//!
//! Relays (issue 12) run through it all: every accepted connection is
//! relayed to an in-memory backend that now and then refuses or stays
//! silent; clients and backends send, half-close and reset at random. Bytes
//! are conserved: what each side received is exactly a prefix of what the
//! other sent (all of it unless the relay was aborted), matched by an id
//! each client sends first.
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
use std::collections::HashMap;
use std::net::SocketAddr;
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

const BACKEND: &str = "10.9.0.1:9000";

/// Streams seen by the test: what each peer sent and received, by socket.
#[derive(Default)]
struct Streams {
    sent: HashMap<usize, Vec<u8>>,
    received: HashMap<usize, Vec<u8>>,
}

impl Streams {
    fn send(&mut self, c: &Conn, data: &[u8]) {
        c.peer_send(data);
        self.sent
            .entry(c.socket())
            .or_default()
            .extend_from_slice(data);
    }
    fn read(&mut self, c: &Conn) {
        let got = c.take_sent();
        self.received.entry(c.socket()).or_default().extend(got);
    }
}

fn round(seed: u64) {
    let sim = Sim::new();
    let backend: SocketAddr = addr(BACKEND);
    sim.backend_listen(backend, BackendMode::Accept);
    sim.set_max_send_chunk(Some(700));
    let streams: Mutex<Streams> = Mutex::new(Streams::default());
    let (driver, _l) = start(
        &sim,
        &[
            ("RateMilliPerSecond", RegValue::Dword(2000)),
            ("Burst", RegValue::Dword(2)),
            ("MaxPending", RegValue::Dword(16)),
            ("MaxPendDelayMs", RegValue::Dword(1000)),
            ("ListenPort", RegValue::Dword(u32::from(PORT))),
            ("BackendAddress", RegValue::Sz(BACKEND.into())),
            ("ConnectTimeoutMs", RegValue::Dword(2000)),
            ("IdleTimeoutMs", RegValue::Dword(20_000)),
            ("RelayBufferBytes", RegValue::Dword(1024)),
        ],
    );
    let local = addr(&format!("192.0.2.1:{PORT}"));
    let all: Mutex<Vec<Request>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (sim, all, streams) = (&sim, &all, &streams);
            s.spawn(move || {
                let mut rng = Rng(seed ^ (t + 1).wrapping_mul(0xA076_1D64_78BD_642F));
                let mut mine: Vec<Request> = Vec::new();
                for i in 0..OPS_PER_THREAD {
                    let src = addr(&format!("10.{}.0.{}:{}", t, rng.below(12) + 1, 1024 + i));
                    match rng.below(1000) {
                        0..=99 => {
                            // Relay traffic: a client or a backend sends,
                            // reads, half-closes or resets.
                            let backs = sim.backend_conns(backend);
                            let pick_client = rng.below(2) == 0 || backs.is_empty();
                            let c = if pick_client {
                                match mine
                                    .get(rng.below(mine.len().max(1) as u64) as usize)
                                    .and_then(|r| r.conn())
                                {
                                    Some(c) => c,
                                    None => continue,
                                }
                            } else {
                                backs[rng.below(backs.len() as u64) as usize]
                            };
                            let mut st = streams.lock().unwrap();
                            match rng.below(20) {
                                0..=11 => {
                                    let n = 1 + rng.below(3000) as usize;
                                    let data: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                                    st.send(&c, &data);
                                }
                                12..=17 => st.read(&c),
                                18 => c.peer_close(),
                                _ => c.peer_reset(),
                            }
                        }
                        100..=109 => {
                            let mode = match rng.below(6) {
                                0 => BackendMode::Refuse,
                                1 => BackendMode::Silent,
                                _ => BackendMode::Accept,
                            };
                            sim.backend_listen(backend, mode);
                        }
                        110..=549 => {
                            let r = sim.connect(src, local);
                            if let Some(c) = r.conn() {
                                // The id the backend side is matched by.
                                let id = (t << 32) | i;
                                streams.lock().unwrap().send(&c, &id.to_le_bytes());
                            }
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
    sim.backend_listen(backend, BackendMode::Accept);
    let relays = gate_driver::relay::snapshot().expect("relay running");
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
    // Bytes conserved: read what is left, then match each backend
    // connection to its client by the id the client sent first.
    let mut st = streams.into_inner().unwrap();
    let clients: Vec<Conn> = reqs.iter().filter_map(|r| r.conn()).collect();
    let backs = sim.backend_conns(backend);
    for c in clients.iter().chain(backs.iter()) {
        st.read(c);
    }
    let by_id: HashMap<u64, &Conn> = clients
        .iter()
        .filter_map(|c| {
            let s = st.sent.get(&c.socket())?;
            Some((u64::from_le_bytes(s.get(..8)?.try_into().ok()?), c))
        })
        .collect();
    let empty = Vec::new();
    let mut matched = 0;
    let mut bytes = 0usize;
    for b in &backs {
        let got = st.received.get(&b.socket()).unwrap_or(&empty);
        let Some(id) = got.get(..8) else { continue };
        let id = u64::from_le_bytes(id.try_into().unwrap());
        let c = by_id
            .get(&id)
            .unwrap_or_else(|| panic!("seed {seed:#x}: unknown id {id:#x}"));
        let up = st.sent.get(&c.socket()).unwrap_or(&empty);
        assert!(
            up.starts_with(got),
            "seed {seed:#x}: backend got a non-prefix of the client's bytes"
        );
        let down_sent = st.sent.get(&b.socket()).unwrap_or(&empty);
        let down_got = st.received.get(&c.socket()).unwrap_or(&empty);
        assert!(
            down_sent.starts_with(down_got),
            "seed {seed:#x}: client got a non-prefix of the backend's bytes"
        );
        matched += 1;
        bytes += got.len() + down_got.len();
    }
    eprintln!(
        "seed {seed:#x}: relays {relays:?}; {matched} matched, {bytes} bytes relayed and checked"
    );
    assert!(
        matched > 0 && relays.opened > 0,
        "seed {seed:#x}: no relay ran"
    );
    assert_eq!(sim.mdls_outstanding(), 0);
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
