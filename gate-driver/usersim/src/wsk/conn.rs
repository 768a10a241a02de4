//! Accepted connection sockets: WskSend, WskReceive, WskDisconnect,
//! WskGetLocalAddress/WskGetRemoteAddress, plus the shared WskControlSocket
//! and WskCloseSocket. Data moves through MDLs (real x64 MDL layout, data at
//! MappedSystemVa) between the driver and the harness's peer end
//! ([`crate::Conn`]), or — for a connection socket with a real Linux
//! socket behind it ([`super::real`]) — the real socket. A connection
//! socket the driver creates (WskSocket with `WSK_FLAG_CONNECTION_SOCKET`)
//! is bound with WskBind and connected with WskConnect (a real connection
//! when `real::set_connect_real` is on).

use super::*;
use crate::irp;

pub(crate) static CONN_DISPATCH: SyncWrap<WSK_PROVIDER_CONNECTION_DISPATCH> =
    SyncWrap(WSK_PROVIDER_CONNECTION_DISPATCH {
        Basic: WSK_PROVIDER_BASIC_DISPATCH {
            WskControlSocket: Some(listen::WskControlSocket),
            WskCloseSocket: Some(listen::WskCloseSocket),
        },
        WskBind: Some(WskConnBind),
        WskConnect: Some(WskConnConnect),
        WskGetLocalAddress: Some(listen::WskGetLocalAddress),
        WskGetRemoteAddress: Some(WskGetRemoteAddress),
        WskSend: Some(WskSend),
        WskReceive: Some(WskReceive),
        WskDisconnect: Some(WskDisconnect),
        WskRelease: Some(WskRelease),
        WskConnectEx: std::ptr::null_mut(),
        WskSendEx: std::ptr::null_mut(),
        WskReceiveEx: std::ptr::null_mut(),
    });

/// `MDL` (wdm.h), x64.
#[repr(C)]
struct Mdl {
    next: *mut Mdl,
    size: i16,
    flags: i16,
    processor: u16,
    reserved: u16,
    process: *mut c_void,
    mapped_system_va: *mut u8,
    start_va: *mut u8,
    byte_count: u32,
    byte_offset: u32,
}
const _: () = assert!(std::mem::size_of::<Mdl>() == 48);

/// The (address, length) pieces a WSK_BUF describes.
pub(crate) unsafe fn buf_pieces(
    mdl: usize,
    offset: u32,
    length: usize,
) -> Option<Vec<(*mut u8, usize)>> {
    let mut out = Vec::new();
    let mut m = mdl as *mut Mdl;
    let mut skip = offset as usize;
    let mut left = length;
    while left > 0 {
        if m.is_null() {
            return None;
        }
        // SAFETY: the driver passes an MDL chain describing its buffer.
        let (va, count, next) =
            unsafe { ((*m).mapped_system_va, (*m).byte_count as usize, (*m).next) };
        if va.is_null() {
            return None;
        }
        if skip < count {
            let n = (count - skip).min(left);
            // SAFETY: inside the MDL's mapped range.
            out.push((unsafe { va.add(skip) }, n));
            left -= n;
            skip = 0;
        } else {
            skip -= count;
        }
        m = next;
    }
    Some(out)
}

fn bad_buffer(irp: *mut IRP) -> NTSTATUS {
    record(
        ViolationKind::WskBadCall,
        "WSK_BUF does not describe its Length bytes (NULL MDL or MappedSystemVa)",
    );
    irp::finish(irp, STATUS_INVALID_PARAMETER, 0)
}

/// WskBind of a connection socket the driver created: records the local
/// address WskConnect starts from (0.0.0.0:0 lets the stack choose).
unsafe extern "system" fn WskConnBind(
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
    let status = match (g.sockets.get_mut(&guard.sock), addr) {
        (_, None) => STATUS_INVALID_PARAMETER,
        (Some(s), Some(a)) if s.owned && s.remote.is_none() && s.bound.is_none() && flags == 0 => {
            if a.is_ipv6() != (s.family == AF_INET6) {
                STATUS_INVALID_PARAMETER
            } else {
                s.bound = Some(a);
                STATUS_SUCCESS
            }
        }
        _ => STATUS_INVALID_DEVICE_STATE,
    };
    drop(g);
    drop(guard);
    finish_connection_setup(irp, status, 0)
}

