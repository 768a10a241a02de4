//! Outgoing connections to in-memory backends: WskConnect on a connection
//! socket the driver created and bound (`listen.rs`, `conn.rs`; without the
//! real-socket mode of `real.rs`) reaches a backend the test controls ([`BackendMode`]:
//! accept, refuse, never answer). Once connected, the driver's socket is a
//! [`crate::Conn`] like an accepted one: the test is its peer (the backend),
//! reads what the driver sent, sends, half-closes or resets.
//!
//! Also here: flow control of sends on every connection socket (a send
//! window: sends pend while the peer has that many unread bytes; and short
//! sends: each send takes at most N bytes), and IoCancelIrp for the IRPs
//! this provider holds (pending connects, receives and sends).
//!
//! Modelled on Wine 8's netio (the platform the relay must also run on):
//! WskConnect needs a WskBind first (else STATUS_INVALID_DEVICE_STATE); a
//! closed port gives STATUS_CONNECTION_REFUSED.

use super::*;
use crate::harness::{Conn, Sim};
use crate::irp;

/// How an in-memory backend answers connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendMode {
    /// Connects succeed (the connection is established at once).
    Accept,
    /// Connects fail with STATUS_CONNECTION_REFUSED (a closed port).
    Refuse,
    /// Connects stay pending until [`Sim::backend_answer`] or IoCancelIrp
    /// (a backend that never answers).
    Silent,
}

#[derive(Default)]
pub(crate) struct Backend {
    mode: Option<BackendMode>,
    /// Connection sockets established to this backend, in order.
    conns: Vec<usize>,
    /// (socket, IRP) of connects waiting for an answer.
    waiting: VecDeque<(usize, usize)>,
    refused: u64,
}

/// Provider-wide state of outgoing connections and flow control.
#[derive(Default)]
pub(crate) struct Net {
    backends: HashMap<SocketAddr, Backend>,
    /// Sends pend while the peer has this many bytes unread.
    send_window: Option<usize>,
    /// A send takes at most this many bytes (short sends).
    max_send_chunk: Option<usize>,
    next_port: u16,
    /// [`Sim::set_hold_receives`]: pending receives survive IoCancelIrp,
    /// abortive WskDisconnect and WskCloseSocket.
    pub(crate) hold_receives: bool,
    /// Receives kept that way, until [`Sim::release_held_receives`].
    pub(crate) held: Vec<usize>,
}

/// With [`Sim::set_hold_receives`] on, moves `irps` (pending receives a
/// close or abortive disconnect would complete) aside instead; returns
/// those to complete.
pub(crate) fn hold_or_cancel(g: &mut Wsk, irps: Vec<usize>) -> Vec<usize> {
    if g.relay.hold_receives {
        g.relay.held.extend(irps);
        Vec::new()
    } else {
        irps
    }
}

/// Per connection socket.
#[derive(Default)]
pub(crate) struct SockExt {
    /// Sends waiting for the window: (IRP, bytes to append).
    pending_tx: VecDeque<(usize, Vec<u8>)>,
    /// The WskConnect IRP waiting for the backend, if any.
    connect_irp: usize,
    /// The backend this socket connects to.
    backend: Option<SocketAddr>,
}

fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        SocketAddr::V4(_) => a,
    }
}

fn mark_pending(irp: *mut IRP) {
    // SAFETY: a taken IRP; IoMarkIrpPending on the provider's location.
    unsafe { (*(*irp).Tail.CurrentStackLocation).Control |= 0x01 };
}

