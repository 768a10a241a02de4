//! A tiny WSK "driver" written against the raw gate-ksys bindings, used to
//! drive the simulated provider from its own tests. Behaviour is steered by
//! globals the tests set (what the inspect callback answers, whether the
//! accept event takes the socket, ...).
#![allow(dead_code, clippy::missing_safety_doc)]

use gate_ksys::*;
use gate_usersim as _;
use std::ffi::c_void;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;

pub const SERVICE_KEY: &str = r"\Registry\Machine\System\CurrentControlSet\Services\simtest";

/// What the inspect callback answers.
pub static INSPECT_ACTION: AtomicI32 = AtomicI32::new(WskInspectAccept);
/// Status the accept event returns.
pub static ACCEPT_STATUS: AtomicI32 = AtomicI32::new(STATUS_SUCCESS);
pub static INSPECT_CALLS: AtomicU32 = AtomicU32::new(0);
/// Inspect callbacks that have finished their work (counted just before
/// they return).
pub static INSPECT_RETURNS: AtomicU32 = AtomicU32::new(0);
pub static ABORT_CALLS: AtomicU32 = AtomicU32::new(0);
pub static ACCEPT_CALLS: AtomicU32 = AtomicU32::new(0);
pub static NULL_INSPECTS: AtomicU32 = AtomicU32::new(0);
/// Highest IRQL seen in a callback.
pub static CALLBACK_IRQL_MASK: AtomicU32 = AtomicU32::new(0);
/// Ids of pended requests, copied by value.
pub static PENDED: Mutex<Vec<WSK_INSPECT_ID>> = Mutex::new(Vec::new());
/// Ids aborted.
pub static ABORTED: Mutex<Vec<WSK_INSPECT_ID>> = Mutex::new(Vec::new());
/// Remote addresses seen by inspect (copied).
pub static REMOTES: Mutex<Vec<SOCKADDR_STORAGE>> = Mutex::new(Vec::new());
/// Each inspected request's id with its IPv4 remote (address, port), so a
/// test can say which request an abort was for ([`aborted_remotes`]).
pub static INSPECTED: Mutex<Vec<(WSK_INSPECT_ID, [u8; 4], u16)>> = Mutex::new(Vec::new());
/// Raw pointers seen by inspect (to check they are poisoned later).
pub static LAST_REMOTE_PTR: AtomicUsize = AtomicUsize::new(0);
pub static LAST_ID_PTR: AtomicUsize = AtomicUsize::new(0);
/// Accepted connection sockets.
pub static ACCEPTED: Mutex<Vec<usize>> = Mutex::new(Vec::new());
/// Close the listener from inside the inspect callback (a violation).
pub static CLOSE_IN_INSPECT: AtomicU32 = AtomicU32::new(0);
/// Make inspect spin this many ms (real time) to widen races.
pub static INSPECT_DELAY_MS: AtomicU32 = AtomicU32::new(0);

pub struct State {
    pub registration: WSK_REGISTRATION,
    pub provider: WSK_PROVIDER_NPI,
    pub listen: *mut WSK_SOCKET,
}

pub static STATE: AtomicPtr<State> = AtomicPtr::new(std::ptr::null_mut());

pub fn reset_globals() {
    INSPECT_ACTION.store(WskInspectAccept, Ordering::SeqCst);
    ACCEPT_STATUS.store(STATUS_SUCCESS, Ordering::SeqCst);
    for c in [
        &INSPECT_CALLS,
        &INSPECT_RETURNS,
        &ABORT_CALLS,
        &ACCEPT_CALLS,
        &NULL_INSPECTS,
        &CALLBACK_IRQL_MASK,
        &CLOSE_IN_INSPECT,
        &INSPECT_DELAY_MS,
    ] {
        c.store(0, Ordering::SeqCst);
    }
    PENDED.lock().unwrap().clear();
    ABORTED.lock().unwrap().clear();
    REMOTES.lock().unwrap().clear();
    INSPECTED.lock().unwrap().clear();
    ACCEPTED.lock().unwrap().clear();
    STATE.store(std::ptr::null_mut(), Ordering::SeqCst);
}

pub static CLIENT_DISPATCH: WskClientDispatch = WskClientDispatch(WSK_CLIENT_DISPATCH {
    Version: WSK_VERSION_1_0,
    Reserved: 0,
    WskClientEvent: None,
});
pub struct WskClientDispatch(pub WSK_CLIENT_DISPATCH);
// SAFETY: immutable table of function pointers.
unsafe impl Sync for WskClientDispatch {}

