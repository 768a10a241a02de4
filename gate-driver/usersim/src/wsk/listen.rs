//! The provider dispatch (WskSocket, WskControlClient) and the listening
//! socket dispatch: WskControlSocket, WskCloseSocket, WskBind, WskAccept,
//! WskInspectComplete, WskGetLocalAddress.

use super::history;
use super::*;
use crate::irp;

pub(crate) static PROVIDER_DISPATCH: SyncWrap<WSK_PROVIDER_DISPATCH> =
    SyncWrap(WSK_PROVIDER_DISPATCH {
        Version: WSK_VERSION_1_0,
        Reserved: 0,
        WskSocket: Some(WskSocket),
        WskSocketConnect: std::ptr::null_mut(),
        WskControlClient: Some(WskControlClient),
        WskGetAddressInfo: std::ptr::null_mut(),
        WskFreeAddressInfo: std::ptr::null_mut(),
        WskGetNameInfo: std::ptr::null_mut(),
    });

pub(crate) static LISTEN_DISPATCH: SyncWrap<WSK_PROVIDER_LISTEN_DISPATCH> =
    SyncWrap(WSK_PROVIDER_LISTEN_DISPATCH {
        Basic: WSK_PROVIDER_BASIC_DISPATCH {
            WskControlSocket: Some(WskControlSocket),
            WskCloseSocket: Some(WskCloseSocket),
        },
        WskBind: Some(WskBind),
        WskAccept: Some(WskAccept),
        WskInspectComplete: Some(WskInspectComplete),
        WskGetLocalAddress: Some(WskGetLocalAddress),
    });

/// `WSK_SET_STATIC_EVENT_CALLBACKS` (WskControlClient code).
pub const WSK_SET_STATIC_EVENT_CALLBACKS: u32 = 7;

/// Takes an optional IRP; false when a non-NULL IRP could not be taken.
fn take_opt(irp: *mut IRP, who: &str) -> (bool, bool) {
    if irp.is_null() {
        (true, false)
    } else {
        let t = irp::take(irp, who);
        (t, t)
    }
}

/// Finishes with `status`: through the IRP when one was taken.
fn done(irp: *mut IRP, taken: bool, status: NTSTATUS, info: usize) -> NTSTATUS {
    if taken {
        irp::finish(irp, status, info)
    } else {
        status
    }
}

unsafe extern "system" fn WskSocket(
    client: *mut WSK_CLIENT,
    family: ADDRESS_FAMILY,
    socket_type: u16,
    protocol: u32,
    flags: u32,
    socket_context: PVOID,
    dispatch: *const c_void,
    _owning_process: PEPROCESS,
    _owning_thread: PETHREAD,
    _security_descriptor: PSECURITY_DESCRIPTOR,
    irp: *mut IRP,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::irql::require_at_most_dispatch("WskSocket");
    if !irp::take(irp, "WskSocket") {
        return STATUS_INVALID_PARAMETER;
    }
    let mut g = wsk();
    let c = client as usize;
    let Some(cl) = g.clients.get_mut(&c) else {
        drop(g);
        record(
            ViolationKind::WskBadCall,
            format!("WskSocket: client {client:p} unknown"),
        );
        return irp::finish(irp, STATUS_INVALID_PARAMETER, 0);
    };
    if cl.deregistered {
        drop(g);
        record(ViolationKind::NpiMisuse, "WskSocket after WskDeregister");
        return irp::finish(irp, STATUS_DEVICE_NOT_READY, 0);
    }
    if cl.captures <= 0 {
        drop(g);
        record(
            ViolationKind::NpiMisuse,
            "WskSocket without a captured provider NPI (released already?)",
        );
        return irp::finish(irp, STATUS_DEVICE_NOT_READY, 0);
    }
    let static_accept = cl.static_accept;
    cl.sockets_created += 1;
    let kind = match flags & !WSK_FLAG_AT_DISPATCH_LEVEL {
        WSK_FLAG_LISTEN_SOCKET => Kind::Listen,
        WSK_FLAG_CONNECTION_SOCKET => Kind::Connection,
        _ => {
            log(
                &mut g,
                format!("WskSocket flags {flags:#x}: only listening and connection sockets are simulated"),
            );
            drop(g);
            return irp::finish(irp, STATUS_NOT_SUPPORTED, 0);
        }
    };
    if (family != AF_INET && family != AF_INET6)
        || socket_type != SOCK_STREAM
        || protocol != IPPROTO_TCP
    {
        drop(g);
        record(
            ViolationKind::WskBadCall,
            format!("WskSocket(family {family}, type {socket_type}, protocol {protocol}): expected a TCP stream socket"),
        );
        return irp::finish(irp, STATUS_INVALID_PARAMETER, 0);
    }
    let mut s = Socket::new(kind, c, family);
    s.ctx = socket_context as usize;
    s.dispatch = dispatch as usize;
    s.accept_event = static_accept && kind == Kind::Listen;
    // A connection socket the driver creates is its own to close.
    s.owned = kind == Kind::Connection;
    let p = new_socket(&mut g, s);
    log(
        &mut g,
        format!("WskSocket -> {kind:?} socket {p:#x} family {family}"),
    );
    drop(g);
    if kind == Kind::Connection {
        return super::conn::finish_connection_setup(irp, STATUS_SUCCESS, p);
    }
    irp::finish(irp, STATUS_SUCCESS, p)
}

