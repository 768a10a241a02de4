//! Real Linux TCP sockets behind simulated WSK connection sockets (Linux
//! only), so driver code moves real bytes between real clients and a real
//! server:
//! - An accepted connection can be a real socket: the NFQUEUE front lets an
//!   accepted SYN through, the kernel completes the handshake with a real
//!   listener ([`Acceptor`]), and only then is the request delivered
//!   (WskAcceptEvent, a pending WskAccept or the backlog) with the accepted
//!   socket behind it — as on Windows, where WskAcceptEvent comes after the
//!   handshake. A request whose handshake does not complete within its
//!   timeout (a spoofed source never ACKs the SYN-ACK) gets WskAbortEvent.
//!   [`accept_real`] runs an already-accepted socket through the gate
//!   (post-handshake inspection, for tests and runs without NFQUEUE).
//! - WskConnect on a connection socket (WskSocket with
//!   `WSK_FLAG_CONNECTION_SOCKET`, then WskBind) opens a real TCP
//!   connection when [`set_connect_real`] is on.
//! - WskReceive, WskSend, WskDisconnect and WskCloseSocket on such a socket
//!   act on the real socket: non-blocking calls complete at once when they
//!   can, otherwise they pend and one reactor thread (`epoll`) completes
//!   them on the provider's I/O thread. With [`set_fast_completion`] (what
//!   gate-sim runs with) a call that can complete at once completes its
//!   IRP inline, before it returns (as Windows' WSK does), and the reactor
//!   completes pended IRPs itself at DISPATCH_LEVEL (as the stack's DPC
//!   would), without the hop through the I/O thread.
//!
//! A connection socket is backed either by the harness's in-memory peer
//! (the unit tests' [`crate::Conn`]) or by a real descriptor (this module);
//! the WSK routines ask [`is_real`] first.
//!
//! Lock order: the provider's table lock may be held while this module's
//! lock is taken, never the reverse.

use super::*;
use crate::irp;
use crate::irql;
use std::collections::HashMap;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};

const STATUS_CONNECTION_REFUSED: NTSTATUS = 0xC000_0236_u32 as i32;
const STATUS_IO_TIMEOUT: NTSTATUS = 0xC000_00B5_u32 as i32;
const STATUS_NETWORK_UNREACHABLE: NTSTATUS = 0xC000_023C_u32 as i32;
const STATUS_HOST_UNREACHABLE: NTSTATUS = 0xC000_023D_u32 as i32;

/// A receive the driver has pending on a real socket.
struct Recv {
    irp: usize,
    mdl: usize,
    offset: u32,
    length: usize,
}

/// The bytes of a send.
pub(crate) enum SendBytes {
    /// The driver's buffer, described by its MDL chain: (address, length)
    /// pieces, lent until the IRP completes (written from in place: no
    /// copy).
    Lent(Vec<(usize, usize)>),
    /// A copy (a graceful WskDisconnect's final data).
    Owned(Vec<u8>),
}

impl SendBytes {
    fn len(&self) -> usize {
        match self {
            SendBytes::Lent(p) => p.iter().map(|(_, n)| n).sum(),
            SendBytes::Owned(v) => v.len(),
        }
    }
}

/// A send not yet fully written.
struct Send {
    irp: usize,
    data: SendBytes,
    /// `data.len()`.
    total: usize,
    written: usize,
    /// A WskDisconnect's final data: shut down writing once written.
    disconnect: bool,
}

struct RealSock {
    /// None once aborted (WskDisconnect with WSK_FLAG_ABORTIVE).
    fd: Option<OwnedFd>,
    rx: VecDeque<Recv>,
    tx: VecDeque<Send>,
    /// A WskConnect in progress: its IRP.
    connecting: Option<usize>,
    registered: bool,
}

/// (remote, local) of a connection.
type Tuple = (SocketAddr, SocketAddr);

/// An accepted request waiting for its handshake.
#[derive(Clone, Copy)]
struct Waiting {
    rk: (usize, u32),
    /// The sequence number of the SYN that made the request (None: not
    /// known, e.g. [`connect_expecting_handshake`] without one).
    isn: Option<u32>,
}

#[derive(Default)]
struct Real {
    socks: HashMap<usize, RealSock>,
    /// Accepted requests waiting for their handshake, by (remote, local):
    /// the request and its SYN's sequence number (ISN), when known.
    awaiting: HashMap<Tuple, Waiting>,
    /// Handshake deadlines in order (timeouts are equal, so FIFO is
    /// sorted), each naming its request: an entry whose 4-tuple now belongs
    /// to a newer request (same 4-tuple, new ISN) is stale and skipped.
    deadlines: VecDeque<(Instant, Tuple, (usize, u32))>,
    epfd: Option<OwnedFd>,
    wake: Option<OwnedFd>,
}

