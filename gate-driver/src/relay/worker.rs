//! The relay worker thread: takes pairs from the ready queue, applies the
//! completions they carry, issues each pair's next WSK calls, fires
//! timeouts, and on stop tears every pair down before it ends.
//!
//! A pair whose IRPs do not come back within two teardown graces after its
//! sockets were closed is *abandoned* (reported, no longer active; a
//! running-time state only): it stays allocated and is freed when its last
//! IRP returns. At stop the worker ends only once every pair is freed,
//! abandoned ones included, so every relay IRP has come back before
//! DriverUnload returns (each holds a rundown reference as well). On
//! Windows WskCloseSocket completes every pending IRP, so this is bounded;
//! a provider that holds a receive forever (Wine was seen to) makes unload
//! wait for it.
//!
//! Timeouts cost O(1) per event, never a scan: each pair is in at most one
//! of three FIFO lists whose entries share one timeout, so each list is
//! ordered by deadline and only its head is looked at — connecting pairs
//! (`ConnectTimeoutMs` from the start), relaying pairs (`IdleTimeoutMs`
//! from the last byte moved; a pair moves to the tail on activity) and
//! pairs being torn down ([`TEARDOWN_GRACE_MS`]). Only stop walks the
//! lists, once, on this thread (no lock held).

use core::ffi::c_void;
use core::sync::atomic::Ordering;

use gate_ksys::*;

use super::pair::{
    conn_dispatch, Cause, Dir, Op, Pair, Side, State, B2C, C2B, CTL, HEADER_ROOM, TEARDOWN_GRACE_MS,
};
use super::{bump, Relay, NEW};
use crate::kernel::clock;
use crate::telemetry;

const CONNECT: usize = 0;
const IDLE: usize = 1;
const TEARDOWN: usize = 2;
const TICKS_PER_MS: u64 = 10_000;
/// Longest sleep between looks at the clock (ms).
const MAX_SLEEP_MS: u64 = 1_000;

#[derive(Clone, Copy)]
struct List {
    head: *mut Pair,
    tail: *mut Pair,
}

const EMPTY: List = List {
    head: core::ptr::null_mut(),
    tail: core::ptr::null_mut(),
};

struct Worker {
    lists: [List; 3],
    stop_seen: bool,
    /// The wait for abandoned pairs' IRPs at stop was reported.
    waiting_reported: bool,
}

/// The thread's body (PsCreateSystemThread start routine).
///
/// # Safety
/// `context` is the Relay, alive until the thread ends ([`super::Running::stop`] joins it).
pub unsafe extern "system" fn worker_main(context: *mut c_void) {
    // SAFETY: per the contract above.
    let r = unsafe { &*context.cast::<Relay>() };
    let mut w = Worker {
        lists: [EMPTY; 3],
        stop_seen: false,
        waiting_reported: false,
    };
    w.run(r);
    // SAFETY: ends this system thread; nothing of ours runs after it.
    unsafe { PsTerminateSystemThread(STATUS_SUCCESS) };
}

/// The socket on the source side of direction `d`, and on its destination.
fn ends(st: &State, d: usize) -> (*mut WSK_SOCKET, *mut WSK_SOCKET) {
    if d == C2B {
        (st.client, st.backend)
    } else {
        (st.backend, st.client)
    }
}

fn error_cause(side_is_client: bool) -> Cause {
    if side_is_client {
        Cause::ClientError
    } else {
        Cause::BackendError
    }
}

/// The client-to-backend direction's first step once connected: the
/// PROXY header (`h` bytes, ending at `recv_base`; at 0 when no early
/// receive was posted) and the client's early bytes in one send, then
/// receives as usual; an early EOF is passed on after them (the receive
/// after the send sees it again).
fn early_dir(st: &State, h: usize) -> Dir {
    let off = st.recv_base.saturating_sub(h);
    let len = st.early_end.max(off.saturating_add(h));
    if len > off {
        Dir::Send { off, len }
    } else if st.early_eof {
        Dir::Shut
    } else {
        Dir::Recv
    }
}

