//! One relayed connection: the client socket (from the accept), the
//! backend socket the relay opens, three IRPs (one per direction, one for
//! control calls), two buffers with their MDLs, and the state machine.
//!
//! Life cycle, all steps on the relay worker:
//! 1. connect: WskSocket(WSK_FLAG_CONNECTION_SOCKET), WskBind(wildcard),
//!    WskConnect (WskSocketConnect is a Wine stub); the PROXY header, if
//!    configured, is the first thing sent;
//! 2. relay: each direction receives into its buffer, sends it all to the
//!    other side (a short send is continued from where it stopped), and
//!    only then receives again; a 0-byte receive is EOF, forwarded as a
//!    graceful WskDisconnect of the other side, whose direction goes on;
//! 3. teardown: when both directions ended, close both sockets; on a
//!    reset, error or timeout, abort: cancel a pending connect, disconnect
//!    both sides abortively (the peers get a RST), cancel what is still
//!    pending, wait for every IRP (at most [`TEARDOWN_GRACE_MS`], then
//!    close anyway: WskCloseSocket completes what is left), close both.
//!
//! A call that returns without completing its IRP (Wine's stubs return
//! STATUS_NOT_IMPLEMENTED that way) is taken as completed with that status.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::net::SocketAddr;
use core::sync::atomic::{AtomicBool, Ordering};

use gate_ksys::*;

use super::{proxy, Relay};
use crate::addr::SockAddrStorage;
use crate::kernel::irp::OwnedIrp;
use crate::pool::{PoolBox, PoolVec};
use crate::state::Accepted;

/// How long a pair being torn down waits for its cancelled IRPs before
/// closing its sockets anyway (ms).
pub const TEARDOWN_GRACE_MS: u32 = 2_000;

/// Slot of the client -> backend direction.
pub const C2B: usize = 0;
/// Slot of the backend -> client direction.
pub const B2C: usize = 1;
/// Slot of control calls (socket, bind, connect, disconnects, closes).
pub const CTL: usize = 2;

/// Why a relay ended (`RelayCauseMap`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Both directions ended with EOF (graceful).
    BothEnded = 0,
    /// The client reset the connection, or an I/O on it failed.
    ClientError = 1,
    /// The backend reset the connection, or an I/O on it failed.
    BackendError = 2,
    /// No byte moved either way for `IdleTimeoutMs`.
    IdleTimeout = 3,
    /// The backend did not answer within `ConnectTimeoutMs`.
    ConnectTimeout = 4,
    /// The backend refused the connection.
    BackendRefused = 5,
    /// Creating, binding or connecting the backend socket failed otherwise.
    ConnectFailed = 6,
    /// The driver is unloading.
    Unload = 7,
    /// `MaxConnections` relays were running.
    MaxConnections = 8,
    /// No memory for the relay.
    NoMemory = 9,
}

impl Cause {
    /// Every cause, in value order.
    pub const ALL: [Cause; 10] = [
        Cause::BothEnded,
        Cause::ClientError,
        Cause::BackendError,
        Cause::IdleTimeout,
        Cause::ConnectTimeout,
        Cause::BackendRefused,
        Cause::ConnectFailed,
        Cause::Unload,
        Cause::MaxConnections,
        Cause::NoMemory,
    ];

    /// Name in the value map.
    pub const fn name(self) -> &'static str {
        match self {
            Cause::BothEnded => "both_ended",
            Cause::ClientError => "client_error",
            Cause::BackendError => "backend_error",
            Cause::IdleTimeout => "idle_timeout",
            Cause::ConnectTimeout => "connect_timeout",
            Cause::BackendRefused => "backend_refused",
            Cause::ConnectFailed => "connect_failed",
            Cause::Unload => "unload",
            Cause::MaxConnections => "max_connections",
            Cause::NoMemory => "no_memory",
        }
    }
}

/// Which side ended first (`RelaySideMap`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Neither (an abort before any EOF).
    None = 0,
    /// The client sent EOF first.
    Client = 1,
    /// The backend sent EOF first.
    Backend = 2,
}

impl Side {
    /// Every side, in value order.
    pub const ALL: [Side; 3] = [Side::None, Side::Client, Side::Backend];