static REAL: LazyLock<Mutex<Real>> = LazyLock::new(|| Mutex::new(Real::default()));
static CONNECT_REAL: AtomicBool = AtomicBool::new(false);
static FAST_COMPLETION: AtomicBool = AtomicBool::new(false);
static MAX_HALF_OPEN: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(DEFAULT_MAX_HALF_OPEN);

/// Accepted requests that may wait for their handshake at once, by default.
pub const DEFAULT_MAX_HALF_OPEN: usize = 65_536;

/// Sets how many accepted requests may wait for their handshake at once
/// (the half-open table; at least 1). When it is full, the oldest waiting
/// request is dropped with WskAbortEvent. Keeps memory fixed under a
/// spoofed flood whatever its rate.
pub fn set_max_half_open(n: usize) {
    MAX_HALF_OPEN.store(n.max(1), Ordering::SeqCst);
}
static STARTED: std::sync::Once = std::sync::Once::new();

/// Counters of the real side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RealStats {
    /// Handshakes completed and delivered to the driver.
    pub handshakes: u64,
    /// Accepted requests whose handshake did not complete in time
    /// (WskAbortEvent delivered).
    pub handshake_timeouts: u64,
    /// Real connections with no accepted request waiting (reset).
    pub unmatched: u64,
    /// Accepted requests dropped (WskAbortEvent) because the half-open
    /// table was full ([`set_max_half_open`]).
    pub half_open_evicted: u64,
    /// Accepted requests dropped (WskAbortEvent) because a SYN of the same
    /// 4-tuple with another sequence number arrived while they waited for
    /// their handshake: the client gave that connection up (reset) and
    /// opened a new one, which is a new request ([`syn_arrived`]).
    pub superseded: u64,
    /// Real connections opened by WskConnect.
    pub connects: u64,
    /// Bytes received from / sent to real sockets.
    pub bytes_in: u64,
    pub bytes_out: u64,
}

static HANDSHAKES: AtomicU64 = AtomicU64::new(0);
static TIMEOUTS: AtomicU64 = AtomicU64::new(0);
static UNMATCHED: AtomicU64 = AtomicU64::new(0);
static EVICTED: AtomicU64 = AtomicU64::new(0);
static SUPERSEDED: AtomicU64 = AtomicU64::new(0);
static CONNECTS: AtomicU64 = AtomicU64::new(0);
static BYTES_IN: AtomicU64 = AtomicU64::new(0);
static BYTES_OUT: AtomicU64 = AtomicU64::new(0);

/// The real side's counters since the process started.
pub fn stats() -> RealStats {
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    RealStats {
        handshakes: l(&HANDSHAKES),
        handshake_timeouts: l(&TIMEOUTS),
        unmatched: l(&UNMATCHED),
        half_open_evicted: l(&EVICTED),
        superseded: l(&SUPERSEDED),
        connects: l(&CONNECTS),
        bytes_in: l(&BYTES_IN),
        bytes_out: l(&BYTES_OUT),
    }
}

