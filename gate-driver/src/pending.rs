//! Pended connection requests: a bounded, pre-allocated table, the timer
//! that completes them when gate-core said, and the IRP completion.
//!
//! Each slot owns an IRP allocated at start, so completing a request
//! allocates nothing. A request is identified by the CONTENTS of its
//! WSK_INSPECT_ID (copied in WskInspectEvent), never by the pointer.
//! Slot states: `Free` -> `Pended` (WskInspectEvent returned Pend) ->
//! `Completing` (WskInspectComplete issued with the slot's IRP) -> `Free`
//! (in the IRP's completion routine, which returns
//! STATUS_MORE_PROCESSING_REQUIRED so the IRP stays ours). An abort of a
//! `Pended` slot frees it at once (token back to gate-core); an abort of a
//! `Completing` slot only marks it, and the completion gives the token back.
//!
//! One KTIMER + KDPC drives the earliest deadline (re-armed when a sooner
//! pend arrives, and by the DPC for the next one); a timer per slot would
//! make the kernel objects grow with `MaxPending`. No path scans the
//! table under its lock: pended slots are kept in a deadline heap
//! ([`crate::deadline`]) and indexed by inspect ID ([`crate::idmap`]). The
//! DPC takes due requests earliest first, [`BATCH`] per hold of the lock
//! and at most [`MAX_PER_DPC`] per DPC run, so the first requests due are
//! completed punctually. A larger backlog is not left to back-to-back DPC
//! runs (a CPU runs its whole DPC queue before any thread): the DPC records
//! it and signals the listener worker, which completes it at PASSIVE_LEVEL
//! in slices of [`WORKER_SLICE`] between its other duties
//! ([`PendingTable::drain_backlog`]) and re-arms the timer once nothing is
//! due; meanwhile the timer stays armed [`BACKLOG_RECHECK_MS`] ahead, so a
//! worker held up elsewhere cannot strand the backlog. An abort is one hash
//! lookup; unload empties the heap from its end, O(1) per slot.
//!
//! The table also records the listener socket the requests belong to:
//! WskInspectComplete is only called while the listener is `open`, and
//! every call is counted in `calls` under the same lock, so the worker can
//! close the socket once `calls` is zero (WskCloseSocket must never run
//! concurrently with another call on the socket).

use core::ffi::c_void;
use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use core::sync::atomic::{AtomicPtr, Ordering};

use gate_core::{Action, PendTicket, TICKS_PER_MS};
use gate_ksys::*;

use crate::deadline::DeadlineHeap;
use crate::etw::CloseCause;
use crate::idmap::IdMap;
use crate::kernel::event::KEvent;
use crate::kernel::irp::OwnedIrp;
use crate::kernel::spin::SpinMutex;
use crate::kernel::timer::Timer;
use crate::pool::PoolVec;
use crate::state::{Driver, Stats};
use crate::telemetry;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    Pended,
    Completing,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    state: State,
    id: WSK_INSPECT_ID,
    ticket: PendTicket,
    since: u64,
    remote: SocketAddr,
    action: Action,
    aborted: bool,
    /// The listener generation the request belongs to.
    generation: u32,
}

const UNSPECIFIED: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

impl Entry {
    const FREE: Entry = Entry {
        state: State::Free,
        id: WSK_INSPECT_ID {
            Key: 0,
            SerialNumber: 0,
        },
        ticket: PendTicket::from_u64(0),
        since: 0,
        remote: UNSPECIFIED,
        action: Action::Reject,
        aborted: false,
        generation: 0,
    };
}

struct Inner {
    entries: PoolVec<Entry>,
    free: PoolVec<u32>,
    /// `Pended` slots by due time.
    heap: DeadlineHeap,
    /// `Pended` and `Completing` slots by inspect ID.
    ids: IdMap,
    /// The listener the requests belong to (NULL when none).
    socket: *mut WSK_SOCKET,
    /// WskInspectComplete may be called (listener open and not closing).
    open: bool,
    /// WskInspectComplete calls in progress.
    calls: u32,
    /// Slots in `Completing`.
    completing: u32,
    /// The deadline the timer is armed for.
    armed: Option<u64>,
    /// The timer DPC found more requests due than one run completes and
    /// left them to the worker ([`PendingTable::drain_backlog`]); cleared
    /// by whichever drainer finds nothing more due, and by `stop`.
    backlog: bool,
    /// Counts listeners opened: a completion for an earlier listener must
    /// not declare the current one dead.
    generation: u32,
}