unsafe extern "system" fn WskControlClient(
    client: *mut WSK_CLIENT,
    control_code: u32,
    input_size: SIZE_T,
    input: PVOID,
    _output_size: SIZE_T,
    _output: PVOID,
    _output_size_returned: *mut SIZE_T,
    irp: *mut IRP,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    let (ok, taken) = take_opt(irp, "WskControlClient");
    if !ok {
        return STATUS_INVALID_PARAMETER;
    }
    if control_code != WSK_SET_STATIC_EVENT_CALLBACKS {
        return done(irp, taken, STATUS_NOT_SUPPORTED, 0);
    }
    // SAFETY: the caller passes `input_size` readable bytes.
    let Some(mask) = (unsafe { read_event_control(input, input_size, "WskControlClient") }) else {
        return done(irp, taken, STATUS_INVALID_PARAMETER, 0);
    };
    let mut g = wsk();
    let Some(cl) = g.clients.get_mut(&(client as usize)) else {
        drop(g);
        record(
            ViolationKind::WskBadCall,
            format!("WskControlClient: client {client:p} unknown"),
        );
        return done(irp, taken, STATUS_INVALID_PARAMETER, 0);
    };
    if cl.sockets_created > 0 {
        return done(irp, taken, STATUS_INVALID_DEVICE_STATE, 0);
    }
    cl.static_accept = mask & WSK_EVENT_ACCEPT != 0 && mask & WSK_EVENT_DISABLE == 0;
    drop(g);
    done(irp, taken, STATUS_SUCCESS, 0)
}

/// Reads a WSK_EVENT_CALLBACK_CONTROL, checking the NPI id; returns the mask.
unsafe fn read_event_control(input: PVOID, size: SIZE_T, who: &str) -> Option<u32> {
    if input.is_null() || size < std::mem::size_of::<WSK_EVENT_CALLBACK_CONTROL>() {
        record(
            ViolationKind::WskBadCall,
            format!("{who}: WSK_EVENT_CALLBACK_CONTROL missing or {size} bytes"),
        );
        return None;
    }
    // SAFETY: checked size; the caller passes a readable buffer.
    let c = unsafe { input.cast::<WSK_EVENT_CALLBACK_CONTROL>().read_unaligned() };
    // SAFETY: NpiId is NULL or points to a GUID.
    if c.NpiId.is_null() || unsafe { c.NpiId.read_unaligned() } != NPI_WSK_INTERFACE_ID {
        record(
            ViolationKind::WskBadCall,
            format!("{who}: NpiId is not NPI_WSK_INTERFACE_ID"),
        );
        return None;
    }
    Some(c.EventMask)
}