fn real() -> MutexGuard<'static, Real> {
    REAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether WskConnect opens real connections (default off: connection
/// sockets then have no peer to reach).
pub fn set_connect_real(on: bool) {
    CONNECT_REAL.store(on, Ordering::SeqCst);
}

pub(crate) fn connect_real() -> bool {
    CONNECT_REAL.load(Ordering::SeqCst)
}

/// Whether IRPs on real sockets complete without the I/O thread (default
/// off: the unit tests' completion mode applies). On: a WskReceive,
/// WskSend, WskDisconnect, WskConnect or WskCloseSocket on a real socket
/// (and, with [`set_connect_real`], WskSocket and WskBind of a connection
/// socket) that can complete at once completes its IRP inline (the
/// completion routine runs before the call returns, which returns the
/// IRP's status),
/// and the reactor runs the completion routines of the IRPs it finishes on
/// its own thread at DISPATCH_LEVEL. Saves two thread switches per relayed
/// chunk (see gate-driver/README.md, relay figures).
pub fn set_fast_completion(on: bool) {
    FAST_COMPLETION.store(on, Ordering::SeqCst);
}

pub(crate) fn fast_completion() -> bool {
    FAST_COMPLETION.load(Ordering::Relaxed)
}

/// Whether `sock` is backed by a real socket.
pub(crate) fn is_real(sock: usize) -> bool {
    real().socks.contains_key(&sock)
}

/// Closes every real socket and forgets waiting handshakes (at reset).
pub(crate) fn reset() {
    let mut r = real();
    r.socks.clear();
    r.awaiting.clear();
    r.deadlines.clear();
}

/// Normalizes an address as the front and the acceptor both see it
/// (IPv4-mapped IPv6 becomes IPv4).
fn norm(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

// ---- the reactor ----

fn start_reactor(r: &mut Real) -> io::Result<()> {
    if r.epfd.is_some() {
        return Ok(());
    }
    // SAFETY: epoll_create1(2).
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    let ep = unsafe { OwnedFd::from_raw_fd(ep) };
    // SAFETY: eventfd(2).
    let wfd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if wfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    let wfd = unsafe { OwnedFd::from_raw_fd(wfd) };
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 0,
    };
    // SAFETY: epoll_ctl(2) on our descriptors.
    if unsafe {
        libc::epoll_ctl(
            ep.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            wfd.as_raw_fd(),
            &mut ev,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    r.epfd = Some(ep);
    r.wake = Some(wfd);
    STARTED.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("sim-real".into())
            .spawn(reactor);
    });
    Ok(())
}

fn wake(r: &Real) {
    if let Some(w) = &r.wake {
        let one: u64 = 1;
        // SAFETY: write(2) of 8 bytes to an eventfd.
        unsafe { libc::write(w.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

/// Arms `events` (one shot) for `sock` on the reactor.
fn arm(r: &mut Real, sock: usize, events: u32) {
    let Some(ep) = r.epfd.as_ref().map(|e| e.as_raw_fd()) else {
        return;
    };
    let Some(s) = r.socks.get_mut(&sock) else {
        return;
    };
    let Some(fd) = s.fd.as_ref().map(|f| f.as_raw_fd()) else {
        return;
    };
    let mut ev = libc::epoll_event {
        events: events | libc::EPOLLONESHOT as u32 | libc::EPOLLRDHUP as u32,
        u64: sock as u64,
    };
    let op = if s.registered {
        libc::EPOLL_CTL_MOD
    } else {
        libc::EPOLL_CTL_ADD
    };
    // SAFETY: epoll_ctl(2) on live descriptors.
    if unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) } == 0 {
        s.registered = true;
    }
}

/// Interest a socket still has.
fn wanted(s: &RealSock) -> u32 {
    let mut e = 0;
    if !s.rx.is_empty() {
        e |= libc::EPOLLIN as u32;
    }
    if !s.tx.is_empty() || s.connecting.is_some() {
        e |= libc::EPOLLOUT as u32;
    }
    e
}

/// IoMarkIrpPending on a taken IRP, done under this module's lock before
/// the IRP is queued for the reactor (which may complete it as soon as the
/// lock is released).
fn mark_pending(irp: usize) {
    let irp = irp as *mut IRP;
    // SAFETY: a live IRP the provider took (its current stack location is
    // the provider's); the reactor cannot complete it before the lock held
    // by the caller is released.
    unsafe { (*(*irp).Tail.CurrentStackLocation).Control |= 0x01 };
}

/// IRPs to complete: (irp, status, information).
type Done = Vec<(usize, NTSTATUS, usize)>;

/// Completes a batch on the I/O thread as one job (one queue lock and
/// one wake-up of the I/O thread per reactor round, not one per IRP), in
/// order.
fn post_done(done: Done) {
    if done.is_empty() {
        return;
    }
    if fast_completion() {
        irql::run_at(DISPATCH_LEVEL, "I/O completion", || {
            for (i, st, n) in done {
                irp::complete(i as *mut IRP, st, n);
            }
        });
        return;
    }
    irp::post(move || {
        for (i, st, n) in done {
            irp::complete(i as *mut IRP, st, n);
        }
    });
}

fn reactor() {
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
    loop {
        let (ep, timeout) = {
            let r = real();
            let Some(ep) = r.epfd.as_ref().map(|e| e.as_raw_fd()) else {
                return;
            };
            let t = r.deadlines.front().map_or(-1, |(d, _, _)| {
                i32::try_from(d.saturating_duration_since(Instant::now()).as_millis())
                    .unwrap_or(i32::MAX)
                    .saturating_add(1)
            });
            (ep, t)
        };
        // SAFETY: epoll_wait(2) into our buffer.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, timeout) };
        let n = usize::try_from(n).unwrap_or(0);
        let mut done: Done = Vec::new();
        let mut connected: Vec<usize> = Vec::new();
        {
            let mut r = real();
            for ev in events.iter().take(n) {
                let key = ev.u64 as usize;
                if key == 0 {
                    if let Some(w) = &r.wake {
                        let mut v = 0u64;
                        // SAFETY: read(2) of the eventfd counter.
                        unsafe { libc::read(w.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
                    }
                    continue;
                }
                let Some(s) = r.socks.get_mut(&key) else {
                    continue;
                };
                if let Some(irp) = s.connecting.take() {
                    match finish_connect(s) {
                        Some(st) => {
                            if st == STATUS_SUCCESS {
                                connected.push(key);
                            }
                            done.push((irp, st, 0));
                        }
                        None => s.connecting = Some(irp),
                    }
                }
                service(s, &mut done);
                let e = wanted(s);
                if e != 0 {
                    arm(&mut r, key, e);
                }
            }
            // Handshakes that did not complete in time.
            let now = Instant::now();
            let mut expired = Vec::new();
            while r.deadlines.front().is_some_and(|(d, _, _)| *d <= now) {
                if let Some((_, t, rk)) = r.deadlines.pop_front() {
                    if remove_waiting(&mut r, &t, rk) {
                        expired.push(rk);
                    }
                }
            }
            drop(r);
            for rk in expired {
                TIMEOUTS.fetch_add(1, Ordering::Relaxed);
                let _ = super::net::abort(rk);
            }
        }
        for key in connected {
            note_addresses(key);
        }
        post_done(done);
    }
}

/// Completes what can be completed on a socket: receives, then sends.
fn service(s: &mut RealSock, done: &mut Done) {
    let Some(fd) = s.fd.as_ref().map(|f| f.as_raw_fd()) else {
        for r in s.rx.drain(..) {
            done.push((r.irp, STATUS_CONNECTION_ABORTED, 0));
        }
        for t in s.tx.drain(..) {
            done.push((t.irp, STATUS_CONNECTION_ABORTED, 0));
        }
        return;
    };
    while let Some(r) = s.rx.front() {
        match read_into(fd, r) {
            Some(res) => {
                let irp = r.irp;
                s.rx.pop_front();
                done.push((irp, res.0, res.1));
            }
            None => break,
        }
    }
    while let Some(t) = s.tx.front_mut() {
        match write_some(fd, t) {
            Some(st) => {
                let (irp, n, disc) = (t.irp, t.total, t.disconnect);
                s.tx.pop_front();
                if disc && st == STATUS_SUCCESS {
                    // SAFETY: shutdown(2) on a live socket.
                    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
                }
                done.push((irp, st, if st == STATUS_SUCCESS && !disc { n } else { 0 }));
            }
            None => break,
        }
    }
}

fn errno_status(e: &io::Error) -> NTSTATUS {
    match e.raw_os_error() {
        Some(libc::ECONNRESET) | Some(libc::EPIPE) => STATUS_CONNECTION_RESET,
        Some(libc::ECONNREFUSED) => STATUS_CONNECTION_REFUSED,
        Some(libc::ETIMEDOUT) => STATUS_IO_TIMEOUT,
        Some(libc::ENETUNREACH) => STATUS_NETWORK_UNREACHABLE,
        Some(libc::EHOSTUNREACH) => STATUS_HOST_UNREACHABLE,
        _ => STATUS_CONNECTION_ABORTED,
    }
}

/// Reads into a pending receive's buffer: Some((status, bytes)) when it
/// is done (data, end of stream or error), None when nothing is there yet.
fn read_into(fd: RawFd, r: &Recv) -> Option<(NTSTATUS, usize)> {
    // SAFETY: the receive's MDL chain describes the driver's buffer, alive
    // while its IRP is pending.
    let Some(pieces) = (unsafe { super::conn::buf_pieces(r.mdl, r.offset, r.length) }) else {
        return Some((STATUS_INVALID_PARAMETER, 0));
    };
    let iov: Vec<libc::iovec> = pieces
        .iter()
        .map(|(p, n)| libc::iovec {
            iov_base: (*p).cast(),
            iov_len: *n,
        })
        .collect();
    // SAFETY: all-zero msghdr, then the iovec set.
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = iov.as_ptr().cast_mut();
    m.msg_iovlen = iov.len();
    // SAFETY: recvmsg(2) into the driver's buffer pieces.
    let n = unsafe { libc::recvmsg(fd, &mut m, libc::MSG_DONTWAIT) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock => None,
            io::ErrorKind::Interrupted => None,
            _ => Some((errno_status(&e), 0)),
        };
    }
    let n = n as usize;
    BYTES_IN.fetch_add(n as u64, Ordering::Relaxed);
    Some((STATUS_SUCCESS, n))
}

/// Writes what it can of a send: Some(status) when all is written (or it
/// failed), None when the socket buffer is full.
fn write_some(fd: RawFd, t: &mut Send) -> Option<NTSTATUS> {
    while t.written < t.total {
        // What is left, as iovecs (the lent pieces from `written` on).
        let mut iov: Vec<libc::iovec> = Vec::new();
        match &t.data {
            SendBytes::Owned(v) => iov.push(libc::iovec {
                iov_base: v[t.written..].as_ptr().cast_mut().cast(),
                iov_len: v.len() - t.written,
            }),
            SendBytes::Lent(pieces) => {
                let mut skip = t.written;
                for &(p, n) in pieces {
                    if skip >= n {
                        skip -= n;
                        continue;
                    }
                    iov.push(libc::iovec {
                        iov_base: (p + skip) as *mut libc::c_void,
                        iov_len: n - skip,
                    });
                    skip = 0;
                }
            }
        }
        // SAFETY: all-zero msghdr, then the iovecs set.
        let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
        m.msg_iov = iov.as_mut_ptr();
        m.msg_iovlen = iov.len();
        // SAFETY: sendmsg(2) from the driver's buffer pieces (lent while
        // the IRP is pending, which it is until this send completes) or our
        // copy; MSG_NOSIGNAL: no SIGPIPE.
        let n = unsafe { libc::sendmsg(fd, &m, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => None,
                _ => Some(errno_status(&e)),
            };
        }
        t.written += n as usize;
        BYTES_OUT.fetch_add(n as u64, Ordering::Relaxed);
    }
    Some(STATUS_SUCCESS)
}

fn finish_connect(s: &RealSock) -> Option<NTSTATUS> {
    let fd = s.fd.as_ref()?.as_raw_fd();
    let mut err: libc::c_int = 0;
    let mut len = 4u32;
    // SAFETY: getsockopt(2) of an int.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Some(errno_status(&io::Error::last_os_error()));
    }
    if err == 0 {
        // Connected only if the peer address is known.
        // SAFETY: all-zero sockaddr_storage.
        let mut sa: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut l = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        // SAFETY: getpeername(2) into a sockaddr_storage.
        let r = unsafe {
            libc::getpeername(fd, (&mut sa as *mut libc::sockaddr_storage).cast(), &mut l)
        };
        return (r == 0).then_some(STATUS_SUCCESS);
    }
    if err == libc::EINPROGRESS || err == libc::EALREADY {
        return None;
    }
    Some(errno_status(&io::Error::from_raw_os_error(err)))
}

/// After a real connect: the WSK socket's local and remote addresses.
fn note_addresses(key: usize) {
    let addrs = {
        let r = real();
        r.socks
            .get(&key)
            .and_then(|s| s.fd.as_ref())
            .and_then(|fd| {
                // SAFETY: a borrowed view of a live descriptor, not closed here.
                let st =
                    std::mem::ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd.as_raw_fd()) });
                Some((st.local_addr().ok()?, st.peer_addr().ok()?))
            })
    };
    if let Some((l, p)) = addrs {
        if let Some(s) = wsk().sockets.get_mut(&key) {
            s.local = Some(l);
            s.remote = Some(p);
        }
    }
}

