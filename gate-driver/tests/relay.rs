//! The relay (issue 12) on the simulation, virtual time: byte-exact
//! transfer both ways, half-close and reset from each side, backends that
//! refuse, never answer or read slowly (memory stays at the fixed buffers),
//! MaxConnections, idle timeout, PROXY v1/v2 headers, post-accept and
//! pended connections, and unload / listener re-creation with 1000 relays
//! in flight. Every test ends with a clean unload and no violation.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)] // test code: std allocation is fine

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
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// A client connection through the gate and the backend connection the
/// relay opened for it.
fn open(sim: &Sim, local: SocketAddr, src: &str) -> (Conn, Conn) {
    let before = sim.backend_conns(backend()).len();
    let r = sim.connect(addr(src), local);
    // None in post-accept mode (no inspect callback).
    assert!(matches!(r.verdict(), Some(Verdict::Accept) | None));
    let c = r.conn().expect("established");
    until(sim, "the backend connection", || {
        sim.backend_conns(backend()).len() > before
    });
    let b = *sim.backend_conns(backend()).last().unwrap();
    (c, b)
}

fn active() -> u32 {
    gate_driver::relay::snapshot().map_or(0, |s| s.active)
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
    match &e
        .field(name)
        .unwrap_or_else(|| panic!("no field {name}"))
        .value
    {
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
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "transfer stalled at {}",
            got.len()
        );
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
        sim.set_max_send_chunk(if i % 2 == 0 {
            Some(1 + rng.below(5000) as usize)
        } else {
            None
        });
        let (c, b) = open(&sim, local, &format!("192.0.2.{}:{}", 10 + i, 5000 + i));
        let up = rng.bytes(n);
        let down = rng.bytes(n / 2 + 3);
        assert_eq!(
            pump(&sim, &mut rng, &c, &b, &up),
            up,
            "client -> backend, {n} bytes"
        );
        assert_eq!(
            pump(&sim, &mut rng, &b, &c, &down),
            down,
            "backend -> client"
        );
        c.peer_close();
        until(&sim, "backend sees EOF", || {
            b.info().unwrap().disconnected == Some(false)
        });
        b.peer_close();
        until(&sim, "both closed", || {
            closed(&c) && closed(&b) && active() == 0
        });
        assert_eq!(
            c.info().unwrap().disconnected,
            Some(false),
            "client closed gracefully"
        );
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

#[test]
fn half_close_from_the_backend_first_keeps_the_other_direction() {
    let sim = Sim::new();
    let (d, local) = start_relay(&sim, &[]);
    let (c, b) = open(&sim, local, "192.0.2.20:4000");
    b.peer_send(b"banner");
    b.peer_close();
    until(&sim, "client gets the banner and EOF", || {
        c.info().unwrap().disconnected == Some(false)
    });
    assert_eq!(c.take_sent(), b"banner");
    // The client -> backend direction still works after the backend's EOF.
    c.peer_send(b"late request");
    until(&sim, "backend gets the late bytes", || b.unread() == 12);
    assert_eq!(b.take_sent(), b"late request");
    assert!(!closed(&c) && !closed(&b), "half-closed, not closed");
    c.peer_close();
    until(&sim, "both closed", || {
        closed(&c) && closed(&b) && active() == 0
    });
    let e = &events(&sim, "RelayClosed")[0];
    assert_eq!(field_u64(e, "FirstEnded"), 2, "backend first");
    assert_eq!(field_u64(e, "Cause"), 0);
    finish(&sim, d);
}

#[test]
fn a_reset_on_either_side_aborts_both() {
    let sim = Sim::new();
    let (d, local) = start_relay(&sim, &[]);
    for (i, client_resets) in [true, false].into_iter().enumerate() {
        let (c, b) = open(&sim, local, &format!("192.0.2.30:{}", 4000 + i));
        c.peer_send(&[7u8; 5000]);
        b.peer_send(&[9u8; 3000]);
        until(&sim, "mid-stream", || {
            b.unread() == 5000 && c.unread() == 3000
        });
        let (resetter, other) = if client_resets { (c, b) } else { (b, c) };
        resetter.peer_reset();
        until(&sim, "both closed", || closed(&c) && closed(&b));
        assert_eq!(
            other.info().unwrap().disconnected,
            Some(true),
            "the other side is closed abortively (RST)"
        );
    }
    until(&sim, "relays freed", || active() == 0);
    let evs = events(&sim, "RelayClosed");
    assert_eq!(field_u64(&evs[0], "Cause"), 1, "client_error");
    assert_eq!(field_u64(&evs[1], "Cause"), 2, "backend_error");
    assert_eq!(gate_driver::relay::snapshot().unwrap().resets, 2);
    finish(&sim, d);
}

#[test]
fn a_refusing_backend_gets_the_client_closed_abortively() {
    let sim = Sim::new();
    let (d, local) = start_relay(&sim, &[]);
    sim.backend_listen(backend(), BackendMode::Refuse);
    let r = sim.connect(addr("192.0.2.40:4000"), local);
    let c = r.conn().unwrap();
    until(&sim, "client closed", || closed(&c) && active() == 0);
    assert_eq!(c.info().unwrap().disconnected, Some(true));
    assert_eq!(sim.backend_refused(backend()), 1);
    let f = events(&sim, "RelayFailed");
    assert_eq!(f.len(), 1);
    assert_eq!(field_u64(&f[0], "Cause"), 5, "backend_refused");
    assert_eq!(events(&sim, "RelayOpened").len(), 0);
    let s = gate_driver::relay::snapshot().unwrap();
    assert_eq!((s.backend_refused, s.failed, s.active), (1, 1, 0));
    finish(&sim, d);
}

#[test]
fn a_silent_backend_times_out_and_a_slow_one_is_in_time() {
    let sim = Sim::new();
    let (d, local) = start_relay(&sim, &[("ConnectTimeoutMs", RegValue::Dword(3000))]);
    sim.backend_listen(backend(), BackendMode::Silent);
    let c1 = sim.connect(addr("192.0.2.50:4000"), local).conn().unwrap();
    let c2 = sim.connect(addr("192.0.2.50:4001"), local).conn().unwrap();
    until(&sim, "two connects waiting", || {
        sim.backend_waiting(backend()) == 2
    });
    sim.advance_ms(2000);
    // The backend answers one of them late but within the timeout.
    assert_eq!(sim.backend_answer(backend(), true, 1), 1);
    until(&sim, "one relay opened", || {
        events(&sim, "RelayOpened").len() == 1
    });
    sim.advance_ms(1100);
    until(&sim, "the unanswered one failed", || {
        let s = gate_driver::relay::snapshot().unwrap();
        s.failed == 1 && s.active == 1
    });
    // The hand-over order is not the arrival order: find which one waited.
    let (failed, alive) = if closed(&c1) { (c1, c2) } else { (c2, c1) };
    assert!(closed(&failed) && !closed(&alive));
    assert_eq!(failed.info().unwrap().disconnected, Some(true));
    assert_eq!(
        sim.backend_waiting(backend()),
        0,
        "the connect IRP was cancelled"
    );
    let f = events(&sim, "RelayFailed");
    assert_eq!(f.len(), 1);
    assert_eq!(field_u64(&f[0], "Cause"), 4, "connect_timeout");
    let b1 = sim.backend_conns(backend())[0];
    alive.peer_send(b"hi");
    until(&sim, "relayed", || b1.unread() == 2);
    finish(&sim, d);
}

#[test]
fn a_slow_backend_costs_only_the_fixed_buffers() {
    let sim = Sim::new();
    let buf = 4096usize;
    let window = 8192usize;
    sim.set_send_window(Some(window));
    let (d, local) = start_relay(&sim, &[("RelayBufferBytes", RegValue::Dword(buf as u32))]);
    let (c, b) = open(&sim, local, "192.0.2.60:4000");
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    c.peer_send(&data);
    until(&sim, "the relay stalls on the window", || {
        b.pending_sends() == 1
    });
    for _ in 0..50 {
        sim.advance_ms(100);
        sim.quiesce();
    }
    // Held by the relay: at most one buffer in flight (the pending send);
    // the rest stays with the client (TCP's flow control does the rest).
    let taken = data.len() - c.unreceived();
    assert!(b.unread() <= window, "backend has {} unread", b.unread());
    assert!(
        taken <= window + buf,
        "the relay took {taken} bytes from the client with a {window}-byte window and {buf}-byte buffer"
    );
    assert_eq!(b.pending_sends(), 1, "one send in flight, no queue");
    // Reading at the backend drains everything, byte-exact.
    let mut rng = Rng(1);
    let mut got = Vec::new();
    let t = Instant::now();
    while got.len() < data.len() {
        got.extend(b.take_sent());
        sim.quiesce();
        let _ = rng.next();
        assert!(t.elapsed() < Duration::from_secs(60));
    }
    assert_eq!(got, data);
    sim.set_send_window(None);
    finish(&sim, d);
}

#[test]
fn max_connections_refuses_abortively_and_counts() {
    let sim = Sim::new();
    let (d, local) = start_relay(&sim, &[("MaxConnections", RegValue::Dword(2))]);
    let (c1, _) = open(&sim, local, "192.0.2.70:4000");
    let (_c2, _) = open(&sim, local, "192.0.2.70:4001");
    let c3 = sim.connect(addr("192.0.2.70:4002"), local).conn().unwrap();
    until(&sim, "third closed", || closed(&c3));
    assert_eq!(c3.info().unwrap().disconnected, Some(true));
    let s = gate_driver::relay::snapshot().unwrap();
    assert_eq!((s.refused_at_limit, s.active), (1, 2));
    let f = events(&sim, "RelayFailed");
    assert_eq!(field_u64(&f[0], "Cause"), 8, "max_connections");
    // One ends: a new one fits.
    c1.peer_reset();
    until(&sim, "one left", || {
        gate_driver::relay::snapshot().unwrap().active == 1
    });
    let (c4, b4) = open(&sim, local, "192.0.2.70:4003");
    c4.peer_send(b"x");
    until(&sim, "relayed", || b4.unread() == 1);
    finish(&sim, d);
}

#[test]
fn an_idle_relay_is_aborted_and_traffic_keeps_one_alive() {
    let sim = Sim::new();
    let (d, local) = start_relay(&sim, &[("IdleTimeoutMs", RegValue::Dword(5000))]);
    let (c1, b1) = open(&sim, local, "192.0.2.80:4000");
    let (c2, b2) = open(&sim, local, "192.0.2.80:4001");
    for i in 0..8 {
        sim.advance_ms(1000);
        c2.peer_send(&[i]);
        until(&sim, "relayed", || b2.unread() > 0);
        b2.take_sent();
    }
    until(&sim, "idle one aborted", || {
        closed(&c1) && closed(&b1) && active() == 1
    });
    assert_eq!(c1.info().unwrap().disconnected, Some(true));
    assert!(!closed(&c2), "the busy relay lives on");
    let e = events(&sim, "RelayClosed");
    assert_eq!(e.len(), 1);
    assert_eq!(field_u64(&e[0], "Cause"), 3, "idle_timeout");
    assert_eq!(gate_driver::relay::snapshot().unwrap().idle_timeouts, 1);
    finish(&sim, d);
}

/// The bytes the backend gets first for a client `src` connecting to
/// `dst` with PROXY protocol `version`, then the client's own bytes.
fn proxy_header(version: u32, listen: Option<&str>, src: &str, dst_ip: &str) -> Vec<u8> {
    let sim = Sim::new();
    let mut v = vec![("ProxyProtocol", RegValue::Dword(version))];
    if let Some(l) = listen {
        v.push(("ListenAddress", RegValue::Sz(l.into())));
    }
    let (d, local) = start_relay(&sim, &v);
    let dst = SocketAddr::new(dst_ip.parse().unwrap(), local.port());
    let before = sim.backend_conns(backend()).len();
    let c = sim.connect(addr(src), dst).conn().unwrap();
    until(&sim, "backend connection", || {
        sim.backend_conns(backend()).len() > before
    });
    let b = *sim.backend_conns(backend()).last().unwrap();
    c.peer_send(b"GET /");
    let mut got = Vec::new();
    until(&sim, "header and data", || {
        got.extend(b.take_sent());
        got.ends_with(b"GET /")
    });
    let e = &events(&sim, "RelayOpened")[0];
    assert_eq!(
        e.field("ClientAddress").unwrap().as_socket_addr(),
        Some(addr(src)),
        "the client's address comes from the accept"
    );
    c.peer_close();
    b.peer_close();
    until(&sim, "closed", || active() == 0);
    let closed_ev = &events(&sim, "RelayClosed")[0];
    assert_eq!(
        field_u64(closed_ev, "BytesToBackend"),
        5,
        "the header is not counted"
    );
    finish(&sim, d);
    got.truncate(got.len() - 5);
    got
}

#[test]
fn proxy_v1_headers_are_byte_exact() {
    assert_eq!(
        proxy_header(1, Some("0.0.0.0"), "192.0.2.7:40000", "192.0.2.1"),
        b"PROXY TCP4 192.0.2.7 192.0.2.1 40000 8080\r\n"
    );
    // An IPv4 client on the dual-stack listener arrives v4-mapped: TCP4.
    assert_eq!(
        proxy_header(1, None, "192.0.2.8:40001", "192.0.2.1"),
        b"PROXY TCP4 192.0.2.8 192.0.2.1 40001 8080\r\n"
    );
    assert_eq!(
        proxy_header(1, None, "[2001:db8::7]:1234", "2001:db8::1"),
        b"PROXY TCP6 2001:db8::7 2001:db8::1 1234 8080\r\n"
    );
}

#[test]
fn proxy_v2_headers_are_byte_exact() {
    let sig = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    ];
    let mut v4 = sig.to_vec();
    v4.extend([
        0x21, 0x11, 0, 12, 192, 0, 2, 7, 192, 0, 2, 1, 0x9C, 0x40, 0x1F, 0x90,
    ]);
    assert_eq!(
        proxy_header(2, Some("0.0.0.0"), "192.0.2.7:40000", "192.0.2.1"),
        v4
    );
    // v4-mapped on the dual-stack listener: the IPv4 form.
    assert_eq!(proxy_header(2, None, "192.0.2.7:40000", "192.0.2.1"), v4);
    let mut v6 = sig.to_vec();
    v6.extend([0x21, 0x21, 0, 36]);
    v6.extend([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
    v6.extend([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    v6.extend([0x04, 0xD2, 0x1F, 0x90]);
    assert_eq!(
        proxy_header(2, None, "[2001:db8::7]:1234", "2001:db8::1"),
        v6
    );
}

#[test]
fn without_a_backend_the_gate_says_so_and_closes_as_before() {
    let sim = Sim::new();
    let (d, l) = start(&sim, &[]);
    let c = sim
        .connect(addr("192.0.2.90:4000"), local_of(&l))
        .conn()
        .unwrap();
    until(&sim, "closed", || closed(&c));
    assert_eq!(
        c.info().unwrap().disconnected,
        Some(false),
        "graceful, as AbortiveClose=0"
    );
    assert_eq!(events(&sim, "RelayOff").len(), 1);
    assert!(sim
        .debug_output()
        .iter()
        .any(|l| l.text.contains("no BackendAddress")));
    assert!(gate_driver::relay::snapshot().is_none());
    finish(&sim, d);
}

#[test]
fn post_accept_and_pended_connections_relay_too() {
    // Post-accept mode (Wine: no conditional accept).
    let sim = Sim::new();
    sim.set_conditional_accept_supported(false);
    let (d, local) = start_relay(&sim, &[]);
    let (c, b) = open(&sim, local, "192.0.2.100:4000");
    c.peer_send(b"ping");
    until(&sim, "relayed", || b.unread() == 4);
    b.peer_send(b"pong");
    until(&sim, "relayed back", || c.unread() == 4);
    assert_eq!(c.take_sent(), b"pong");
    finish(&sim, d);
    drop(sim);

    // A pended request, accepted later with WskInspectComplete.
    let sim = Sim::new();
    sim.backend_listen(backend(), BackendMode::Accept);
    let (d, l) = start(
        &sim,
        &[
            ("BackendAddress", RegValue::Sz(BACKEND.into())),
            ("RateMilliPerSecond", RegValue::Dword(1000)),
            ("Burst", RegValue::Dword(1)),
            ("MaxPending", RegValue::Dword(8)),
            ("MaxPendDelayMs", RegValue::Dword(2000)),
        ],
    );
    let local = local_of(&l);
    let (_c0, _b0) = open(&sim, local, "192.0.2.110:4000");
    let r = sim.connect(addr("192.0.2.110:4001"), local);
    assert_eq!(r.verdict(), Some(Verdict::Pend));
    assert_eq!(
        r.wait_resolved(&sim, 3_000_000_000),
        RequestState::Established
    );
    let c = r.conn().unwrap();
    until(&sim, "second backend connection", || {
        sim.backend_conns(backend()).len() == 2
    });
    let b = sim.backend_conns(backend())[1];
    c.peer_send(b"after the pend");
    until(&sim, "relayed", || b.unread() == 14);
    finish(&sim, d);
}

/// Opens `n` relays from distinct clients, some with bytes in flight.
fn many(sim: &Sim, local: SocketAddr, n: usize) -> Vec<(Conn, Conn)> {
    let before = sim.backend_conns(backend()).len();
    let mut clients: Vec<(SocketAddr, Conn)> = Vec::new();
    // In batches under the accept hand-off queue's 256 entries.
    for i in 0..n {
        let src = addr(&format!(
            "10.{}.{}.{}:{}",
            20 + i / 60000,
            (i / 250) % 250,
            i % 250 + 1,
            2000 + i % 50000
        ));
        let r = sim.connect(src, local);
        clients.push((src, r.conn().expect("established")));
        if clients.len().is_multiple_of(200) || clients.len() == n {
            until(sim, "every backend connection", || {
                sim.backend_conns(backend()).len() == before + clients.len()
            });
        }
    }
    // Pair each client with its backend connection by the PROXY-less
    // first bytes: each client sends its index.
    let backs = sim.backend_conns(backend())[before..].to_vec();
    for (i, (_, c)) in clients.iter().enumerate() {
        c.peer_send(format!("{i:08}").as_bytes());
    }
    let mut by_index = vec![None; n];
    until(sim, "every index relayed", || {
        backs.iter().all(|b| b.unread() >= 8)
    });
    for b in backs {
        let got = b.take_sent();
        let i: usize = std::str::from_utf8(&got[..8]).unwrap().parse().unwrap();
        by_index[i] = Some(b);
    }
    clients
        .into_iter()
        .zip(by_index)
        .map(|((_, c), b)| (c, b.expect("a backend connection per client")))
        .collect()
}

#[test]
fn unload_with_1000_relays_in_flight_tears_everything_down() {
    let sim = Sim::new();
    let (d, local) = start_relay(&sim, &[]);
    let pairs = many(&sim, local, 1000);
    // Bytes in flight both ways on some, half-closed on others.
    for (i, (c, b)) in pairs.iter().enumerate() {
        match i % 4 {
            0 => c.peer_send(&[1u8; 3000]),
            1 => b.peer_send(&[2u8; 70_000]),
            2 => c.peer_close(),
            _ => {}
        }
    }
    // A connect still waiting too.
    sim.backend_listen(backend(), BackendMode::Silent);
    let waiting = sim.connect(addr("10.99.0.1:1"), local).conn().unwrap();
    until(&sim, "connect waiting", || {
        sim.backend_waiting(backend()) == 1
    });
    sim.quiesce();
    let report = d.unload(&sim);
    report.assert_clean();
    sim.assert_no_violations();
    for (c, b) in pairs.iter().chain([(waiting, waiting)].iter()) {
        assert!(closed(c) && closed(b), "every socket closed");
    }
    assert_eq!(sim.backend_waiting(backend()), 0);
    assert_eq!(sim.mdls_outstanding(), 0);
    let evs = checked_events(&sim);
    assert_eq!(count(&evs, "RelayClosed"), 1000);
    assert_eq!(count(&evs, "RelayFailed"), 1);
    let unloads = evs
        .iter()
        .filter(|e| e.name == "RelayClosed" && field_u64(e, "Cause") == 7)
        .count();
    assert!(unloads >= 750, "{unloads} relays closed by the unload");
}

#[test]
fn listener_recreation_after_a_null_inspect_id_leaves_1000_relays_working() {
    let sim = Sim::new();
    let (d, local) = start_relay(&sim, &[]);
    let old = sim.listeners()[0].socket;
    let pairs = many(&sim, local, 1000);
    assert_eq!(sim.null_inspect(), Some(0), "rejected (WskInspectReject)");
    let l = wait_new_listener(&sim, old);
    // Every relay still carries bytes both ways.
    for (i, (c, b)) in pairs.iter().enumerate() {
        c.peer_send(format!("up{i}").as_bytes());
        b.peer_send(format!("down{i}").as_bytes());
    }
    until(&sim, "all relayed", || {
        pairs.iter().all(|(c, b)| c.unread() > 0 && b.unread() > 0)
    });
    for (i, (c, b)) in pairs.iter().enumerate() {
        assert_eq!(b.take_sent(), format!("up{i}").as_bytes());
        assert_eq!(c.take_sent(), format!("down{i}").as_bytes());
    }
    // And the new listener relays new connections.
    let (c, b) = open(&sim, local_of(&l), "192.0.2.200:4000");
    c.peer_send(b"new");
    until(&sim, "relayed", || b.unread() == 3);
    assert_eq!(active(), 1001);
    finish(&sim, d);
}

#[test]
fn wine_style_disconnect_stub_still_tears_down_cleanly() {
    let sim = Sim::new();
    sim.set_disconnect_supported(false);
    let (d, local) = start_relay(&sim, &[]);
    // Graceful end: both sides close; the FIN cannot be passed on (stub),
    // the relay ends when both directions saw EOF.
    let (c, b) = open(&sim, local, "192.0.2.120:4000");
    c.peer_send(b"req");
    until(&sim, "relayed", || b.unread() == 3);
    c.peer_close();
    b.peer_close();
    until(&sim, "closed", || closed(&c) && closed(&b) && active() == 0);
    // Abort with a receive pending on the backend: no abortive disconnect
    // (stub), so the receive is cancelled with IoCancelIrp before the close.
    let (c, b) = open(&sim, local, "192.0.2.120:4001");
    c.peer_reset();
    until(&sim, "aborted", || {
        closed(&c) && closed(&b) && active() == 0
    });
    assert!(sim.wsk_log().iter().any(|l| l.contains("IoCancelIrp")));
    finish(&sim, d);
}

#[test]
fn a_relay_that_cannot_be_allocated_is_refused_abortively() {
    let sim = Sim::new();
    let (d, local) = start_relay(&sim, &[]);
    sim.fail_next_irp_allocations(1);
    let c = sim.connect(addr("192.0.2.130:4000"), local).conn().unwrap();
    until(&sim, "refused", || closed(&c));
    assert_eq!(c.info().unwrap().disconnected, Some(true));
    let s = gate_driver::relay::snapshot().unwrap();
    assert_eq!((s.no_memory, s.active), (1, 0));
    assert_eq!(
        field_u64(&events(&sim, "RelayFailed")[0], "Cause"),
        9,
        "no_memory"
    );
    // The next one is relayed.
    let (c, b) = open(&sim, local, "192.0.2.130:4001");
    c.peer_send(b"ok");
    until(&sim, "relayed", || b.unread() == 2);
    finish(&sim, d);
}

/// A backend that refuses: the first failed connect writes one
/// RelayBackendDown (Admin channel) and the next ones only RelayFailed; once
/// the backend accepts, the first relay that reaches it writes one
/// RelayBackendUp counting the failures, and a second outage a second Down.
#[test]
fn a_refusing_backend_writes_one_down_and_a_working_one_one_up() {
    use gate_driver::etw::channel;
    let sim = Sim::new();
    let (d, local) = start_relay(&sim, &[]);
    // Reachable at first: no state event.
    open(&sim, local, "192.0.2.50:4000");
    assert_eq!(events(&sim, "RelayBackendUp").len(), 0);
    sim.backend_listen(backend(), BackendMode::Refuse);
    for i in 0..5u16 {
        let r = sim.connect(addr(&format!("192.0.2.51:{}", 4000 + i)), local);
        let c = r.conn().unwrap();
        until(&sim, "client closed", || closed(&c));
    }
    // The worker counts a failure before it writes its RelayFailed event:
    // wait for both (the count alone raced the fifth event under load).
    until(&sim, "5 failures reported", || {
        gate_driver::relay::snapshot().is_some_and(|s| s.failed == 5)
            && events(&sim, "RelayFailed").len() == 5
    });
    assert_eq!(events(&sim, "RelayFailed").len(), 5);
    let down = events(&sim, "RelayBackendDown");
    assert_eq!(down.len(), 1, "state change only: {down:?}");
    assert_eq!(down[0].channel, channel::ADMIN);
    assert_eq!(down[0].u64("Cause"), Some(5), "backend_refused");
    assert_eq!(events(&sim, "RelayBackendUp").len(), 0);
    sim.backend_listen(backend(), BackendMode::Accept);
    for i in 0..3u16 {
        open(&sim, local, &format!("192.0.2.52:{}", 4000 + i));
    }
    until(&sim, "the relays opened", || {
        events(&sim, "RelayOpened").len() == 4
    });
    let up = events(&sim, "RelayBackendUp");
    assert_eq!(up.len(), 1, "state change only: {up:?}");
    assert_eq!(up[0].channel, channel::ADMIN);
    assert_eq!(up[0].u64("FailedConnects"), Some(5));
    assert_eq!(events(&sim, "RelayBackendDown").len(), 1);
    // A second outage is a second state change.
    sim.backend_listen(backend(), BackendMode::Refuse);
    let r = sim.connect(addr("192.0.2.53:4000"), local);
    let c = r.conn().unwrap();
    until(&sim, "client closed", || closed(&c));
    until(&sim, "the second RelayBackendDown", || {
        events(&sim, "RelayBackendDown").len() == 2
    });
    assert_eq!(gate_driver::relay::snapshot().unwrap().failed, 6);
    finish(&sim, d);
}

/// Issue 12 review: a client that resets while the backend connect is
/// pending kept its MaxConnections slot until ConnectTimeoutMs and was
/// reported as connect_timeout with RelayBackendDown (blaming the
/// backend). The client is watched while connecting (a receive kept
/// posted on it): its reset ends the relay at once, cause client_error,
/// and the backend is not marked down.
#[test]
fn a_client_reset_during_the_connect_ends_it_at_once_without_blaming_the_backend() {
    let sim = Sim::new();
    let (d, local) = start_relay(
        &sim,
        &[
            ("ConnectTimeoutMs", RegValue::Dword(3000)),
            ("MaxConnections", RegValue::Dword(1)),
        ],
    );
    sim.backend_listen(backend(), BackendMode::Silent);
    let c = sim.connect(addr("192.0.2.55:4000"), local).conn().unwrap();
    until(&sim, "the connect waiting", || {
        sim.backend_waiting(backend()) == 1
    });
    c.peer_send(&[1; 10]);
    c.peer_reset();
    // No virtual time passes: the connect timeout cannot be what ends it.
    until(&sim, "the relay ended and its slot freed", || active() == 0);
    assert_eq!(
        sim.backend_waiting(backend()),
        0,
        "the connect was cancelled"
    );
    let f = events(&sim, "RelayFailed");
    assert_eq!(f.len(), 1);
    assert_eq!(
        field_u64(&f[0], "Cause"),
        1,
        "client_error, not connect_timeout"
    );
    assert_eq!(
        events(&sim, "RelayBackendDown").len(),
        0,
        "the backend is not blamed"
    );
    let s = gate_driver::relay::snapshot().unwrap();
    assert_eq!((s.connect_timeouts, s.resets, s.failed), (0, 1, 1));
    // The slot is free: the next client relays once the backend answers.
    let c2 = sim.connect(addr("192.0.2.55:4001"), local).conn().unwrap();
    until(&sim, "the next connect waiting", || {
        sim.backend_waiting(backend()) == 1
    });
    assert_eq!(sim.backend_answer(backend(), true, 1), 1);
    until(&sim, "opened", || events(&sim, "RelayOpened").len() == 1);
    let b2 = *sim.backend_conns(backend()).last().unwrap();
    c2.peer_send(b"ok");
    until(&sim, "relayed", || b2.unread() == 2);
    finish(&sim, d);
}

/// The client's bytes and EOF that arrive while the backend connect is
/// pending reach the backend in order, after the PROXY header when one is
/// configured; with a header and nothing from the client, the header is
/// sent at once on connect (server-first protocols must not wait for the
/// client).
#[test]
fn bytes_and_eof_from_the_client_during_the_connect_follow_the_header() {
    for proxy in [0u32, 1, 2] {
        // (client sends before the connect, closes before it)
        for (early, eof) in [(false, false), (true, false), (true, true), (false, true)] {
            let sim = Sim::new();
            let (d, local) = start_relay(&sim, &[("ProxyProtocol", RegValue::Dword(proxy))]);
            sim.backend_listen(backend(), BackendMode::Silent);
            let c = sim.connect(addr("192.0.2.56:4000"), local).conn().unwrap();
            until(&sim, "the connect waiting", || {
                sim.backend_waiting(backend()) == 1
            });
            let first: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
            if early {
                c.peer_send(&first);
            }
            if eof {
                c.peer_close();
            }
            sim.quiesce();
            assert_eq!(sim.backend_answer(backend(), true, 1), 1);
            until(&sim, "opened", || events(&sim, "RelayOpened").len() == 1);
            let b = *sim.backend_conns(backend()).last().unwrap();
            let mut got = Vec::new();
            let hlen = match proxy {
                0 => 0,
                1 => b"PROXY TCP4 192.0.2.56 ".len(),
                _ => 16 + 12,
            };
            // The header arrives without the client sending anything more.
            until(&sim, "the header", || {
                got.extend(b.take_sent());
                got.len() >= hlen + if early { first.len() } else { 0 }
            });
            if !early && !eof {
                c.peer_send(&first);
                until(&sim, "the bytes", || {
                    got.extend(b.take_sent());
                    got.ends_with(&first)
                });
            }
            let header_len = if proxy == 1 {
                got.iter().position(|&x| x == b'\n').map_or(0, |i| i + 1)
            } else {
                hlen
            };
            let (h, data) = got.split_at(header_len);
            match proxy {
                1 => assert!(h.starts_with(b"PROXY TCP4 192.0.2.56 "), "{h:?}"),
                2 => assert_eq!(&h[..12], b"\r\n\r\n\0\r\nQUIT\n"),
                _ => {}
            }
            let expect: &[u8] = if early || !eof { &first } else { &[] };
            assert_eq!(data, expect, "proxy {proxy} early {early} eof {eof}");
            if !eof {
                c.peer_close();
            }
            b.peer_close();
            until(&sim, "closed", || active() == 0);
            let e = &events(&sim, "RelayClosed")[0];
            assert_eq!(field_u64(e, "BytesToBackend"), expect.len() as u64);
            if eof {
                assert_eq!(field_u64(e, "FirstEnded"), 1, "the client ended first");
            }
            finish(&sim, d);
        }
    }
}

#[test]
fn the_counters_event_carries_the_relay_figures() {
    let sim = Sim::new();
    let (d, local) = start_relay(
        &sim,
        &[
            ("CountersIntervalMs", RegValue::Dword(1000)),
            ("MaxConnections", RegValue::Dword(1)),
        ],
    );
    let (c, b) = open(&sim, local, "192.0.2.80:4000");
    let c2 = sim.connect(addr("192.0.2.80:4001"), local).conn().unwrap();
    until(&sim, "the second refused", || closed(&c2));
    c.peer_send(&[5; 700]);
    until(&sim, "700 bytes at the backend", || b.unread() == 700);
    // The bytes reach the backend when the send is made; the relay counts
    // them when the worker takes its completion (not part of quiesce).
    until(&sim, "the send counted", || {
        gate_driver::relay::snapshot().is_some_and(|s| s.bytes_to_backend == 700)
    });
    let before = count(&sim.events(), "Counters");
    advance_until(&sim, 1100, 1000, "a Counters event", || {
        sim.quiesce();
        count(&sim.events(), "Counters") > before
    });
    let evs = events(&sim, "Counters");
    let e = evs.last().unwrap();
    assert_eq!(e.u64("RelaysActive"), Some(1));
    assert_eq!(e.u64("RelaysOpened"), Some(1));
    assert_eq!(e.u64("RelaysClosed"), Some(0));
    assert_eq!(e.u64("RelaysFailed"), Some(1));
    assert_eq!(e.u64("RelaysRefusedAtLimit"), Some(1));
    assert_eq!(e.u64("RelayBytesToBackend"), Some(700));
    assert_eq!(e.u64("RelayBytesToClient"), Some(0));
    // The relay's figures are in Counters only: RelayCounters (id 23) is retired.
    assert_eq!(count(&sim.events(), "RelayCounters"), 0);
    finish(&sim, d);
}

/// Issue 12 review: the last `Counters` event of a trace could be up to
/// `CountersIntervalMs` old. At unload, after every relay closed, one last
/// `Counters` carries the final totals: they equal the RelayOpened /
/// RelayClosed / RelayFailed events and the bytes relayed.
#[test]
fn the_last_counters_event_at_unload_has_the_final_totals() {
    let sim = Sim::new();
    let (d, local) = start_relay(&sim, &[("CountersIntervalMs", RegValue::Dword(1000))]);
    let (c, b) = open(&sim, local, "192.0.2.85:4000");
    c.peer_send(&[5; 700]);
    b.peer_send(&[6; 300]);
    until(&sim, "both counted", || {
        gate_driver::relay::snapshot()
            .is_some_and(|s| s.bytes_to_backend == 700 && s.bytes_to_client == 300)
    });
    sim.advance_ms(1100);
    until(&sim, "a periodic Counters", || {
        count(&sim.events(), "Counters") > 0
    });
    // After that periodic event: more relays, bytes and a failure, and
    // relays still open when the driver unloads.
    let pairs: Vec<(Conn, Conn)> = (0..5)
        .map(|i| open(&sim, local, &format!("192.0.2.86:{}", 4000 + i)))
        .collect();
    for (c, _) in &pairs {
        c.peer_send(&[7; 1000]);
    }
    until(&sim, "5000 more bytes counted", || {
        gate_driver::relay::snapshot().is_some_and(|s| s.bytes_to_backend == 5700)
    });
    c.peer_reset();
    until(&sim, "the first closed", || closed(&b));
    sim.backend_listen(backend(), BackendMode::Refuse);
    let refused = sim.connect(addr("192.0.2.87:4000"), local).conn().unwrap();
    until(&sim, "refused", || closed(&refused));
    let report = d.unload(&sim);
    report.assert_clean();
    sim.assert_no_violations();
    let evs = checked_events(&sim);
    let last_counters = evs.iter().rposition(|e| e.name == "Counters").unwrap();
    // Nothing relay-related after it: it is the last word.
    assert!(
        !evs[last_counters..]
            .iter()
            .any(|e| e.name.starts_with("Relay")),
        "a relay event after the last Counters"
    );
    let e = &evs[last_counters];
    assert_eq!(e.u64("RelaysActive"), Some(0));
    assert_eq!(
        e.u64("RelaysOpened"),
        Some(count(&evs, "RelayOpened") as u64)
    );
    assert_eq!(e.u64("RelaysOpened"), Some(6));
    assert_eq!(
        e.u64("RelaysClosed"),
        Some(count(&evs, "RelayClosed") as u64)
    );
    assert_eq!(e.u64("RelaysClosed"), Some(6));
    assert_eq!(
        e.u64("RelaysFailed"),
        Some(count(&evs, "RelayFailed") as u64)
    );
    assert_eq!(e.u64("RelaysFailed"), Some(1));
    assert_eq!(e.u64("RelayBackendRefused"), Some(1));
    assert_eq!(e.u64("RelayResets"), Some(1));
    assert_eq!(e.u64("RelayBytesToBackend"), Some(5700));
    assert_eq!(e.u64("RelayBytesToClient"), Some(300));
    let closed_bytes: u64 = evs
        .iter()
        .filter(|e| e.name == "RelayClosed")
        .map(|e| field_u64(e, "BytesToBackend"))
        .sum();
    assert_eq!(closed_bytes, 5700, "the RelayClosed events agree");
}

/// The "abandon" path (issue 12): a provider that neither cancels nor
/// completes a pending receive when the connection is reset, disconnected
/// or closed (Wine was seen doing so; Windows' close completes every IRP).
/// The relay gives up on the pair after two teardown graces — bounded —
/// with both sockets closed and the relay reported; the pair stays
/// allocated while its IRP is out and is freed when it comes back, so the
/// unload after that finds nothing leaked and no driver code runs after it.
#[test]
fn a_relay_whose_receive_never_comes_back_is_abandoned_in_bounded_time_then_freed() {
    let sim = Sim::new();
    let (d, local) = start_relay(&sim, &[]);
    let (c, b) = open(&sim, local, "192.0.2.140:4000");
    c.peer_send(b"req");
    until(&sim, "relayed", || b.unread() == 3);
    sim.set_hold_receives(true);
    // The client resets: its receive completes with the reset; the relay
    // aborts both sides, and the receive pending on the backend is held.
    c.peer_reset();
    until(&sim, "backend reset", || {
        b.info().unwrap().disconnected == Some(true) && sim.held_receives() == 1
    });
    // The relay waits for the held receive (a cancel is ignored) before
    // it closes the sockets, one grace at most.
    let grace = u64::from(gate_driver::relay::pair::TEARDOWN_GRACE_MS);
    sim.advance_ms(grace - 10);
    sim.quiesce();
    assert!(!closed(&b), "closed before the grace ran out");
    sim.advance_ms(20);
    until(&sim, "both closed", || closed(&c) && closed(&b));
    assert_eq!(sim.held_receives(), 1, "the close did not complete it");
    assert_eq!(active(), 1, "still waiting for its IRP");
    assert_eq!(gate_driver::relay::abandoned(), Some((0, 0)));
    sim.advance_ms(grace + 10);
    until(&sim, "abandoned", || active() == 0);
    assert_eq!(gate_driver::relay::abandoned(), Some((1, 0)));
    assert!(
        sim.debug_output()
            .iter()
            .any(|l| l.text.contains("abandoned with 1 IRP(s) still pending")),
        "the abandon is reported"
    );
    let e = events(&sim, "RelayClosed");
    assert_eq!(e.len(), 1, "reported once, when abandoned");
    assert_eq!(field_u64(&e[0], "Cause"), 1, "client_error");
    // The relay goes on working meanwhile.
    sim.set_hold_receives(false);
    let (c2, b2) = open(&sim, local, "192.0.2.140:4001");
    c2.peer_send(b"more");
    until(&sim, "relayed", || b2.unread() == 4);
    // The held IRP comes back at last: the pair is freed, not reported again.
    assert_eq!(sim.release_held_receives(gate_ksys::STATUS_CANCELLED), 1);
    until(&sim, "freed", || {
        gate_driver::relay::abandoned() == Some((1, 1))
    });
    assert_eq!(events(&sim, "RelayClosed").len(), 1);
    // Counters carries both (review 10 item 8).
    let before = count(&sim.events(), "Counters");
    advance_until(&sim, 11_000, 10_000, "a Counters event", || {
        sim.quiesce();
        count(&sim.events(), "Counters") > before
    });
    let evs = events(&sim, "Counters");
    let e = evs.last().unwrap();
    assert_eq!(e.u64("RelaysAbandoned"), Some(1));
    assert_eq!(e.u64("RelaysAbandonedFreed"), Some(1));
    finish(&sim, d);
}

/// The same at unload: the IRPs do not come back (issue 10, review item
/// 1). No driver code may run after DriverUnload returns, and each relay
/// IRP's completion routine is driver code: so unload tears the relays
/// down (sockets closed, the pairs abandoned after two graces, reported)
/// and then waits for the IRPs — on Windows WskCloseSocket completes them.
/// When the provider completes them at last, the pairs are freed, unload
/// returns with nothing leaked, and no driver code runs after it.
#[test]
fn unload_waits_for_relay_irps_that_come_back_late_and_no_code_runs_after_it() {
    let sim = Sim::new();
    let (d, local) = start_relay(&sim, &[]);
    let (c, b) = open(&sim, local, "192.0.2.141:4000");
    let (c2, b2) = open(&sim, local, "192.0.2.141:4001");
    c.peer_send(b"req");
    until(&sim, "relayed", || b.unread() == 3);
    sim.set_hold_receives(true);
    sim.quiesce();
    let grace = u64::from(gate_driver::relay::pair::TEARDOWN_GRACE_MS);
    let done = std::sync::atomic::AtomicBool::new(false);
    let advanced = std::sync::atomic::AtomicU64::new(0);
    let report = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                sim.advance_ms(100);
                advanced.fetch_add(100, std::sync::atomic::Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let u = s.spawn(|| d.unload(&sim));
        // Well past the two graces: the relays are torn down and abandoned,
        // and unload still waits for their IRPs.
        until(&sim, "the abandoned relays reported", || {
            sim.debug_output().iter().any(|l| {
                l.text
                    .contains("waiting for the IRPs of 2 abandoned relay(s)")
            })
        });
        while advanced.load(std::sync::atomic::Ordering::Acquire) < 3 * grace {
            std::thread::sleep(Duration::from_millis(5));
        }
        sim.quiesce();
        assert!(
            !u.is_finished(),
            "DriverUnload returned with relay IRPs out"
        );
        for x in [&c, &b, &c2, &b2] {
            assert!(closed(x), "every socket closed");
        }
        // Both relays' receives on both sides were held.
        assert_eq!(sim.held_receives(), 4);
        // The provider completes them at last (as WskCloseSocket would).
        assert_eq!(sim.release_held_receives(gate_ksys::STATUS_CANCELLED), 4);
        let r = u.join().expect("unload");
        done.store(true, std::sync::atomic::Ordering::Release);
        r
    });
    sim.quiesce();
    assert_eq!(
        events(&sim, "RelayClosed").len() + events(&sim, "RelayFailed").len(),
        2
    );
    report.assert_clean();
    sim.assert_no_violations();
}