/// WskConnect to an in-memory backend, after `conn.rs` checked the socket
/// is a bound, unconnected connection socket of the driver (`local`: where
/// it was bound; port 0 gets an ephemeral one). Completes the IRP, or
/// leaves it pending for a silent backend.
pub(crate) fn connect(
    sock: usize,
    mut local: SocketAddr,
    to: SocketAddr,
    irp: *mut IRP,
) -> NTSTATUS {
    let to = unmap(to);
    let mut g = wsk();
    if g.sockets.get(&sock).is_none_or(|s| s.ext.connect_irp != 0) {
        drop(g);
        return irp::finish(irp, STATUS_INVALID_DEVICE_STATE, 0);
    }
    if local.port() == 0 {
        g.relay.next_port = g.relay.next_port.wrapping_add(1);
        local.set_port(49152 + g.relay.next_port % 16000);
    }
    if let Some(s) = g.sockets.get_mut(&sock) {
        s.local = Some(local);
    }
    let mode = g.relay.backends.get(&to).and_then(|b| b.mode);
    let line = format!("WskConnect({sock:#x}) -> {to}: {mode:?}");
    log(&mut g, line);
    match mode {
        Some(BackendMode::Accept) => {
            if let Some(s) = g.sockets.get_mut(&sock) {
                s.remote = Some(to);
                s.ext.backend = Some(to);
            }
            if let Some(b) = g.relay.backends.get_mut(&to) {
                b.conns.push(sock);
            }
            drop(g);
            irp::finish(irp, STATUS_SUCCESS, 0)
        }
        Some(BackendMode::Silent) => {
            if let Some(s) = g.sockets.get_mut(&sock) {
                s.ext.connect_irp = irp as usize;
                s.ext.backend = Some(to);
            }
            if let Some(b) = g.relay.backends.get_mut(&to) {
                b.waiting.push_back((sock, irp as usize));
            }
            mark_pending(irp);
            drop(g);
            STATUS_PENDING
        }
        Some(BackendMode::Refuse) | None => {
            if let Some(b) = g.relay.backends.get_mut(&to) {
                b.refused += 1;
            }
            drop(g);
            irp::finish(irp, STATUS_CONNECTION_REFUSED, 0)
        }
    }
}

/// Flow control of one WskSend: how many of `data`'s bytes the socket
/// takes now (`Some`, appended to what the peer reads), or `None` when the
/// send is queued until the peer reads (the IRP is then pending).
pub(crate) fn send(g: &mut Wsk, sock: usize, irp: *mut IRP, mut data: Vec<u8>) -> Option<usize> {
    let (window, chunk) = (g.relay.send_window, g.relay.max_send_chunk);
    let s = g.sockets.get_mut(&sock)?;
    if let Some(c) = chunk {
        data.truncate(c.max(1));
    }
    let full = window.is_some_and(|w| s.tx.len() >= w) || !s.ext.pending_tx.is_empty();
    if full && !data.is_empty() {
        s.ext.pending_tx.push_back((irp as usize, data));
        mark_pending(irp);
        return None;
    }
    let n = data.len();
    s.tx.extend_from_slice(&data);
    Some(n)
}

/// Completes queued sends the window now allows (or fails them after a
/// reset). Runs on the I/O thread.
pub(crate) fn service_sends(sock: usize) {
    let mut done = Vec::new();
    {
        let mut g = wsk();
        let window = g.relay.send_window;
        let Some(s) = g.sockets.get_mut(&sock) else {
            return;
        };
        while let Some((irp, _)) = s.ext.pending_tx.front() {
            let irp = *irp;
            if s.peer_reset {
                s.ext.pending_tx.pop_front();
                done.push((irp, STATUS_CONNECTION_RESET, 0));
                continue;
            }
            if window.is_some_and(|w| s.tx.len() >= w) {
                break;
            }
            if let Some((_, data)) = s.ext.pending_tx.pop_front() {
                s.tx.extend_from_slice(&data);
                done.push((irp, STATUS_SUCCESS, data.len()));
            }
        }
    }
    for (i, st, n) in done {
        irp::complete(i as *mut IRP, st, n);
    }
}