/// WskConnect of a bound connection socket: a real TCP connection when
/// `real::set_connect_real` is on; otherwise an in-memory backend
/// (`connect.rs`: accept, refuse or never answer; none there: refused).
unsafe extern "system" fn WskConnConnect(
    socket: *mut WSK_SOCKET,
    remote: *const SOCKADDR,
    flags: u32,
    irp: *mut IRP,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::irql::require_at_most_dispatch("WskConnect");
    if !irp::take(irp, "WskConnect") {
        return STATUS_INVALID_PARAMETER;
    }
    let guard = match enter(socket, "WskConnect") {
        Ok(g) => g,
        Err(st) => return irp::finish(irp, st, 0),
    };
    // SAFETY: the caller passes a SOCKADDR of its family's size, or NULL.
    let Some(to) = (unsafe { read_sockaddr(remote) }) else {
        drop(guard);
        return irp::finish(irp, STATUS_INVALID_PARAMETER, 0);
    };
    let bound = {
        let g = wsk();
        match g.sockets.get(&guard.sock) {
            Some(s)
                if s.kind == Kind::Connection && s.owned && s.remote.is_none() && flags == 0 =>
            {
                s.bound.ok_or(STATUS_INVALID_DEVICE_STATE)
            }
            _ => Err(STATUS_INVALID_DEVICE_STATE),
        }
    };
    let local = match bound {
        Ok(l) => l,
        Err(st) => {
            drop(guard);
            return irp::finish(irp, st, 0);
        }
    };
    #[cfg(target_os = "linux")]
    if super::real::connect_real() {
        let sock = guard.sock;
        let r = super::real::connect(sock, Some(local), to, irp as usize);
        drop(guard);
        // None: pended (marked pending before the reactor could see it;
        // it may be complete already, so the IRP is not touched here).
        return match r {
            Some(st) => real_finish(irp, st, 0),
            None => STATUS_PENDING,
        };
    }
    // An in-memory backend the test controls (issue 12, `connect.rs`).
    let sock = guard.sock;
    drop(guard);
    super::connect::connect(sock, local, to, irp)
}

/// Finishes a taken IRP now, or (None) returns STATUS_PENDING for an IRP
/// the real side pended: it was marked pending before the reactor could
/// see it and may be complete (and freed) already, so it is not touched.
#[cfg(target_os = "linux")]
fn real_result(irp: *mut IRP, r: Option<(NTSTATUS, usize)>) -> NTSTATUS {
    match r {
        Some((st, n)) => real_finish(irp, st, n),
        None => STATUS_PENDING,
    }
}

/// Finishes a WskSocket (connection) or WskBind IRP: inline when the
/// socket is to be a real connection ([`super::real::set_connect_real`])
/// and fast completion is on, else per the completion mode.
pub(crate) fn finish_connection_setup(irp: *mut IRP, st: NTSTATUS, n: usize) -> NTSTATUS {
    #[cfg(target_os = "linux")]
    if super::real::connect_real() {
        return real_finish(irp, st, n);
    }
    irp::finish(irp, st, n)
}

/// Finishes a taken IRP of a real socket now: inline with
/// [`super::real::set_fast_completion`], else per the completion mode.
#[cfg(target_os = "linux")]
pub(crate) fn real_finish(irp: *mut IRP, st: NTSTATUS, n: usize) -> NTSTATUS {
    if super::real::fast_completion() {
        irp::complete(irp, st, n);
        st
    } else {
        irp::finish(irp, st, n)
    }
}

unsafe extern "system" fn WskGetRemoteAddress(
    socket: *mut WSK_SOCKET,
    addr: *mut SOCKADDR,
    irp: *mut IRP,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    listen::get_address(socket, addr, irp, true)
}