    /// Name in the value map.
    pub const fn name(self) -> &'static str {
        match self {
            Side::None => "none",
            Side::Client => "client",
            Side::Backend => "backend",
        }
    }
}

/// `v` in its own pool block, or `None` when the pool is exhausted
/// (`Box::new` would bug check instead). Through [`PoolBox`], so the
/// simulation's failure injection and leak accounting see it.
pub(crate) fn try_box<T>(v: T) -> Option<PoolBox<T>> {
    PoolBox::try_new(v).ok()
}

/// The ready-queue link, guarded by [`Relay::ready`]'s lock.
pub(crate) struct Link {
    pub next: *mut Pair,
    pub queued: bool,
    /// Completed slots (bit i = slot i) and [`super::NEW`].
    pub bits: u8,
}

/// The timeout-list link (worker only).
pub(crate) struct TimerLink {
    pub prev: *mut Pair,
    pub next: *mut Pair,
    /// 0: in no list, else [`super::worker`]'s list number + 1.
    pub list: u8,
    /// Interrupt time at which the list's timeout fires.
    pub deadline: u64,
}

/// One IRP of a pair, with what its completion routine needs.
pub(crate) struct Slot {
    irp: OwnedIrp,
    relay: *const Relay,
    pair: *const Pair,
    index: u8,
    /// Set by the completion routine (tells a stub's return apart).
    fired: AtomicBool,
}

/// The completion routine of every relay IRP. Like every completion
/// routine of the driver it holds a reference on the driver's
/// [`crate::state::Rundown`] (taken in [`Pair::issue`]) and releases it as its very last
/// action, so DriverUnload waits for it (WskCloseSocket completes every
/// IRP still pending on a socket, so on Windows each one comes back).
unsafe extern "system" fn slot_done(_dev: PVOID, _irp: *mut IRP, context: PVOID) -> NTSTATUS {
    // SAFETY: the context is the Slot that issued this IRP; its pair stays
    // allocated until the worker processed this completion (it frees a
    // pair only with every slot idle, i.e. every completion taken from the
    // ready queue under its lock).
    let s = unsafe { &*context.cast::<Slot>() };
    let relay = s.relay;
    // SAFETY: the relay outlives its pairs; the rundown pointer is read
    // now, before `signal` lets the worker free the pair (and, at stop,
    // the relay).
    let rundown = unsafe { (*relay).rundown };
    s.fired.store(true, Ordering::Release);
    // SAFETY: the relay outlives its pairs.
    unsafe { (*relay).signal(s.pair, 1u8 << s.index) };
    // SAFETY: the Driver (and its rundown) stays allocated while this IRP's
    // reference is held; releasing it is the routine's last action.
    unsafe { (*rundown).release() };
    STATUS_MORE_PROCESSING_REQUIRED
}

/// What a slot's IRP is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Idle,
    Socket,
    Bind,
    Connect,
    Recv,
    Send,
    Shut,
    Abort,
    Close,
    /// On the CTL slot once connected: the PROXY header and the client's
    /// early bytes, sent while the client's early receive is still out on
    /// the C2B slot (so nothing is cancelled; see State::lead).
    Lead,
}

/// Where one direction stands (what its slot does next when idle).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    /// Receive from the source.
    Recv,
    /// Send `buf[off..len]` to the destination.
    Send { off: usize, len: usize },
    /// EOF seen: disconnect the destination gracefully.
    Shut,
    /// The graceful disconnect is in flight.
    ShutWait,
    /// Ended (EOF forwarded).
    Done,
}

/// Room kept before the client's early bytes (received while the backend
/// connect is pending) for the PROXY header: at least the longest v1 and
/// v2 headers.
pub const HEADER_ROOM: usize = 128;
const _: () = assert!(HEADER_ROOM >= proxy::V1_MAX && HEADER_ROOM >= proxy::V2_MAX);