/// IRPs a socket's abortive disconnect or close cancels: queued sends, a
/// waiting connect and a graceful disconnect waiting for a slow peer.
pub(crate) fn drain(g: &mut Wsk, sock: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let Some(s) = g.sockets.get_mut(&sock) else {
        return out;
    };
    let disconnect_irp = std::mem::take(&mut s.pending_disconnect);
    if disconnect_irp != 0 {
        out.push(disconnect_irp);
    }
    out.extend(s.ext.pending_tx.drain(..).map(|(i, _)| i));
    let connect_irp = std::mem::take(&mut s.ext.connect_irp);
    if connect_irp != 0 {
        out.push(connect_irp);
        if let Some(b) = s.ext.backend.and_then(|a| g.relay.backends.get_mut(&a)) {
            b.waiting.retain(|(_, i)| *i != connect_irp);
        }
    }
    out
}

/// IoCancelIrp: sets the IRP's Cancel flag; if this provider holds it (a
/// waiting connect, receive or send) it completes at once with
/// STATUS_CANCELLED. TRUE when it was found.
///
/// # Safety
/// `irp` is an IRP from IoAllocateIrp.
#[no_mangle]
pub unsafe extern "system" fn IoCancelIrp(irp: *mut IRP) -> BOOLEAN {
    let _sim = crate::fault::sim();
    crate::irql::require_at_most_dispatch("IoCancelIrp");
    if !irp::is_live(irp.cast()) {
        record(
            ViolationKind::BadIrp,
            format!("IoCancelIrp({irp:p}): not a live IRP"),
        );
        return 0;
    }
    // SAFETY: a live IRP.
    unsafe { (*irp).Cancel = 1 };
    let key = irp as usize;
    let mut found = false;
    {
        let mut g = wsk();
        let hold = g.relay.hold_receives;
        let socks: Vec<usize> = g.sockets.keys().copied().collect();
        for sk in socks {
            let Some(s) = g.sockets.get_mut(&sk) else {
                continue;
            };
            if let Some(i) = s.pending_rx.iter().position(|r| r.irp == key) {
                if hold {
                    // A provider that ignores the cancel (the receive
                    // stays pending; see Sim::set_hold_receives).
                    log(&mut g, format!("IoCancelIrp({key:#x}): ignored (held)"));
                    return 0;
                }
                s.pending_rx.remove(i);
                found = true;
                break;
            }
            if let Some(i) = s.ext.pending_tx.iter().position(|(i, _)| *i == key) {
                s.ext.pending_tx.remove(i);
                found = true;
                break;
            }
            if s.ext.connect_irp == key {
                s.ext.connect_irp = 0;
                let backend = s.ext.backend;
                if let Some(b) = backend.and_then(|a| g.relay.backends.get_mut(&a)) {
                    b.waiting.retain(|(_, i)| *i != key);
                }
                found = true;
                break;
            }
        }
        // An IRP pended on a real socket (wsk/real.rs).
        #[cfg(target_os = "linux")]
        if !found {
            found = super::real::cancel(key);
        }
        if found {
            log(&mut g, format!("IoCancelIrp({key:#x}): cancelled"));
        }
    }
    if found {
        irp::complete(irp, STATUS_CANCELLED, 0);
    }
    u8::from(found)
}

fn backend<R>(addr: SocketAddr, f: impl FnOnce(&mut Backend) -> R) -> R {
    let mut g = wsk();
    f(g.relay.backends.entry(unmap(addr)).or_default())
}

impl Sim {
    /// An in-memory backend at `addr` answering connects per `mode` (also
    /// changes the mode of an existing one; earlier connections stay).
    pub fn backend_listen(&self, addr: SocketAddr, mode: BackendMode) {
        backend(addr, |b| b.mode = Some(mode));
    }

    /// Connections established to the backend at `addr`, in order; the
    /// test is their peer (the backend side).
    pub fn backend_conns(&self, addr: SocketAddr) -> Vec<Conn> {
        backend(addr, |b| b.conns.clone())
            .into_iter()
            .map(Conn::of_socket)
            .collect()
    }