unsafe extern "system" fn WskRelease(_s: *mut WSK_SOCKET, _d: PVOID) -> NTSTATUS {
    let _sim = crate::fault::sim();
    STATUS_NOT_SUPPORTED
}

unsafe extern "system" fn WskSend(
    socket: *mut WSK_SOCKET,
    buffer: *mut WSK_BUF,
    _flags: u32,
    irp: *mut IRP,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::irql::require_at_most_dispatch("WskSend");
    if !irp::take(irp, "WskSend") {
        return STATUS_INVALID_PARAMETER;
    }
    let guard = match enter(socket, "WskSend") {
        Ok(g) => g,
        Err(st) => return irp::finish(irp, st, 0),
    };
    if buffer.is_null() {
        drop(guard);
        return bad_buffer(irp);
    }
    // SAFETY: checked non-null; the caller passes a WSK_BUF.
    let b = unsafe { buffer.read() };
    // SAFETY: the WSK_BUF's MDL chain describes the driver's buffer.
    let Some(pieces) = (unsafe { buf_pieces(b.Mdl as usize, b.Offset, b.Length) }) else {
        drop(guard);
        return bad_buffer(irp);
    };
    #[cfg(target_os = "linux")]
    if super::real::is_real(guard.sock) {
        // Written from the driver's buffer in place (lent until the IRP
        // completes), not copied.
        let lent = pieces.iter().map(|&(p, n)| (p as usize, n)).collect();
        let r = super::real::send(
            guard.sock,
            super::real::SendBytes::Lent(lent),
            irp as usize,
            false,
        );
        drop(guard);
        return real_result(irp, r);
    }
    let mut g = wsk();
    let Some(s) = g.sockets.get_mut(&guard.sock) else {
        return irp::finish(irp, STATUS_INVALID_PARAMETER, 0);
    };
    let (status, sent) = if s.kind != Kind::Connection {
        (STATUS_NOT_SUPPORTED, 0)
    } else if s.peer_reset {
        (STATUS_CONNECTION_RESET, 0)
    } else if s.disconnected.is_some() || s.remote.is_none() {
        // Shut down for sending, or never connected.
        (STATUS_INVALID_DEVICE_STATE, 0)
    } else {
        let mut data = Vec::with_capacity(b.Length);
        for (p, n) in &pieces {
            // SAFETY: each piece lies inside the driver's buffer.
            data.extend_from_slice(unsafe { std::slice::from_raw_parts(*p, *n) });
        }
        // Flow control (send window, short sends): a queued send pends.
        match super::connect::send(&mut g, guard.sock, irp, data) {
            Some(n) => (STATUS_SUCCESS, n),
            None => {
                drop(g);
                drop(guard);
                return STATUS_PENDING;
            }
        }
    };
    drop(g);
    drop(guard);
    irp::finish(irp, status, sent)
}

/// Copies up to the receive's length from `rx`; returns the count.
fn fill(s: &mut Socket, r: &PendingRecv) -> Option<usize> {
    // SAFETY: the receive's MDL chain describes the driver's buffer, kept
    // alive while the IRP is pending.
    let pieces = unsafe { buf_pieces(r.mdl, r.offset, r.length) }?;
    let mut n = 0;
    for (p, len) in pieces {
        let take = len.min(s.rx.len());
        for i in 0..take {
            // SAFETY: `i < len` inside this piece.
            unsafe { p.add(i).write(s.rx.pop_front().unwrap_or(0)) };
        }
        n += take;
        if take < len {
            break;
        }
    }
    Some(n)
}

