//! The network side of the provider, driven by the test harness: incoming
//! connection requests (inspect → accept/reject/pend), aborts, the NULL
//! InspectID case, delivery of accepted connections, and the remote peer of
//! each connection.

use super::history;
use super::*;
use crate::irp;
use gate_ksys::DISPATCH_LEVEL;

/// What a test sees of a listening socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerInfo {
    /// The WSK_SOCKET address (identifies the socket in other calls).
    pub socket: usize,
    /// Bound address and port.
    pub addr: SocketAddr,
    pub conditional_accept: bool,
    pub accept_event: bool,
    /// IPV6_V6ONLY (always true for IPv4 sockets).
    pub v6only: bool,
    pub exclusive_addr_use: bool,
    pub state: SocketState,
}

pub(crate) fn listeners() -> Vec<ListenerInfo> {
    let g = wsk();
    let mut v: Vec<ListenerInfo> = g
        .hist
        .listen_by_port
        .values()
        .flatten()
        .filter_map(|k| {
            let s = g.sockets.get(k)?;
            Some(ListenerInfo {
                socket: *k,
                addr: s.bound?,
                conditional_accept: s.conditional_accept,
                accept_event: s.accept_event,
                v6only: s.v6only,
                exclusive_addr_use: s.exclusive,
                state: s.state,
            })
        })
        .collect();
    v.sort_by_key(|l| l.socket);
    v
}