fn ms_between(from: u64, to: u64) -> u32 {
    u32::try_from(to.saturating_sub(from) / TICKS_PER_MS).unwrap_or(u32::MAX)
}

/// A connect to the backend failed: the first failure after a success (or
/// since the start) writes RelayBackendDown; later ones only count, until
/// [`Worker::connected`] writes RelayBackendUp. Causes that say nothing about
/// the backend (unload, limits, memory) leave the state alone.
fn backend_failed(r: &Relay, now: u64, status: i32, cause: Cause) {
    if !matches!(
        cause,
        Cause::BackendRefused | Cause::ConnectTimeout | Cause::ConnectFailed
    ) {
        return;
    }
    if r.backend_down_since.load(Ordering::Relaxed) != 0 {
        return;
    }
    r.backend_down_since.store(now.max(1), Ordering::Relaxed);
    // This failure is already counted; FailedConnects counts it too.
    let failed = r.stats.failed.load(Ordering::Relaxed);
    r.failed_at_down
        .store(failed.saturating_sub(1), Ordering::Relaxed);
    telemetry::relay_backend_down(r.backend, status, cause);
}

impl Worker {
    fn run(&mut self, r: &Relay) {
        loop {
            while let Some((p, bits)) = r.pop() {
                self.process(r, p, bits);
            }
            let now = clock::now();
            self.expire(r, now);
            if r.stopping.load(Ordering::Acquire) && !self.stop_seen {
                self.stop_seen = true;
                self.abort_all(r);
            }
            if self.stop_seen && r.stats.active.load(Ordering::Acquire) == 0 {
                let (abandoned, freed) = r.stats.snapshot_abandoned();
                if abandoned == freed {
                    // Every pair freed, abandoned ones too (so every relay
                    // IRP came back); take the queue lock once so any
                    // completion routine that signalled has left it.
                    drop(r.ready.lock());
                    return;
                }
                if !self.waiting_reported {
                    self.waiting_reported = true;
                    crate::dbg_print!(
                        DPFLTR_ERROR_LEVEL,
                        "gate: relay stopping: waiting for the IRPs of {} abandoned relay(s)",
                        abandoned.saturating_sub(freed)
                    );
                }
            }
            if !r.may_sleep() {
                continue;
            }
            let now = clock::now();
            let sleep = self
                .next_deadline()
                .map_or(MAX_SLEEP_MS, |d| {
                    d.saturating_sub(now).div_ceil(TICKS_PER_MS)
                })
                .clamp(1, MAX_SLEEP_MS);
            r.wake.wait(Some(u32::try_from(sleep).unwrap_or(1)));
        }
    }

    // ---- timeout lists ----

    fn unlink(&mut self, p: *mut Pair) {
        // SAFETY: a live pair; timer links are touched only by this thread.
        let t = unsafe { &mut *(*p).tlink.get() };
        let Some(l) = usize::from(t.list).checked_sub(1) else {
            return;
        };
        let Some(list) = self.lists.get_mut(l) else {
            return;
        };
        if t.prev.is_null() {
            list.head = t.next;
        } else {
            // SAFETY: linked pairs are live.
            unsafe { (*(*t.prev).tlink.get()).next = t.next };
        }
        if t.next.is_null() {
            list.tail = t.prev;
        } else {
            // SAFETY: linked pairs are live.
            unsafe { (*(*t.next).tlink.get()).prev = t.prev };
        }
        t.prev = core::ptr::null_mut();
        t.next = core::ptr::null_mut();
        t.list = 0;
    }

    /// Moves `p` to the tail of list `l` with `deadline`.
    fn push(&mut self, p: *mut Pair, l: usize, deadline: u64) {
        self.unlink(p);
        let Some(list) = self.lists.get_mut(l) else {
            return;
        };
        // SAFETY: a live pair; timer links are touched only by this thread.
        let t = unsafe { &mut *(*p).tlink.get() };
        t.deadline = deadline;
        t.list = u8::try_from(l.saturating_add(1)).unwrap_or(0);
        t.prev = list.tail;
        t.next = core::ptr::null_mut();
        if list.tail.is_null() {
            list.head = p;
        } else {
            // SAFETY: the tail is a live pair.
            unsafe { (*(*list.tail).tlink.get()).next = p };
        }
        list.tail = p;
    }

