//! What the provider remembers, and for how long: finished connection
//! requests and closed sockets stay inspectable for a bounded window
//! ([`HISTORY_LIMIT`] of each by default, `Sim::set_history_window`), then
//! are retired; socket objects and lent buffers are recycled; and the
//! indexes that keep every per-SYN and per-close path O(1) — listeners by
//! port, in-flight requests by listener — live here.
//!
//! A retired socket's `WSK_SOCKET` object is reused for a later socket, as
//! a kernel reuses freed memory: a stale pointer still points to a valid
//! object (of another socket), never to freed memory. Within the window a
//! call on a closed socket is still recorded as use after close.

use super::*;
use crate::FastSet as HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

/// Called with a request's key whenever it may have been resolved (see
/// [`set_resolve_hook`]).
pub type ResolveHook = fn((usize, u32));

static RESOLVE_HOOK: RwLock<Option<ResolveHook>> = RwLock::new(None);
static HOOK_ON: AtomicBool = AtomicBool::new(false);

/// Sets the hook told when a request may have been resolved (finished, or
/// accepted by WskInspectComplete): the NFQUEUE front releases held SYNs
/// with it instead of polling. Called under the provider's lock: the hook
/// must not call into the provider.
pub fn set_resolve_hook(hook: Option<ResolveHook>) {
    *RESOLVE_HOOK.write().unwrap_or_else(|e| e.into_inner()) = hook;
    HOOK_ON.store(hook.is_some(), Ordering::SeqCst);
}

/// Tells the hook (if any) that `rk` may have been resolved.
pub(crate) fn resolved(rk: (usize, u32)) {
    if HOOK_ON.load(Ordering::Relaxed) {
        if let Some(f) = *RESOLVE_HOOK.read().unwrap_or_else(|e| e.into_inner()) {
            f(rk);
        }
    }
}

/// Finished requests and closed sockets kept by default.
pub const HISTORY_LIMIT: usize = 4096;

/// Lent buffers that stay poisoned (unused) before they are reused.
const BUFFER_QUARANTINE: usize = 256;

/// A 128-byte buffer lent to a callback.
type LentBuf = [u64; 16];

pub(crate) struct History {
    /// Finished requests and closed sockets kept (each).
    pub limit: usize,
    finished: VecDeque<(usize, u32)>,
    closed: VecDeque<usize>,
    /// Socket objects of the sockets in the table, by address.
    objects: HashMap<usize, Box<SimSocket>>,
    /// Objects of retired sockets, reused by new sockets (boxed: their
    /// addresses are the WSK_SOCKET pointers and must not move).
    #[allow(clippy::vec_box)]
    free_objects: Vec<Box<SimSocket>>,
    /// Poisoned buffers, reused oldest first once enough are waiting.
    free_bufs: VecDeque<Box<LentBuf>>,
    /// Buffers lent out (owned here through their address).
    lent_bufs: usize,
    /// Bound listening sockets by port (Open, Dead, Closing or Closed
    /// until retired).
    pub listen_by_port: HashMap<u16, Vec<usize>>,
    /// Requests in flight (not finished) by listening socket.
    pub inflight: HashMap<usize, HashSet<(usize, u32)>>,
    pub requests_retired: u64,
    pub sockets_retired: u64,
    /// Requests in flight the tables are sized for (0: grown on demand),
    /// see [`presize`].
    inflight_hint: usize,
    /// Room reserved in the request table (see [`crate::churn::Room`]).
    pub requests_room: crate::churn::Room,
}

impl Default for History {
    fn default() -> Self {
        History {
            limit: HISTORY_LIMIT,
            finished: VecDeque::new(),
            closed: VecDeque::new(),
            objects: HashMap::default(),
            free_objects: Vec::new(),
            free_bufs: VecDeque::new(),
            lent_bufs: 0,
            listen_by_port: HashMap::default(),
            inflight: HashMap::default(),
            requests_retired: 0,
            sockets_retired: 0,
            inflight_hint: 0,
            requests_room: crate::churn::Room::default(),
        }
    }
}

