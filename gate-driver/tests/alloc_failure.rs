//! Every allocation the driver makes can fail cleanly (issue 10, part 2).
//!
//! A reference run (start, listen, inspect / pend / abort, accept, a NULL
//! InspectID and the listener's re-creation, unload) counts the driver's
//! allocations: pool blocks, IRPs and MDLs, which the simulation counts in
//! one sequence. Then the run is repeated with the k-th allocation failing,
//! for every k: DriverEntry either succeeds or returns
//! STATUS_INSUFFICIENT_RESOURCES with nothing left behind, the worker
//! retries what it could not allocate, and every run ends with a clean
//! unload, no violation and no bug check. A third run relays a connection
//! to a backend (the relay allocates through the same pool): a relay that
//! cannot be allocated closes its connection, the rest goes on.
//!
//! Those runs count the pool's one global sequence (every thread).
//! DriverEntry is also run with the k-th allocation *of its own thread*
//! failing, whichever allocator (gate-usersim `fault`): pool blocks, IRPs
//! and the global allocator (gate-core's table, pend table, lists and live
//! configuration, the registry lists), which the pool sequence does not
//! see. The IOCTLs have the same test in ioctl_alloc_failure.rs.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)] // test code: std allocation is fine

mod common;
use common::*;
use gate_ksys::STATUS_INSUFFICIENT_RESOURCES;
use gate_usersim::fault;
use gate_usersim::*;
use std::time::{Duration, Instant};