    fn next_deadline(&self) -> Option<u64> {
        self.lists
            .iter()
            .filter(|l| !l.head.is_null())
            // SAFETY: list heads are live pairs.
            .map(|l| unsafe { (*(*l.head).tlink.get()).deadline })
            .min()
    }

    fn expire(&mut self, r: &Relay, now: u64) {
        for l in [CONNECT, IDLE, TEARDOWN] {
            loop {
                let head = self.lists.get(l).map_or(core::ptr::null_mut(), |x| x.head);
                if head.is_null() {
                    break;
                }
                // SAFETY: list heads are live pairs.
                if unsafe { (*(*head).tlink.get()).deadline } > now {
                    break;
                }
                self.unlink(head);
                // SAFETY: a live pair, its state touched only by this thread.
                let st = unsafe { &mut *(*head).st.get() };
                match l {
                    CONNECT => self.abort(r, head, st, Cause::ConnectTimeout, STATUS_IO_TIMEOUT),
                    IDLE => self.abort(r, head, st, Cause::IdleTimeout, STATUS_IO_TIMEOUT),
                    _ if !st.forced => {
                        // Close even with IRPs pending (WSK completes them),
                        // and give that one more grace.
                        st.forced = true;
                        let grace = u64::from(TEARDOWN_GRACE_MS).saturating_mul(TICKS_PER_MS);
                        self.push(head, TEARDOWN, now.saturating_add(grace));
                    }
                    _ => {
                        // Still not every IRP back after closing: stop
                        // waiting (bounded teardown). The pair stays
                        // allocated until its last completion arrives.
                        self.abandon(r, st);
                        continue;
                    }
                }
                self.step(r, head);
            }
        }
    }

    fn abort_all(&mut self, r: &Relay) {
        for l in [CONNECT, IDLE] {
            loop {
                let head = self.lists.get(l).map_or(core::ptr::null_mut(), |x| x.head);
                if head.is_null() {
                    break;
                }
                // SAFETY: a live pair, its state touched only by this thread.
                let st = unsafe { &mut *(*head).st.get() };
                self.unlink(head);
                self.abort(r, head, st, Cause::Unload, STATUS_SUCCESS);
                self.step(r, head);
            }
        }
    }

    // ---- one pair ----

    /// Records the first abort cause and starts the teardown clock.
    fn abort(&mut self, r: &Relay, p: *mut Pair, st: &mut State, cause: Cause, status: NTSTATUS) {
        if st.abort.is_some() || st.closing || st.finished {
            return;
        }
        st.abort = Some((cause, status));
        let grace = u64::from(TEARDOWN_GRACE_MS).saturating_mul(TICKS_PER_MS);
        self.push(p, TEARDOWN, clock::now().saturating_add(grace));
        let _ = r;
    }

    fn process(&mut self, r: &Relay, p: *mut Pair, bits: u8) {
        // SAFETY: a live pair popped from the queue; only this thread
        // touches its state.
        let pair = unsafe { &*p };
        // SAFETY: as above.
        let st = unsafe { &mut *pair.st.get() };
        if bits & NEW != 0 {
            let timeout = u64::from(r.cfg.connect_timeout_ms).saturating_mul(TICKS_PER_MS);
            self.push(p, CONNECT, st.started.saturating_add(timeout));
            if r.stopping.load(Ordering::Acquire) {
                self.abort(r, p, st, Cause::Unload, STATUS_SUCCESS);
            }
        }
        for i in [C2B, B2C, CTL] {
            if bits & (1u8 << i) == 0 {
                continue;
            }
            let op = st.ops.get(i).copied().unwrap_or(Op::Idle);
            if let Some(o) = st.ops.get_mut(i) {
                *o = Op::Idle;
            }
            let synthetic = st.synthetic.get_mut(i).and_then(Option::take);
            let (status, info) = match synthetic {
                Some(s) => (s, 0),
                // SAFETY: the slot's completion routine ran (its bit was set).
                None => unsafe { pair.io_status(i) },
            };
            self.handle(r, p, st, i, op, status, info);
        }
        self.step(r, p);
    }

