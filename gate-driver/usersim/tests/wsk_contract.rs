//! The simulated WSK provider against the contract (wsk-contract.md),
//! driven by the tiny test driver in `common`: options and their order,
//! inspect → accept / reject / pend, WskInspectComplete and its misuse,
//! aborts, the NULL InspectID, STATUS_FILE_FORCED_CLOSED, closing rules,
//! WskDeregister, concurrency, connection data.

mod common;
use common::*;
use gate_ksys::*;
use gate_usersim::*;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn start(sim: &Sim) -> Driver {
    reset_globals();
    PORT.store(8080, Ordering::SeqCst);
    CONDITIONAL.store(1, Ordering::SeqCst);
    let d = sim
        .load_driver(driver_entry, SERVICE_KEY)
        .expect("DriverEntry");
    sim.wait_listener(Duration::from_secs(5)).expect("listener");
    d
}

fn listen() -> *mut WSK_SOCKET {
    // SAFETY: the test driver's state while loaded.
    unsafe { (*state()).listen }
}

fn inspect_complete(id: &WSK_INSPECT_ID, action: WSK_INSPECT_ACTION) -> NTSTATUS {
    let s = listen();
    // SAFETY: the listening socket's dispatch.
    let f = unsafe { listen_dispatch(s) }.WskInspectComplete.unwrap();
    sync_call(|irp| {
        // SAFETY: a live listening socket, an id copy and a fresh IRP.
        unsafe { f(s, id, action, irp) }
    })
    .0
}

fn kinds(sim: &Sim) -> Vec<ViolationKind> {
    sim.violations().iter().map(|v| v.kind).collect()
}

const LOCAL: &str = "192.0.2.1:8080";

#[test]
fn conditional_accept_must_precede_bind_and_needs_an_irp() {
    let sim = Sim::new();
    let d = start(&sim);
    // Already bound: refused.
    // SAFETY: a live socket.
    let st = unsafe { set_option(listen(), SOL_SOCKET, SO_CONDITIONAL_ACCEPT, 1, true) };
    assert_eq!(st, STATUS_INVALID_DEVICE_STATE);
    sim.assert_no_violations();
    // SAFETY: a live socket; no IRP for an option that requires one.
    let st = unsafe { set_option(listen(), SOL_SOCKET, SO_CONDITIONAL_ACCEPT, 1, false) };
    assert_eq!(st, STATUS_INVALID_PARAMETER);
    assert_eq!(kinds(&sim), vec![ViolationKind::MissingIrp]);
    let opts = sim.socket_options(listen() as usize);
    assert_eq!(opts[0], (SOL_SOCKET, SO_CONDITIONAL_ACCEPT, 1));
    d.unload(&sim).assert_clean();
}