/// Sizes the request table and the listeners' in-flight sets, once, for
/// up to `in_flight` requests in flight at once (plus the finished window),
/// so that a flood's churn never grows them ([`crate::churn`]: under a
/// flood the live count is constant while requests are inserted and
/// removed at the SYN rate; a table more than half full then doubles when
/// its tombstones run out). Sized at twice the live bound up front, the
/// footprint is set at warm-up, as the driver's fixed-size non-paged pool
/// tables are. (Without it, [`History::requests_room`] still keeps the
/// request table at most half full as it fills.)
pub(crate) fn presize(g: &mut Wsk, in_flight: usize) {
    if g.hist.inflight_hint >= in_flight {
        return;
    }
    g.hist.inflight_hint = in_flight;
    let room = crate::churn::room(in_flight.saturating_add(g.hist.limit));
    let len = g.requests.len();
    g.requests.reserve(room.saturating_sub(len));
    g.hist.requests_room.reserved(room);
    let room = crate::churn::room(in_flight);
    for set in g.hist.inflight.values_mut() {
        let len = set.len();
        set.reserve(room.saturating_sub(len));
    }
}

/// Sizes of the provider's tables, for bounded-memory checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableSizes {
    /// Sockets in the table (live, plus closed ones within the window).
    pub sockets: usize,
    /// Socket objects allocated (in the table or free for reuse).
    pub socket_objects: usize,
    /// Requests in the table (in flight, plus finished within the window).
    pub requests: usize,
    /// Requests in flight (Inspecting, Pended, or Accepted awaiting delivery).
    pub requests_in_flight: usize,
    /// Lent buffers allocated (lent out or waiting poisoned).
    pub buffers: usize,
    /// Provider log lines kept.
    pub log_lines: usize,
    pub requests_retired: u64,
    pub sockets_retired: u64,
}

pub(crate) fn table_sizes() -> TableSizes {
    let g = wsk();
    TableSizes {
        sockets: g.sockets.len(),
        socket_objects: g.hist.objects.len() + g.hist.free_objects.len(),
        requests: g.requests.len(),
        requests_in_flight: g.hist.inflight.values().map(HashSet::len).sum(),
        buffers: g.hist.lent_bufs + g.hist.free_bufs.len(),
        log_lines: g.log.len(),
        requests_retired: g.hist.requests_retired,
        sockets_retired: g.hist.sockets_retired,
    }
}

/// A socket object whose `Dispatch` is `dispatch` (reused when one is
/// free); returns its address.
pub(crate) fn socket_object(g: &mut Wsk, dispatch: *const c_void) -> usize {
    let mut b = g.hist.free_objects.pop().unwrap_or_else(|| {
        Box::new(SimSocket {
            wsk: WSK_SOCKET {
                Dispatch: std::ptr::null(),
            },
            magic: SOCKET_MAGIC,
        })
    });
    b.wsk.Dispatch = dispatch;
    b.magic = SOCKET_MAGIC;
    let p = (&mut *b as *mut SimSocket) as usize;
    g.hist.objects.insert(p, b);
    p
}

/// A 128-byte buffer to lend to a callback; give it back with
/// [`release_buf`].
pub(crate) fn lend_buf(g: &mut Wsk) -> *mut u8 {
    let b = if g.hist.free_bufs.len() > BUFFER_QUARANTINE {
        g.hist.free_bufs.pop_front()
    } else {
        None
    }
    .unwrap_or_else(|| Box::new([0u64; 16]));
    g.hist.lent_bufs += 1;
    Box::into_raw(b).cast::<u8>()
}

/// Poisons a buffer from [`lend_buf`] and queues it for reuse.
///
/// # Safety
/// `p` came from [`lend_buf`] and is released once.
pub(crate) unsafe fn release_buf(g: &mut Wsk, p: *mut u8) {
    if p.is_null() {
        return;
    }
    // SAFETY: per the contract, a 128-byte buffer from Box::into_raw.
    let b = unsafe {
        poison(p);
        Box::from_raw(p.cast::<LentBuf>())
    };
    g.hist.lent_bufs = g.hist.lent_bufs.saturating_sub(1);
    g.hist.free_bufs.push_back(b);
}