// SAFETY: `socket` is a WSK socket pointer usable from any CPU; Inner is
// only reached through the SpinMutex.
unsafe impl Send for Inner {}

/// Per-slot I/O: the IRP and what its completion routine needs.
struct SlotIo {
    irp: OwnedIrp,
    driver: AtomicPtr<Driver>,
    index: u32,
}

/// What an abort found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortOutcome {
    /// A pended request: dropped; its ticket is returned to gate-core by the caller.
    Dropped(PendTicket, SocketAddr),
    /// A request whose completion is in flight: marked; the completion
    /// returns the token.
    WhileCompleting(SocketAddr),
    /// Not pended (accepted at once, or unknown).
    NotFound,
}

/// Requests taken under one hold of the lock (DPC, worker).
const BATCH: usize = 8;
/// Requests one DPC run completes at most. When more are due, the DPC
/// leaves them to the listener worker at PASSIVE_LEVEL
/// ([`PendingTable::drain_backlog`]) rather than queueing itself again:
/// on Windows a CPU drains its DPC queue before it runs a thread, so
/// back-to-back runs of a large backlog would starve that CPU's threads
/// however short each run is (65536 due at once: 8192 runs, ~0.3 s at
/// DISPATCH_LEVEL on the simulation, release build). Eight: a run is then eight WskInspectComplete calls
/// plus one lock hold of eight heap pops, which stays under the 100 us a
/// DPC should take (Microsoft's DPC guidance; issue 10) even at the
/// simulation's cost per call (~5-10 us on the shared test host; `cargo
/// bench -p gate-driver --bench scale` reports it apart from the DPC's own
/// work), and the first requests due are still completed punctually.
pub const MAX_PER_DPC: usize = BATCH;
/// Backlog requests the worker completes per pass of its loop (in holds of
/// [`BATCH`]); then it does its other duties (Counters, closes, accepted
/// connections) and comes back at once, so they stay on time. No more than
/// the accepted connections one pass hands over
/// ([`crate::listener::CLOSES_PER_PASS`]): each completion becomes an
/// accepted connection in the worker's hand-off queue, and completing
/// faster than the queue drains filled it and declined (reset) admitted
/// connections (review of the backlog change: 64 per pass declined ~2800 of
/// 4096 due at once; 16 declines none; `tests/dpc_review.rs`).
pub const WORKER_SLICE: usize = crate::listener::CLOSES_PER_PASS;
/// While a backlog stands, the timer stays armed this far ahead (ms): a
/// safety net if the worker is held up (a slow synchronous WSK call), each
/// expiry completing another [`MAX_PER_DPC`]. Ten: at most 100 runs of
/// eight a second beside the worker (fewer with Windows' default 15.6 ms
/// clock tick, which rounds the expiry up).
pub const BACKLOG_RECHECK_MS: u64 = 10;

/// Who completes due requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drainer {
    /// The timer DPC (DISPATCH_LEVEL).
    Dpc,
    /// The listener worker (PASSIVE_LEVEL).
    Worker,
}

/// The pending table.
pub struct PendingTable {
    inner: SpinMutex<Inner>,
    io: PoolVec<SlotIo>,
    timer: Timer,
    /// Signalled while no WskInspectComplete call is in progress.
    calls_idle: KEvent,
    /// Signalled while no slot is `Completing`.
    completions_idle: KEvent,
}

impl PendingTable {
    /// `slots` slots, each with its IRP; `hash_key` keys the inspect-ID
    /// index. `None` when memory runs out.
    pub fn new(slots: u32, hash_key: u64) -> Option<PendingTable> {
        let n = slots as usize;
        let heap = DeadlineHeap::new(slots).ok()?;
        let ids = IdMap::new(slots, hash_key).ok()?;
        let mut entries = PoolVec::with_capacity(n).ok()?;
        let mut free = PoolVec::with_capacity(n).ok()?;
        let mut io = PoolVec::with_capacity(n).ok()?;
        for index in 0..slots {
            entries.push(Entry::FREE).ok()?;
            free.push(slots.saturating_sub(1).saturating_sub(index))
                .ok()?;
            io.push(SlotIo {
                irp: OwnedIrp::new()?,
                driver: AtomicPtr::new(core::ptr::null_mut()),
                index,
            })
            .ok()?;
        }
        Some(PendingTable {
            inner: SpinMutex::new(Inner {
                entries,
                free,
                heap,
                ids,
                socket: core::ptr::null_mut(),
                open: false,
                calls: 0,
                completing: 0,
                armed: None,
                backlog: false,
                generation: 0,
            }),
            io,
            timer: Timer::uninit(),
            calls_idle: KEvent::uninit(),
            completions_idle: KEvent::uninit(),
        })
    }