#[test]
fn listener_without_conditional_accept_accepts_without_inspect() {
    let sim = Sim::new();
    reset_globals();
    CONDITIONAL.store(0, Ordering::SeqCst);
    let d = sim.load_driver(driver_entry, SERVICE_KEY).unwrap();
    let l = sim.wait_listener(Duration::from_secs(5)).unwrap();
    assert!(!l.conditional_accept && l.accept_event);
    let r = sim.connect(v4("10.0.0.9:5000"), v4(LOCAL));
    assert_eq!((r.verdict(), r.state()), (None, RequestState::Established));
    assert_eq!(INSPECT_CALLS.load(Ordering::SeqCst), 0);
    assert_eq!(ACCEPT_CALLS.load(Ordering::SeqCst), 1);
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

static STUB_COMPLETIONS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

unsafe extern "system" fn count_completion(_dev: PVOID, _irp: *mut IRP, _ctx: PVOID) -> NTSTATUS {
    STUB_COMPLETIONS.fetch_add(1, Ordering::SeqCst);
    STATUS_MORE_PROCESSING_REQUIRED
}

#[test]
fn conditional_accept_stub_returns_not_implemented_without_completing_the_irp() {
    let sim = Sim::new();
    reset_globals();
    CONDITIONAL.store(0, Ordering::SeqCst);
    let d = sim.load_driver(driver_entry, SERVICE_KEY).unwrap();
    sim.wait_listener(Duration::from_secs(5)).unwrap();
    // A fresh, unbound listening socket of the test driver's client.
    // SAFETY: the test driver's state while loaded.
    let (client, pd) = unsafe { ((*state()).provider.Client, &*(*state()).provider.Dispatch) };
    let (st, info) = sync_call(|irp| {
        // SAFETY: the captured provider NPI; a fresh IRP.
        unsafe {
            (pd.WskSocket.unwrap())(
                client,
                AF_INET,
                SOCK_STREAM,
                IPPROTO_TCP,
                WSK_FLAG_LISTEN_SOCKET,
                std::ptr::null_mut(),
                (&LISTEN_DISPATCH as *const WSK_CLIENT_LISTEN_DISPATCH).cast(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                irp,
            )
        }
    });
    assert_eq!(st, STATUS_SUCCESS);
    let sock = info as *mut WSK_SOCKET;
    sim.set_conditional_accept_supported(false);
    STUB_COMPLETIONS.store(0, Ordering::SeqCst);
    // SAFETY: a live socket; the IRP is ours again after a non-pending
    // return that did not complete it.
    unsafe {
        let ctl = listen_dispatch(sock).Basic.WskControlSocket.unwrap();
        let irp = IoAllocateIrp(1, FALSE);
        assert!(!irp.is_null());
        IoSetCompletionRoutine(
            irp,
            count_completion,
            std::ptr::null_mut(),
            true,
            true,
            true,
        );
        let mut v: u32 = 1;
        let st = ctl(
            sock,
            WskSetOption,
            SO_CONDITIONAL_ACCEPT,
            SOL_SOCKET,
            4,
            (&mut v as *mut u32).cast(),
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            irp,
        );
        assert_eq!(st, STATUS_NOT_IMPLEMENTED);
        sim.quiesce();
        assert_eq!(STUB_COMPLETIONS.load(Ordering::SeqCst), 0, "IRP completed");
        assert_eq!(sim.irp_stats().in_flight, 0, "the IRP was taken");
        IoFreeIrp(irp);
    }
    // The option did not take: GetOption says off, nothing recorded.
    assert!(sim.socket_options(sock as usize).is_empty());
    let mut out: u32 = 7;
    // SAFETY: a live socket; `out` is 4 writable bytes.
    let st = unsafe {
        (listen_dispatch(sock).Basic.WskControlSocket.unwrap())(
            sock,
            WskGetOption,
            SO_CONDITIONAL_ACCEPT,
            SOL_SOCKET,
            0,
            std::ptr::null_mut(),
            4,
            (&mut out as *mut u32).cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    assert_eq!((st, out), (STATUS_SUCCESS, 0));
    assert!(sim
        .wsk_log()
        .iter()
        .any(|l| l.contains("SO_CONDITIONAL_ACCEPT") && l.contains("Wine stub")));
    // Switched back on: implemented again on an unbound socket.
    sim.set_conditional_accept_supported(true);
    // SAFETY: a live, unbound socket.
    let st = unsafe { set_option(sock, SOL_SOCKET, SO_CONDITIONAL_ACCEPT, 1, true) };
    assert_eq!(st, STATUS_SUCCESS);
    // SAFETY: a live socket; no call in progress.
    assert_eq!(unsafe { close_socket(sock) }, STATUS_SUCCESS);
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn disconnect_stub_returns_not_implemented_without_completing_the_irp() {
    let sim = Sim::new();
    let d = start(&sim);
    let r = sim.connect(v4("10.13.0.1:1000"), v4(LOCAL));
    assert_eq!(r.state(), RequestState::Established);
    let c = ACCEPTED.lock().unwrap().pop().unwrap() as *mut WSK_SOCKET;
    sim.set_disconnect_supported(false);
    STUB_COMPLETIONS.store(0, Ordering::SeqCst);
    // SAFETY: a live connection socket the test driver owns; the IRP is
    // ours again after a non-pending return that did not complete it.
    unsafe {
        let disconnect = conn_dispatch(c).WskDisconnect.unwrap();
        let irp = IoAllocateIrp(1, FALSE);
        assert!(!irp.is_null());
        IoSetCompletionRoutine(
            irp,
            count_completion,
            std::ptr::null_mut(),
            true,
            true,
            true,
        );
        let st = disconnect(c, std::ptr::null_mut(), WSK_FLAG_ABORTIVE, irp);
        assert_eq!(st, STATUS_NOT_IMPLEMENTED);
        sim.quiesce();
        assert_eq!(STUB_COMPLETIONS.load(Ordering::SeqCst), 0, "IRP completed");
        assert_eq!(sim.irp_stats().in_flight, 0, "the IRP was taken");
        IoFreeIrp(irp);
    }
    let info = r.conn().unwrap().info().unwrap();
    assert_eq!((info.state, info.disconnected), (SocketState::Open, None));
    assert!(sim
        .wsk_log()
        .iter()
        .any(|l| l.contains("WskDisconnect") && l.contains("stub")));
    // SAFETY: a live socket; no call in progress.
    assert_eq!(unsafe { close_socket(c) }, STATUS_SUCCESS);
    assert_eq!(r.conn().unwrap().info().unwrap().state, SocketState::Closed);
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn wrong_port_or_family_finds_no_listener() {
    let sim = Sim::new();
    let d = start(&sim);
    assert_eq!(
        sim.connect(v4("10.0.0.9:5000"), v4("192.0.2.1:9999"))
            .state(),
        RequestState::NoListener
    );
    assert_eq!(
        sim.connect(
            "[2001:db8::1]:5000".parse().unwrap(),
            "[2001:db8::2]:8080".parse().unwrap()
        )
        .state(),
        RequestState::NoListener
    );
    assert_eq!(INSPECT_CALLS.load(Ordering::SeqCst), 0);
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn reject_is_final_and_buffers_are_invalidated_after_the_call() {
    let sim = Sim::new();
    let d = start(&sim);
    INSPECT_ACTION.store(WskInspectReject, Ordering::SeqCst);
    let r = sim.connect(v4("10.1.1.1:1234"), v4(LOCAL));
    assert_eq!(
        (r.verdict(), r.state()),
        (Some(Verdict::Reject), RequestState::Rejected)
    );
    assert!(r.abort().is_err(), "nothing follows a reject");
    // The copy taken during the call is right ...
    let st = REMOTES.lock().unwrap()[0];
    // SAFETY: reading the copied SOCKADDR_IN.
    let sin = unsafe { std::ptr::read((&st as *const SOCKADDR_STORAGE).cast::<SOCKADDR_IN>()) };
    assert_eq!(
        (sin.sin_family, u16::from_be(sin.sin_port), sin.sin_addr),
        (AF_INET, 1234, [10, 1, 1, 1])
    );
    // ... while the lent buffers now hold garbage.
    let p = LAST_REMOTE_PTR.load(Ordering::SeqCst) as *const u8;
    let id = LAST_ID_PTR.load(Ordering::SeqCst) as *const u8;
    // SAFETY: the simulation keeps lent buffers allocated (poisoned).
    unsafe {
        assert!(std::slice::from_raw_parts(p, 16).iter().all(|&b| b == 0xA5));
        assert_eq!(std::slice::from_raw_parts(id, 16), &[0xA5; 16][..]);
    }
    assert_eq!(
        ACCEPT_CALLS.load(Ordering::SeqCst) + ABORT_CALLS.load(Ordering::SeqCst),
        0
    );
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn pend_then_complete_accept_or_reject() {
    for mode in [
        CompletionMode::Async,
        CompletionMode::Inline,
        CompletionMode::Alternate,
    ] {
        let sim = Sim::new();
        sim.set_completion_mode(mode);
        let d = start(&sim);
        INSPECT_ACTION.store(WskInspectPend, Ordering::SeqCst);
        let a = sim.connect(v4("10.2.0.1:1000"), v4(LOCAL));
        let b = sim.connect(v4("10.2.0.2:1000"), v4(LOCAL));
        assert_eq!(
            (a.state(), b.state()),
            (RequestState::Pended, RequestState::Pended)
        );
        let ids = PENDED.lock().unwrap().clone();
        assert_eq!(ids, vec![a.id(), b.id()]);
        assert_eq!(inspect_complete(&ids[0], WskInspectAccept), STATUS_SUCCESS);
        assert_eq!(inspect_complete(&ids[1], WskInspectReject), STATUS_SUCCESS);
        assert_eq!(a.wait_resolved(&sim, 10_000_000), RequestState::Established);
        assert_eq!(
            b.wait_resolved(&sim, 10_000_000),
            RequestState::CompletedReject
        );
        assert_eq!(a.info().completion, Some(Verdict::Accept));
        assert_eq!(ACCEPT_CALLS.load(Ordering::SeqCst), 1, "{mode:?}");
        d.unload(&sim).assert_clean();
        sim.assert_no_violations();
    }
}

#[test]
fn abort_of_pended_request_then_late_completion_does_not_establish() {
    let sim = Sim::new();
    let d = start(&sim);
    INSPECT_ACTION.store(WskInspectPend, Ordering::SeqCst);
    let r = sim.connect(v4("10.3.0.1:1000"), v4(LOCAL));
    r.abort().unwrap();
    assert_eq!(ABORTED.lock().unwrap().clone(), vec![r.id()]);
    assert_eq!(
        CALLBACK_IRQL_MASK.load(Ordering::SeqCst),
        1 << DISPATCH_LEVEL
    );
    assert_eq!(
        inspect_complete(&r.id(), WskInspectAccept),
        STATUS_SUCCESS,
        "allowed after abort"
    );
    sim.quiesce();
    let info = r.info();
    assert_eq!(info.state, RequestState::Aborted);
    assert!(info.late_completion);
    assert_eq!(ACCEPT_CALLS.load(Ordering::SeqCst), 0);
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn accepted_request_can_be_aborted_before_delivery() {
    let sim = Sim::new();
    let d = start(&sim);
    let r = sim.connect_held(v4("10.4.0.1:1000"), v4(LOCAL));
    assert_eq!(r.state(), RequestState::Accepted);
    r.abort().unwrap();
    assert_eq!(ABORT_CALLS.load(Ordering::SeqCst), 1);
    assert!(r.establish().is_err());
    let r2 = sim.connect_held(v4("10.4.0.2:1000"), v4(LOCAL));
    r2.establish().unwrap();
    assert_eq!(r2.state(), RequestState::Established);
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn inspect_complete_misuse_is_recorded() {
    let sim = Sim::new();
    let d = start(&sim);
    // Accepted directly, so never pended.
    let accepted = sim.connect(v4("10.5.0.1:1000"), v4(LOCAL));
    INSPECT_ACTION.store(WskInspectPend, Ordering::SeqCst);
    let p = sim.connect(v4("10.5.0.2:1000"), v4(LOCAL));
    let unknown = WSK_INSPECT_ID {
        Key: 1,
        SerialNumber: 2,
    };
    assert_eq!(
        inspect_complete(&unknown, WskInspectAccept),
        STATUS_NOT_FOUND
    );
    assert_eq!(
        inspect_complete(&accepted.id(), WskInspectAccept),
        STATUS_NOT_FOUND
    );
    assert_eq!(
        inspect_complete(&p.id(), WskInspectPend),
        STATUS_INVALID_PARAMETER
    );
    assert_eq!(inspect_complete(&p.id(), WskInspectReject), STATUS_SUCCESS);
    assert_eq!(
        inspect_complete(&p.id(), WskInspectAccept),
        STATUS_INVALID_PARAMETER
    );
    let s = listen();
    // SAFETY: the listening socket's dispatch; a NULL IRP is refused.
    let f = unsafe { listen_dispatch(s) }.WskInspectComplete.unwrap();
    // SAFETY: as above.
    let st = unsafe { f(s, &p.id(), WskInspectAccept, std::ptr::null_mut()) };
    assert_eq!(st, STATUS_INVALID_PARAMETER);
    assert_eq!(
        kinds(&sim),
        vec![
            ViolationKind::InspectCompleteUnknown,
            ViolationKind::InspectCompleteUnknown,
            ViolationKind::InspectCompleteBadAction,
            ViolationKind::InspectCompleteTwice,
            ViolationKind::MissingIrp,
        ]
    );
    d.unload(&sim).assert_clean();
}

#[test]
fn null_inspect_id_kills_the_listener() {
    let sim = Sim::new();
    let d = start(&sim);
    INSPECT_ACTION.store(WskInspectPend, Ordering::SeqCst);
    let pended = sim.connect(v4("10.6.0.1:1000"), v4(LOCAL));
    assert_eq!(sim.null_inspect(), Some(WskInspectReject));
    assert_eq!(NULL_INSPECTS.load(Ordering::SeqCst), 1);
    assert_eq!(pended.state(), RequestState::Dropped);
    assert_eq!(sim.listeners()[0].state, SocketState::Dead);
    assert_eq!(
        sim.connect(v4("10.6.0.2:1000"), v4(LOCAL)).state(),
        RequestState::NoListener
    );
    assert_eq!(
        inspect_complete(&pended.id(), WskInspectAccept),
        STATUS_FILE_FORCED_CLOSED
    );
    // SAFETY: a live (dead) socket.
    let st = unsafe { set_option(listen(), SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 1, true) };
    assert_eq!(st, STATUS_FILE_FORCED_CLOSED);
    assert_eq!(
        sim.null_inspect(),
        None,
        "no open conditional listener left"
    );
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn forced_close_from_inspect_complete() {
    let sim = Sim::new();
    let d = start(&sim);
    INSPECT_ACTION.store(WskInspectPend, Ordering::SeqCst);
    let r = sim.connect(v4("10.7.0.1:1000"), v4(LOCAL));
    sim.force_close_next_inspect_complete();
    assert_eq!(
        inspect_complete(&r.id(), WskInspectAccept),
        STATUS_FILE_FORCED_CLOSED
    );
    assert_eq!(sim.listeners()[0].state, SocketState::Dead);
    assert_eq!(
        sim.connect(v4("10.7.0.2:1000"), v4(LOCAL)).state(),
        RequestState::NoListener
    );
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn close_inside_a_callback_is_recorded() {
    let sim = Sim::new();
    let d = start(&sim);
    CLOSE_IN_INSPECT.store(1, Ordering::SeqCst);
    sim.connect(v4("10.8.0.1:1000"), v4(LOCAL));
    // The test driver also waits for the close IRP at DISPATCH_LEVEL.
    assert_eq!(
        kinds(&sim),
        vec![
            ViolationKind::WskCloseInCallback,
            ViolationKind::WaitAtDispatch
        ]
    );
    // The listener is closed now; unload closes it again.
    d.unload(&sim);
    assert_eq!(kinds(&sim)[2..], [ViolationKind::WskUseAfterClose]);
}

#[test]
fn close_waits_for_a_callback_in_progress() {
    let sim = Sim::new();
    let d = start(&sim);
    INSPECT_DELAY_MS.store(200, Ordering::SeqCst);
    std::thread::scope(|s| {
        let c = s.spawn(|| sim.connect(v4("10.9.0.1:1000"), v4(LOCAL)));
        while INSPECT_CALLS.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        let t = std::time::Instant::now();
        // SAFETY: the live listening socket, closed from another thread.
        assert_eq!(unsafe { close_socket(listen()) }, STATUS_SUCCESS);
        // The callback's own work is done (the connecting thread may not
        // have returned from the simulation yet: asserting on the thread,
        // as this did, failed once in CI under load).
        assert_eq!(
            INSPECT_RETURNS.load(Ordering::SeqCst),
            1,
            "close returned only after the callback"
        );
        assert!(t.elapsed() >= Duration::from_millis(100));
        assert_eq!(
            c.join().unwrap().state(),
            RequestState::Dropped,
            "accepted, but the listener closed first"
        );
    });
    // SAFETY: test-driver state; the listener is closed already.
    unsafe { (*state()).listen = std::ptr::null_mut() };
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn calls_racing_a_close_are_recorded() {
    let sim = Sim::new();
    let d = start(&sim);
    let s = listen() as usize;
    std::thread::scope(|sc| {
        let h = sc.spawn(move || {
            let sock = s as *mut WSK_SOCKET;
            let mut addr = SOCKADDR_STORAGE {
                ss_family: 0,
                __ss_pad1: [0; 6],
                __ss_align: 0,
                __ss_pad2: [0; 112],
            };
            // SAFETY: the listening socket's dispatch.
            let get = unsafe { listen_dispatch(sock) }.WskGetLocalAddress.unwrap();
            for _ in 0..2000 {
                let st = sync_call(|irp| {
                    // SAFETY: racing a close on purpose; the socket memory stays valid.
                    unsafe { get(sock, (&mut addr as *mut SOCKADDR_STORAGE).cast(), irp) }
                })
                .0;
                if st != STATUS_SUCCESS {
                    return;
                }
            }
        });
        std::thread::sleep(Duration::from_millis(1));
        // SAFETY: a live socket.
        unsafe { close_socket(s as *mut WSK_SOCKET) };
        h.join().unwrap();
    });
    let k = kinds(&sim);
    assert!(
        !k.is_empty()
            && k.iter().all(|k| matches!(
                k,
                ViolationKind::WskCloseConcurrent | ViolationKind::WskUseAfterClose
            )),
        "{k:?}"
    );
    // SAFETY: closed already.
    unsafe { (*state()).listen = std::ptr::null_mut() };
    d.unload(&sim);
}

#[test]
fn unload_with_pended_requests_drops_them() {
    let sim = Sim::new();
    let d = start(&sim);
    INSPECT_ACTION.store(WskInspectPend, Ordering::SeqCst);
    let reqs: Vec<Request> = (0..5)
        .map(|i| sim.connect(v4(&format!("10.10.0.{i}:1000")), v4(LOCAL)))
        .collect();
    d.unload(&sim).assert_clean();
    assert!(reqs.iter().all(|r| r.state() == RequestState::Dropped));
    sim.assert_no_violations();
}

/// The provider dispatch table, captured once through a throwaway client.
fn listen_socket_provider_dispatch() -> &'static WSK_PROVIDER_DISPATCH {
    let npi = WSK_CLIENT_NPI {
        ClientContext: std::ptr::null_mut(),
        Dispatch: &CLIENT_DISPATCH.0,
    };
    let reg = Box::leak(Box::new(WSK_REGISTRATION {
        ReservedRegistrationState: 0,
        ReservedRegistrationContext: std::ptr::null_mut(),
        ReservedRegistrationLock: 0,
    }));
    let mut p = WSK_PROVIDER_NPI {
        Client: std::ptr::null_mut(),
        Dispatch: std::ptr::null(),
    };
    // SAFETY: a leaked registration; register, capture, release, deregister.
    unsafe {
        assert_eq!(WskRegister(&npi, reg), STATUS_SUCCESS);
        let st = WskCaptureProviderNPI(reg, WSK_NO_WAIT, &mut p);
        if st == STATUS_SUCCESS {
            WskReleaseProviderNPI(reg);
        }
        WskDeregister(reg);
        &*p.Dispatch
    }
}

static mut REG: WSK_REGISTRATION = WSK_REGISTRATION {
    ReservedRegistrationState: 0,
    ReservedRegistrationContext: std::ptr::null_mut(),
    ReservedRegistrationLock: 0,
};

#[test]
fn deregister_with_an_open_socket_is_recorded_and_capture_waits_for_the_provider() {
    let sim = Sim::new();
    sim.set_deregister_timeout(Duration::from_millis(100));
    reset_globals();
    let d = sim.load_driver(driver_entry, SERVICE_KEY).unwrap();
    sim.wait_listener(Duration::from_secs(1)).unwrap();
    let st_addr = state() as usize;
    sim.run_on_system_thread(move || {
        let st = st_addr as *mut State;
        // SAFETY: test-driver state: deregister without closing the listener.
        unsafe {
            WskReleaseProviderNPI(&mut (*st).registration);
            WskDeregister(&mut (*st).registration);
        }
    });
    assert_eq!(kinds(&sim), vec![ViolationKind::DeregisterBlocked]);
    assert_eq!(sim.leaks().sockets_open, 1);
    // SAFETY: the test owns the state now; forget it.
    unsafe { (*state()).listen = std::ptr::null_mut() };
    STATE.store(std::ptr::null_mut(), Ordering::SeqCst);
    let _ = d;

    // A provider that is not ready: capture waits (virtual time) and fails.
    let sim2 = sim;
    let pd = listen_socket_provider_dispatch();
    sim2.set_provider_ready(false);
    let npi = WSK_CLIENT_NPI {
        ClientContext: std::ptr::null_mut(),
        Dispatch: &CLIENT_DISPATCH.0,
    };
    let reg = &raw mut REG;
    // SAFETY: a static registration used by this test only.
    assert_eq!(unsafe { WskRegister(&npi, reg) }, STATUS_SUCCESS);
    let r = reg as usize;
    let h = std::thread::spawn(move || {
        let mut p = WSK_PROVIDER_NPI {
            Client: std::ptr::null_mut(),
            Dispatch: std::ptr::null(),
        };
        // SAFETY: registered above.
        unsafe { WskCaptureProviderNPI(r as *mut WSK_REGISTRATION, 50, &mut p) }
    });
    std::thread::sleep(Duration::from_millis(30));
    assert!(!h.is_finished());
    sim2.advance_ms(60);
    assert_eq!(h.join().unwrap(), STATUS_DEVICE_NOT_READY);
    // Provider functions need a captured NPI.
    let r = sync_call(|irp| {
        // SAFETY: the provider dispatch; the client handle of `reg` is not
        // captured, which the sim records.
        unsafe {
            (pd.WskSocket.unwrap())(
                (*reg).ReservedRegistrationContext,
                AF_INET,
                SOCK_STREAM,
                IPPROTO_TCP,
                WSK_FLAG_LISTEN_SOCKET,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                irp,
            )
        }
    });
    assert_eq!(r.0, STATUS_DEVICE_NOT_READY);
    assert_eq!(kinds(&sim2).last(), Some(&ViolationKind::NpiMisuse));
    // SAFETY: registered, nothing captured.
    unsafe { WskDeregister(reg) };
    let mut p = WSK_PROVIDER_NPI {
        Client: std::ptr::null_mut(),
        Dispatch: std::ptr::null(),
    };
    // SAFETY: after deregistration: recorded misuse.
    unsafe { WskCaptureProviderNPI(reg, WSK_NO_WAIT, &mut p) };
    assert_eq!(kinds(&sim2).last(), Some(&ViolationKind::NpiMisuse));
}

static mut REG_WAIT: WSK_REGISTRATION = WSK_REGISTRATION {
    ReservedRegistrationState: 0,
    ReservedRegistrationContext: std::ptr::null_mut(),
    ReservedRegistrationLock: 0,
};

#[test]
fn deregister_ends_a_waiting_capture_without_a_violation() {
    let sim = Sim::new();
    sim.set_provider_ready(false);
    let npi = WSK_CLIENT_NPI {
        ClientContext: std::ptr::null_mut(),
        Dispatch: &CLIENT_DISPATCH.0,
    };
    let reg = &raw mut REG_WAIT;
    // SAFETY: a static registration used by this test only.
    assert_eq!(unsafe { WskRegister(&npi, reg) }, STATUS_SUCCESS);
    let r = reg as usize;
    let h = std::thread::spawn(move || {
        let mut p = WSK_PROVIDER_NPI {
            Client: std::ptr::null_mut(),
            Dispatch: std::ptr::null(),
        };
        // SAFETY: registered above; deregistered only after this call began.
        unsafe { WskCaptureProviderNPI(r as *mut WSK_REGISTRATION, WSK_INFINITE_WAIT, &mut p) }
    });
    let t = std::time::Instant::now();
    while !sim
        .wsk_log()
        .iter()
        .any(|l| l.contains("waiting for the provider"))
    {
        assert!(t.elapsed() < Duration::from_secs(5), "capture never waited");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!h.is_finished());
    // SAFETY: registered, nothing captured; the waiting capture must end.
    unsafe { WskDeregister(reg) };
    assert_eq!(h.join().unwrap(), STATUS_DEVICE_NOT_READY);
    sim.assert_no_violations();
    // A capture that starts after WskDeregister is still a misuse.
    let mut p = WSK_PROVIDER_NPI {
        Client: std::ptr::null_mut(),
        Dispatch: std::ptr::null(),
    };
    // SAFETY: after deregistration: recorded misuse.
    let st = unsafe { WskCaptureProviderNPI(reg, WSK_NO_WAIT, &mut p) };
    assert_eq!(st, STATUS_INVALID_PARAMETER);
    assert_eq!(kinds(&sim), vec![ViolationKind::NpiMisuse]);
}

#[test]
fn concurrent_inspects_from_several_threads() {
    let sim = Sim::new();
    let d = start(&sim);
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let sim = &sim;
            s.spawn(move || {
                for i in 0..50u8 {
                    let r = sim.connect(v4(&format!("10.11.{t}.{i}:2000")), v4(LOCAL));
                    assert_eq!(r.state(), RequestState::Established);
                }
            });
        }
    });
    assert_eq!(INSPECT_CALLS.load(Ordering::SeqCst), 200);
    assert_eq!(ACCEPTED.lock().unwrap().len(), 200);
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn accept_event_refusal_closes_the_connection() {
    let sim = Sim::new();
    let d = start(&sim);
    ACCEPT_STATUS.store(STATUS_UNSUCCESSFUL, Ordering::SeqCst);
    let r = sim.connect(v4("10.12.0.1:1000"), v4(LOCAL));
    assert_eq!(r.state(), RequestState::AcceptRefused);
    assert_eq!(r.conn().unwrap().info().unwrap().state, SocketState::Closed);
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn dual_stack_listener_sees_v4_mapped_addresses_and_options() {
    let sim = Sim::new();
    reset_globals();
    let d = sim.load_driver(driver_entry, SERVICE_KEY).unwrap();
    sim.wait_listener(Duration::from_secs(1)).unwrap();
    // A second, IPv6 dual-stack listener made by hand.
    // SAFETY: the test driver's registration and provider NPI.
    let sock = unsafe {
        let st = state();
        let pd = &*(*st).provider.Dispatch;
        let create = pd.WskSocket.unwrap();
        let client = (*st).provider.Client;
        let (s, info) = sync_call(|irp| {
            create(
                client,
                AF_INET6,
                SOCK_STREAM,
                IPPROTO_TCP,
                WSK_FLAG_LISTEN_SOCKET,
                std::ptr::null_mut(),
                (&LISTEN_DISPATCH as *const WSK_CLIENT_LISTEN_DISPATCH).cast(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                irp,
            )
        });
        assert_eq!(s, STATUS_SUCCESS);
        let sock = info as *mut WSK_SOCKET;
        assert_eq!(
            set_option(sock, IPPROTO_IPV6, IPV6_V6ONLY, 0, true),
            STATUS_SUCCESS
        );
        assert_eq!(
            set_option(sock, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 1, true),
            STATUS_SUCCESS
        );
        assert_eq!(
            set_option(sock, SOL_SOCKET, SO_CONDITIONAL_ACCEPT, 1, true),
            STATUS_SUCCESS
        );
        assert_eq!(enable_accept_event(sock), STATUS_SUCCESS);
        let addr = SOCKADDR_IN6 {
            sin6_family: AF_INET6,
            sin6_port: 9090u16.to_be(),
            ..Default::default()
        };
        let bind = listen_dispatch(sock).WskBind.unwrap();
        assert_eq!(
            sync_call(|irp| bind(sock, (&addr as *const SOCKADDR_IN6).cast(), 0, irp)).0,
            STATUS_SUCCESS
        );
        // Same port again conflicts.
        sock
    };
    let l = sim
        .listeners()
        .into_iter()
        .find(|l| l.addr.port() == 9090)
        .unwrap();
    assert!(!l.v6only && l.exclusive_addr_use && l.conditional_accept && l.accept_event);
    let r = sim.connect(v4("10.13.0.1:3000"), v4("192.0.2.1:9090"));
    assert_eq!(r.state(), RequestState::Established);
    let st = REMOTES.lock().unwrap()[0];
    // SAFETY: the copied SOCKADDR_IN6.
    let sin6 = unsafe { std::ptr::read((&st as *const SOCKADDR_STORAGE).cast::<SOCKADDR_IN6>()) };
    assert_eq!(sin6.sin6_family, AF_INET6);
    assert_eq!(&sin6.sin6_addr[10..], &[0xff, 0xff, 10, 13, 0, 1]);
    // SAFETY: a live socket.
    assert_eq!(unsafe { close_socket(sock) }, STATUS_SUCCESS);
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn connection_send_receive_and_disconnect() {
    let sim = Sim::new();
    let d = start(&sim);
    let r = sim.connect(v4("10.14.0.1:1000"), v4(LOCAL));
    let conn = r.conn().unwrap();
    let sock = conn.socket() as *mut WSK_SOCKET;
    // SAFETY: an accepted connection socket.
    let cd = unsafe { conn_dispatch(sock) };
    let mut rx = [0u8; 8];
    let mut rmdl = mdl_for(&mut rx);
    let mut rbuf = WSK_BUF {
        Mdl: (&mut rmdl as *mut Mdl).cast(),
        Offset: 0,
        Length: 8,
    };
    let recv = cd.WskReceive.unwrap();
    let rb = &mut rbuf as *mut WSK_BUF as usize;
    let sock_addr = sock as usize;
    std::thread::scope(|s| {
        let h = s.spawn(move || {
            sync_call(|irp| {
                // SAFETY: buffer and MDL outlive the call.
                unsafe { recv(sock_addr as *mut WSK_SOCKET, rb as *mut WSK_BUF, 0, irp) }
            })
        });
        while conn.info().unwrap().pending_receives == 0 {
            std::thread::yield_now();
        }
        conn.peer_send(b"hello");
        assert_eq!(h.join().unwrap(), (STATUS_SUCCESS, 5));
    });
    assert_eq!(&rx[..5], b"hello");
    let mut tx = *b"world!";
    let mut tmdl = mdl_for(&mut tx);
    let mut tbuf = WSK_BUF {
        Mdl: (&mut tmdl as *mut Mdl).cast(),
        Offset: 1,
        Length: 4,
    };
    let send = cd.WskSend.unwrap();
    let r = sync_call(|irp| {
        // SAFETY: buffer and MDL outlive the call.
        unsafe { send(sock, &mut tbuf, 0, irp) }
    });
    assert_eq!(r, (STATUS_SUCCESS, 4));
    assert_eq!(conn.take_sent(), b"orld");
    let mut ra = SOCKADDR_STORAGE {
        ss_family: 0,
        __ss_pad1: [0; 6],
        __ss_align: 0,
        __ss_pad2: [0; 112],
    };
    let get = cd.WskGetRemoteAddress.unwrap();
    let r = sync_call(|irp| {
        // SAFETY: a SOCKADDR_STORAGE is large enough.
        unsafe { get(sock, (&mut ra as *mut SOCKADDR_STORAGE).cast(), irp) }
    })
    .0;
    assert_eq!(r, STATUS_SUCCESS);
    assert_eq!(ra.ss_family, AF_INET);
    conn.peer_close();
    sim.quiesce();
    let r = sync_call(|irp| {
        // SAFETY: as above.
        unsafe { recv(sock, &mut rbuf, 0, irp) }
    });
    assert_eq!(r, (STATUS_SUCCESS, 0), "end of stream");
    let disc = cd.WskDisconnect.unwrap();
    let r = sync_call(|irp| {
        // SAFETY: abortive disconnect without a buffer.
        unsafe { disc(sock, std::ptr::null_mut(), WSK_FLAG_ABORTIVE, irp) }
    })
    .0;
    assert_eq!(r, STATUS_SUCCESS);
    assert_eq!(conn.info().unwrap().disconnected, Some(true));
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn wsk_accept_irp_and_backlog_without_accept_event() {
    let sim = Sim::new();
    let d = start(&sim);
    // Turn the accept event off: connections queue for WskAccept.
    let s = listen();
    // SAFETY: the listening socket's dispatch.
    let ctl = unsafe { listen_dispatch(s) }
        .Basic
        .WskControlSocket
        .unwrap();
    let mut c = WSK_EVENT_CALLBACK_CONTROL {
        NpiId: &NPI_WSK_INTERFACE_ID,
        EventMask: WSK_EVENT_ACCEPT | WSK_EVENT_DISABLE,
    };
    // SAFETY: valid control structure.
    let st = unsafe {
        ctl(
            s,
            WskSetOption,
            SO_WSK_EVENT_CALLBACK,
            SOL_SOCKET,
            size_of::<WSK_EVENT_CALLBACK_CONTROL>(),
            (&mut c as *mut WSK_EVENT_CALLBACK_CONTROL).cast(),
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(st, STATUS_SUCCESS);
    let first = sim.connect(v4("10.15.0.1:1000"), v4(LOCAL));
    assert_eq!(
        first.state(),
        RequestState::Established,
        "queued in the backlog"
    );
    // SAFETY: the listening socket's dispatch.
    let accept = unsafe { listen_dispatch(s) }.WskAccept.unwrap();
    let mut remote = SOCKADDR_STORAGE {
        ss_family: 0,
        __ss_pad1: [0; 6],
        __ss_align: 0,
        __ss_pad2: [0; 112],
    };
    let rp = (&mut remote as *mut SOCKADDR_STORAGE) as usize;
    // SAFETY: buffers outlive the call.
    let (st, sock) = sync_call(|irp| unsafe {
        accept(
            s,
            0,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null_mut(),
            rp as *mut SOCKADDR,
            irp,
        )
    });
    assert_eq!((st, sock), (STATUS_SUCCESS, first.conn().unwrap().socket()));
    assert_eq!(remote.ss_family, AF_INET);
    // A pending WskAccept gets the next connection.
    let s_addr = s as usize;
    std::thread::scope(|sc| {
        let h = sc.spawn(move || {
            // SAFETY: as above.
            sync_call(|irp| unsafe {
                accept(
                    s_addr as *mut WSK_SOCKET,
                    0,
                    std::ptr::null_mut(),
                    std::ptr::null(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    irp,
                )
            })
        });
        std::thread::sleep(Duration::from_millis(20));
        let second = sim.connect(v4("10.15.0.2:1000"), v4(LOCAL));
        let (st, sock2) = h.join().unwrap();
        assert_eq!(
            (st, sock2),
            (STATUS_SUCCESS, second.conn().unwrap().socket())
        );
        ACCEPTED.lock().unwrap().push(sock2);
    });
    ACCEPTED.lock().unwrap().push(sock);
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}