    /// Issues what the pair needs next, and frees it once it is finished.
    fn step(&mut self, r: &Relay, p: *mut Pair) {
        // SAFETY: a live pair; only this thread touches its state.
        let pair = unsafe { &*p };
        // SAFETY: as above.
        let st = unsafe { &mut *pair.st.get() };
        self.drive(r, p, pair, st);
        if st.finished {
            self.finish(r, p);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn handle(
        &mut self,
        r: &Relay,
        p: *mut Pair,
        st: &mut State,
        i: usize,
        op: Op,
        status: NTSTATUS,
        info: usize,
    ) {
        let ok = NT_SUCCESS(status);
        match op {
            Op::Idle | Op::Abort => {}
            Op::Socket => {
                if ok && info != 0 {
                    st.backend = info as *mut WSK_SOCKET;
                } else {
                    let s = if ok { STATUS_UNSUCCESSFUL } else { status };
                    self.abort(r, p, st, Cause::ConnectFailed, s);
                }
            }
            Op::Bind => {
                if ok {
                    st.bound = true;
                } else {
                    self.abort(r, p, st, Cause::ConnectFailed, status);
                }
            }
            Op::Connect => {
                if ok && st.abort.is_none() {
                    self.connected(r, p, st);
                } else if !ok {
                    let cause = if status == STATUS_CONNECTION_REFUSED {
                        Cause::BackendRefused
                    } else {
                        Cause::ConnectFailed
                    };
                    self.abort(r, p, st, cause, status);
                } else {
                    // Connected after the abort began: close it with the rest.
                    st.connected = true;
                }
            }
            Op::Recv if i == C2B && !st.connected => {
                // The client's early receive (see State::early_posted).
                if !ok {
                    self.abort(r, p, st, Cause::ClientError, status);
                } else if info == 0 {
                    st.early_eof = true;
                    if st.first_end == Side::None {
                        st.first_end = Side::Client;
                    }
                } else {
                    st.early_end = st.early_end.saturating_add(info);
                }
            }
            Op::Recv => {
                let from_client = i == C2B;
                if !ok {
                    self.abort(r, p, st, error_cause(from_client), status);
                } else if info == 0 {
                    if st.first_end == Side::None {
                        st.first_end = if from_client {
                            Side::Client
                        } else {
                            Side::Backend
                        };
                    }
                    if let Some(d) = st.dirs.get_mut(i) {
                        *d = Dir::Shut;
                    }
                } else {
                    // The client's early receive, still out at connect,
                    // landed at `recv_at`; every other receive at 0.
                    let at = if from_client { st.recv_at } else { 0 };
                    if let Some(d) = st.dirs.get_mut(i) {
                        *d = Dir::Send {
                            off: at,
                            len: at.saturating_add(info),
                        };
                    }
                    self.activity(r, p, st);
                }
                if from_client {
                    st.recv_at = 0;
                }
            }
            Op::Lead => match st.lead {
                Some((off, len)) if ok && info > 0 => {
                    let hdr = info.min(st.header_left);
                    st.header_left = st.header_left.saturating_sub(hdr);
                    let data = u64::try_from(info.saturating_sub(hdr)).unwrap_or(0);
                    st.bytes[C2B] = st.bytes[C2B].saturating_add(data);
                    r.stats.bytes_to_backend.fetch_add(data, Ordering::Relaxed);
                    let off = off.saturating_add(info);
                    st.lead = (off < len).then_some((off, len));
                    self.activity(r, p, st);
                }
                _ => {
                    st.lead = None;
                    let s = if ok { STATUS_UNSUCCESSFUL } else { status };
                    self.abort(r, p, st, Cause::BackendError, s);
                }
            },
            Op::Send => {
                let to_client = i == B2C;
                let dir = st.dirs.get(i).copied();
                match dir {
                    Some(Dir::Send { off, len }) if ok && info > 0 => {
                        let hdr = info.min(st.header_left);
                        st.header_left = st.header_left.saturating_sub(hdr);
                        let data = u64::try_from(info.saturating_sub(hdr)).unwrap_or(0);
                        if let Some(b) = st.bytes.get_mut(i) {
                            *b = b.saturating_add(data);
                        }
                        let counter = if to_client {
                            &r.stats.bytes_to_client
                        } else {
                            &r.stats.bytes_to_backend
                        };
                        counter.fetch_add(data, Ordering::Relaxed);
                        let off = off.saturating_add(info);
                        if let Some(d) = st.dirs.get_mut(i) {
                            *d = if off >= len {
                                Dir::Recv
                            } else {
                                Dir::Send { off, len }
                            };
                        }
                        self.activity(r, p, st);
                    }
                    _ => {
                        // A failed send, or one that took nothing.
                        let s = if ok { STATUS_UNSUCCESSFUL } else { status };
                        self.abort(r, p, st, error_cause(to_client), s);
                    }
                }
            }
            Op::Shut => {
                if let Some(d) = st.dirs.get_mut(i) {
                    *d = Dir::Done;
                }
            }
            Op::Close => {
                // The backend is closed first, then the client.
                if st.backend.is_null() || st.closed[1] {
                    st.closed[0] = true;
                } else {
                    st.closed[1] = true;
                }
            }
        }
    }

    fn connected(&mut self, r: &Relay, p: *mut Pair, st: &mut State) {
        st.connected = true;
        st.connected_at = clock::now();
        bump(&r.stats.opened);
        // SAFETY: a live pair.
        let pair = unsafe { &*p };
        // The client's early bytes (received while connecting) are at
        // `recv_base..early_end`; a PROXY header goes just before them.
        let h = if st.early_posted {
            pair.write_header_before(r.proxy, st, st.recv_base)
        } else {
            pair.write_header(r.proxy, st)
        };
        st.header_left = h;
        let c2b = if st.ops[C2B] == Op::Recv {
            // The early receive is still out (the client is watched until
            // it sends): the header and the bytes so far go now on the CTL
            // slot (server-first protocols must not wait for the client;
            // nothing is cancelled), and the C2B direction waits for that
            // send before it sends what the receive brings.
            let off = st.recv_base.saturating_sub(h);
            let len = st.early_end.max(off.saturating_add(h));
            if len > off {
                st.lead = Some((off, len));
            }
            Dir::Recv
        } else {
            st.recv_at = 0;
            early_dir(st, h)
        };
        st.dirs = [c2b, Dir::Recv];
        telemetry::relay_opened(
            st.remote,
            r.backend,
            ms_between(st.started, st.connected_at),
        );
        let down_since = r.backend_down_since.swap(0, Ordering::Relaxed);
        if down_since != 0 {
            let failed = r.stats.failed.load(Ordering::Relaxed);
            telemetry::relay_backend_up(
                r.backend,
                st.connected_at.saturating_sub(down_since) / TICKS_PER_MS,
                failed.saturating_sub(r.failed_at_down.load(Ordering::Relaxed)),
            );
        }
        self.unlink(p);
        self.activity(r, p, st);
    }

    /// Bytes moved: the idle clock starts again.
    fn activity(&mut self, r: &Relay, p: *mut Pair, st: &State) {
        if r.cfg.idle_timeout_ms == 0 || st.abort.is_some() || st.closing {
            return;
        }
        let t = u64::from(r.cfg.idle_timeout_ms).saturating_mul(TICKS_PER_MS);
        self.push(p, IDLE, clock::now().saturating_add(t));
    }

    fn drive(&mut self, r: &Relay, p: *mut Pair, pair: &Pair, st: &mut State) {
        if st.finished {
            return;
        }
        if st.abort.is_some() || st.closing {
            self.teardown(r, pair, st);
            return;
        }
        if !st.connected {
            let (_, n) = pair.buf(C2B);
            if !st.early_posted {
                st.early_posted = true;
                st.recv_base = if r.proxy.is_some() { HEADER_ROOM } else { 0 };
                st.early_end = st.recv_base;
            }
            if st.ops[C2B] == Op::Idle && !st.early_eof && st.early_end < n {
                // Watch the client while connecting (see State::early_posted).
                let (client, at) = (st.client, st.early_end);
                st.recv_at = at;
                issue_io(r, pair, st, C2B, Op::Recv, client, at, n.saturating_sub(at));
            }
            if st.ops[CTL] != Op::Idle {
                return;
            }
            if st.backend.is_null() {
                issue_socket(r, pair, st);
            } else if !st.bound {
                issue_bind(r, pair, st);
            } else if !st.connect_issued {
                st.connect_issued = true;
                issue_connect(r, pair, st);
            }
            return;
        }
        if let Some((off, len)) = st.lead {
            if st.ops[CTL] == Op::Idle {
                issue_lead(r, pair, st, off, len.saturating_sub(off));
            }
        }
        for d in [C2B, B2C] {
            if st.ops.get(d) != Some(&Op::Idle) || (d == C2B && st.lead.is_some()) {
                continue;
            }
            let (src, dst) = ends(st, d);
            match st.dirs.get(d).copied().unwrap_or(Dir::Done) {
                Dir::Recv => {
                    let (_, n) = pair.buf(d);
                    if d == C2B {
                        st.recv_at = 0;
                    }
                    issue_io(r, pair, st, d, Op::Recv, src, 0, n);
                }
                Dir::Send { off, len } => {
                    issue_io(r, pair, st, d, Op::Send, dst, off, len.saturating_sub(off));
                }
                Dir::Shut => {
                    if let Some(x) = st.dirs.get_mut(d) {
                        *x = Dir::ShutWait;
                    }
                    issue_disconnect(r, pair, st, d, Op::Shut, dst, 0);
                }
                Dir::ShutWait | Dir::Done => {}
            }
        }
        if st.dirs.iter().all(|d| *d == Dir::Done)
            && st.ops.iter().all(|o| *o == Op::Idle)
            && st.lead.is_none()
        {
            st.closing = true;
            let grace = u64::from(TEARDOWN_GRACE_MS).saturating_mul(TICKS_PER_MS);
            self.push(p, TEARDOWN, clock::now().saturating_add(grace));
            self.teardown(r, pair, st);
        }
    }

    fn teardown(&mut self, r: &Relay, pair: &Pair, st: &mut State) {
        let abort = st.abort.is_some();
        if st.ops[CTL] != Op::Idle {
            let cancel = (abort && st.ops[CTL] == Op::Connect) || st.forced;
            if cancel && !st.cancelled[CTL] {
                st.cancelled[CTL] = true;
                // SAFETY: an IRP we issued and that has not completed.
                unsafe { IoCancelIrp(pair.irp(CTL)) };
            }
            return;
        }
        if abort {
            if !st.disc_sent[0] {
                st.disc_sent[0] = true;
                issue_disconnect(r, pair, st, CTL, Op::Abort, st.client, WSK_FLAG_ABORTIVE);
                return;
            }
            if st.connected && !st.backend.is_null() && !st.disc_sent[1] {
                st.disc_sent[1] = true;
                issue_disconnect(r, pair, st, CTL, Op::Abort, st.backend, WSK_FLAG_ABORTIVE);
                return;
            }
        }
        let mut busy = false;
        for d in [C2B, B2C] {
            if st.ops.get(d) != Some(&Op::Idle) {
                busy = true;
                if let Some(c @ false) = st.cancelled.get_mut(d) {
                    *c = true;
                    // SAFETY: an IRP we issued and that has not completed.
                    unsafe { IoCancelIrp(pair.irp(d)) };
                }
            }
        }
        if busy && !st.forced {
            return;
        }
        if !st.backend.is_null() && !st.closed[1] {
            issue_close(r, pair, st, st.backend);
            return;
        }
        if !st.closed[0] {
            issue_close(r, pair, st, st.client);
            return;
        }
        if st.ops.iter().all(|o| *o == Op::Idle) {
            st.finished = true;
        }
    }

    /// Gives up waiting for a pair whose IRPs did not come back within two
    /// teardown graces (a provider that neither cancels nor completes them
    /// on close: never Windows). It is reported and no longer counted as
    /// active; a late completion still frees it (see [`Worker::process`]).
    fn abandon(&mut self, r: &Relay, st: &mut State) {
        if st.abandoned {
            return;
        }
        st.abandoned = true;
        bump(&r.stats.abandoned);
        let pending = st.ops.iter().filter(|o| **o != Op::Idle).count();
        crate::dbg_print!(
            DPFLTR_ERROR_LEVEL,
            "gate: relay for {:?} abandoned with {} IRP(s) still pending after close",
            st.remote,
            pending
        );
        self.report(r, st);
        r.stats.active.fetch_sub(1, Ordering::AcqRel);
    }

    fn report(&mut self, r: &Relay, st: &State) {
        let now = clock::now();
        let (cause, status) = st.abort.unwrap_or((Cause::BothEnded, STATUS_SUCCESS));
        match cause {
            Cause::ConnectTimeout => bump(&r.stats.connect_timeouts),
            Cause::IdleTimeout => bump(&r.stats.idle_timeouts),
            Cause::BackendRefused => bump(&r.stats.backend_refused),
            Cause::ClientError | Cause::BackendError => bump(&r.stats.resets),
            _ => {}
        }
        if st.connected && st.connected_at != 0 {
            bump(&r.stats.closed);
            telemetry::relay_closed(
                st.remote,
                r.backend,
                st.bytes[C2B],
                st.bytes[B2C],
                ms_between(st.connected_at, now),
                st.first_end,
                cause,
            );
        } else {
            bump(&r.stats.failed);
            telemetry::relay_failed(st.remote, r.backend, status, cause);
            backend_failed(r, now, status, cause);
        }
    }

    fn finish(&mut self, r: &Relay, p: *mut Pair) {
        self.unlink(p);
        // SAFETY: a live pair; only this thread touches its state.
        let abandoned = unsafe { (*(*p).st.get()).abandoned };
        if !abandoned {
            // SAFETY: as above.
            let st = unsafe { &*(*p).st.get() };
            self.report(r, st);
        }
        // SAFETY: every slot is idle (no IRP outstanding, every completion
        // taken from the queue), both sockets are closed, and the pair is
        // in no list: nothing refers to it any more.
        drop(unsafe { crate::pool::PoolBox::from_raw(p) });
        if abandoned {
            r.stats.abandoned_freed.fetch_add(1, Ordering::AcqRel);
        } else {
            r.stats.active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

// ---- the WSK calls ----

fn issue_socket(r: &Relay, pair: &Pair, st: &mut State) {
    // SAFETY: the captured NPI's dispatch is valid until released (after
    // the worker is joined).
    let Some(f) = (unsafe { (*r.npi.Dispatch).WskSocket }) else {
        st.synthetic[CTL] = Some(STATUS_NOT_SUPPORTED);
        st.ops[CTL] = Op::Socket;
        r.signal(pair, 1 << CTL);
        return;
    };
    let family = if r.backend.is_ipv4() {
        AF_INET
    } else {
        AF_INET6
    };
    let client = r.npi.Client;
    pair.issue(r, st, CTL, Op::Socket, |irp| {
        // SAFETY: valid client and IRP; no context or dispatch (no events).
        unsafe {
            f(
                client,
                family,
                SOCK_STREAM,
                IPPROTO_TCP,
                WSK_FLAG_CONNECTION_SOCKET,
                core::ptr::null_mut(),
                core::ptr::null(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                irp,
            )
        }
    });
}

fn not_supported(r: &Relay, pair: &Pair, st: &mut State, i: usize, op: Op) {
    if let (Some(s), Some(o)) = (st.synthetic.get_mut(i), st.ops.get_mut(i)) {
        *s = Some(STATUS_NOT_SUPPORTED);
        *o = op;
    }
    r.signal(pair, 1 << i);
}

fn issue_bind(r: &Relay, pair: &Pair, st: &mut State) {
    let s = st.backend;
    // SAFETY: a live connection socket of ours.
    let Some(f) = (unsafe { (*conn_dispatch(s)).WskBind }) else {
        return not_supported(r, pair, st, CTL, Op::Bind);
    };
    let sa = st.wildcard.as_ptr();
    pair.issue(r, st, CTL, Op::Bind, |irp| {
        // SAFETY: live socket; the address lives in the pair until completion.
        unsafe { f(s, sa, 0, irp) }
    });
}

fn issue_connect(r: &Relay, pair: &Pair, st: &mut State) {
    let s = st.backend;
    // SAFETY: a live connection socket of ours.
    let Some(f) = (unsafe { (*conn_dispatch(s)).WskConnect }) else {
        return not_supported(r, pair, st, CTL, Op::Connect);
    };
    let sa = st.backend_sa.as_ptr();
    pair.issue(r, st, CTL, Op::Connect, |irp| {
        // SAFETY: live, bound socket; the address lives in the pair.
        unsafe { f(s, sa, 0, irp) }
    });
}

#[allow(clippy::too_many_arguments)]
fn issue_io(
    r: &Relay,
    pair: &Pair,
    st: &mut State,
    d: usize,
    op: Op,
    s: *mut WSK_SOCKET,
    off: usize,
    len: usize,
) {
    // SAFETY: a live connection socket of ours.
    let disp = unsafe { &*conn_dispatch(s) };
    let f = if op == Op::Send {
        disp.WskSend
    } else {
        disp.WskReceive
    };
    let Some(f) = f else {
        return not_supported(r, pair, st, d, op);
    };
    let Some(b) = st.wsk_buf.get_mut(d) else {
        return;
    };
    b.Mdl = pair.mdl(d);
    b.Offset = u32::try_from(off).unwrap_or(0);
    b.Length = len;
    let bp: *mut WSK_BUF = b;
    pair.issue(r, st, d, op, |irp| {
        // SAFETY: live socket; the WSK_BUF, its MDL and the buffer live in
        // the pair until the IRP completes.
        unsafe { f(s, bp, 0, irp) }
    });
}

/// The lead send (see State::lead): `buf[off..off + len]` of the C2B
/// buffer to the backend, on the CTL slot with its own WSK_BUF.
fn issue_lead(r: &Relay, pair: &Pair, st: &mut State, off: usize, len: usize) {
    let s = st.backend;
    // SAFETY: a live connection socket of ours.
    let Some(f) = (unsafe { (*conn_dispatch(s)).WskSend }) else {
        return not_supported(r, pair, st, CTL, Op::Lead);
    };
    let Some(b) = st.wsk_buf.get_mut(CTL) else {
        return;
    };
    b.Mdl = pair.mdl(C2B);
    b.Offset = u32::try_from(off).unwrap_or(0);
    b.Length = len;
    let bp: *mut WSK_BUF = b;
    pair.issue(r, st, CTL, Op::Lead, |irp| {
        // SAFETY: live socket; the WSK_BUF, its MDL and the buffer live in
        // the pair until the IRP completes. The client's pending receive
        // writes only past `off + len`.
        unsafe { f(s, bp, 0, irp) }
    });
}

#[allow(clippy::too_many_arguments)]
fn issue_disconnect(
    r: &Relay,
    pair: &Pair,
    st: &mut State,
    i: usize,
    op: Op,
    s: *mut WSK_SOCKET,
    flags: u32,
) {
    // SAFETY: a live connection socket of ours.
    let Some(f) = (unsafe { (*conn_dispatch(s)).WskDisconnect }) else {
        return not_supported(r, pair, st, i, op);
    };
    pair.issue(r, st, i, op, |irp| {
        // SAFETY: live socket; no buffer.
        unsafe { f(s, core::ptr::null_mut(), flags, irp) }
    });
}

fn issue_close(r: &Relay, pair: &Pair, st: &mut State, s: *mut WSK_SOCKET) {
    // SAFETY: a live connection socket of ours.
    let Some(f) = (unsafe { (*conn_dispatch(s)).Basic.WskCloseSocket }) else {
        return not_supported(r, pair, st, CTL, Op::Close);
    };
    pair.issue(r, st, CTL, Op::Close, |irp| {
        // SAFETY: no other call of ours is in progress on the socket (the
        // teardown waited for them, or its grace ran out: WSK then
        // completes what is left).
        unsafe { f(s, irp) }
    });
}