// ---- attaching real sockets ----

/// Puts a real socket behind connection socket `sock` (made non-blocking).
pub(crate) fn attach(sock: usize, fd: OwnedFd) {
    // SAFETY: fcntl(2) on a live descriptor.
    unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    let mut r = real();
    if start_reactor(&mut r).is_err() {
        return;
    }
    r.socks.insert(
        sock,
        RealSock {
            fd: Some(fd),
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            connecting: None,
            registered: false,
        },
    );
}

/// Closes the real socket behind `sock` (if any); returns the IRPs still
/// pending on it, to be completed with STATUS_CANCELLED.
pub(crate) fn close(sock: usize) -> Vec<usize> {
    let Some(s) = real().socks.remove(&sock) else {
        return Vec::new();
    };
    let mut v: Vec<usize> = s.rx.iter().map(|r| r.irp).collect();
    v.extend(s.tx.iter().map(|t| t.irp));
    v.extend(s.connecting);
    v
}

/// IoCancelIrp for an IRP pended on a real socket (a receive, a send, or a
/// connect, whose socket is then abandoned): true when it was found; the
/// caller completes it with STATUS_CANCELLED. Scans the real sockets
/// (cancels are rare: timeouts and teardown).
pub(crate) fn cancel(irp: usize) -> bool {
    let mut r = real();
    for s in r.socks.values_mut() {
        if s.connecting == Some(irp) {
            s.connecting = None;
            s.fd = None;
            return true;
        }
        if let Some(i) = s.rx.iter().position(|x| x.irp == irp) {
            s.rx.remove(i);
            return true;
        }
        if let Some(i) = s.tx.iter().position(|x| x.irp == irp) {
            s.tx.remove(i);
            return true;
        }
    }
    false
}