fn read_ulong(input: PVOID, size: SIZE_T) -> Option<u32> {
    if input.is_null() || size < 4 {
        return None;
    }
    // SAFETY: at least 4 readable bytes.
    Some(unsafe { input.cast::<u32>().read_unaligned() })
}

/// Shared by listening and connection sockets.
pub(crate) unsafe extern "system" fn WskControlSocket(
    socket: *mut WSK_SOCKET,
    request_type: WSK_CONTROL_SOCKET_TYPE,
    control_code: u32,
    level: u32,
    input_size: SIZE_T,
    input: PVOID,
    output_size: SIZE_T,
    output: PVOID,
    output_size_returned: *mut SIZE_T,
    irp: *mut IRP,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::irql::require_at_most_dispatch("WskControlSocket");
    if (request_type, level, control_code) == (WskSetOption, SOL_SOCKET, SO_CONDITIONAL_ACCEPT) {
        let mut g = wsk();
        if g.conditional_accept_stub {
            // Wine 8's netio: FIXME("stub") and return, IRP untouched.
            log(
                &mut g,
                format!("WskControlSocket(SO_CONDITIONAL_ACCEPT) on {socket:p}: STATUS_NOT_IMPLEMENTED, IRP not completed (Wine stub)"),
            );
            return STATUS_NOT_IMPLEMENTED;
        }
    }
    let (ok, taken) = take_opt(irp, "WskControlSocket");
    if !ok {
        return STATUS_INVALID_PARAMETER;
    }
    let guard = match enter(socket, "WskControlSocket") {
        Ok(g) => g,
        Err(st) => return done(irp, taken, st, 0),
    };
    let sock = guard.sock;
    let mut g = wsk();
    let Some(s) = g.sockets.get_mut(&sock) else {
        return done(irp, taken, STATUS_INVALID_PARAMETER, 0);
    };
    if s.state == SocketState::Dead {
        drop(g);
        drop(guard);
        return done(irp, taken, STATUS_FILE_FORCED_CLOSED, 0);
    }
    let bound = s.bound.is_some();
    let status = match (request_type, level, control_code) {
        (WskSetOption, SOL_SOCKET, SO_CONDITIONAL_ACCEPT) => {
            if !taken {
                drop(g);
                record(
                    ViolationKind::MissingIrp,
                    "WskControlSocket(SO_CONDITIONAL_ACCEPT) requires an IRP",
                );
                return STATUS_INVALID_PARAMETER;
            }
            match read_ulong(input, input_size) {
                None => STATUS_INVALID_PARAMETER,
                Some(_) if s.kind != Kind::Listen => STATUS_NOT_SUPPORTED,
                Some(v) if bound => {
                    s.options.push((level, control_code, v));
                    log(
                        &mut g,
                        format!(
                            "SO_CONDITIONAL_ACCEPT={v} on {sock:#x} refused: socket already bound"
                        ),
                    );
                    STATUS_INVALID_DEVICE_STATE
                }
                Some(v) => {
                    s.conditional_accept = v != 0;
                    s.options.push((level, control_code, v));
                    STATUS_SUCCESS
                }
            }
        }
        (WskSetOption, SOL_SOCKET, SO_WSK_EVENT_CALLBACK) => {
            let kind = s.kind;
            let dispatch = s.dispatch;
            drop(g);
            // SAFETY: the caller passes `input_size` readable bytes.
            let mask = unsafe { read_event_control(input, input_size, "SO_WSK_EVENT_CALLBACK") };
            g = wsk();
            let Some(s) = g.sockets.get_mut(&sock) else {
                return done(irp, taken, STATUS_INVALID_PARAMETER, 0);
            };
            match mask {
                None => STATUS_INVALID_PARAMETER,
                Some(m)
                    if kind == Kind::Listen
                        && m & !(WSK_EVENT_ACCEPT | WSK_EVENT_DISABLE) == 0
                        && m & WSK_EVENT_ACCEPT != 0 =>
                {
                    let on = m & WSK_EVENT_DISABLE == 0;
                    // SAFETY: a listen dispatch given to WskSocket is a
                    // WSK_CLIENT_LISTEN_DISPATCH the driver keeps alive.
                    let has = dispatch != 0
                        && unsafe {
                            (*(dispatch as *const WSK_CLIENT_LISTEN_DISPATCH))
                                .WskAcceptEvent
                                .is_some()
                        };
                    if on && !has {
                        drop(g);
                        record(
                            ViolationKind::WskBadCall,
                            "WSK_EVENT_ACCEPT enabled without a WskAcceptEvent callback",
                        );
                        return done(irp, taken, STATUS_INVALID_PARAMETER, 0);
                    }
                    s.accept_event = on;
                    s.options.push((level, control_code, m));
                    STATUS_SUCCESS
                }
                Some(m) => {
                    s.options.push((level, control_code, m));
                    log(
                        &mut g,
                        format!("SO_WSK_EVENT_CALLBACK mask {m:#x} on {sock:#x}: not simulated"),
                    );
                    STATUS_NOT_SUPPORTED
                }
            }
        }
        (WskSetOption, SOL_SOCKET, SO_EXCLUSIVEADDRUSE)
        | (WskSetOption, SOL_SOCKET, SO_REUSEADDR) => match read_ulong(input, input_size) {
            None => STATUS_INVALID_PARAMETER,
            Some(_) if bound => STATUS_INVALID_DEVICE_STATE,
            Some(v) => {
                if control_code == SO_EXCLUSIVEADDRUSE {
                    s.exclusive = v != 0;
                }
                s.options.push((level, control_code, v));
                STATUS_SUCCESS
            }
        },
        (WskSetOption, IPPROTO_IPV6, IPV6_V6ONLY) => match read_ulong(input, input_size) {
            None => STATUS_INVALID_PARAMETER,
            Some(_) if s.family != AF_INET6 => STATUS_INVALID_PARAMETER,
            Some(_) if bound => STATUS_INVALID_DEVICE_STATE,
            Some(v) => {
                s.v6only = v != 0;
                s.options.push((level, control_code, v));
                STATUS_SUCCESS
            }
        },
        (WskGetOption, _, _) => {
            let v = match (level, control_code) {
                (SOL_SOCKET, SO_CONDITIONAL_ACCEPT) => Some(u32::from(s.conditional_accept)),
                (SOL_SOCKET, SO_EXCLUSIVEADDRUSE) => Some(u32::from(s.exclusive)),
                (IPPROTO_IPV6, IPV6_V6ONLY) if s.family == AF_INET6 => Some(u32::from(s.v6only)),
                _ => None,
            };
            match v {
                None => STATUS_NOT_SUPPORTED,
                Some(_) if output.is_null() || output_size < 4 => STATUS_BUFFER_TOO_SMALL,
                Some(v) => {
                    // SAFETY: at least 4 writable bytes.
                    unsafe { output.cast::<u32>().write_unaligned(v) };
                    if !output_size_returned.is_null() {
                        // SAFETY: the caller passes a writable SIZE_T.
                        unsafe { output_size_returned.write(4) };
                    }
                    STATUS_SUCCESS
                }
            }
        }
        _ => {
            log(&mut g, format!("WskControlSocket type {request_type} level {level:#x} code {control_code:#x}: not simulated"));
            STATUS_NOT_SUPPORTED
        }
    };
    drop(g);
    drop(guard);
    done(irp, taken, status, 0)
}

