//! The simulated WSK provider (netio.sys): registration, the provider NPI,
//! listening and connection sockets, and the network side the test harness
//! drives (connection requests, aborts, peers).
//!
//! State is one table under one lock, never held while driver code runs.
//! Socket objects handed to the driver (`WSK_SOCKET` followed by a magic)
//! are never freed before the next reset: closed sockets stay in the table
//! for a bounded window (a call on one is recorded as use after close),
//! then their objects are reused ([`history`]). Memory is bounded for any
//! run length: finished requests, closed sockets, lent buffers and the log
//! are all windows.

pub(crate) mod conn;
pub mod connect;
pub mod history;
pub(crate) mod listen;
pub(crate) mod net;
#[cfg(target_os = "linux")]
pub mod real;

pub(crate) use history::table_sizes;
pub use history::{TableSizes, HISTORY_LIMIT};

use crate::recent::Ring;
use crate::violation::{record, ViolationKind};
use crate::FastMap as HashMap;
use gate_ksys::*;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::c_void;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Condvar, LazyLock, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

const SOCKET_MAGIC: u64 = 0x5453_4f53_4b53_5753; // "SWSKSOST"
const REG_MAGIC: u64 = 0x4745_524b_5357_4d49; // "IMWSKREG"

/// The object behind every WSK_SOCKET pointer the provider hands out.
#[repr(C)]
pub(crate) struct SimSocket {
    pub wsk: WSK_SOCKET,
    pub magic: u64,
}

// SAFETY: a SimSocket holds only a pointer to an immutable static dispatch
// table and a constant.
unsafe impl Send for SimSocket {}

/// Makes a raw-pointer-holding table usable as a static.
pub(crate) struct SyncWrap<T>(pub T);
// SAFETY: the wrapped dispatch tables are immutable after construction and
// hold only function pointers and NULLs.
unsafe impl<T> Sync for SyncWrap<T> {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Listen,
    Connection,
}

/// Life cycle of a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketState {
    /// Usable.
    Open,
    /// The listener died (NULL InspectID or STATUS_FILE_FORCED_CLOSED):
    /// every call but WskCloseSocket fails.
    Dead,
    /// WskCloseSocket is waiting for callbacks in progress.
    Closing,
    /// Closed by the driver (or by the provider, for a connection the
    /// driver refused in its accept event).
    Closed,
}

pub(crate) struct PendingAccept {
    pub irp: usize,
    pub ctx: usize,
    pub dispatch: usize,
    pub local_out: usize,
    pub remote_out: usize,
}

pub(crate) struct PendingRecv {
    pub irp: usize,
    pub mdl: usize,
    pub offset: u32,
    pub length: usize,
}

pub(crate) struct Socket {
    pub kind: Kind,
    pub client: usize,
    pub family: u16,
    pub ctx: usize,
    /// Client dispatch (listen or connection table), may be 0.
    pub dispatch: usize,
    pub state: SocketState,
    pub conditional_accept: bool,
    pub accept_event: bool,
    pub v6only: bool,
    pub exclusive: bool,
    pub bound: Option<SocketAddr>,
    /// Threads inside a WSK call on this socket.
    pub calls: Vec<ThreadId>,
    /// Threads inside a callback of this socket.
    pub callbacks: Vec<ThreadId>,
    pub pending_accepts: VecDeque<PendingAccept>,
    pub backlog: VecDeque<usize>,
    /// Options set, in order, as (level, name, value) for tests.
    pub options: Vec<(u32, u32, u32)>,
    // connection sockets
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    pub rx: VecDeque<u8>,
    pub tx: Vec<u8>,
    pub peer_closed: bool,
    pub peer_reset: bool,
    pub pending_rx: VecDeque<PendingRecv>,
    pub disconnected: Option<bool>,
    /// A graceful WskDisconnect's IRP waiting for a slow peer
    /// (`Sim::set_slow_peer_close`); 0: none.
    pub pending_disconnect: usize,
    /// Connection delivered to (and owned by) the driver.
    pub owned: bool,
    /// Outgoing connections and flow control ([`connect`]).
    pub ext: connect::SockExt,
}