/// Resets a real connection nobody wants (SO_LINGER 0, then close).
fn reset_stream(s: TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt(2) of a linger on a live socket.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as u32,
        )
    };
    drop(s);
}

// ---- WSK calls on real sockets (called with the call guard held) ----

/// WskReceive: Some((status, bytes)) when done now, None when pended.
pub(crate) fn receive(
    sock: usize,
    mdl: usize,
    offset: u32,
    length: usize,
    irp: usize,
) -> Option<(NTSTATUS, usize)> {
    let mut r = real();
    let s = r.socks.get_mut(&sock)?;
    let rec = Recv {
        irp,
        mdl,
        offset,
        length,
    };
    let Some(fd) = s.fd.as_ref().map(|f| f.as_raw_fd()) else {
        return Some((STATUS_CONNECTION_ABORTED, 0));
    };
    if s.rx.is_empty() {
        if let Some(res) = read_into(fd, &rec) {
            return Some(res);
        }
    }
    mark_pending(rec.irp);
    s.rx.push_back(rec);
    let e = wanted(s);
    arm(&mut r, sock, e);
    None
}

/// WskSend (or a graceful WskDisconnect's final data with `disconnect`):
/// Some((status, bytes)) when done now, None when pended.
pub(crate) fn send(
    sock: usize,
    data: SendBytes,
    irp: usize,
    disconnect: bool,
) -> Option<(NTSTATUS, usize)> {
    let mut r = real();
    let s = r.socks.get_mut(&sock)?;
    let Some(fd) = s.fd.as_ref().map(|f| f.as_raw_fd()) else {
        return Some((STATUS_CONNECTION_ABORTED, 0));
    };
    let total = data.len();
    let mut t = Send {
        irp,
        data,
        total,
        written: 0,
        disconnect,
    };
    if s.tx.is_empty() {
        if let Some(st) = write_some(fd, &mut t) {
            if disconnect && st == STATUS_SUCCESS {
                // SAFETY: shutdown(2) on a live socket.
                unsafe { libc::shutdown(fd, libc::SHUT_WR) };
            }
            let n = if st == STATUS_SUCCESS && !disconnect {
                t.total
            } else {
                0
            };
            return Some((st, n));
        }
    }
    mark_pending(t.irp);
    s.tx.push_back(t);
    let e = wanted(s);
    arm(&mut r, sock, e);
    None
}