    /// Connects waiting for the (silent) backend at `addr` to answer.
    pub fn backend_waiting(&self, addr: SocketAddr) -> usize {
        backend(addr, |b| b.waiting.len())
    }

    /// With `true`, a receive pending on an in-memory connection socket is
    /// neither cancelled by IoCancelIrp nor completed by an abortive
    /// WskDisconnect or WskCloseSocket: it is held, its IRP outstanding,
    /// until [`Sim::release_held_receives`] (what Wine was seen doing with
    /// a pending receive at close; never Windows, whose close completes
    /// every IRP). For the relay's "abandon" path.
    pub fn set_hold_receives(&self, on: bool) {
        wsk().relay.hold_receives = on;
    }

    /// Receives held by [`Sim::set_hold_receives`] (their IRPs outstanding).
    pub fn held_receives(&self) -> usize {
        wsk().relay.held.len()
    }

    /// Completes every held receive with `status` (on the I/O thread, per
    /// the completion mode); returns how many.
    pub fn release_held_receives(&self, status: NTSTATUS) -> usize {
        let held = std::mem::take(&mut wsk().relay.held);
        let n = held.len();
        for i in held {
            irp::finish(i as *mut IRP, status, 0);
        }
        n
    }

    /// Connects the backend at `addr` refused so far.
    pub fn backend_refused(&self, addr: SocketAddr) -> u64 {
        backend(addr, |b| b.refused)
    }

    /// Answers up to `n` waiting connects of the backend at `addr`
    /// (accept: established; else refused), on the I/O thread. Returns how
    /// many were answered.
    pub fn backend_answer(&self, addr: SocketAddr, accept: bool, n: usize) -> usize {
        let to = unmap(addr);
        let mut done = Vec::new();
        {
            let mut g = wsk();
            for _ in 0..n {
                let Some((sock, irp)) = g
                    .relay
                    .backends
                    .get_mut(&to)
                    .and_then(|b| b.waiting.pop_front())
                else {
                    break;
                };
                if let Some(s) = g.sockets.get_mut(&sock) {
                    s.ext.connect_irp = 0;
                    if accept {
                        s.remote = Some(to);
                    }
                }
                if let Some(b) = g.relay.backends.get_mut(&to) {
                    if accept {
                        b.conns.push(sock);
                    } else {
                        b.refused += 1;
                    }
                }
                done.push(irp);
            }
        }
        let count = done.len();
        let st = if accept {
            STATUS_SUCCESS
        } else {
            STATUS_CONNECTION_REFUSED
        };
        for i in done {
            irp::post(move || irp::complete(i as *mut IRP, st, 0));
        }
        self.quiesce();
        count
    }

    /// Sends on every connection socket pend while its peer has `bytes`
    /// unread (None: no limit, the default).
    pub fn set_send_window(&self, bytes: Option<usize>) {
        wsk().relay.send_window = bytes;
    }

    /// Each WskSend takes at most `bytes` (short sends; None: all, the default).
    pub fn set_max_send_chunk(&self, bytes: Option<usize>) {
        wsk().relay.max_send_chunk = bytes;
    }

    /// MDLs allocated and not freed.
    pub fn mdls_outstanding(&self) -> usize {
        crate::mdl::outstanding()
    }
}

impl Conn {
    /// Bytes the peer has not read yet (what the driver sent).
    pub fn unread(&self) -> usize {
        wsk().sockets.get(&self.socket()).map_or(0, |s| s.tx.len())
    }

    /// Sends the driver has waiting for the window.
    pub fn pending_sends(&self) -> usize {
        wsk()
            .sockets
            .get(&self.socket())
            .map_or(0, |s| s.ext.pending_tx.len())
    }
}

impl Conn {
    /// Bytes the peer sent that the driver has not received yet.
    pub fn unreceived(&self) -> usize {
        wsk().sockets.get(&self.socket()).map_or(0, |s| s.rx.len())
    }
}