    /// Connects the table to its driver (timer DPC and completion context).
    ///
    /// # Safety
    /// `d` is the Driver containing this table, at its final address, and
    /// outlives every timer DPC and IRP completion (unload cancels the
    /// timer, flushes DPCs and waits for completions before freeing it).
    pub unsafe fn attach(&self, d: *const Driver) {
        for io in self.io.iter() {
            io.driver.store(d.cast_mut(), Ordering::Release);
        }
        // SAFETY: the table is inside the Driver at its final address; the
        // context outlives the timer per the caller; nobody waits on the
        // events yet.
        unsafe {
            self.timer.init(timer_dpc, d.cast_mut().cast());
            self.calls_idle.init(false);
            self.completions_idle.init(false);
        }
        self.calls_idle.set();
        self.completions_idle.set();
    }

    /// Makes the idle events match the counts (called with the lock held,
    /// after every change of `calls` or `completing`).
    fn sync_idle(&self, g: &Inner) {
        for (count, ev) in [
            (g.calls, &self.calls_idle),
            (g.completing, &self.completions_idle),
        ] {
            if count == 0 {
                ev.set();
            } else {
                ev.clear();
            }
        }
    }

    /// Waits (PASSIVE_LEVEL) until `idle(inner)` holds; `ev` is the event
    /// `sync_idle` keeps signalled exactly while it holds.
    fn wait_idle(&self, ev: &KEvent, idle: impl Fn(&Inner) -> bool) {
        loop {
            if idle(&self.inner.lock()) {
                return;
            }
            ev.wait(None);
        }
    }

    /// Slots in use (Pended or Completing).
    pub fn in_use(&self) -> usize {
        let g = self.inner.lock();
        g.entries.len().saturating_sub(g.free.len())
    }

    /// The listener now open: pends are accepted for `socket`.
    pub fn open_listener(&self, socket: *mut WSK_SOCKET) {
        let mut g = self.inner.lock();
        g.socket = socket;
        g.open = true;
        g.backlog = false;
        g.generation = g.generation.wrapping_add(1);
    }

    /// Holds a request until `due` (WskInspectEvent, DISPATCH_LEVEL). False
    /// when the table is full or no listener is open: the caller rejects.
    pub fn insert(
        &self,
        id: WSK_INSPECT_ID,
        ticket: PendTicket,
        due: u64,
        now: u64,
        remote: SocketAddr,
    ) -> bool {
        let mut g = self.inner.lock();
        if !g.open {
            return false;
        }
        let Some(i) = g.free.pop() else {
            return false;
        };
        let generation = g.generation;
        let Inner {
            entries, heap, ids, ..
        } = &mut *g;
        let Some(e) = entries.get_mut(i as usize) else {
            return false;
        };
        *e = Entry {
            state: State::Pended,
            id,
            ticket,
            since: now,
            remote,
            action: Action::Accept,
            aborted: false,
            generation,
        };
        if !heap.push(i, due) || !ids.insert(&id, i) {
            // Cannot happen (both are sized for every slot); undo.
            heap.remove(i);
            e.state = State::Free;
            let _ = g.free.push(i);
            return false;
        }
        if g.armed.is_none_or(|a| due < a) {
            g.armed = Some(due);
            self.timer.set_after(due.saturating_sub(now));
        }
        true
    }

    /// WskAbortEvent for `id` (by contents): a hash lookup, O(1) expected
    /// whatever the table size; requests never pended cost one probe.
    pub fn abort(&self, id: &WSK_INSPECT_ID) -> AbortOutcome {
        let mut g = self.inner.lock();
        let Inner {
            entries,
            free,
            heap,
            ids,
            ..
        } = &mut *g;
        let id_of = |s: u32| {
            entries
                .get(s as usize)
                .map_or_else(Default::default, |e| e.id)
        };
        let Some(i) = ids.find(id, id_of) else {
            return AbortOutcome::NotFound;
        };
        let Some(e) = entries.get_mut(i as usize) else {
            return AbortOutcome::NotFound;
        };
        match e.state {
            State::Pended => {
                e.state = State::Free;
                let out = AbortOutcome::Dropped(e.ticket, e.remote);
                heap.remove(i);
                let entries = &*entries;
                ids.remove(id, |s| {
                    entries
                        .get(s as usize)
                        .map_or_else(Default::default, |e| e.id)
                });
                let _ = free.push(i);
                out
            }
            State::Completing => {
                e.aborted = true;
                AbortOutcome::WhileCompleting(e.remote)
            }
            State::Free => AbortOutcome::NotFound,
        }
    }