/// Waits for an open listener other than `old`, moving virtual time so the
/// worker's back-off ends (bounded).
fn listener_after(sim: &Sim, old: Option<usize>) -> ListenerInfo {
    let t = Instant::now();
    loop {
        if let Some(l) = sim
            .listeners()
            .into_iter()
            .find(|l| Some(l.socket) != old && l.state == SocketState::Open)
        {
            return l;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "no listener");
        sim.advance_ms(50);
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    ConditionalAccept,
    PostAccept,
    /// Conditional accept with `BackendAddress`: one connection relayed.
    Relay,
}

const BACKEND: &str = "10.9.0.1:9000";

/// Waits (bounded) for `cond`, letting the simulation's I/O settle.
fn until(sim: &Sim, mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        sim.quiesce();
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    false
}

/// Relays one connection if the relay could be allocated: 100 bytes each
/// way. Otherwise the driver must have closed the client.
fn relay_one(sim: &Sim, local: std::net::SocketAddr) {
    let backend = addr(BACKEND);
    let r = sim.connect(addr("10.6.0.1:1"), local);
    let Some(c) = r.conn() else {
        return;
    };
    let closed = |c: &Conn| c.info().is_some_and(|i| i.state == SocketState::Closed);
    assert!(
        until(sim, || !sim.backend_conns(backend).is_empty() || closed(&c)),
        "neither relayed nor closed"
    );
    let Some(b) = sim.backend_conns(backend).last().copied() else {
        return;
    };
    c.peer_send(&[1; 100]);
    let relayed = until(sim, || b.unread() == 100 || closed(&c));
    assert!(
        relayed,
        "the client's bytes neither relayed nor the relay ended"
    );
    if closed(&c) {
        return;
    }
    b.peer_send(&[2; 100]);
    let mut down = Vec::new();
    assert!(
        until(sim, || {
            down.extend(c.take_sent());
            down.len() == 100 || closed(&c)
        }),
        "the backend's bytes neither relayed nor the relay ended"
    );
}

/// The run; `Err` when DriverEntry failed.
fn run(sim: &Sim, mode: Mode) -> Result<LeakReport, gate_ksys::NTSTATUS> {
    let post_accept = mode == Mode::PostAccept;
    sim.park_on_bugcheck(true);
    sim.set_conditional_accept_supported(!post_accept);
    if mode == Mode::Relay {
        sim.backend_listen(addr(BACKEND), BackendMode::Accept);
        sim.registry_set(PARAMS, "BackendAddress", RegValue::Sz(BACKEND.into()));
    }
    for (n, v) in [
        ("RateMilliPerSecond", RegValue::Dword(1000)),
        ("Burst", RegValue::Dword(1)),
        ("MaxPending", RegValue::Dword(4)),
        ("MaxPendDelayMs", RegValue::Dword(2000)),
        (
            "DenyList",
            RegValue::MultiSz(vec!["192.0.2.0/24".into(), "2001:db8::/32".into()]),
        ),
    ] {
        sim.registry_set(PARAMS, n, v);
    }
    let driver = sim.load_driver(gate_driver::DriverEntry, SERVICE_KEY)?;
    let l = listener_after(sim, None);
    let local = local_of(&l);
    if mode == Mode::Relay {
        relay_one(sim, local);
    }
    // Accept (and the connection is handed to the worker, which closes it,
    // or to the relay).
    sim.connect(addr("10.5.0.1:1"), local);
    // A pend, aborted.
    let p = sim.connect(addr("10.5.0.1:2"), local);
    if p.verdict() == Some(Verdict::Pend) {
        let _ = p.abort();
    }
    // A pend completed by the timer.
    sim.connect(addr("10.5.0.2:1"), local);
    sim.connect(addr("10.5.0.2:2"), local);
    sim.advance_ms(2100);
    if !post_accept {
        // The listener dies (NULL InspectID) and is re-created.
        sim.null_inspect();
        let l2 = listener_after(sim, Some(l.socket));
        sim.connect(addr("10.5.0.3:1"), local_of(&l2));
    }
    if mode == Mode::Relay {
        // Every accepted connection handed over before unload (the relay
        // allocates at the hand-over), so each run allocates the same.
        until(sim, || {
            let Some(s) = gate_driver::entry::snapshot() else {
                return true;
            };
            let handled = match gate_driver::relay::snapshot() {
                Some(r) => u64::from(r.active) + r.closed + r.failed,
                None => s.stats.closed_sockets,
            };
            handled == s.stats.accepted_sockets
        });
    }
    sim.quiesce();
    Ok(driver.unload(sim))
}

#[test]
fn every_allocation_of_a_full_run_can_fail() {
    every_allocation_can_fail(Mode::ConditionalAccept);
}

/// Post-accept mode (no conditional accept, as on Wine) also allocates
/// the listener's acceptor.
#[test]
fn every_allocation_of_a_post_accept_run_can_fail() {
    every_allocation_can_fail(Mode::PostAccept);
}

/// With a backend: the relay, its worker's state and a relayed
/// connection's pair (buffers, IRPs) are allocated too.
#[test]
fn every_allocation_of_a_relay_run_can_fail() {
    every_allocation_can_fail(Mode::Relay);
}

fn every_allocation_can_fail(mode: Mode) {
    let total = {
        let sim = Sim::new();
        run(&sim, mode).expect("reference run").assert_clean();
        sim.assert_no_violations();
        if mode == Mode::Relay {
            assert!(
                count(&sim.events(), "RelayOpened") >= 2,
                "the reference run relays"
            );
        }
        if mode == Mode::Relay {
            // Two per relay (one per direction's buffer): the relay's
            // NULL-MDL branch is in the sequence (review 10 item 7).
            assert!(sim.mdl_allocations() >= 4, "{}", sim.mdl_allocations());
        }
        sim.pool_stats().allocations + sim.irp_stats().allocated + sim.mdl_allocations()
    };
    assert!(total > 20, "the run allocates: {total}");
    let (mut refused, mut started) = (0, 0);
    for k in 0..total {
        let sim = Sim::new();
        sim.inject_pool_failures(k, 1);
        match run(&sim, mode) {
            Ok(report) => {
                started += 1;
                assert!(report.is_clean(), "k = {k}: {report:#?}");
            }
            Err(st) => {
                refused += 1;
                assert_eq!(st, STATUS_INSUFFICIENT_RESOURCES, "k = {k}");
                let leaks = sim.leaks();
                assert!(leaks.is_clean(), "k = {k}: {leaks:#?}");
            }
        }
        assert_eq!(
            sim.pool_stats().injected_failures,
            1,
            "k = {k}: no failure happened"
        );
        assert!(sim.bugchecks().is_empty(), "k = {k}: {:?}", sim.bugchecks());
        let v = sim.violations();
        assert!(v.is_empty(), "k = {k}: {v:#?}");
    }
    eprintln!("{total} allocations: {refused} refused the start, {started} recovered");
    assert!(refused > 0 && started > 0);
}

/// gate-core allocates its table through the global allocator (the pool
/// in the image). This binary's global allocator refuses blocks of at
/// least `REFUSE_FROM` bytes while set: the table's allocation fails and
/// DriverEntry must refuse the start cleanly. It also refuses what the
/// calling thread's allocation plan says (gate-usersim `fault`: the k-th
/// allocation driver code makes on DriverEntry's thread, whichever
/// allocator) and reports what it allocated and freed to the plan.
struct Refusing;

static REFUSE_FROM: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(usize::MAX);

// SAFETY: forwards to the system allocator; refusing (NULL) is allowed.
unsafe impl std::alloc::GlobalAlloc for Refusing {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        if l.size() >= REFUSE_FROM.load(std::sync::atomic::Ordering::Relaxed)
            || fault::global_alloc_fails()
        {
            return std::ptr::null_mut();
        }
        // SAFETY: same contract as the caller's.
        let p = unsafe { std::alloc::System.alloc(l) };
        if !p.is_null() {
            fault::global_allocated(p, l.size());
        }
        p
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if new_size > l.size()
            && (new_size >= REFUSE_FROM.load(std::sync::atomic::Ordering::Relaxed)
                || fault::global_alloc_fails())
        {
            return std::ptr::null_mut();
        }
        // SAFETY: same contract as the caller's.
        let q = unsafe { std::alloc::System.realloc(p, l, new_size) };
        if !q.is_null() {
            fault::global_reallocated(p, l.size(), q, new_size);
        }
        q
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        fault::global_freed(p);
        // SAFETY: `p` came from `alloc` with `l`.
        unsafe { std::alloc::System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Refusing = Refusing;

#[test]
fn no_memory_for_gate_cores_table_refuses_the_start() {
    let sim = Sim::new();
    // 2^20 keys: tens of MiB; nothing else in the run asks for 8 MiB.
    sim.registry_set(PARAMS, "TableCapacity", RegValue::Dword(1 << 20));
    REFUSE_FROM.store(8 << 20, std::sync::atomic::Ordering::Relaxed);
    let r = sim.load_driver(gate_driver::DriverEntry, SERVICE_KEY);
    REFUSE_FROM.store(usize::MAX, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(r.err(), Some(STATUS_INSUFFICIENT_RESOURCES));
    sim.leaks().assert_clean();
    sim.assert_no_violations();
    assert!(sim
        .debug_output()
        .iter()
        .any(|l| l.text.contains("no memory for the table")));
}

/// DriverEntry's allocations in one sequence, whichever allocator: pool
/// blocks (Driver, pending table, registry buffers, the control device's
/// names), IRPs, and the global allocator (gate-core's table, pend table,
/// lists and live configuration; the configuration lists read from the
/// registry), each failing once. DriverEntry must refuse the start with
/// STATUS_INSUFFICIENT_RESOURCES having freed every byte and released
/// everything, or start without what it could do without (the control
/// device) and unload clean; no violation, no bug check.
#[test]
fn every_allocation_of_driver_entry_can_fail_whichever_allocator() {
    let setup = |sim: &Sim| {
        sim.park_on_bugcheck(true);
        for (n, v) in [
            ("TableCapacity", RegValue::Dword(1024)),
            ("TableShards", RegValue::Dword(1)),
            ("MaxPending", RegValue::Dword(4)),
            (
                "AllowList",
                RegValue::MultiSz(vec!["10.1.0.0/16".into(), "2001:db8:a::/48".into()]),
            ),
            (
                "DenyList",
                RegValue::MultiSz(vec!["192.0.2.0/24".into(), "2001:db8::/32".into()]),
            ),
            (
                "Nat64Prefixes",
                RegValue::MultiSz(vec!["64:ff9b::/96".into()]),
            ),
        ] {
            sim.registry_set(PARAMS, n, v);
        }
    };
    let n = {
        let sim = Sim::new();
        setup(&sim);
        let (r, c) = sim.load_driver_failing(gate_driver::DriverEntry, SERVICE_KEY, 0);
        r.expect("reference start").unload(&sim).assert_clean();
        sim.assert_no_violations();
        c.allocations
    };
    assert!(n > 10, "DriverEntry allocates: {n}");
    let (mut refused, mut started) = (0, 0);
    for k in 1..=n + 1 {
        let sim = Sim::new();
        setup(&sim);
        let (r, c) = sim.load_driver_failing(gate_driver::DriverEntry, SERVICE_KEY, k);
        if k > n {
            assert_eq!(c.failed, 0, "k = {k}");
            r.expect("nothing injected").unload(&sim).assert_clean();
            break;
        }
        assert_eq!(c.failed, 1, "k = {k} of {n}: no failure happened");
        match r {
            Err(st) => {
                refused += 1;
                assert_eq!(st, STATUS_INSUFFICIENT_RESOURCES, "k = {k} of {n}");
                assert_eq!(c.kept_bytes, 0, "k = {k} of {n}: bytes not freed");
                let leaks = sim.leaks();
                assert!(leaks.is_clean(), "k = {k} of {n}: {leaks:#?}");
            }
            Ok(d) => {
                started += 1;
                let leaks = d.unload(&sim);
                assert!(leaks.is_clean(), "k = {k} of {n}: {leaks:#?}");
            }
        }
        assert!(sim.bugchecks().is_empty(), "k = {k}: {:?}", sim.bugchecks());
        let v = sim.violations();
        assert!(v.is_empty(), "k = {k} of {n}: {v:#?}");
    }
    eprintln!("DriverEntry: {n} allocations: {refused} refused the start, {started} started");
    assert!(refused > 0);
}
