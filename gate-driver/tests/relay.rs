//! The relay (issue 12) on the simulation, virtual time: byte-exact
//! transfer both ways, half-close and reset from each side, backends that
//! refuse, never answer or read slowly (memory stays at the fixed buffers),
//! MaxConnections, idle timeout, PROXY v1/v2 headers, post-accept and
//! pended connections, and unload / listener re-creation with 1000 relays
//! in flight. Every test ends with a clean unload and no violation.

mod common;
use common::*;
use gate_usersim::etw::CapturedEvent;
use gate_usersim::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const BACKEND: &str = "10.9.0.1:9000";

fn backend() -> SocketAddr {
    addr(BACKEND)
}

/// Loads the driver relaying to [`BACKEND`] (which accepts), with a
/// generous rate limit and `extra` values.
fn start_relay(sim: &Sim, extra: &[(&str, RegValue)]) -> (Driver, SocketAddr) {
    sim.backend_listen(backend(), BackendMode::Accept);
    let mut v: Vec<(&str, RegValue)> = vec![
        ("BackendAddress", RegValue::Sz(BACKEND.into())),
        ("RateMilliPerSecond", RegValue::Dword(10_000_000)),
        ("Burst", RegValue::Dword(1_000_000)),
        ("MaxConnections", RegValue::Dword(4096)),
    ];
    v.extend(extra.iter().cloned());
    let (d, l) = start(sim, &v);
    (d, local_of(&l))
}

/// Waits (real time, the simulation quiesced each turn) for `cond`.
fn until(sim: &Sim, what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    loop {
        sim.quiesce();
        if cond() {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// A client connection through the gate and the backend connection the
/// relay opened for it.
fn open(sim: &Sim, local: SocketAddr, src: &str) -> (Conn, Conn) {
    let before = sim.backend_conns(backend()).len();
    let r = sim.connect(addr(src), local);
    assert_eq!(r.verdict(), Some(Verdict::Accept));
    let c = r.conn().expect("established");
    until(sim, "the backend connection", || {
        sim.backend_conns(backend()).len() > before
    });
    let b = *sim.backend_conns(backend()).last().unwrap();
    (c, b)
}

fn closed(c: &Conn) -> bool {
    c.info().is_some_and(|i| i.state == SocketState::Closed)
}

fn events(sim: &Sim, name: &str) -> Vec<CapturedEvent> {
    checked_events(sim)
        .into_iter()
        .filter(|e| e.name == name)
        .collect()
}

fn field_u64(e: &CapturedEvent, name: &str) -> u64 {
    match &e.field(name).unwrap_or_else(|| panic!("no field {name}")).value {
        gate_usersim::etw::Value::U64(v) => *v,
        other => panic!("{name}: {other:?}"),
    }
}

fn finish(sim: &Sim, d: Driver) {
    let report = d.unload(sim);
    report.assert_clean();
    sim.assert_no_violations();
}

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
        self.next() % n.max(1)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Moves `data` from `from`'s peer into the driver in random chunks while
/// reading what arrives at `to`'s peer; returns what arrived.
fn pump(sim: &Sim, rng: &mut Rng, from: &Conn, to: &Conn, data: &[u8]) -> Vec<u8> {
    let mut got = Vec::with_capacity(data.len());
    let mut sent = 0;
    let t = Instant::now();
    while got.len() < data.len() {
        if sent < data.len() && from.unreceived() < 256 * 1024 {
            let n = (1 + rng.below(70_000) as usize).min(data.len() - sent);
            from.peer_send(&data[sent..sent + n]);
            sent += n;
        }
        sim.quiesce();
        got.extend(to.take_sent());
        assert!(t.elapsed() < Duration::from_secs(60), "transfer stalled at {}", got.len());
        if got.len() < data.len() && sent == data.len() {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    got
}

#[test]
fn bytes_arrive_exactly_both_ways_in_random_chunkings() {
    let sim = Sim::new();
    let mut rng = Rng(0x5EED_0012);
    sim.set_max_send_chunk(Some(3000));
    let (d, local) = start_relay(&sim, &[("RelayBufferBytes", RegValue::Dword(16 * 1024))]);
    let sizes = [0usize, 1, 1000, 16 * 1024, 65_537, 1 << 20, 8 << 20];
    for (i, &n) in sizes.iter().enumerate() {
        // Alternate short sends on and off.
        sim.set_max_send_chunk(if i % 2 == 0 { Some(1 + rng.below(5000) as usize) } else { None });
        let (c, b) = open(&sim, local, &format!("192.0.2.{}:{}", 10 + i, 5000 + i));
        let up = rng.bytes(n);
        let down = rng.bytes(n / 2 + 3);
        assert_eq!(pump(&sim, &mut rng, &c, &b, &up), up, "client -> backend, {n} bytes");
        assert_eq!(pump(&sim, &mut rng, &b, &c, &down), down, "backend -> client");
        c.peer_close();
        until(&sim, "backend sees EOF", || b.info().unwrap().disconnected == Some(false));
        b.peer_close();
        until(&sim, "both closed", || closed(&c) && closed(&b));
        assert_eq!(c.info().unwrap().disconnected, Some(false), "client closed gracefully");
    }
    let closed_evs = events(&sim, "RelayClosed");
    assert_eq!(closed_evs.len(), sizes.len());
    for (e, &n) in closed_evs.iter().zip(&sizes) {
        assert_eq!(field_u64(e, "BytesToBackend"), n as u64);
        assert_eq!(field_u64(e, "BytesToClient"), (n / 2 + 3) as u64);
        assert_eq!(field_u64(e, "Cause"), 0, "both_ended");
        assert_eq!(field_u64(e, "FirstEnded"), 1, "client first");
    }
    assert_eq!(events(&sim, "RelayOpened").len(), sizes.len());
    assert_eq!(sim.mdls_outstanding(), 0);
    finish(&sim, d);
}