/// The worker-only state of a pair.
pub(crate) struct State {
    pub client: *mut WSK_SOCKET,
    pub backend: *mut WSK_SOCKET,
    pub remote: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    pub ops: [Op; 3],
    /// A result recorded for a call that returned without completing its IRP.
    pub synthetic: [Option<NTSTATUS>; 3],
    pub dirs: [Dir; 2],
    pub bound: bool,
    pub connect_issued: bool,
    pub connected: bool,
    /// PROXY header bytes still to send (not counted as relayed bytes).
    pub header_left: usize,
    /// The client is watched while the backend connect is pending: a
    /// receive is kept posted on the client (the C2B slot), so a client
    /// reset ends the pair at once (ClientError), not at the connect
    /// timeout blamed on the backend. Its bytes gather in the C2B buffer
    /// at `recv_base..early_end` (until the buffer is full: then the
    /// client waits, as TCP flow control makes it), its EOF in `early_eof`.
    pub early_posted: bool,
    /// Where the client's early bytes start in the C2B buffer:
    /// [`HEADER_ROOM`] when a PROXY header goes first (it is written just
    /// before them), else 0.
    pub recv_base: usize,
    /// End of the client's early bytes in the C2B buffer.
    pub early_end: usize,
    /// The client's EOF came while connecting.
    pub early_eof: bool,
    /// Where the client's pending receive lands in the C2B buffer (its
    /// early receive: `early_end`; later ones: 0).
    pub recv_at: usize,
    /// `buf[off..len]` of the C2B buffer (the PROXY header and the early
    /// bytes) still to send on the CTL slot: set at connect when the
    /// client's early receive is still out; the C2B direction waits for it.
    pub lead: Option<(usize, usize)>,
    pub bytes: [u64; 2],
    pub first_end: Side,
    /// Both directions ended: graceful close.
    pub closing: bool,
    /// Why and with what status the pair is aborted.
    pub abort: Option<(Cause, NTSTATUS)>,
    pub disc_sent: [bool; 2],
    pub cancelled: [bool; 3],
    pub closed: [bool; 2],
    /// The teardown grace ran out: close even with IRPs pending.
    pub forced: bool,
    pub finished: bool,
    /// Given up on after two teardown graces (see the worker).
    pub abandoned: bool,
    pub started: u64,
    pub connected_at: u64,
    /// Storage WSK reads during the calls (stable: inside the pair).
    pub wildcard: SockAddrStorage,
    pub backend_sa: SockAddrStorage,
    /// Per slot (C2B, B2C, CTL: the lead send).
    pub wsk_buf: [WSK_BUF; 3],
}

/// One relayed connection. Lives in one pool allocation from [`Pair::new`]
/// until the worker frees it (every IRP idle, sockets closed).
pub struct Pair {
    pub(crate) link: UnsafeCell<Link>,
    pub(crate) tlink: UnsafeCell<TimerLink>,
    pub(crate) slots: [Slot; 3],
    pub(crate) st: UnsafeCell<State>,
    bufs: [PoolVec<u8>; 2],
    mdls: [PMDL; 2],
}

impl Drop for Pair {
    fn drop(&mut self) {
        for m in self.mdls {
            if !m.is_null() {
                // SAFETY: built by IoAllocateMdl in `new`; no IRP uses it
                // (the pair is dropped only with every slot idle).
                unsafe { IoFreeMdl(m) };
            }
        }
    }
}

fn buffer(n: usize) -> Option<PoolVec<u8>> {
    PoolVec::filled(n, 0).ok()
}

fn mdl_for(buf: &mut [u8]) -> PMDL {
    let Ok(len) = u32::try_from(buf.len()) else {
        return core::ptr::null_mut();
    };
    // SAFETY: a non-paged pool buffer (the driver's pool allocator) that
    // outlives the MDL (the pair frees the MDL first, in Drop).
    let m = unsafe {
        IoAllocateMdl(
            buf.as_mut_ptr().cast(),
            len,
            FALSE,
            FALSE,
            core::ptr::null_mut(),
        )
    };
    if !m.is_null() {
        // SAFETY: a fresh MDL describing non-paged pool.
        unsafe { MmBuildMdlForNonPagedPool(m) };
    }
    m
}

fn slot(relay: &Relay, index: u8) -> Option<Slot> {
    Some(Slot {
        irp: OwnedIrp::new()?,
        relay,
        pair: core::ptr::null(),
        index,
        fired: AtomicBool::new(false),
    })
}