    /// The timer fired (DISPATCH_LEVEL): completes up to [`MAX_PER_DPC`]
    /// due requests with Accept, earliest first. When more are due, the
    /// rest is the worker's backlog ([`Self::drain_backlog`]): the DPC
    /// records it, signals the worker and arms the timer
    /// [`BACKLOG_RECHECK_MS`] ahead as a safety net, instead of queueing
    /// itself again. Otherwise it re-arms for the next deadline.
    fn fire(&self, d: &Driver) {
        self.complete_due(d, MAX_PER_DPC, Drainer::Dpc);
    }

    /// The worker's share of due requests (PASSIVE_LEVEL, the listener
    /// worker's loop while a listener is open): completes up to
    /// [`WORKER_SLICE`] of the backlog the timer DPC left, earliest first,
    /// [`BATCH`] per hold of the lock. True when more are still due (the
    /// worker comes back at once, after its other duties); once nothing is
    /// due, the backlog is cleared and the timer armed for the next
    /// deadline. Does nothing without a backlog or an open listener.
    pub fn drain_backlog(&self, d: &Driver) -> bool {
        self.complete_due(d, WORKER_SLICE, Drainer::Worker)
    }

    /// Whether the DPC left due requests to the worker.
    pub fn has_backlog(&self) -> bool {
        self.inner.lock().backlog
    }

    /// Completes up to `max` due requests with Accept, earliest first,
    /// [`BATCH`] per hold of the lock (the DPC and the worker share it; both
    /// may run at once: every pop and the `calls` count are under the lock,
    /// and nothing is issued unless the listener is `open`). Returns true
    /// when it stopped at `max` with more due (the backlog stays set).
    fn complete_due(&self, d: &Driver, max: usize, who: Drainer) -> bool {
        let mut done = 0usize;
        loop {
            let mut batch = [(0u32, WSK_INSPECT_ID::default()); BATCH];
            let mut n = 0usize;
            let socket;
            let more_due;
            let mut wake = false;
            {
                let mut g = self.inner.lock();
                if who == Drainer::Dpc && done == 0 {
                    // The one-shot timer fired: nothing is armed now.
                    g.armed = None;
                }
                if !g.open || (who == Drainer::Worker && done == 0 && !g.backlog) {
                    return false;
                }
                if d.listener_dead() {
                    // Reported dead (STATUS_FILE_FORCED_CLOSED, NULL
                    // InspectID): no more calls on it; the worker's `stop`
                    // settles what is left (review: a slice went on issuing
                    // on the dead socket).
                    return false;
                }
                socket = g.socket;
                let now = crate::kernel::clock::now();
                let room = max.saturating_sub(done).min(BATCH);
                while n < room {
                    let Some((due, i)) = g.heap.peek() else { break };
                    if due > now {
                        break;
                    }
                    g.heap.pop();
                    let Some(e) = g.entries.get_mut(i as usize) else {
                        continue;
                    };
                    e.state = State::Completing;
                    e.action = Action::Accept;
                    if let Some(slot) = batch.get_mut(n) {
                        *slot = (i, e.id);
                    }
                    n = n.saturating_add(1);
                }
                let issued = u32::try_from(n).unwrap_or(0);
                g.calls = g.calls.saturating_add(issued);
                g.completing = g.completing.saturating_add(issued);
                self.sync_idle(&g);
                done = done.saturating_add(n);
                let next = g.heap.peek().map(|(due, _)| due);
                more_due = next.is_some_and(|due| due <= now);
                if !more_due {
                    // Nothing due: no backlog; the timer for the next deadline.
                    g.backlog = false;
                    if let Some(due) = next {
                        if g.armed != Some(due) {
                            g.armed = Some(due);
                            self.timer.set_after(due.saturating_sub(now));
                        }
                    }
                } else if done >= max && who == Drainer::Dpc {
                    // This run did its share: the rest is the worker's, at
                    // PASSIVE_LEVEL. The timer stays armed a little ahead in
                    // case the worker is held up (a slow synchronous call):
                    // then the DPC takes another share per tick.
                    g.backlog = true;
                    wake = true;
                    let recheck = BACKLOG_RECHECK_MS.saturating_mul(TICKS_PER_MS);
                    let at = now.saturating_add(recheck);
                    if g.armed.is_none_or(|a| at < a) {
                        g.armed = Some(at);
                        self.timer.set_after(recheck);
                    }
                }
            }
            if wake {
                // KeSetEvent, Wait = FALSE: fine at DISPATCH_LEVEL.
                d.wake.set();
            }
            for &(i, id) in batch.get(..n).unwrap_or(&[]) {
                self.issue(d, socket, i, &id, WskInspectAccept);
            }
            {
                let mut g = self.inner.lock();
                g.calls = g.calls.saturating_sub(u32::try_from(n).unwrap_or(0));
                self.sync_idle(&g);
            }
            if !more_due {
                return false;
            }
            if done >= max {
                return true;
            }
        }
    }