/// Waits (real time) for an open, bound listener.
pub(crate) fn wait_listener(timeout: Duration) -> Option<ListenerInfo> {
    let start = Instant::now();
    loop {
        if let Some(l) = listeners()
            .into_iter()
            .find(|l| l.state == SocketState::Open)
        {
            return Some(l);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        let g = wsk();
        drop(
            WSK_CV
                .wait_timeout(g, Duration::from_millis(10))
                .unwrap_or_else(|e| e.into_inner()),
        );
    }
}

/// The open listener a SYN to `local` reaches; whether addresses are
/// IPv4-mapped (an IPv4 client on a dual-stack IPv6 socket).
fn find_listener(g: &Wsk, local: &SocketAddr) -> Option<(usize, bool)> {
    // Only open listeners bound to the port are candidates (an index by
    // port: O(listeners on the port) per SYN, whatever the number of
    // connection sockets); the oldest match wins (lowest key).
    g.hist
        .listen_by_port
        .get(&local.port())?
        .iter()
        .filter_map(|k| {
            let s = g.sockets.get(k)?;
            let b = s.bound?;
            if s.kind != Kind::Listen || s.state != SocketState::Open || b.port() != local.port() {
                return None;
            }
            match (b.is_ipv6(), local.is_ipv6()) {
                (false, false) | (true, true) => {
                    (b.ip().is_unspecified() || b.ip() == local.ip()).then_some((*k, false))
                }
                (true, false) => (!s.v6only && b.ip().is_unspecified()).then_some((*k, true)),
                (false, true) => None,
            }
        })
        .min_by_key(|m| m.0)
}

fn next_id(g: &mut Wsk) -> (usize, u32) {
    g.serial = g.serial.wrapping_add(1);
    let serial = g.serial;
    (
        0xFFFF_C000_0000_0000usize | ((serial as usize) << 4),
        serial.wrapping_mul(2_654_435_761),
    )
}

/// A connection request arriving at `local` from `remote`. With `hold`, an
/// accepted request is not delivered until `establish` is called.
pub(crate) fn connect(remote: SocketAddr, local: SocketAddr, hold: bool) -> (usize, u32) {
    let mut g = wsk();
    let rk = next_id(&mut g);
    let len = g.requests.len();
    if let Some(n) = g.hist.requests_room.before_insert(len) {
        g.requests.reserve(n);
    }
    let Some((listener, mapped)) = find_listener(&g, &local) else {
        g.requests.insert(
            rk,
            Req {
                listener: 0,
                local,
                remote,
                state: RequestState::NoListener,
                verdict: None,
                completion: None,
                early_completion: None,
                late_completion: false,
                hold,
                conn: 0,
                id_buf: 0,
                settled: false,
            },
        );
        history::settle(&mut g, rk);
        return rk;
    };
    let (cond, ctx, dispatch) = {
        let s = &g.sockets[&listener];
        (s.conditional_accept, s.ctx, s.dispatch)
    };
    let id_buf = quarantine_buf(&mut g) as usize;
    g.requests.insert(
        rk,
        Req {
            listener,
            local,
            remote,
            state: if cond {
                RequestState::Inspecting
            } else {
                RequestState::Accepted
            },
            verdict: None,
            completion: None,
            early_completion: None,
            late_completion: false,
            hold,
            conn: 0,
            id_buf,
            settled: false,
        },
    );
    history::request_started(&mut g, rk, listener);
    if !cond {
        drop(g);
        if !hold {
            establish(rk);
        }
        return rk;
    }
    // SAFETY: a listen dispatch given to WskSocket is a
    // WSK_CLIENT_LISTEN_DISPATCH the driver keeps alive.
    let inspect = (dispatch != 0)
        .then(|| unsafe { (*(dispatch as *const WSK_CLIENT_LISTEN_DISPATCH)).WskInspectEvent })
        .flatten();
    let Some(inspect) = inspect else {
        if let Some(r) = g.requests.get_mut(&rk) {
            r.state = RequestState::Rejected;
        }
        history::settle(&mut g, rk);
        drop(g);
        record(
            ViolationKind::WskBadCall,
            "conditional accept on, but the listen dispatch has no WskInspectEvent",
        );
        return rk;
    };
    let lbuf = quarantine_buf(&mut g);
    let rbuf = quarantine_buf(&mut g);
    // SAFETY: quarantine buffers are 128 bytes.
    unsafe {
        write_sockaddr(lbuf, &local, mapped);
        write_sockaddr(rbuf, &remote, mapped);
        (id_buf as *mut WSK_INSPECT_ID).write(WSK_INSPECT_ID {
            Key: rk.0,
            SerialNumber: rk.1,
        });
    }
    if begin_callback(&mut g, listener).is_err() {
        if let Some(r) = g.requests.get_mut(&rk) {
            r.state = RequestState::Dropped;
        }
        // SAFETY: lent above, never handed out.
        unsafe {
            history::release_buf(&mut g, lbuf);
            history::release_buf(&mut g, rbuf);
        }
        history::settle(&mut g, rk);
        return rk;
    }
    drop(g);
    let action = crate::irql::run_at(DISPATCH_LEVEL, "WskInspectEvent", || {
        // SAFETY: calls the driver's inspect callback with buffers valid for
        // the call.
        unsafe {
            inspect(
                ctx as PVOID,
                lbuf as *const SOCKADDR,
                rbuf as *const SOCKADDR,
                id_buf as *const WSK_INSPECT_ID,
            )
        }
    });
    end_callback(listener);
    // SAFETY: quarantine buffers; the call returned, so they are invalid now
    // (the id buffer is rewritten before an abort event lends it again; it
    // is released when the request retires).
    unsafe { poison(id_buf as *mut u8) };
    let verdict = match action {
        WskInspectAccept => Some(Verdict::Accept),
        WskInspectReject => Some(Verdict::Reject),
        WskInspectPend => Some(Verdict::Pend),
        _ => None,
    };
    if verdict.is_none() {
        record(
            ViolationKind::BadCallbackResult,
            format!("WskInspectEvent returned {action}"),
        );
    }
    let mut g = wsk();
    // SAFETY: lent for the call, which returned; released once.
    unsafe {
        history::release_buf(&mut g, lbuf);
        history::release_buf(&mut g, rbuf);
    }
    let mut deliver = false;
    let mut early_bad = false;
    if let Some(r) = g.requests.get_mut(&rk) {
        r.verdict = verdict;
        if r.state == RequestState::Inspecting {
            r.state = match verdict {
                Some(Verdict::Accept) => {
                    deliver = !hold;
                    RequestState::Accepted
                }
                Some(Verdict::Pend) => match r.early_completion {
                    Some(Verdict::Accept) => {
                        r.completion = Some(Verdict::Accept);
                        deliver = !hold;
                        RequestState::Accepted
                    }
                    Some(_) => {
                        r.completion = Some(Verdict::Reject);
                        RequestState::CompletedReject
                    }
                    None => RequestState::Pended,
                },
                _ => RequestState::Rejected,
            };
            early_bad = r.early_completion.is_some() && verdict != Some(Verdict::Pend);
        }
    }
    history::settle(&mut g, rk);
    if g.log_requests {
        let line = format!("inspect {remote} -> {local}: {verdict:?}");
        log(&mut g, line);
    }
    drop(g);
    if early_bad {
        record(
            ViolationKind::InspectCompleteUnknown,
            "WskInspectComplete during WskInspectEvent for a request that was not pended",
        );
    }
    if deliver {
        establish(rk);
    }
    rk
}

/// Delivers an accepted request's connection: to a pending WskAccept IRP, the
/// accept event, or the backlog.
pub(crate) fn establish(rk: (usize, u32)) {
    establish_with(rk, None);
}

/// Real socket behind a connection socket (Linux), or nothing.
#[cfg(target_os = "linux")]
pub(crate) type RealFd = std::os::fd::OwnedFd;
#[cfg(not(target_os = "linux"))]
pub(crate) type RealFd = std::convert::Infallible;

/// [`establish`], with `real` (if any) behind the connection socket.
pub(crate) fn establish_with(rk: (usize, u32), real: Option<RealFd>) {
    let mut g = wsk();
    let Some(r) = g.requests.get(&rk) else { return };
    if r.state != RequestState::Accepted {
        return;
    }
    let (listener, local, remote) = (r.listener, r.local, r.remote);
    let Some(ls) = g.sockets.get(&listener) else {
        return;
    };
    if ls.state != SocketState::Open {
        if let Some(r) = g.requests.get_mut(&rk) {
            r.state = RequestState::Dropped;
        }
        history::settle(&mut g, rk);
        return;
    }
    let (client, family, ctx, dispatch, accept_event) =
        (ls.client, ls.family, ls.ctx, ls.dispatch, ls.accept_event);
    let mapped = family == AF_INET6 && local.is_ipv4();
    let norm = |a: SocketAddr| match (a, mapped) {
        (SocketAddr::V4(v4), true) => {
            SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        _ => a,
    };
    let mut cs = Socket::new(Kind::Connection, client, family);
    cs.local = Some(norm(local));
    cs.remote = Some(norm(remote));
    let conn = new_socket(&mut g, cs);
    #[cfg(target_os = "linux")]
    if let Some(fd) = real {
        super::real::attach(conn, fd);
    }
    #[cfg(not(target_os = "linux"))]
    drop(real);
    if let Some(r) = g.requests.get_mut(&rk) {
        r.conn = conn;
        r.state = RequestState::Established;
    }
    history::settle(&mut g, rk);
    let pa = g
        .sockets
        .get_mut(&listener)
        .and_then(|s| s.pending_accepts.pop_front());
    if let Some(pa) = pa {
        drop(g);
        deliver_to_accept(conn, pa, true);
        return;
    }
    // SAFETY: see `connect`.
    let accept = (accept_event && dispatch != 0)
        .then(|| unsafe { (*(dispatch as *const WSK_CLIENT_LISTEN_DISPATCH)).WskAcceptEvent })
        .flatten();
    let Some(accept) = accept else {
        if let Some(s) = g.sockets.get_mut(&listener) {
            s.backlog.push_back(conn);
        }
        return;
    };
    if begin_callback(&mut g, listener).is_err() {
        if let Some(r) = g.requests.get_mut(&rk) {
            r.state = RequestState::Dropped;
        }
        if let Some(s) = g.sockets.get_mut(&conn) {
            s.state = SocketState::Closed;
        }
        #[cfg(target_os = "linux")]
        super::real::close(conn);
        history::socket_closed(&mut g, conn);
        return;
    }
    let lbuf = quarantine_buf(&mut g);
    let rbuf = quarantine_buf(&mut g);
    // SAFETY: quarantine buffers are 128 bytes.
    unsafe {
        write_sockaddr(lbuf, &local, mapped);
        write_sockaddr(rbuf, &remote, mapped);
    }
    drop(g);
    let mut out_ctx: PVOID = std::ptr::null_mut();
    let mut out_dispatch: *const WSK_CLIENT_CONNECTION_DISPATCH = std::ptr::null();
    let st = crate::irql::run_at(DISPATCH_LEVEL, "WskAcceptEvent", || {
        // SAFETY: the driver's accept callback with buffers valid for the call.
        unsafe {
            accept(
                ctx as PVOID,
                0,
                lbuf as *const SOCKADDR,
                rbuf as *const SOCKADDR,
                conn as *mut WSK_SOCKET,
                &mut out_ctx,
                &mut out_dispatch,
            )
        }
    });
    end_callback(listener);
    let mut g = wsk();
    // SAFETY: lent for the call, which returned; released once.
    unsafe {
        history::release_buf(&mut g, lbuf);
        history::release_buf(&mut g, rbuf);
    }
    if st == STATUS_SUCCESS {
        if let Some(s) = g.sockets.get_mut(&conn) {
            s.owned = true;
            s.ctx = out_ctx as usize;
            s.dispatch = out_dispatch as usize;
        }
    } else {
        if let Some(s) = g.sockets.get_mut(&conn) {
            s.state = SocketState::Closed;
        }
        if let Some(r) = g.requests.get_mut(&rk) {
            r.state = RequestState::AcceptRefused;
        }
        #[cfg(target_os = "linux")]
        super::real::close(conn);
        history::socket_closed(&mut g, conn);
        let line = format!("WskAcceptEvent returned {st:#x}: connection closed by the provider");
        log(&mut g, line);
    }
    WSK_CV.notify_all();
}

/// Completes a WskAccept IRP with connection `conn`.
pub(crate) fn deliver_to_accept(conn: usize, pa: PendingAccept, pended: bool) -> NTSTATUS {
    let mut g = wsk();
    let (local, remote) = match g.sockets.get_mut(&conn) {
        Some(s) => {
            s.owned = true;
            s.ctx = pa.ctx;
            s.dispatch = pa.dispatch;
            (s.local, s.remote)
        }
        None => (None, None),
    };
    drop(g);
    // SAFETY: WskAccept's address buffers are NULL or big enough for the
    // listener's family; they stay valid until its IRP completes.
    unsafe {
        if let (Some(l), false) = (local, pa.local_out == 0) {
            write_sockaddr(pa.local_out as *mut u8, &l, false);
        }
        if let (Some(r), false) = (remote, pa.remote_out == 0) {
            write_sockaddr(pa.remote_out as *mut u8, &r, false);
        }
    }
    let irp = pa.irp as *mut IRP;
    if pended {
        irp::complete(irp, STATUS_SUCCESS, conn);
        STATUS_PENDING
    } else {
        irp::finish(irp, STATUS_SUCCESS, conn)
    }
}

/// The harness aborts a pended or accepted-but-undelivered request: the
/// driver gets WskAbortEvent. Err says why it could not.
pub(crate) fn abort(rk: (usize, u32)) -> Result<(), String> {
    let mut g = wsk();
    let Some(r) = g.requests.get(&rk) else {
        return Err("unknown request".into());
    };
    if !matches!(r.state, RequestState::Pended | RequestState::Accepted) {
        return Err(format!(
            "request is {:?}; only Pended or Accepted requests can be aborted",
            r.state
        ));
    }
    let (listener, id_buf) = (r.listener, r.id_buf);
    let Some(ls) = g.sockets.get(&listener) else {
        return Err("listener gone".into());
    };
    let (ctx, dispatch) = (ls.ctx, ls.dispatch);
    // SAFETY: see `connect`.
    let abort_cb = (dispatch != 0)
        .then(|| unsafe { (*(dispatch as *const WSK_CLIENT_LISTEN_DISPATCH)).WskAbortEvent })
        .flatten();
    if begin_callback(&mut g, listener).is_err() {
        return Err("listener is not open".into());
    }
    if let Some(r) = g.requests.get_mut(&rk) {
        r.state = RequestState::Aborted;
    }
    history::settle(&mut g, rk);
    // SAFETY: a quarantine buffer holding this request's id.
    unsafe {
        (id_buf as *mut WSK_INSPECT_ID).write(WSK_INSPECT_ID {
            Key: rk.0,
            SerialNumber: rk.1,
        })
    };
    drop(g);
    let Some(abort_cb) = abort_cb else {
        end_callback(listener);
        record(
            ViolationKind::WskBadCall,
            "conditional accept on, but the listen dispatch has no WskAbortEvent",
        );
        return Ok(());
    };
    let st = crate::irql::run_at(DISPATCH_LEVEL, "WskAbortEvent", || {
        // SAFETY: the driver's abort callback with an id valid for the call.
        unsafe { abort_cb(ctx as PVOID, id_buf as *const WSK_INSPECT_ID) }
    });
    end_callback(listener);
    // SAFETY: quarantine buffer.
    unsafe { poison(id_buf as *mut u8) };
    if st != STATUS_SUCCESS {
        record(
            ViolationKind::BadCallbackResult,
            format!("WskAbortEvent returned {st:#x}, expected STATUS_SUCCESS"),
        );
    }
    let mut g = wsk();
    if g.log_requests {
        g.log.push(format!("abort {rk:?}"));
    }
    Ok(())
}

/// The harness delivers an accepted request that was held.
pub(crate) fn establish_held(rk: (usize, u32)) -> Result<(), String> {
    let state = wsk().requests.get(&rk).map(|r| r.state);
    match state {
        Some(RequestState::Accepted) => {
            establish(rk);
            Ok(())
        }
        other => Err(format!(
            "request is {other:?}; only Accepted requests can be established"
        )),
    }
}

/// WskInspectEvent with a NULL InspectID (and NULL addresses) on the first
/// open conditional listener: the listener is dead afterwards. Returns what
/// the callback answered, or None when there is no such listener.
pub(crate) fn null_inspect() -> Option<WSK_INSPECT_ACTION> {
    let mut g = wsk();
    let listener = g
        .hist
        .listen_by_port
        .values()
        .flatten()
        .copied()
        .filter(|k| {
            g.sockets.get(k).is_some_and(|s| {
                s.kind == Kind::Listen
                    && s.state == SocketState::Open
                    && s.conditional_accept
                    && s.bound.is_some()
            })
        })
        .min()?;
    let (ctx, dispatch) = {
        let s = &g.sockets[&listener];
        (s.ctx, s.dispatch)
    };
    // SAFETY: see `connect`.
    let inspect = (dispatch != 0)
        .then(|| unsafe { (*(dispatch as *const WSK_CLIENT_LISTEN_DISPATCH)).WskInspectEvent })
        .flatten()?;
    begin_callback(&mut g, listener).ok()?;
    drop(g);
    let action = crate::irql::run_at(DISPATCH_LEVEL, "WskInspectEvent(NULL InspectID)", || {
        // SAFETY: the driver's inspect callback, in its "listener dead" form.
        unsafe {
            inspect(
                ctx as PVOID,
                std::ptr::null(),
                std::ptr::null(),
                std::ptr::null(),
            )
        }
    });
    end_callback(listener);
    let mut g = wsk();
    if let Some(s) = g.sockets.get_mut(&listener) {
        if s.state == SocketState::Open {
            s.state = SocketState::Dead;
        }
    }
    for k in history::inflight_of(&g, listener) {
        if let Some(r) = g.requests.get_mut(&k) {
            if matches!(r.state, RequestState::Pended | RequestState::Accepted) {
                r.state = RequestState::Dropped;
            }
        }
        history::settle(&mut g, k);
    }
    log(
        &mut g,
        format!("NULL InspectID on {listener:#x}: listener dead"),
    );
    WSK_CV.notify_all();
    Some(action)
}

/// A snapshot of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    pub state: RequestState,
    /// What WskInspectEvent answered (None without conditional accept).
    pub verdict: Option<Verdict>,
    /// What WskInspectComplete asked for, if it was called.
    pub completion: Option<Verdict>,
    /// WskInspectComplete came after the request was aborted (allowed: it
    /// returns success and does not establish anything).
    pub late_completion: bool,
    /// The connection socket, once established.
    pub conn: Option<usize>,
    pub id: WSK_INSPECT_ID,
}

pub(crate) fn request_info(rk: (usize, u32)) -> Option<RequestInfo> {
    let g = wsk();
    let r = g.requests.get(&rk)?;
    Some(RequestInfo {
        state: r.state,
        verdict: r.verdict,
        completion: r.completion,
        late_completion: r.late_completion,
        conn: (r.conn != 0).then_some(r.conn),
        id: WSK_INSPECT_ID {
            Key: rk.0,
            SerialNumber: rk.1,
        },
    })
}

// ---- the peer of a connection ----

/// State of a connection socket seen from the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    pub state: SocketState,
    pub owned_by_driver: bool,
    /// Some(abortive) once the driver called WskDisconnect.
    pub disconnected: Option<bool>,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    /// Receives the driver has pending.
    pub pending_receives: usize,
}