/// WskDisconnect with WSK_FLAG_ABORTIVE: resets the connection now;
/// returns the IRPs pending on it (to complete with
/// STATUS_CONNECTION_ABORTED).
pub(crate) fn abort_conn(sock: usize) -> Vec<usize> {
    let mut r = real();
    let Some(s) = r.socks.get_mut(&sock) else {
        return Vec::new();
    };
    if let Some(fd) = s.fd.take() {
        // SAFETY: the descriptor is ours; TcpStream takes ownership.
        reset_stream(unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) });
    }
    let mut v: Vec<usize> = s.rx.drain(..).map(|r| r.irp).collect();
    v.extend(s.tx.drain(..).map(|t| t.irp));
    v
}

/// WskConnect on a real-backed connection socket: opens a non-blocking
/// TCP connection from `local` (None or unspecified with port 0: the
/// kernel chooses) to `remote`. Some(status) when done now, None when it
/// completes later.
pub(crate) fn connect(
    sock: usize,
    local: Option<SocketAddr>,
    remote: SocketAddr,
    irp: usize,
) -> Option<NTSTATUS> {
    let domain = if remote.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket(2).
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Some(errno_status(&io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if let Some(l) = local.filter(|l| !(l.ip().is_unspecified() && l.port() == 0)) {
        let (sa, len) = to_sockaddr(&l);
        // SAFETY: bind(2) with a sockaddr of its length.
        if unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_storage).cast(),
                len,
            )
        } < 0
        {
            return Some(errno_status(&io::Error::last_os_error()));
        }
    }
    let (sa, len) = to_sockaddr(&remote);
    // SAFETY: connect(2) with a sockaddr of its length.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    let now = if rc == 0 {
        Some(STATUS_SUCCESS)
    } else {
        let e = io::Error::last_os_error();
        (e.raw_os_error() != Some(libc::EINPROGRESS)).then(|| errno_status(&e))
    };
    if now.is_some_and(|st| st != STATUS_SUCCESS) {
        return now;
    }
    CONNECTS.fetch_add(1, Ordering::Relaxed);
    let mut r = real();
    if start_reactor(&mut r).is_err() {
        return Some(STATUS_INSUFFICIENT_RESOURCES);
    }
    r.socks.insert(
        sock,
        RealSock {
            fd: Some(fd),
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            connecting: now.is_none().then_some(irp),
            registered: false,
        },
    );
    if now.is_none() {
        mark_pending(irp);
        arm(&mut r, sock, libc::EPOLLOUT as u32);
        return None;
    }
    drop(r);
    note_addresses(sock);
    Some(STATUS_SUCCESS)
}