impl Socket {
    pub(crate) fn new(kind: Kind, client: usize, family: u16) -> Self {
        Socket {
            kind,
            client,
            family,
            ctx: 0,
            dispatch: 0,
            state: SocketState::Open,
            conditional_accept: false,
            accept_event: false,
            v6only: family == AF_INET6,
            exclusive: false,
            bound: None,
            calls: Vec::new(),
            callbacks: Vec::new(),
            pending_accepts: VecDeque::new(),
            backlog: VecDeque::new(),
            options: Vec::new(),
            local: None,
            remote: None,
            rx: VecDeque::new(),
            tx: Vec::new(),
            peer_closed: false,
            peer_reset: false,
            pending_rx: VecDeque::new(),
            disconnected: None,
            pending_disconnect: 0,
            owned: false,
            ext: connect::SockExt::default(),
        }
    }
}

pub(crate) struct Client {
    pub captures: i64,
    /// WskDeregister has begun (captures waiting for WSK end at once).
    pub deregistering: bool,
    pub deregistered: bool,
    pub static_accept: bool,
    pub sockets_created: u64,
    /// Storage whose address is the WSK_CLIENT handle.
    pub _handle: Box<u64>,
}

/// What the inspect callback answered (or a completion asked for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Reject,
    Pend,
}

/// Where a connection request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestState {
    /// No open listener matched: the client gets a reset.
    NoListener,
    /// Inside WskInspectEvent.
    Inspecting,
    /// WskInspectEvent returned Reject; nothing follows.
    Rejected,
    /// WskInspectEvent returned Pend; waiting for WskInspectComplete.
    Pended,
    /// Accepted (by the inspect event or WskInspectComplete) and not yet
    /// delivered to the driver.
    Accepted,
    /// Delivered: accept event took the socket, a WskAccept IRP completed
    /// with it, or it waits in the backlog for WskAccept.
    Established,
    /// The accept event returned a failure; the provider closed the socket.
    AcceptRefused,
    /// Pended, then WskInspectComplete(Reject).
    CompletedReject,
    /// Aborted by the harness; WskAbortEvent was delivered.
    Aborted,
    /// The listener closed or died while the request was pending.
    Dropped,
    /// Finished, and retired from the provider's history window
    /// (`Sim::set_history_window`): its outcome is no longer kept.
    Retired,
}

pub(crate) struct Req {
    pub listener: usize,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: RequestState,
    pub verdict: Option<Verdict>,
    pub completion: Option<Verdict>,
    pub early_completion: Option<Verdict>,
    pub late_completion: bool,
    pub hold: bool,
    pub conn: usize,
    /// Quarantined WSK_INSPECT_ID used for the abort event.
    pub id_buf: usize,
    /// Finished and entered in the history window ([`history::settle`]).
    pub settled: bool,
}

/// Provider log lines kept.
pub const LOG_LIMIT: usize = 16_384;

pub(crate) struct Wsk {
    pub clients: HashMap<usize, Client>,
    /// registration address -> client handle
    pub regs: HashMap<usize, usize>,
    pub sockets: HashMap<usize, Socket>,
    pub requests: HashMap<(usize, u32), Req>,
    /// Windows, recycling and indexes ([`history`]).
    pub hist: history::History,
    pub serial: u32,
    pub provider_not_ready: bool,
    pub force_close_next_complete: bool,
    pub next_port: u16,
    /// The provider's log (the most recent [`LOG_LIMIT`] lines).
    pub log: Ring<String>,
    /// Whether the log gets a line per request (inspect, completion,
    /// abort); `Sim::set_request_log`.
    pub log_requests: bool,
    pub deregister_timeout: Option<Duration>,
    /// WskControlSocket(SO_CONDITIONAL_ACCEPT) is a Wine-style stub
    /// (`Sim::set_conditional_accept_supported(false)`).
    pub conditional_accept_stub: bool,
    /// WskDisconnect is a Wine-style stub (`Sim::set_disconnect_supported(false)`).
    pub disconnect_stub: bool,
    /// A graceful WskDisconnect pends until the peer finishes
    /// (`Sim::set_slow_peer_close`, `Sim::finish_disconnects`).
    pub disconnect_pends: bool,
    /// Backends and flow control ([`connect`]).
    pub relay: connect::Net,
}