pub static LISTEN_DISPATCH: WSK_CLIENT_LISTEN_DISPATCH = WSK_CLIENT_LISTEN_DISPATCH {
    WskAcceptEvent: Some(accept_event),
    WskInspectEvent: Some(inspect_event),
    WskAbortEvent: Some(abort_event),
};

fn note_irql() {
    // The simulated IRQL is not visible through ksys; a spin lock round
    // trip tells it: KeAcquireSpinLockRaiseToDpc returns the old level.
    let mut lock: KSPIN_LOCK = 0;
    // SAFETY: a local, initialised spin lock.
    let old = unsafe { KeAcquireSpinLockRaiseToDpc(&mut lock) };
    // SAFETY: held above.
    unsafe { KeReleaseSpinLock(&mut lock, old) };
    CALLBACK_IRQL_MASK.fetch_or(1 << old, Ordering::SeqCst);
}

pub unsafe extern "system" fn inspect_event(
    _ctx: PVOID,
    _local: *const SOCKADDR,
    remote: *const SOCKADDR,
    id: *const WSK_INSPECT_ID,
) -> WSK_INSPECT_ACTION {
    note_irql();
    if id.is_null() {
        NULL_INSPECTS.fetch_add(1, Ordering::SeqCst);
        return WskInspectReject;
    }
    INSPECT_CALLS.fetch_add(1, Ordering::SeqCst);
    let d = INSPECT_DELAY_MS.load(Ordering::SeqCst);
    if d > 0 {
        std::thread::sleep(std::time::Duration::from_millis(u64::from(d)));
    }
    LAST_REMOTE_PTR.store(remote as usize, Ordering::SeqCst);
    LAST_ID_PTR.store(id as usize, Ordering::SeqCst);
    // SAFETY: all-zero is a valid SOCKADDR_STORAGE.
    let mut st: SOCKADDR_STORAGE = unsafe { std::mem::zeroed() };
    // SAFETY: the remote address is valid for the call; copy 28 bytes max.
    unsafe {
        std::ptr::copy_nonoverlapping(
            remote.cast::<u8>(),
            (&mut st as *mut SOCKADDR_STORAGE).cast::<u8>(),
            28,
        )
    };
    REMOTES.lock().unwrap().push(st);
    if st.ss_family == AF_INET {
        // SAFETY: an AF_INET SOCKADDR_STORAGE holds a SOCKADDR_IN.
        let sin = unsafe { std::ptr::read((&st as *const SOCKADDR_STORAGE).cast::<SOCKADDR_IN>()) };
        // SAFETY: valid for the call; copied by value.
        let id = unsafe { id.read() };
        INSPECTED
            .lock()
            .unwrap()
            .push((id, sin.sin_addr, u16::from_be(sin.sin_port)));
    }
    if CLOSE_IN_INSPECT.load(Ordering::SeqCst) != 0 {
        let s = STATE.load(Ordering::SeqCst);
        // SAFETY: test-driver state.
        unsafe { close_socket((*s).listen) };
    }
    let a = INSPECT_ACTION.load(Ordering::SeqCst);
    if a == WskInspectPend {
        // SAFETY: valid for the call; copied by value.
        PENDED.lock().unwrap().push(unsafe { id.read() });
    }
    INSPECT_RETURNS.fetch_add(1, Ordering::SeqCst);
    a
}

/// The IPv4 remotes of the requests aborted so far, in abort order (an
/// id inspect never saw is reported as 0.0.0.0:0).
pub fn aborted_remotes() -> Vec<std::net::SocketAddrV4> {
    let seen = INSPECTED.lock().unwrap();
    ABORTED
        .lock()
        .unwrap()
        .iter()
        .map(|id| {
            seen.iter().rev().find(|(i, _, _)| i == id).map_or(
                std::net::SocketAddrV4::new([0; 4].into(), 0),
                |&(_, a, p)| std::net::SocketAddrV4::new(a.into(), p),
            )
        })
        .collect()
}

pub unsafe extern "system" fn abort_event(_ctx: PVOID, id: *const WSK_INSPECT_ID) -> NTSTATUS {
    note_irql();
    ABORT_CALLS.fetch_add(1, Ordering::SeqCst);
    // SAFETY: valid for the call.
    ABORTED.lock().unwrap().push(unsafe { id.read() });
    STATUS_SUCCESS
}

pub unsafe extern "system" fn accept_event(
    _ctx: PVOID,
    _flags: u32,
    _local: *const SOCKADDR,
    _remote: *const SOCKADDR,
    socket: *mut WSK_SOCKET,
    _out_ctx: *mut PVOID,
    _out_dispatch: *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
) -> NTSTATUS {
    note_irql();
    ACCEPT_CALLS.fetch_add(1, Ordering::SeqCst);
    let st = ACCEPT_STATUS.load(Ordering::SeqCst);
    if st == STATUS_SUCCESS {
        ACCEPTED.lock().unwrap().push(socket as usize);
    }
    st
}