impl Pair {
    /// Allocates a pair for an accepted connection (PASSIVE_LEVEL); `None`
    /// when any part cannot be allocated (nothing is kept then).
    pub(crate) fn new(relay: &Relay, acc: Accepted) -> Option<PoolBox<Pair>> {
        let n = usize::try_from(relay.cfg.buffer_bytes).ok()?;
        let mut bufs = [buffer(n)?, buffer(n)?];
        let slots = [slot(relay, 0)?, slot(relay, 1)?, slot(relay, 2)?];
        let [b0, b1] = &mut bufs;
        let mdls = [mdl_for(b0), mdl_for(b1)];
        let wildcard = match relay.backend {
            SocketAddr::V4(_) => SocketAddr::from(([0u8; 4], 0)),
            SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
        };
        let empty = WSK_BUF {
            Mdl: core::ptr::null_mut(),
            Offset: 0,
            Length: 0,
        };
        let p = Pair {
            link: UnsafeCell::new(Link {
                next: core::ptr::null_mut(),
                queued: false,
                bits: 0,
            }),
            tlink: UnsafeCell::new(TimerLink {
                prev: core::ptr::null_mut(),
                next: core::ptr::null_mut(),
                list: 0,
                deadline: 0,
            }),
            slots,
            st: UnsafeCell::new(State {
                client: acc.socket,
                backend: core::ptr::null_mut(),
                remote: acc.remote,
                local: acc.local,
                ops: [Op::Idle; 3],
                synthetic: [None; 3],
                dirs: [Dir::Recv; 2],
                bound: false,
                connect_issued: false,
                connected: false,
                header_left: 0,
                early_posted: false,
                recv_base: 0,
                early_end: 0,
                early_eof: false,
                recv_at: 0,
                lead: None,
                bytes: [0; 2],
                first_end: Side::None,
                closing: false,
                abort: None,
                disc_sent: [false; 2],
                cancelled: [false; 3],
                closed: [false; 2],
                forced: false,
                finished: false,
                abandoned: false,
                started: crate::kernel::clock::now(),
                connected_at: 0,
                wildcard: SockAddrStorage::new(wildcard),
                backend_sa: SockAddrStorage::new(relay.backend),
                wsk_buf: [
                    WSK_BUF { ..empty },
                    WSK_BUF { ..empty },
                    WSK_BUF { ..empty },
                ],
            }),
            bufs,
            mdls,
        };
        if p.mdls.iter().any(|m| m.is_null()) {
            return None;
        }
        let mut b = try_box(p)?;
        let pp: *const Pair = &*b;
        for s in b.slots.iter_mut() {
            s.pair = pp;
        }
        Some(b)
    }

    /// The buffer of direction `d` (pointer and length).
    pub(crate) fn buf(&self, d: usize) -> (*mut u8, usize) {
        match self.bufs.get(d) {
            Some(b) => (b.as_ptr().cast_mut(), b.len()),
            None => (core::ptr::null_mut(), 0),
        }
    }

    /// The MDL of direction `d`'s buffer.
    pub(crate) fn mdl(&self, d: usize) -> PMDL {
        self.mdls.get(d).copied().unwrap_or(core::ptr::null_mut())
    }

    /// The IRP of slot `i`.
    pub(crate) fn irp(&self, i: usize) -> *mut IRP {
        self.slots
            .get(i)
            .map_or(core::ptr::null_mut(), |s| s.irp.as_ptr())
    }

    /// The final status and information of slot `i`'s last request.
    ///
    /// # Safety
    /// That request completed.
    pub(crate) unsafe fn io_status(&self, i: usize) -> (NTSTATUS, usize) {
        match self.slots.get(i) {
            // SAFETY: per the caller.
            Some(s) => unsafe { s.irp.io_status() },
            None => (STATUS_UNSUCCESSFUL, 0),
        }
    }

    /// Writes the PROXY header into the client -> backend buffer; returns
    /// its length (0 without PROXY protocol).
    pub(crate) fn write_header(&self, v: Option<proxy::Version>, st: &State) -> usize {
        self.write_header_before(v, st, 0)
    }