unsafe extern "system" fn WskReceive(
    socket: *mut WSK_SOCKET,
    buffer: *mut WSK_BUF,
    _flags: u32,
    irp: *mut IRP,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::irql::require_at_most_dispatch("WskReceive");
    if !irp::take(irp, "WskReceive") {
        return STATUS_INVALID_PARAMETER;
    }
    let guard = match enter(socket, "WskReceive") {
        Ok(g) => g,
        Err(st) => return irp::finish(irp, st, 0),
    };
    if buffer.is_null() {
        drop(guard);
        return bad_buffer(irp);
    }
    // SAFETY: checked non-null.
    let b = unsafe { buffer.read() };
    let r = PendingRecv {
        irp: irp as usize,
        mdl: b.Mdl as usize,
        offset: b.Offset,
        length: b.Length,
    };
    #[cfg(target_os = "linux")]
    if super::real::is_real(guard.sock) {
        let res = super::real::receive(guard.sock, r.mdl, r.offset, r.length, r.irp);
        drop(guard);
        return real_result(irp, res);
    }
    let mut g = wsk();
    let Some(s) = g.sockets.get_mut(&guard.sock) else {
        return irp::finish(irp, STATUS_INVALID_PARAMETER, 0);
    };
    let result = if s.kind != Kind::Connection {
        Some((STATUS_NOT_SUPPORTED, 0))
    } else if !s.rx.is_empty() {
        fill(s, &r).map(|n| (STATUS_SUCCESS, n))
    } else if s.peer_reset {
        Some((STATUS_CONNECTION_RESET, 0))
    } else if s.peer_closed || s.disconnected == Some(true) {
        Some((STATUS_SUCCESS, 0))
    } else {
        // Marked pending before it is queued: once the lock is released,
        // peer data may complete (and the driver free) it at any moment.
        // SAFETY: taken IRP; IoMarkIrpPending on the provider's location.
        unsafe { (*(*irp).Tail.CurrentStackLocation).Control |= 0x01 };
        s.pending_rx.push_back(r);
        drop(g);
        drop(guard);
        return STATUS_PENDING;
    };
    drop(g);
    drop(guard);
    match result {
        Some((st, n)) => irp::finish(irp, st, n),
        None => bad_buffer(irp),
    }
}

unsafe extern "system" fn WskDisconnect(
    socket: *mut WSK_SOCKET,
    buffer: *mut WSK_BUF,
    flags: u32,
    irp: *mut IRP,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::irql::require_at_most_dispatch("WskDisconnect");
    {
        let mut g = wsk();
        if g.disconnect_stub {
            log(
                &mut g,
                format!("WskDisconnect({socket:p}): STATUS_NOT_IMPLEMENTED, IRP not completed (Wine-style stub)"),
            );
            return STATUS_NOT_IMPLEMENTED;
        }
    }
    if !irp::take(irp, "WskDisconnect") {
        return STATUS_INVALID_PARAMETER;
    }
    let guard = match enter(socket, "WskDisconnect") {
        Ok(g) => g,
        Err(st) => return irp::finish(irp, st, 0),
    };
    let abortive = flags & WSK_FLAG_ABORTIVE != 0;
    let mut data = Vec::new();
    if !buffer.is_null() && !abortive {
        // SAFETY: non-null WSK_BUF from the caller.
        let b = unsafe { buffer.read() };
        // SAFETY: its MDL chain describes the driver's buffer.
        match unsafe { buf_pieces(b.Mdl as usize, b.Offset, b.Length) } {
            Some(pieces) => {
                for (p, n) in pieces {
                    // SAFETY: inside the driver's buffer.
                    data.extend_from_slice(unsafe { std::slice::from_raw_parts(p, n) });
                }
            }
            None => {
                drop(guard);
                return bad_buffer(irp);
            }
        }
    }
    #[cfg(target_os = "linux")]
    if super::real::is_real(guard.sock) {
        let sock = guard.sock;
        if let Some(s) = wsk().sockets.get_mut(&sock) {
            s.disconnected = Some(abortive);
        }
        if abortive {
            let pending = super::real::abort_conn(sock);
            drop(guard);
            for i in pending {
                real_finish(i as *mut IRP, STATUS_CONNECTION_ABORTED, 0);
            }
            return real_finish(irp, STATUS_SUCCESS, 0);
        }
        // Graceful: the final data (if any), then FIN once all is written.
        let r = super::real::send(
            sock,
            super::real::SendBytes::Owned(data),
            irp as usize,
            true,
        );
        drop(guard);
        return real_result(irp, r);
    }
    let mut g = wsk();
    let mut cancel = Vec::new();
    let slow_peer = g.disconnect_pends && !abortive;
    let status = match g.sockets.get_mut(&guard.sock) {
        Some(s) if s.kind == Kind::Connection && slow_peer && s.pending_disconnect == 0 => {
            // A slow peer: the FIN is not acknowledged until the harness
            // says so (Sim::finish_disconnects), or an abortive disconnect
            // or WskCloseSocket completes the IRP (cancelled).
            s.tx.extend_from_slice(&data);
            s.disconnected = Some(false);
            // SAFETY: taken IRP; IoMarkIrpPending on the provider's location.
            unsafe { (*(*irp).Tail.CurrentStackLocation).Control |= 0x01 };
            s.pending_disconnect = irp as usize;
            STATUS_PENDING
        }
        Some(s) if s.kind == Kind::Connection => {
            s.tx.extend_from_slice(&data);
            s.disconnected = Some(abortive);
            if abortive {
                cancel.extend(s.pending_rx.drain(..).map(|r| r.irp));
            }
            STATUS_SUCCESS
        }
        _ => STATUS_NOT_SUPPORTED,
    };
    if status == STATUS_PENDING {
        log(
            &mut g,
            format!("WskDisconnect({socket:p}): graceful, pending (slow peer)"),
        );
        drop(g);
        drop(guard);
        return STATUS_PENDING;
    }
    let mut cancel = super::connect::hold_or_cancel(&mut g, cancel);
    if abortive {
        cancel.extend(super::connect::drain(&mut g, guard.sock));
    }
    drop(g);
    drop(guard);
    for i in cancel {
        irp::finish(i as *mut IRP, STATUS_CONNECTION_ABORTED, 0);
    }
    irp::finish(irp, status, 0)
}