// ---- synchronous IRP helper ----

unsafe extern "system" fn sync_completion(_dev: PVOID, _irp: *mut IRP, ctx: PVOID) -> NTSTATUS {
    // SAFETY: ctx is the caller's KEVENT.
    unsafe { KeSetEvent(ctx.cast(), 0, FALSE) };
    STATUS_MORE_PROCESSING_REQUIRED
}

/// Calls `f(irp)` with a fresh IRP and waits for its completion; returns
/// (status, information).
pub fn sync_call(f: impl FnOnce(*mut IRP) -> NTSTATUS) -> (NTSTATUS, usize) {
    // SAFETY: standard IRP round trip.
    unsafe {
        let irp = IoAllocateIrp(1, FALSE);
        assert!(!irp.is_null());
        let mut ev: KEVENT = std::mem::zeroed();
        KeInitializeEvent(&mut ev, SynchronizationEvent, FALSE);
        IoSetCompletionRoutine(
            irp,
            sync_completion,
            (&mut ev as *mut KEVENT).cast(),
            true,
            true,
            true,
        );
        let st = f(irp);
        if st == STATUS_PENDING {
            let w = KeWaitForSingleObject(
                (&mut ev as *mut KEVENT).cast(),
                Executive,
                KernelMode,
                FALSE,
                std::ptr::null(),
            );
            assert_eq!(w, STATUS_SUCCESS);
        }
        let r = ((*irp).IoStatus.Status, (*irp).IoStatus.Information);
        IoFreeIrp(irp);
        r
    }
}

pub unsafe fn listen_dispatch(s: *mut WSK_SOCKET) -> &'static WSK_PROVIDER_LISTEN_DISPATCH {
    // SAFETY: a listening socket's dispatch.
    unsafe { &*((*s).Dispatch as *const WSK_PROVIDER_LISTEN_DISPATCH) }
}

pub unsafe fn conn_dispatch(s: *mut WSK_SOCKET) -> &'static WSK_PROVIDER_CONNECTION_DISPATCH {
    // SAFETY: a connection socket's dispatch.
    unsafe { &*((*s).Dispatch as *const WSK_PROVIDER_CONNECTION_DISPATCH) }
}

pub unsafe fn close_socket(s: *mut WSK_SOCKET) -> NTSTATUS {
    // SAFETY: the socket's dispatch.
    let close = unsafe { listen_dispatch(s) }.Basic.WskCloseSocket.unwrap();
    // SAFETY: a socket of the simulated provider; the IRP is fresh.
    sync_call(|irp| unsafe { close(s, irp) }).0
}