    /// Calls WskInspectComplete for slot `i` (already `Completing` and
    /// counted in `calls`).
    fn issue(
        &self,
        d: &Driver,
        socket: *mut WSK_SOCKET,
        i: u32,
        id: &WSK_INSPECT_ID,
        action: WSK_INSPECT_ACTION,
    ) {
        let Some(io) = self.io.get(i as usize) else {
            return;
        };
        Stats::bump(&d.stats.completions);
        // The completion routine releases this reference as its last action.
        d.rundown.acquire();
        let ctx = (io as *const SlotIo).cast_mut().cast::<c_void>();
        // SAFETY: the slot is `Completing`, so its IRP is idle (its last
        // completion routine ran before the slot became Free); `io` lives
        // as long as the table.
        unsafe { io.irp.prepare(inspect_complete_done, ctx) };
        // SAFETY: `socket` is the open listener (calls > 0 keeps the worker
        // from closing it); its Dispatch is the provider's listen dispatch.
        let f = unsafe {
            (*(*socket).Dispatch.cast::<WSK_PROVIDER_LISTEN_DISPATCH>()).WskInspectComplete
        };
        let Some(f) = f else {
            self.completed(d, i, STATUS_NOT_SUPPORTED);
            return;
        };
        // SAFETY: valid socket, ID copy and IRP; IRQL <= DISPATCH_LEVEL. WSK
        // completes the IRP in every case, which frees the slot.
        let st = unsafe { f(socket, id, action, io.irp.as_ptr()) };
        if st == STATUS_FILE_FORCED_CLOSED {
            d.signal_listener_dead(CloseCause::FileForcedClosed, st);
        }
    }

    /// The IRP of slot `i` completed with `st` (its completion routine, any
    /// IRQL <= DISPATCH_LEVEL). Everything is done before the slot is freed
    /// and `completing` lowered (which lets the worker close the socket and
    /// open another); the rundown reference taken in [`Self::issue`] is
    /// released as the very last action.
    fn completed(&self, d: &Driver, i: u32, st: NTSTATUS) {
        self.finish_completion(d, i, st);
        d.rundown.release();
    }

    fn finish_completion(&self, d: &Driver, i: u32, st: NTSTATUS) {
        // Take the request out of the table (an abort from now on finds
        // nothing: the completion decides), but keep the slot off the free
        // list, and `completing` counted, until the end.
        let (e, current) = {
            let mut g = self.inner.lock();
            let (open, generation) = (g.open, g.generation);
            let Inner { entries, ids, .. } = &mut *g;
            let Some(e) = entries.get_mut(i as usize) else {
                return;
            };
            if e.state != State::Completing {
                return;
            }
            e.state = State::Free;
            let copy = *e;
            let entries = &*entries;
            ids.remove(&copy.id, |s| {
                entries
                    .get(s as usize)
                    .map_or_else(Default::default, |e| e.id)
            });
            (copy, open && generation == copy.generation)
        };
        if st == STATUS_FILE_FORCED_CLOSED {
            Stats::bump(&d.stats.forced_closed);
            // A late completion for a listener already closed (and maybe
            // re-created) must not kill the current one.
            if current {
                d.signal_listener_dead(CloseCause::FileForcedClosed, st);
            }
        }
        let accepted = e.action == Action::Accept && !e.aborted && NT_SUCCESS(st);
        let _ = if accepted {
            d.gate.pend_done(e.ticket)
        } else {
            d.gate.pend_abort(e.ticket)
        };
        let now = crate::kernel::clock::now();
        let waited = now.saturating_sub(e.since) / TICKS_PER_MS;
        telemetry::pend_completed(
            e.remote,
            e.action,
            u32::try_from(waited).unwrap_or(u32::MAX),
            &e.id,
            st,
        );
        let mut g = self.inner.lock();
        let _ = g.free.push(i);
        g.completing = g.completing.saturating_sub(1);
        self.sync_idle(&g);
    }