pub(crate) fn conn_info(sock: usize) -> Option<ConnInfo> {
    let g = wsk();
    let s = g.sockets.get(&sock)?;
    Some(ConnInfo {
        state: s.state,
        owned_by_driver: s.owned,
        disconnected: s.disconnected,
        local: s.local,
        remote: s.remote,
        pending_receives: s.pending_rx.len(),
    })
}

pub(crate) fn peer_send(sock: usize, data: &[u8]) {
    if let Some(s) = wsk().sockets.get_mut(&sock) {
        s.rx.extend(data.iter().copied());
    }
    irp::post(move || conn::service_receives(sock));
}

pub(crate) fn peer_close(sock: usize, reset: bool) {
    if let Some(s) = wsk().sockets.get_mut(&sock) {
        if reset {
            s.peer_reset = true;
        } else {
            s.peer_closed = true;
        }
    }
    irp::post(move || {
        conn::service_receives(sock);
        super::connect::service_sends(sock);
    });
}

pub(crate) fn peer_take_sent(sock: usize) -> Vec<u8> {
    let out = wsk()
        .sockets
        .get_mut(&sock)
        .map(|s| std::mem::take(&mut s.tx))
        .unwrap_or_default();
    // Reading opens the send window.
    irp::post(move || super::connect::service_sends(sock));
    out
}

/// Sockets still open that count as leaks: listeners, and connections the
/// driver owns.
pub(crate) fn open_sockets() -> usize {
    wsk()
        .sockets
        .values()
        .filter(|s| s.state != SocketState::Closed && (s.kind == Kind::Listen || s.owned))
        .count()
}

/// (registered clients not deregistered, outstanding NPI captures).
pub(crate) fn client_counts() -> (usize, i64) {
    let g = wsk();
    (
        g.clients.values().filter(|c| !c.deregistered).count(),
        g.clients.values().map(|c| c.captures.max(0)).sum(),
    )
}