/// Shared by listening and connection sockets: waits for callbacks in
/// progress on other threads, then closes.
pub(crate) unsafe extern "system" fn WskCloseSocket(
    socket: *mut WSK_SOCKET,
    irp: *mut IRP,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::irql::require_at_most_dispatch("WskCloseSocket");
    let key = socket as usize;
    let me = std::thread::current().id();
    let prev;
    {
        let mut g = wsk();
        let Some(s) = g.sockets.get_mut(&key) else {
            drop(g);
            record(
                ViolationKind::WskBadCall,
                format!("WskCloseSocket({socket:p}): not a socket of this provider"),
            );
            return if irp::take(irp, "WskCloseSocket") {
                irp::finish(irp, STATUS_INVALID_PARAMETER, 0)
            } else {
                STATUS_INVALID_PARAMETER
            };
        };
        match s.state {
            SocketState::Closed | SocketState::Closing => {
                drop(g);
                record(
                    ViolationKind::WskUseAfterClose,
                    format!("WskCloseSocket({socket:p}) twice"),
                );
                return if irp::take(irp, "WskCloseSocket") {
                    irp::finish(irp, STATUS_INVALID_DEVICE_STATE, 0)
                } else {
                    STATUS_INVALID_PARAMETER
                };
            }
            _ => {}
        }
        let others = s.calls.iter().filter(|t| **t != me).count();
        let in_cb = IN_CALLBACK.with(|c| c.borrow().contains(&key));
        prev = s.state;
        s.state = SocketState::Closing;
        drop(g);
        if others > 0 {
            record(
                ViolationKind::WskCloseConcurrent,
                format!("WskCloseSocket({socket:p}) while {others} other call(s) run on it"),
            );
        }
        if in_cb {
            record(
                ViolationKind::WskCloseInCallback,
                format!("WskCloseSocket({socket:p}) from inside a callback on that socket"),
            );
        }
    }
    if !irp::take(irp, "WskCloseSocket") {
        if let Some(s) = wsk().sockets.get_mut(&key) {
            s.state = prev;
        }
        return STATUS_INVALID_PARAMETER;
    }
    // Wait for callbacks in progress on other threads.
    let mut g = wsk();
    loop {
        let busy = g
            .sockets
            .get(&key)
            .map_or(0, |s| s.callbacks.iter().filter(|t| **t != me).count());
        if busy == 0 {
            break;
        }
        g = WSK_CV
            .wait_timeout(g, Duration::from_millis(20))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    let mut cancel: Vec<usize> = Vec::new();
    let mut close_conns: Vec<usize> = Vec::new();
    let mut receives: Vec<usize> = Vec::new();
    if let Some(s) = g.sockets.get_mut(&key) {
        s.state = SocketState::Closed;
        cancel.extend(s.pending_accepts.drain(..).map(|a| a.irp));
        receives.extend(s.pending_rx.drain(..).map(|r| r.irp));
        close_conns.extend(s.backlog.drain(..));
    }
    cancel.extend(super::connect::hold_or_cancel(&mut g, receives));
    cancel.extend(super::connect::drain(&mut g, key));
    for c in close_conns {
        if let Some(s) = g.sockets.get_mut(&c) {
            s.state = SocketState::Closed;
        }
        #[cfg(target_os = "linux")]
        super::real::close(c);
        history::socket_closed(&mut g, c);
    }
    #[cfg(target_os = "linux")]
    let was_real = super::real::is_real(key);
    #[cfg(target_os = "linux")]
    cancel.extend(super::real::close(key));
    // Only this listener's requests in flight (an index: a connection
    // socket's close touches no request at all).
    for k in history::inflight_of(&g, key) {
        if let Some(r) = g.requests.get_mut(&k) {
            if matches!(
                r.state,
                RequestState::Pended | RequestState::Accepted | RequestState::Inspecting
            ) {
                r.state = RequestState::Dropped;
            }
        }
        history::settle(&mut g, k);
    }
    log(&mut g, format!("WskCloseSocket({key:#x})"));
    history::socket_closed(&mut g, key);
    WSK_CV.notify_all();
    drop(g);
    #[cfg(target_os = "linux")]
    if was_real {
        for i in cancel {
            super::conn::real_finish(i as *mut IRP, STATUS_CANCELLED, 0);
        }
        return super::conn::real_finish(irp, STATUS_SUCCESS, 0);
    }
    for i in cancel {
        irp::finish(i as *mut IRP, STATUS_CANCELLED, 0);
    }
    irp::finish(irp, STATUS_SUCCESS, 0)
}

fn overlaps(a: &SocketAddr, a_v6only: bool, b: &SocketAddr, b_v6only: bool) -> bool {
    if a.port() != b.port() {
        return false;
    }
    let same_family = a.is_ipv4() == b.is_ipv4();
    if same_family {
        return a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified();
    }
    let (v6, v6only, v4) = if a.is_ipv6() {
        (a, a_v6only, b)
    } else {
        (b, b_v6only, a)
    };
    !v6only && (v6.ip().is_unspecified() || v4.ip().is_unspecified())
}

unsafe extern "system" fn WskBind(
    socket: *mut WSK_SOCKET,
    local: *const SOCKADDR,
    flags: u32,
    irp: *mut IRP,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::irql::require_at_most_dispatch("WskBind");
    if !irp::take(irp, "WskBind") {
        return STATUS_INVALID_PARAMETER;
    }
    let guard = match enter(socket, "WskBind") {
        Ok(g) => g,
        Err(st) => return irp::finish(irp, st, 0),
    };
    // SAFETY: the caller passes a SOCKADDR of its family's size, or NULL.
    let addr = unsafe { read_sockaddr(local) };
    let mut g = wsk();
    let key = guard.sock;
    let Some(s) = g.sockets.get(&key) else {
        return irp::finish(irp, STATUS_INVALID_PARAMETER, 0);
    };
    let status = if s.state == SocketState::Dead {
        STATUS_FILE_FORCED_CLOSED
    } else if flags != 0 || s.kind != Kind::Listen {
        STATUS_INVALID_PARAMETER
    } else if s.bound.is_some() {
        STATUS_INVALID_DEVICE_STATE
    } else {
        match addr {
            None => {
                drop(g);
                record(
                    ViolationKind::WskBadCall,
                    "WskBind with a NULL or non-IP address",
                );
                drop(guard);
                return irp::finish(irp, STATUS_INVALID_PARAMETER, 0);
            }
            Some(a) if (a.is_ipv6()) != (s.family == AF_INET6) => STATUS_INVALID_PARAMETER,
            Some(mut a) => {
                let v6only = s.v6only;
                // Listeners bound to the port (an index, not a scan).
                let same_port = g.hist.listen_by_port.get(&a.port());
                let conflict = same_port.into_iter().flatten().any(|k| {
                    let Some(o) = g.sockets.get(k) else {
                        return false;
                    };
                    *k != key
                        && o.kind == Kind::Listen
                        && matches!(o.state, SocketState::Open | SocketState::Dead)
                        && o.bound.is_some_and(|b| overlaps(&b, o.v6only, &a, v6only))
                });
                if conflict {
                    STATUS_ADDRESS_ALREADY_EXISTS
                } else {
                    if a.port() == 0 {
                        g.next_port = g
                            .next_port
                            .checked_add(1)
                            .filter(|p| *p >= 49152)
                            .unwrap_or(49152);
                        a.set_port(g.next_port);
                    }
                    if let Some(s) = g.sockets.get_mut(&key) {
                        s.bound = Some(a);
                    }
                    super::history::listener_bound(&mut g, key, a.port());
                    log(&mut g, format!("WskBind({key:#x}, {a})"));
                    WSK_CV.notify_all();
                    STATUS_SUCCESS
                }
            }
        }
    };
    drop(g);
    drop(guard);
    irp::finish(irp, status, 0)
}

unsafe extern "system" fn WskAccept(
    listen_socket: *mut WSK_SOCKET,
    flags: u32,
    accept_socket_context: PVOID,
    accept_socket_dispatch: *const WSK_CLIENT_CONNECTION_DISPATCH,
    local: *mut SOCKADDR,
    remote: *mut SOCKADDR,
    irp: *mut IRP,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::irql::require_at_most_dispatch("WskAccept");
    if !irp::take(irp, "WskAccept") {
        return STATUS_INVALID_PARAMETER;
    }
    let guard = match enter(listen_socket, "WskAccept") {
        Ok(g) => g,
        Err(st) => return irp::finish(irp, st, 0),
    };
    let key = guard.sock;
    let mut g = wsk();
    let Some(s) = g.sockets.get_mut(&key) else {
        return irp::finish(irp, STATUS_INVALID_PARAMETER, 0);
    };
    if s.state == SocketState::Dead {
        drop(g);
        drop(guard);
        return irp::finish(irp, STATUS_FILE_FORCED_CLOSED, 0);
    }
    if flags != 0 || s.bound.is_none() {
        drop(g);
        drop(guard);
        return irp::finish(irp, STATUS_INVALID_DEVICE_STATE, 0);
    }
    let pa = PendingAccept {
        irp: irp as usize,
        ctx: accept_socket_context as usize,
        dispatch: accept_socket_dispatch as usize,
        local_out: local as usize,
        remote_out: remote as usize,
    };
    if let Some(conn) = s.backlog.pop_front() {
        drop(g);
        drop(guard);
        return super::net::deliver_to_accept(conn, pa, false);
    }
    // Marked pending before it is queued: once the lock is released, a
    // connection may complete (and the driver free) it at any moment.
    // SAFETY: the IRP is taken; IoMarkIrpPending on the provider's location.
    unsafe { (*(*irp).Tail.CurrentStackLocation).Control |= 0x01 };
    s.pending_accepts.push_back(pa);
    drop(g);
    drop(guard);
    STATUS_PENDING
}

unsafe extern "system" fn WskInspectComplete(
    listen_socket: *mut WSK_SOCKET,
    inspect_id: *const WSK_INSPECT_ID,
    action: WSK_INSPECT_ACTION,
    irp: *mut IRP,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    // Timed apart from the calling routine's own work (hold::Timing).
    crate::hold::provider_call(|| {
        // SAFETY: the caller's arguments, passed on.
        unsafe { inspect_complete(listen_socket, inspect_id, action, irp) }
    })
}

unsafe fn inspect_complete(
    listen_socket: *mut WSK_SOCKET,
    inspect_id: *const WSK_INSPECT_ID,
    action: WSK_INSPECT_ACTION,
    irp: *mut IRP,
) -> NTSTATUS {
    crate::irql::require_at_most_dispatch("WskInspectComplete");
    if !irp::take(irp, "WskInspectComplete") {
        return STATUS_INVALID_PARAMETER;
    }
    let guard = match enter(listen_socket, "WskInspectComplete") {
        Ok(g) => g,
        Err(st) => return irp::finish(irp, st, 0),
    };
    let key = guard.sock;
    let mut g = wsk();
    let dead = g
        .sockets
        .get(&key)
        .is_none_or(|s| s.state == SocketState::Dead);
    if dead {
        drop(g);
        drop(guard);
        return irp::finish(irp, STATUS_FILE_FORCED_CLOSED, 0);
    }
    if g.force_close_next_complete {
        g.force_close_next_complete = false;
        if let Some(s) = g.sockets.get_mut(&key) {
            s.state = SocketState::Dead;
        }
        log(
            &mut g,
            format!(
                "WskInspectComplete on {key:#x}: forced STATUS_FILE_FORCED_CLOSED; listener dead"
            ),
        );
        drop(g);
        drop(guard);
        return irp::finish(irp, STATUS_FILE_FORCED_CLOSED, 0);
    }
    let verdict = match action {
        WskInspectAccept => Verdict::Accept,
        WskInspectReject => Verdict::Reject,
        other => {
            drop(g);
            record(
                ViolationKind::InspectCompleteBadAction,
                format!("WskInspectComplete with action {other}"),
            );
            drop(guard);
            return irp::finish(irp, STATUS_INVALID_PARAMETER, 0);
        }
    };
    if inspect_id.is_null() {
        drop(g);
        record(
            ViolationKind::WskBadCall,
            "WskInspectComplete with a NULL InspectID",
        );
        drop(guard);
        return irp::finish(irp, STATUS_INVALID_PARAMETER, 0);
    }
    // SAFETY: checked non-null; the caller passes a WSK_INSPECT_ID.
    let id = unsafe { inspect_id.read_unaligned() };
    let rk = (id.Key, id.SerialNumber);
    let mut establish = false;
    let outcome: Result<(), (ViolationKind, String, NTSTATUS)> = match g.requests.get_mut(&rk) {
        Some(r) if r.listener != key => Err((
            ViolationKind::InspectCompleteUnknown,
            format!("WskInspectComplete: id {id:?} belongs to another listening socket"),
            STATUS_NOT_FOUND,
        )),
        None => Err((
            ViolationKind::InspectCompleteUnknown,
            format!("WskInspectComplete: unknown id {id:?}"),
            STATUS_NOT_FOUND,
        )),
        Some(r) => match r.state {
            RequestState::Inspecting => {
                if r.early_completion.is_some() {
                    Err((
                        ViolationKind::InspectCompleteTwice,
                        format!("WskInspectComplete twice for {id:?}"),
                        STATUS_INVALID_PARAMETER,
                    ))
                } else {
                    r.early_completion = Some(verdict);
                    Ok(())
                }
            }
            RequestState::Pended => {
                r.completion = Some(verdict);
                if verdict == Verdict::Accept {
                    r.state = RequestState::Accepted;
                    establish = !r.hold;
                } else {
                    r.state = RequestState::CompletedReject;
                }
                Ok(())
            }
            RequestState::Aborted if r.verdict == Some(Verdict::Pend) && r.completion.is_none() => {
                r.completion = Some(verdict);
                r.late_completion = true;
                Ok(())
            }
            _ if r.verdict != Some(Verdict::Pend) => Err((
                ViolationKind::InspectCompleteUnknown,
                format!(
                    "WskInspectComplete for {id:?}, which was not pended (inspect answered {:?})",
                    r.verdict
                ),
                STATUS_NOT_FOUND,
            )),
            _ => Err((
                ViolationKind::InspectCompleteTwice,
                format!("WskInspectComplete twice for {id:?}"),
                STATUS_INVALID_PARAMETER,
            )),
        },
    };
    if let Ok(()) = outcome {
        history::settle(&mut g, rk);
        history::resolved(rk);
        if g.log_requests {
            let line = format!("WskInspectComplete({id:?}, {verdict:?})");
            log(&mut g, line);
        }
    }
    drop(g);
    drop(guard);
    match outcome {
        Err((kind, detail, st)) => {
            record(kind, detail);
            irp::finish(irp, st, 0)
        }
        Ok(()) => {
            let st = irp::finish(irp, STATUS_SUCCESS, 0);
            if establish {
                irp::post(move || super::net::establish(rk));
            }
            st
        }
    }
}

/// Shared by listening and connection sockets.
pub(crate) unsafe extern "system" fn WskGetLocalAddress(
    socket: *mut WSK_SOCKET,
    addr: *mut SOCKADDR,
    irp: *mut IRP,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    get_address(socket, addr, irp, false)
}

pub(crate) fn get_address(
    socket: *mut WSK_SOCKET,
    addr: *mut SOCKADDR,
    irp: *mut IRP,
    remote: bool,
) -> NTSTATUS {
    let who = if remote {
        "WskGetRemoteAddress"
    } else {
        "WskGetLocalAddress"
    };
    if !irp::take(irp, who) {
        return STATUS_INVALID_PARAMETER;
    }
    let guard = match enter(socket, who) {
        Ok(g) => g,
        Err(st) => return irp::finish(irp, st, 0),
    };
    let g = wsk();
    let a = g
        .sockets
        .get(&guard.sock)
        .and_then(|s| match (s.kind, remote) {
            (Kind::Listen, false) => s.bound,
            (Kind::Connection, false) => s.local,
            (Kind::Connection, true) => s.remote,
            _ => None,
        });
    drop(g);
    drop(guard);
    match a {
        None => irp::finish(irp, STATUS_INVALID_DEVICE_STATE, 0),
        Some(_) if addr.is_null() => irp::finish(irp, STATUS_INVALID_PARAMETER, 0),
        Some(a) => {
            // SAFETY: the caller passes a SOCKADDR buffer large enough for
            // the socket's family (SOCKADDR_IN6 for IPv6).
            unsafe { write_sockaddr(addr.cast(), &a, false) };
            irp::finish(irp, STATUS_SUCCESS, 0)
        }
    }
}