/// Notes a listening socket bound to `port`.
pub(crate) fn listener_bound(g: &mut Wsk, sock: usize, port: u16) {
    g.hist.listen_by_port.entry(port).or_default().push(sock);
}

/// Notes a request in flight on `listener`.
pub(crate) fn request_started(g: &mut Wsk, rk: (usize, u32), listener: usize) {
    if listener != 0 {
        let room = crate::churn::room(g.hist.inflight_hint);
        g.hist
            .inflight
            .entry(listener)
            .or_insert_with(|| HashSet::with_capacity_and_hasher(room, Default::default()))
            .insert(rk);
    }
}

/// Whether a request is finished: nothing more can happen to it. An
/// aborted pended request is not finished until the driver's (late)
/// WskInspectComplete came, which the contract allows.
fn is_finished(r: &Req) -> bool {
    match r.state {
        RequestState::Inspecting | RequestState::Pended | RequestState::Accepted => false,
        RequestState::Aborted => !(r.verdict == Some(Verdict::Pend) && r.completion.is_none()),
        _ => true,
    }
}

/// Call after any change of a request's state: a finished request leaves
/// its listener's in-flight set and enters the history window (retiring
/// the oldest beyond it).
pub(crate) fn settle(g: &mut Wsk, rk: (usize, u32)) {
    let Some(r) = g.requests.get_mut(&rk) else {
        return;
    };
    if r.settled || !is_finished(r) {
        return;
    }
    r.settled = true;
    let listener = r.listener;
    resolved(rk);
    if let Some(set) = g.hist.inflight.get_mut(&listener) {
        set.remove(&rk);
    }
    g.hist.finished.push_back(rk);
    while g.hist.finished.len() > g.hist.limit {
        let Some(old) = g.hist.finished.pop_front() else {
            break;
        };
        if let Some(r) = g.requests.remove(&old) {
            // SAFETY: the request's id buffer, released once (here).
            unsafe { release_buf(g, r.id_buf as *mut u8) };
            g.hist.requests_retired += 1;
        }
    }
}

/// Requests in flight on `listener` (a copy, to change their states).
pub(crate) fn inflight_of(g: &Wsk, listener: usize) -> Vec<(usize, u32)> {
    g.hist
        .inflight
        .get(&listener)
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default()
}

/// Call when a socket reached [`SocketState::Closed`]: it enters the
/// history window (retiring the oldest closed socket beyond it).
pub(crate) fn socket_closed(g: &mut Wsk, sock: usize) {
    g.hist.closed.push_back(sock);
    while g.hist.closed.len() > g.hist.limit {
        let Some(old) = g.hist.closed.pop_front() else {
            break;
        };
        retire_socket(g, old);
    }
}

fn retire_socket(g: &mut Wsk, sock: usize) {
    let Some(s) = g.sockets.remove(&sock) else {
        return;
    };
    if let Some(port) = s.bound.filter(|_| s.kind == Kind::Listen).map(|b| b.port()) {
        if let Some(v) = g.hist.listen_by_port.get_mut(&port) {
            v.retain(|k| *k != sock);
            if v.is_empty() {
                g.hist.listen_by_port.remove(&port);
            }
        }
    }
    g.hist.inflight.remove(&sock);
    if let Some(b) = g.hist.objects.remove(&sock) {
        g.hist.free_objects.push(b);
    }
    g.hist.sockets_retired += 1;
}

/// Frees every lent buffer still recorded by requests (at reset).
pub(crate) fn release_all(g: &mut Wsk) {
    let bufs: Vec<usize> = g.requests.values().map(|r| r.id_buf).collect();
    for b in bufs {
        // SAFETY: each request's id buffer is released once (the table is
        // dropped right after).
        unsafe { release_buf(g, b as *mut u8) };
    }
}