pub unsafe fn set_option(
    s: *mut WSK_SOCKET,
    level: u32,
    opt: u32,
    value: u32,
    with_irp: bool,
) -> NTSTATUS {
    // SAFETY: a socket of the simulated provider.
    let ctl = unsafe { listen_dispatch(s) }
        .Basic
        .WskControlSocket
        .unwrap();
    let mut v = value;
    let p = (&mut v as *mut u32).cast::<c_void>();
    if with_irp {
        // SAFETY: the option buffer lives across the synchronous call.
        sync_call(|irp| unsafe {
            ctl(
                s,
                WskSetOption,
                opt,
                level,
                4,
                p,
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                irp,
            )
        })
        .0
    } else {
        // SAFETY: as above, without an IRP.
        unsafe {
            ctl(
                s,
                WskSetOption,
                opt,
                level,
                4,
                p,
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        }
    }
}

pub unsafe fn enable_accept_event(s: *mut WSK_SOCKET) -> NTSTATUS {
    // SAFETY: a socket of the simulated provider.
    let ctl = unsafe { listen_dispatch(s) }
        .Basic
        .WskControlSocket
        .unwrap();
    let mut c = WSK_EVENT_CALLBACK_CONTROL {
        NpiId: &NPI_WSK_INTERFACE_ID,
        EventMask: WSK_EVENT_ACCEPT,
    };
    let p = (&mut c as *mut WSK_EVENT_CALLBACK_CONTROL).cast::<c_void>();
    // SAFETY: the control structure lives across the call.
    unsafe {
        ctl(
            s,
            WskSetOption,
            SO_WSK_EVENT_CALLBACK,
            SOL_SOCKET,
            std::mem::size_of::<WSK_EVENT_CALLBACK_CONTROL>(),
            p,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    }
}

pub fn sockaddr_v4(ip: [u8; 4], port: u16) -> SOCKADDR_IN {
    SOCKADDR_IN {
        sin_family: AF_INET,
        sin_port: port.to_be(),
        sin_addr: ip,
        sin_zero: [0; 8],
    }
}

/// Listen port the test driver binds (set before loading).
pub static PORT: AtomicU32 = AtomicU32::new(8080);
/// Set conditional accept (1) or not (0).
pub static CONDITIONAL: AtomicU32 = AtomicU32::new(1);

/// Registers, captures the NPI, creates a conditional-accept listener on
/// 0.0.0.0:PORT with the accept event on.
pub unsafe extern "system" fn driver_entry(
    driver: *mut DRIVER_OBJECT,
    _path: *mut UNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: the test driver's entry, called by the simulated I/O manager.
    unsafe {
        (*driver).DriverUnload = Some(driver_unload);
        let st = Box::into_raw(Box::new(State {
            registration: std::mem::zeroed(),
            provider: std::mem::zeroed(),
            listen: std::ptr::null_mut(),
        }));
        STATE.store(st, Ordering::SeqCst);
        let npi = WSK_CLIENT_NPI {
            ClientContext: std::ptr::null_mut(),
            Dispatch: &CLIENT_DISPATCH.0,
        };
        let s = WskRegister(&npi, &mut (*st).registration);
        if s != STATUS_SUCCESS {
            return s;
        }
        let s = WskCaptureProviderNPI(
            &mut (*st).registration,
            WSK_INFINITE_WAIT,
            &mut (*st).provider,
        );
        if s != STATUS_SUCCESS {
            return s;
        }
        let pd = &*(*st).provider.Dispatch;
        let create = pd.WskSocket.unwrap();
        let client = (*st).provider.Client;
        let (s, info) = sync_call(|irp| {
            create(
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
        });
        if s != STATUS_SUCCESS {
            return s;
        }
        let sock = info as *mut WSK_SOCKET;
        (*st).listen = sock;
        if CONDITIONAL.load(Ordering::SeqCst) != 0 {
            let s = set_option(sock, SOL_SOCKET, SO_CONDITIONAL_ACCEPT, 1, true);
            if s != STATUS_SUCCESS {
                return s;
            }
        }
        let s = enable_accept_event(sock);
        if s != STATUS_SUCCESS {
            return s;
        }
        let addr = sockaddr_v4([0, 0, 0, 0], PORT.load(Ordering::SeqCst) as u16);
        let bind = listen_dispatch(sock).WskBind.unwrap();
        let (s, _) = sync_call(|irp| bind(sock, (&addr as *const SOCKADDR_IN).cast(), 0, irp));
        s
    }
}

pub unsafe extern "system" fn driver_unload(_driver: *mut DRIVER_OBJECT) {
    // SAFETY: runs once, after DriverEntry succeeded; state is ours.
    unsafe {
        let st = STATE.swap(std::ptr::null_mut(), Ordering::SeqCst);
        if st.is_null() {
            return;
        }
        for c in ACCEPTED.lock().unwrap().drain(..) {
            close_socket(c as *mut WSK_SOCKET);
        }
        if !(*st).listen.is_null() {
            close_socket((*st).listen);
        }
        WskReleaseProviderNPI(&mut (*st).registration);
        WskDeregister(&mut (*st).registration);
        drop(Box::from_raw(st));
    }
}

pub fn state() -> *mut State {
    STATE.load(Ordering::SeqCst)
}

pub fn v4(s: &str) -> std::net::SocketAddr {
    s.parse().unwrap()
}

/// `MDL` (wdm.h) for a nonpaged buffer, as MmBuildMdlForNonPagedPool
/// leaves it.
#[repr(C)]
pub struct Mdl {
    next: *mut Mdl,
    size: i16,
    flags: i16,
    processor: u16,
    reserved: u16,
    process: *mut c_void,
    mapped: *mut u8,
    start: *mut u8,
    byte_count: u32,
    byte_offset: u32,
}

/// Makes `b` follow `a` in an MDL chain.
pub fn chain(a: &mut Mdl, b: &mut Mdl) {
    a.next = b as *mut Mdl;
}

pub fn mdl_for(buf: &mut [u8]) -> Mdl {
    Mdl {
        next: std::ptr::null_mut(),
        size: 48,
        flags: 0x4,
        processor: 0,
        reserved: 0,
        process: std::ptr::null_mut(),
        mapped: buf.as_mut_ptr(),
        start: buf.as_mut_ptr(),
        byte_count: buf.len() as u32,
        byte_offset: 0,
    }
}