/// Completes pending receives from the peer's data or end of stream (called
/// by the harness, on the I/O thread).
pub(crate) fn service_receives(sock: usize) {
    let mut done = Vec::new();
    {
        let mut g = wsk();
        let Some(s) = g.sockets.get_mut(&sock) else {
            return;
        };
        while let Some(r) = s.pending_rx.front() {
            if !s.rx.is_empty() {
                let r = PendingRecv {
                    irp: r.irp,
                    mdl: r.mdl,
                    offset: r.offset,
                    length: r.length,
                };
                s.pending_rx.pop_front();
                let n = fill(s, &r);
                done.push((
                    r.irp,
                    if n.is_some() {
                        STATUS_SUCCESS
                    } else {
                        STATUS_INVALID_PARAMETER
                    },
                    n.unwrap_or(0),
                ));
            } else if s.peer_reset {
                let irp = r.irp;
                s.pending_rx.pop_front();
                done.push((irp, STATUS_CONNECTION_RESET, 0));
            } else if s.peer_closed {
                let irp = r.irp;
                s.pending_rx.pop_front();
                done.push((irp, STATUS_SUCCESS, 0));
            } else {
                break;
            }
        }
    }
    for (i, st, n) in done {
        irp::complete(i as *mut IRP, st, n);
    }
}

/// Completes every graceful disconnect waiting for a slow peer with
/// STATUS_SUCCESS (the peers finally acknowledged). Returns how many.
pub(crate) fn finish_disconnects() -> usize {
    let irps: Vec<usize> = {
        let mut g = wsk();
        g.sockets
            .values_mut()
            .map(|s| std::mem::take(&mut s.pending_disconnect))
            .filter(|i| *i != 0)
            .collect()
    };
    for i in &irps {
        irp::complete(*i as *mut IRP, STATUS_SUCCESS, 0);
    }
    irps.len()
}

/// Graceful disconnects waiting for a slow peer now.
pub(crate) fn pending_disconnects() -> usize {
    wsk()
        .sockets
        .values()
        .filter(|s| s.pending_disconnect != 0)
        .count()
}