impl Default for Wsk {
    fn default() -> Self {
        Wsk {
            clients: HashMap::default(),
            regs: HashMap::default(),
            sockets: HashMap::default(),
            requests: HashMap::default(),
            hist: history::History::default(),
            serial: 0,
            provider_not_ready: false,
            force_close_next_complete: false,
            next_port: 0,
            log: Ring::new(LOG_LIMIT),
            log_requests: true,
            deregister_timeout: None,
            conditional_accept_stub: false,
            disconnect_stub: false,
            disconnect_pends: false,
            relay: connect::Net::default(),
        }
    }
}

static WSK: LazyLock<Mutex<Wsk>> = LazyLock::new(|| Mutex::new(Wsk::default()));
pub(crate) static WSK_CV: Condvar = Condvar::new();

pub(crate) fn wsk() -> MutexGuard<'static, Wsk> {
    WSK.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn reset() {
    let mut g = wsk();
    history::release_all(&mut g);
    #[cfg(target_os = "linux")]
    real::reset();
    *g = Wsk::default();
    WSK_CV.notify_all();
}

pub(crate) fn log(g: &mut Wsk, line: String) {
    if crate::debug::echo_enabled() {
        eprintln!("[sim wsk] {line}");
    }
    g.log.push(line);
}

thread_local! {
    /// Sockets whose callback this thread is running (innermost last).
    pub(crate) static IN_CALLBACK: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// A WSK call in progress on a socket; leaving it on drop.
pub(crate) struct CallGuard {
    pub sock: usize,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let me = std::thread::current().id();
        let mut g = wsk();
        if let Some(s) = g.sockets.get_mut(&self.sock) {
            if let Some(i) = s.calls.iter().position(|t| *t == me) {
                s.calls.swap_remove(i);
            }
        }
        WSK_CV.notify_all();
    }
}

/// Enters a WSK call on `sock`: validates the pointer, records use after
/// close and calls racing a close. Err carries the status to fail with.
pub(crate) fn enter(sock: *mut WSK_SOCKET, who: &str) -> Result<CallGuard, NTSTATUS> {
    let key = sock as usize;
    // SAFETY: a socket pointer is 16 readable bytes if it is ours; others are
    // rejected by the table lookup first.
    let mut g = wsk();
    let Some(s) = g.sockets.get_mut(&key) else {
        drop(g);
        record(
            ViolationKind::WskBadCall,
            format!("{who}({sock:p}): not a socket of this provider"),
        );
        return Err(STATUS_INVALID_PARAMETER);
    };
    match s.state {
        SocketState::Closed => {
            drop(g);
            record(
                ViolationKind::WskUseAfterClose,
                format!("{who} on socket {sock:p} after WskCloseSocket"),
            );
            return Err(STATUS_INVALID_DEVICE_STATE);
        }
        SocketState::Closing => {
            drop(g);
            record(
                ViolationKind::WskCloseConcurrent,
                format!("{who} on socket {sock:p} while WskCloseSocket runs"),
            );
            return Err(STATUS_INVALID_DEVICE_STATE);
        }
        _ => {}
    }
    s.calls.push(std::thread::current().id());
    Ok(CallGuard { sock: key })
}

/// Allocates a new socket object and its table entry.
pub(crate) fn new_socket(g: &mut Wsk, s: Socket) -> usize {
    let dispatch: *const c_void = match s.kind {
        Kind::Listen => (&listen::LISTEN_DISPATCH.0 as *const WSK_PROVIDER_LISTEN_DISPATCH).cast(),
        Kind::Connection => {
            (&conn::CONN_DISPATCH.0 as *const WSK_PROVIDER_CONNECTION_DISPATCH).cast()
        }
    };
    let p = history::socket_object(g, dispatch);
    g.sockets.insert(p, s);
    p
}