    /// Stops completions on the current listener (worker, PASSIVE_LEVEL):
    /// no new pends or timer completions; pended requests are completed
    /// with Reject (`reject`: the listener still works, e.g. unload) or
    /// dropped (dead listener); in every case their tokens go back to
    /// gate-core. Returns once no WskInspectComplete call is in progress,
    /// so the socket may be closed. Returns how many were dropped.
    pub fn stop(&self, d: &Driver, reject: bool) -> u32 {
        let socket = {
            let mut g = self.inner.lock();
            g.open = false;
            g.armed = None;
            g.backlog = false;
            self.timer.cancel();
            g.socket
        };
        let mut dropped = 0u32;
        loop {
            // One slot per hold of the lock, taken from the end of the
            // deadline heap (O(1)): O(n) for the whole table.
            let next = {
                let mut g = self.inner.lock();
                let Some((_, i)) = g.heap.pop_last() else {
                    break;
                };
                let Inner {
                    entries, ids, free, ..
                } = &mut *g;
                let Some(e) = entries.get_mut(i as usize) else {
                    break;
                };
                if reject && !socket.is_null() {
                    e.state = State::Completing;
                    e.action = Action::Reject;
                    let id = e.id;
                    g.calls = g.calls.saturating_add(1);
                    g.completing = g.completing.saturating_add(1);
                    self.sync_idle(&g);
                    Some((i, id, None))
                } else {
                    e.state = State::Free;
                    let (t, id) = (e.ticket, e.id);
                    let entries = &*entries;
                    ids.remove(&id, |s| {
                        entries
                            .get(s as usize)
                            .map_or_else(Default::default, |e| e.id)
                    });
                    let _ = free.push(i);
                    Some((i, WSK_INSPECT_ID::default(), Some(t)))
                }
            };
            match next {
                Some((_, _, Some(ticket))) => {
                    let _ = d.gate.pend_abort(ticket);
                    dropped = dropped.saturating_add(1);
                }
                Some((i, id, None)) => {
                    self.issue(d, socket, i, &id, WskInspectReject);
                    let mut g = self.inner.lock();
                    g.calls = g.calls.saturating_sub(1);
                    self.sync_idle(&g);
                }
                None => break,
            }
        }
        self.wait_idle(&self.calls_idle, |g| g.calls == 0);
        dropped
    }

    /// After the socket is closed: waits until every completion ran, then
    /// forgets the socket (worker, PASSIVE_LEVEL).
    pub fn detach(&self) {
        self.wait_idle(&self.completions_idle, |g| g.completing == 0);
        self.inner.lock().socket = core::ptr::null_mut();
    }
}

unsafe extern "system" fn timer_dpc(
    _dpc: *mut KDPC,
    context: *mut c_void,
    _a1: *mut c_void,
    _a2: *mut c_void,
) {
    // SAFETY: the context is the Driver (see `attach`), alive while the
    // timer can fire.
    let d = unsafe { &*context.cast::<Driver>() };
    d.pending.fire(d);
}

unsafe extern "system" fn inspect_complete_done(
    _dev: PVOID,
    irp: *mut IRP,
    context: PVOID,
) -> NTSTATUS {
    // SAFETY: the context is the slot's SlotIo (set in `issue`), alive as
    // long as the table; the IRP is the one WSK completed.
    let (io, st) = unsafe { (&*context.cast::<SlotIo>(), (*irp).IoStatus.Status) };
    let d = io.driver.load(Ordering::Acquire);
    if !d.is_null() {
        // SAFETY: set by `attach` to the Driver, which outlives completions.
        let d = unsafe { &*d };
        d.pending.completed(d, io.index, st);
    }
    STATUS_MORE_PROCESSING_REQUIRED
}