fn to_sockaddr(a: &SocketAddr) -> (libc::sockaddr_storage, u32) {
    // SAFETY: all-zero sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: a sockaddr_in fits in a sockaddr_storage.
            unsafe {
                (&mut ss as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in>()
                    .write(sin)
            };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as u16,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo().to_be(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: a sockaddr_in6 fits in a sockaddr_storage.
            unsafe {
                (&mut ss as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in6>()
                    .write(sin6)
            };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as u32)
}

// ---- handshakes ----

/// Removes the waiting entry of `t` if it is request `rk`'s (a deadline
/// of a superseded request must not remove its successor's entry).
fn remove_waiting(r: &mut Real, t: &Tuple, rk: (usize, u32)) -> bool {
    if r.awaiting.get(t).is_some_and(|w| w.rk == rk) {
        r.awaiting.remove(t);
        true
    } else {
        false
    }
}

/// An accepted request (held: `Accepted`, not delivered) waits for the
/// real handshake of (remote, local) for at most `timeout`; then it gets
/// WskAbortEvent. `isn` is the sequence number of its SYN, when known
/// ([`syn_arrived`] compares it). A request still waiting on the same
/// 4-tuple is superseded (WskAbortEvent now).
pub(crate) fn expect_handshake(
    rk: (usize, u32),
    remote: SocketAddr,
    local: SocketAddr,
    isn: Option<u32>,
    timeout: Duration,
) {
    let t = (norm(remote), norm(local));
    let cap = MAX_HALF_OPEN.load(Ordering::Relaxed).max(1);
    let mut evicted = Vec::new();
    let mut superseded = None;
    let mut sized = false;
    {
        let mut r = real();
        if start_reactor(&mut r).is_err() {
            return;
        }
        let room = crate::churn::room(cap);
        if r.awaiting.capacity() < room {
            // Sized once for the cap (again if it grows), so a flood never
            // grows them: the deadlines up to their bound (2 * cap, below),
            // the table at twice its live bound (`crate::churn`: a
            // churned hash table more than half full doubles when its
            // tombstones run out).
            let (a, d) = (r.awaiting.len(), r.deadlines.len());
            r.awaiting.reserve(room.saturating_sub(a));
            r.deadlines.reserve(room.saturating_sub(d));
            sized = true;
        }
        // The half-open table is full: the oldest request waiting for its
        // handshake is dropped now (WskAbortEvent), as a stack with a
        // bounded half-open table drops its oldest embryonic connection.
        while r.awaiting.len() >= cap || r.deadlines.len() >= 2 * cap {
            let Some((_, old, ork)) = r.deadlines.pop_front() else {
                break;
            };
            if remove_waiting(&mut r, &old, ork) {
                evicted.push(ork);
            }
        }
        if let Some(old) = r.awaiting.insert(t, Waiting { rk, isn }) {
            superseded = (old.rk != rk).then_some(old.rk);
        }
        let first = r.deadlines.is_empty();
        r.deadlines.push_back((Instant::now() + timeout, t, rk));
        if first {
            wake(&r);
        }
    }
    if sized {
        // Requests in flight: the half-open table, plus a margin for
        // pended and inspecting ones.
        super::history::presize(&mut wsk(), cap.saturating_add(cap / 8));
    }
    for k in evicted {
        EVICTED.fetch_add(1, Ordering::Relaxed);
        let _ = super::net::abort(k);
    }
    if let Some(k) = superseded {
        SUPERSEDED.fetch_add(1, Ordering::Relaxed);
        let _ = super::net::abort(k);
    }
}

/// A connection request (a SYN with sequence number `isn`, if known) from
/// `remote` to `local` decided by the driver; if accepted, it waits for its
/// real handshake (delivered by [`handshake_done`], or WskAbortEvent after
/// `timeout`), as the NFQUEUE front does for every SYN it lets through.
pub fn connect_expecting_handshake(
    remote: SocketAddr,
    local: SocketAddr,
    isn: Option<u32>,
    timeout: Duration,
) -> crate::Request {
    let rk = super::net::connect(remote, local, true);
    let accepted = wsk()
        .requests
        .get(&rk)
        .is_some_and(|r| r.state == RequestState::Accepted);
    if accepted {
        expect_handshake(rk, remote, local, isn, timeout);
    }
    crate::Request::from_key(rk)
}

/// Whether an accepted request of (remote, local) still waits for its
/// handshake.
pub fn awaiting_handshake(remote: SocketAddr, local: SocketAddr) -> bool {
    real().awaiting.contains_key(&(norm(remote), norm(local)))
}

/// A SYN of (remote, local) with sequence number `isn` arrived. Returns
/// true if it is a retransmission of the SYN of an accepted request still
/// waiting for its handshake (same 4-tuple, same sequence number — or a
/// request whose sequence number is not known): it needs no new request.
///
/// A SYN of the same 4-tuple with another sequence number is a new
/// connection (RFC 9293 3.4: each connection starts from its own ISN): the
/// client gave the waiting one up (it reset it, e.g. after a connect
/// timeout, and reconnected from the same port). That request gets
/// WskAbortEvent now, as the stack indicates when a half-open connection is
/// reset, and the SYN is a new request for the driver to decide (false).
pub fn syn_arrived(remote: SocketAddr, local: SocketAddr, isn: u32) -> bool {
    let t = (norm(remote), norm(local));
    let gone = {
        let mut r = real();
        match r.awaiting.get(&t) {
            None => return false,
            Some(w) if w.isn.is_none_or(|i| i == isn) => return true,
            Some(w) => {
                let rk = w.rk;
                r.awaiting.remove(&t);
                rk
            }
        }
    };
    SUPERSEDED.fetch_add(1, Ordering::Relaxed);
    let _ = super::net::abort(gone);
    false
}

/// Requests waiting for their handshake now.
pub fn awaiting_count() -> usize {
    real().awaiting.len()
}

/// A real connection completed its handshake: deliver the request waiting
/// for it with the socket behind it, or reset it if none waits.
///
/// `remote` is the peer address accept(2) returned. It is taken from there,
/// not from getpeername(2): a client that resets right after its handshake
/// (gate-load closes every connection with RST) leaves a socket whose
/// getpeername fails with ENOTCONN, yet the stack did establish it — on
/// Windows it is delivered by WskAcceptEvent and the driver then sees the
/// reset on its first receive. Matching it by accept(2)'s address does the
/// same here instead of leaving the request to time out as an abort.
pub fn handshake_done(stream: TcpStream, remote: SocketAddr) {
    let Ok(local) = stream.local_addr() else {
        reset_stream(stream);
        return;
    };
    let rk = real()
        .awaiting
        .remove(&(norm(remote), norm(local)))
        .map(|w| w.rk);
    match rk {
        Some(rk) => {
            HANDSHAKES.fetch_add(1, Ordering::Relaxed);
            super::net::establish_with(rk, Some(OwnedFd::from(stream)));
        }
        None => {
            UNMATCHED.fetch_add(1, Ordering::Relaxed);
            reset_stream(stream);
        }
    }
}

/// Runs an already-accepted real connection through the gate (inspection
/// after the handshake): the driver's WskInspectEvent decides; an accepted
/// one is delivered with the socket behind it, anything else is reset.
pub fn accept_real(stream: TcpStream) -> crate::Request {
    let (remote, local) = match (stream.peer_addr(), stream.local_addr()) {
        (Ok(r), Ok(l)) => (norm(r), norm(l)),
        _ => {
            reset_stream(stream);
            return crate::Request::from_key((0, 0));
        }
    };
    let rk = super::net::connect(remote, local, true);
    let accepted = wsk()
        .requests
        .get(&rk)
        .is_some_and(|r| r.state == RequestState::Accepted);
    if accepted {
        HANDSHAKES.fetch_add(1, Ordering::Relaxed);
        super::net::establish_with(rk, Some(OwnedFd::from(stream)));
    } else {
        reset_stream(stream);
    }
    crate::Request::from_key(rk)
}

/// A real listener whose completed handshakes are matched to accepted
/// requests ([`handshake_done`]), on its own thread; stopped on drop.
pub struct Acceptor {
    fd: RawFd,
    stop: std::sync::Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Acceptor {
    /// Starts accepting on `listener` (its backlog raised to `backlog`).
    pub fn start(listener: TcpListener, backlog: i32) -> Acceptor {
        let fd = listener.as_raw_fd();
        // SAFETY: listen(2) again on a listening socket only raises its backlog.
        unsafe { libc::listen(fd, backlog) };
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sim-acceptor".into())
            .spawn(move || {
                while !st.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((s, peer)) => {
                            if st.load(Ordering::SeqCst) {
                                reset_stream(s);
                                break;
                            }
                            handshake_done(s, peer);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e)
                            if matches!(
                                e.raw_os_error(),
                                Some(libc::EMFILE)
                                    | Some(libc::ENFILE)
                                    | Some(libc::ENOBUFS)
                                    | Some(libc::ENOMEM)
                            ) =>
                        {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(_) => break,
                    }
                }
            })
            .ok();
        Acceptor { fd, stop, thread }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // SAFETY: shutdown(2) wakes the blocked accept; the listener is
        // still owned (and closed) by the thread.
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