    /// Writes the PROXY header so that it ends at `end` in the C2B buffer
    /// (`end` is 0: at the start; else [`HEADER_ROOM`], before the client's
    /// early bytes). Returns its length; 0 for none.
    pub(crate) fn write_header_before(
        &self,
        v: Option<proxy::Version>,
        st: &State,
        end: usize,
    ) -> usize {
        let Some(v) = v else { return 0 };
        let (p, n) = self.buf(C2B);
        if p.is_null() {
            return 0;
        }
        let room = if end == 0 { n } else { end.min(n) };
        // SAFETY: the buffer is ours. Only `..room` is written: a receive
        // that may still be in flight writes at `end..` only.
        let out = unsafe { core::slice::from_raw_parts_mut(p, room) };
        let h = proxy::encode(v, st.remote, st.local, out).unwrap_or(0);
        if end != 0 && h <= end {
            out.copy_within(..h, end.saturating_sub(h));
        }
        h
    }

    /// Makes one WSK call on slot `i` (worker only; the slot is idle).
    /// A call that returns without completing its IRP (a Wine stub) is
    /// recorded as completed with the returned status.
    pub(crate) fn issue(
        &self,
        relay: &Relay,
        st: &mut State,
        i: usize,
        op: Op,
        call: impl FnOnce(*mut IRP) -> NTSTATUS,
    ) {
        let Some(s) = self.slots.get(i) else { return };
        s.fired.store(false, Ordering::Release);
        let ctx = (s as *const Slot).cast_mut().cast::<c_void>();
        // SAFETY: the slot is idle (its op is Idle: its last completion was
        // processed), and the Slot lives as long as the pair.
        unsafe { s.irp.prepare(slot_done, ctx) };
        if let Some(o) = st.ops.get_mut(i) {
            *o = op;
        }
        // SAFETY: the Driver outlives the relay worker (DriverUnload joins
        // the listener worker, which joins this one, before it closes the
        // rundown). The completion routine releases this reference.
        unsafe { (*relay.rundown).acquire() };
        let returned = call(s.irp.as_ptr());
        if returned != STATUS_PENDING && !s.fired.load(Ordering::Acquire) {
            if let Some(x) = st.synthetic.get_mut(i) {
                *x = Some(returned);
            }
            relay.signal(self, 1u8 << s.index);
            // The routine never runs for a call that returned without
            // completing its IRP (a Wine stub): drop its reference here.
            // SAFETY: as above.
            unsafe { (*relay.rundown).release() };
        }
    }
}

/// The connection dispatch of a connection socket.
pub(crate) fn conn_dispatch(s: *mut WSK_SOCKET) -> *const WSK_PROVIDER_CONNECTION_DISPATCH {
    // SAFETY: a connection socket's Dispatch is the provider's connection dispatch.
    unsafe { (*s).Dispatch.cast() }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)]
mod tests {
    use super::*;

    /// The per-relay figure CONFIG.md's worst-case memory uses, exactly:
    /// a change of `Pair` breaks this test until CONFIG.md says the new
    /// size (docs audit s3: a `<= 1024` bound let the quoted 544 go stale
    /// at 616). The layout is target-dependent only through pointer width
    /// and alignment, so the exact figure is held on x86_64 (the driver's
    /// target, and the hosts it is tested on); other targets keep a bound.
    #[test]
    fn a_pair_is_small() {
        /// `size_of::<Pair>()` on x86_64 as gate-driver/CONFIG.md
        /// ("Worst-case memory") quotes it.
        const CONFIG_MD_PAIR_BYTES: usize = 616;
        let n = core::mem::size_of::<Pair>();
        std::eprintln!("size_of::<Pair>() = {n}");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                n, CONFIG_MD_PAIR_BYTES,
                "Pair is {n} bytes on x86_64: update gate-driver/CONFIG.md (\"Worst-case memory\", the pair row) and CONFIG_MD_PAIR_BYTES here"
            );
        }
        assert!(n <= 1024, "Pair is {n} bytes; update CONFIG.md");
        // The test reads the figure CONFIG.md quotes, so the two cannot
        // drift apart.
        let doc = include_str!("../../CONFIG.md");
        let row = doc
            .lines()
            .find(|l| l.starts_with("| the pair ("))
            .expect("CONFIG.md's worst-case memory table has the pair row");
        assert!(
            row.contains(&std::format!(
                "| {CONFIG_MD_PAIR_BYTES} (`size_of::<Pair>()` on x64"
            )),
            "CONFIG.md's pair row does not quote {CONFIG_MD_PAIR_BYTES}: {row}"
        );
    }
}