/// Begins a callback on `sock` (only while Open); Err when it may not run.
pub(crate) fn begin_callback(g: &mut Wsk, sock: usize) -> Result<(), ()> {
    let Some(s) = g.sockets.get_mut(&sock) else {
        return Err(());
    };
    if s.state != SocketState::Open {
        return Err(());
    }
    s.callbacks.push(std::thread::current().id());
    IN_CALLBACK.with(|c| c.borrow_mut().push(sock));
    Ok(())
}

/// Ends a callback begun with [`begin_callback`].
pub(crate) fn end_callback(sock: usize) {
    IN_CALLBACK.with(|c| {
        let mut v = c.borrow_mut();
        if let Some(i) = v.iter().rposition(|s| *s == sock) {
            v.remove(i);
        }
    });
    let me = std::thread::current().id();
    let mut g = wsk();
    if let Some(s) = g.sockets.get_mut(&sock) {
        if let Some(i) = s.callbacks.iter().position(|t| *t == me) {
            s.callbacks.swap_remove(i);
        }
    }
    WSK_CV.notify_all();
}

// ---- addresses ----

/// Writes `a` as a Windows SOCKADDR_IN/SOCKADDR_IN6 into `out` (at least 28
/// bytes). `mapped` writes an IPv4 address as IPv4-mapped IPv6.
///
/// # Safety
/// `out` must have 28 writable bytes.
pub(crate) unsafe fn write_sockaddr(out: *mut u8, a: &SocketAddr, mapped: bool) {
    let a = match (a, mapped) {
        (SocketAddr::V4(v4), true) => {
            SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        _ => *a,
    };
    match a {
        SocketAddr::V4(v4) => {
            let s = SOCKADDR_IN {
                sin_family: AF_INET,
                sin_port: v4.port().to_be(),
                sin_addr: v4.ip().octets(),
                sin_zero: [0; 8],
            };
            // SAFETY: per the contract (16 <= 28 bytes).
            unsafe { out.cast::<SOCKADDR_IN>().write_unaligned(s) };
        }
        SocketAddr::V6(v6) => {
            let s = SOCKADDR_IN6 {
                sin6_family: AF_INET6,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo().to_be(),
                sin6_addr: v6.ip().octets(),
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: per the contract.
            unsafe { out.cast::<SOCKADDR_IN6>().write_unaligned(s) };
        }
    }
}

/// Reads a Windows SOCKADDR (AF_INET or AF_INET6).
///
/// # Safety
/// `p` must be NULL or point to a SOCKADDR of its family's size.
pub(crate) unsafe fn read_sockaddr(p: *const SOCKADDR) -> Option<SocketAddr> {
    if p.is_null() {
        return None;
    }
    // SAFETY: per the contract.
    let family = unsafe { p.cast::<u16>().read_unaligned() };
    match family {
        AF_INET => {
            // SAFETY: an AF_INET sockaddr is a SOCKADDR_IN.
            let s = unsafe { p.cast::<SOCKADDR_IN>().read_unaligned() };
            Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(s.sin_addr)),
                u16::from_be(s.sin_port),
            ))
        }
        AF_INET6 => {
            // SAFETY: an AF_INET6 sockaddr is a SOCKADDR_IN6.
            let s = unsafe { p.cast::<SOCKADDR_IN6>().read_unaligned() };
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                Ipv6Addr::from(s.sin6_addr),
                u16::from_be(s.sin6_port),
                u32::from_be(s.sin6_flowinfo),
                s.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// A poisonable 128-byte buffer to lend to a callback; returns its
/// address. Give it back with [`history::release_buf`] once the call
/// returned (it is poisoned and reused only after many others).
pub(crate) fn quarantine_buf(g: &mut Wsk) -> *mut u8 {
    history::lend_buf(g)
}

/// Overwrites a lent buffer with garbage once the call it was lent for
/// returned.
///
/// # Safety
/// `p` must come from [`quarantine_buf`] and not be released yet.
pub(crate) unsafe fn poison(p: *mut u8) {
    // SAFETY: quarantine buffers are 128 bytes, alive until released.
    unsafe { std::ptr::write_bytes(p, 0xA5, 128) };
}

// ---- registration ----

/// # Safety
/// Arguments as for the netio routine.
#[no_mangle]
pub unsafe extern "system" fn WskRegister(
    client: *const WSK_CLIENT_NPI,
    registration: *mut WSK_REGISTRATION,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::irql::require_passive("WskRegister");
    if client.is_null() || registration.is_null() {
        record(
            ViolationKind::WskBadCall,
            "WskRegister with a NULL argument",
        );
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: checked non-null.
    let npi = unsafe { client.read() };
    if npi.Dispatch.is_null() {
        record(
            ViolationKind::WskBadCall,
            "WskRegister: client dispatch is NULL",
        );
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: checked non-null.
    let version = unsafe { (*npi.Dispatch).Version };
    if version >> 8 != 1 {
        record(
            ViolationKind::WskBadCall,
            format!("WskRegister: unsupported WSK version {version:#06x}"),
        );
        return STATUS_NOT_SUPPORTED;
    }
    let mut g = wsk();
    if let Some(&c) = g.regs.get(&(registration as usize)) {
        if g.clients.get(&c).is_some_and(|c| !c.deregistered) {
            drop(g);
            record(
                ViolationKind::WskBadCall,
                "WskRegister twice on the same WSK_REGISTRATION",
            );
            return STATUS_INVALID_PARAMETER;
        }
    }
    let mut handle = Box::new(0u64);
    let h = (&mut *handle as *mut u64) as usize;
    g.clients.insert(
        h,
        Client {
            captures: 0,
            deregistering: false,
            deregistered: false,
            static_accept: false,
            sockets_created: 0,
            _handle: handle,
        },
    );
    g.regs.insert(registration as usize, h);
    // SAFETY: checked non-null; the registration is WSK's storage.
    unsafe {
        (*registration).ReservedRegistrationState = REG_MAGIC;
        (*registration).ReservedRegistrationContext = h as *mut c_void;
    }
    STATUS_SUCCESS
}

fn client_of(registration: *mut WSK_REGISTRATION, who: &str) -> Option<usize> {
    let g = wsk();
    match g.regs.get(&(registration as usize)) {
        Some(&c) => Some(c),
        None => {
            drop(g);
            record(
                ViolationKind::NpiMisuse,
                format!("{who}: registration {registration:p} unknown"),
            );
            None
        }
    }
}

/// # Safety
/// Arguments as for the netio routine.
#[no_mangle]
pub unsafe extern "system" fn WskCaptureProviderNPI(
    registration: *mut WSK_REGISTRATION,
    wait_timeout: u32,
    provider: *mut WSK_PROVIDER_NPI,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    if wait_timeout != WSK_NO_WAIT {
        crate::irql::require_passive("WskCaptureProviderNPI with a wait");
    }
    let Some(c) = client_of(registration, "WskCaptureProviderNPI") else {
        return STATUS_INVALID_PARAMETER;
    };
    if provider.is_null() {
        record(
            ViolationKind::WskBadCall,
            "WskCaptureProviderNPI with a NULL provider NPI",
        );
        return STATUS_INVALID_PARAMETER;
    }
    let deadline = (wait_timeout != WSK_INFINITE_WAIT)
        .then(|| crate::clock::now().saturating_add(u64::from(wait_timeout) * 10_000));
    let mut g = wsk();
    // Whether this call already waited for WSK: WskDeregister then ends
    // the wait, which is the documented way (wsk.h remarks: blocked calls
    // "return immediately with STATUS_DEVICE_NOT_READY"). A call that
    // starts once WskDeregister has begun is a misuse.
    let mut waiting = false;
    loop {
        if g.clients
            .get(&c)
            .is_none_or(|cl| cl.deregistered || cl.deregistering)
        {
            if waiting {
                log(
                    &mut g,
                    "WskCaptureProviderNPI: wait ended by WskDeregister".into(),
                );
                return STATUS_DEVICE_NOT_READY;
            }
            drop(g);
            record(
                ViolationKind::NpiMisuse,
                "WskCaptureProviderNPI after WskDeregister",
            );
            return STATUS_DEVICE_NOT_READY;
        }
        if !g.provider_not_ready {
            break;
        }
        if deadline.is_some_and(|d| crate::clock::now() >= d) {
            return STATUS_DEVICE_NOT_READY;
        }
        if !waiting {
            waiting = true;
            log(
                &mut g,
                "WskCaptureProviderNPI: waiting for the provider".into(),
            );
        }
        g = WSK_CV
            .wait_timeout(g, Duration::from_millis(20))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    if let Some(cl) = g.clients.get_mut(&c) {
        cl.captures += 1;
    }
    // SAFETY: checked non-null.
    unsafe {
        provider.write(WSK_PROVIDER_NPI {
            Client: c as *mut c_void,
            Dispatch: &listen::PROVIDER_DISPATCH.0,
        });
    }
    STATUS_SUCCESS
}

/// # Safety
/// Arguments as for the netio routine.
#[no_mangle]
pub unsafe extern "system" fn WskReleaseProviderNPI(registration: *mut WSK_REGISTRATION) {
    let _sim = crate::fault::sim();
    let Some(c) = client_of(registration, "WskReleaseProviderNPI") else {
        return;
    };
    let mut g = wsk();
    let over = match g.clients.get_mut(&c) {
        Some(cl) => {
            cl.captures -= 1;
            cl.captures < 0
        }
        None => false,
    };
    WSK_CV.notify_all();
    drop(g);
    if over {
        record(
            ViolationKind::NpiMisuse,
            "WskReleaseProviderNPI more often than WskCaptureProviderNPI",
        );
    }
}

/// Ends captures waiting for WSK (they return STATUS_DEVICE_NOT_READY),
/// then blocks until the client's captures are released and its sockets closed
/// (bounded by `Sim::set_deregister_timeout`, default 5 s of real time,
/// after which `DeregisterBlocked` is recorded and it returns: the real one
/// would hang forever).
///
/// # Safety
/// Arguments as for the netio routine.
#[no_mangle]
pub unsafe extern "system" fn WskDeregister(registration: *mut WSK_REGISTRATION) {
    let _sim = crate::fault::sim();
    crate::irql::require_passive("WskDeregister");
    let Some(c) = client_of(registration, "WskDeregister") else {
        return;
    };
    let start = Instant::now();
    let mut g = wsk();
    if let Some(cl) = g.clients.get_mut(&c) {
        cl.deregistering = true;
    }
    // Captures waiting for WSK return now.
    WSK_CV.notify_all();
    let limit = g.deregister_timeout.unwrap_or(Duration::from_secs(5));
    loop {
        let captures = g.clients.get(&c).map_or(0, |cl| cl.captures);
        let open = g
            .sockets
            .values()
            .filter(|s| {
                s.client == c
                    && s.state != SocketState::Closed
                    && (s.kind == Kind::Listen || s.owned)
            })
            .count();
        if captures <= 0 && open == 0 {
            break;
        }
        if start.elapsed() >= limit {
            drop(g);
            record(
                ViolationKind::DeregisterBlocked,
                format!("WskDeregister would block forever: {open} socket(s) open, provider NPI captured {captures} time(s)"),
            );
            g = wsk();
            break;
        }
        g = WSK_CV
            .wait_timeout(g, Duration::from_millis(20))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    if let Some(cl) = g.clients.get_mut(&c) {
        cl.deregistered = true;
    }
    g.regs.remove(&(registration as usize));
}
