//! The one [`Driver`] object: everything DriverEntry builds and the
//! callbacks, the timer DPC, the worker thread and DriverUnload share.
//! It lives in one pool allocation (never moves) from DriverEntry until
//! DriverUnload frees it after every user has stopped.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use gate_core::Gate;
use gate_ksys::*;

use crate::config::DriverConfig;
use crate::etw::CloseCause;
use crate::kernel::event::KEvent;
use crate::kernel::spin::{KSpinLock, SpinMutex};
use crate::pending::PendingTable;

/// A count of driver routines in progress that can be closed: WSK
/// callbacks ([`Rundown::enter`]) and IRP completion routines (a reference
/// taken with [`Rundown::acquire`] before the request is issued). After
/// [`Rundown::close_and_wait`] no new callback enters, and it returns once
/// every reference is gone.
///
/// Each routine releases its reference as its very last access to driver
/// memory (after its last event, lock and counter): unload waits on
/// `drained`, which the last release sets, and only then unregisters ETW
/// and frees the Driver. What runs after the release is the routine's
/// return. IoSetCompletionRoutineEx (which keeps the image loaded until
/// the routine has returned) needs a DEVICE_OBJECT; the control device
/// exists only when its creation succeeded (the gate runs without it
/// otherwise) and is deleted first in DriverUnload, so the routines do not
/// rely on it: this count is the one scheme for every IRP the driver
/// issues (listener, post-accept, closer, pends and relay).
pub struct Rundown {
    state: AtomicU32,
    /// Set by the last reference to go once closed.
    drained: KEvent,
}

const RUNDOWN_CLOSED: u32 = 1 << 31;

impl Rundown {
    /// Open, no references.
    pub const fn new() -> Rundown {
        Rundown {
            state: AtomicU32::new(0),
            drained: KEvent::uninit(),
        }
    }

    /// Initialises the drain event.
    ///
    /// # Safety
    /// `self` is at its final address and nobody uses it yet.
    pub unsafe fn init(&self) {
        // SAFETY: per the caller.
        unsafe { self.drained.init(false) };
    }

    /// Enters; `None` once closed. The guard leaves on drop.
    pub fn enter(&self) -> Option<RundownGuard<'_>> {
        let prev = self.state.fetch_add(1, Ordering::Acquire);
        if prev & RUNDOWN_CLOSED != 0 {
            self.release();
            return None;
        }
        Some(RundownGuard(self))
    }

    /// Takes a reference for a request about to be issued (whose
    /// completion routine calls [`Rundown::release`] last). Never fails:
    /// only the worker threads (listener, relay) and the timer DPC issue
    /// requests, and unload closes the rundown after all of them stopped.
    pub fn acquire(&self) {
        self.state.fetch_add(1, Ordering::Acquire);
    }

    /// References held now.
    pub fn active(&self) -> u32 {
        self.state.load(Ordering::Acquire) & !RUNDOWN_CLOSED
    }

    /// Drops a reference. The caller must not touch driver memory after
    /// this (once closed, the last release lets unload free it).
    pub fn release(&self) {
        let prev = self.state.fetch_sub(1, Ordering::Release);
        if prev == RUNDOWN_CLOSED | 1 {
            // The last reference after close: the unload thread waits for
            // this event and frees the Driver once it is set. KeSetEvent
            // (Wait = FALSE) does not touch the event after waking it.
            self.drained.set();
        }
    }

    /// Closes and waits (PASSIVE_LEVEL) until no reference is left. Waits
    /// on the event alone (not on the count, which reaches zero just
    /// before the last holder signals it).
    pub fn close_and_wait(&self) {
        let prev = self.state.fetch_or(RUNDOWN_CLOSED, Ordering::AcqRel);
        if prev & !RUNDOWN_CLOSED == 0 {
            return;
        }
        self.drained.wait(None);
    }
}

impl Default for Rundown {
    fn default() -> Self {
        Rundown::new()
    }
}

/// Proof of being inside a [`Rundown`].
pub struct RundownGuard<'a>(&'a Rundown);

impl Drop for RundownGuard<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// The driver's own counters (gate-core counts decisions). Field meanings
/// are documented here and apply to [`StatsSnapshot`] too.
#[derive(Default)]
pub struct Stats {
    /// WskInspectEvent calls answered (accept, reject or pend).
    pub inspects: AtomicU64,
    /// Inspect calls with an address of an unknown family (rejected).
    pub bad_addresses: AtomicU64,
    /// Pends rejected because the pending table was full or closed.
    pub pend_table_full: AtomicU64,
    /// WskAbortEvent calls.
    pub aborts: AtomicU64,
    /// Aborts that found a pended request (dropped, token returned).
    pub aborts_pended: AtomicU64,
    /// Aborts for a request not pended (accepted at once, or unknown).
    pub aborts_not_pended: AtomicU64,
    /// WskInspectComplete calls issued.
    pub completions: AtomicU64,
    /// Listener closes asked for by a NULL InspectID.
    pub null_inspect: AtomicU64,
    /// Listener closes asked for by STATUS_FILE_FORCED_CLOSED.
    pub forced_closed: AtomicU64,
    /// Listeners created (bound).
    pub listeners_up: AtomicU64,
    /// Connections delivered by WskAcceptEvent.
    pub accepted_sockets: AtomicU64,
    /// Accepted connections refused because the hand-off queue was full.
    pub accept_queue_full: AtomicU64,
    /// Accepted connections closed by the worker.
    pub closed_sockets: AtomicU64,
    /// Graceful closes that ended abortively instead: the peer did not
    /// finish within `CloseTimeoutMs`, unload came first, or no slot of
    /// the close pool (or no IRP) was free.
    pub graceful_closes_aborted: AtomicU64,
}

/// A plain copy of [`Stats`] (for the Counters event, tools and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub inspects: u64,
    pub bad_addresses: u64,
    pub pend_table_full: u64,
    pub aborts: u64,
    pub aborts_pended: u64,
    pub aborts_not_pended: u64,
    pub completions: u64,
    pub null_inspect: u64,
    pub forced_closed: u64,
    pub listeners_up: u64,
    pub accepted_sockets: u64,
    pub accept_queue_full: u64,
    pub closed_sockets: u64,
    pub graceful_closes_aborted: u64,
}

impl Stats {
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            inspects: r(&self.inspects),
            bad_addresses: r(&self.bad_addresses),
            pend_table_full: r(&self.pend_table_full),
            aborts: r(&self.aborts),
            aborts_pended: r(&self.aborts_pended),
            aborts_not_pended: r(&self.aborts_not_pended),
            completions: r(&self.completions),
            null_inspect: r(&self.null_inspect),
            forced_closed: r(&self.forced_closed),
            listeners_up: r(&self.listeners_up),
            accepted_sockets: r(&self.accepted_sockets),
            accept_queue_full: r(&self.accept_queue_full),
            closed_sockets: r(&self.closed_sockets),
            graceful_closes_aborted: r(&self.graceful_closes_aborted),
        }
    }

    /// Zeroes every counter (gatectl reset).
    pub fn reset(&self) {
        for c in [
            &self.inspects,
            &self.bad_addresses,
            &self.pend_table_full,
            &self.aborts,
            &self.aborts_pended,
            &self.aborts_not_pended,
            &self.completions,
            &self.null_inspect,
            &self.forced_closed,
            &self.listeners_up,
            &self.accepted_sockets,
            &self.accept_queue_full,
            &self.closed_sockets,
            &self.graceful_closes_aborted,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// Adds one to a counter.
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Capacity of the accepted-connection hand-off queue.
pub const ACCEPT_QUEUE: usize = 256;

/// An accepted connection waiting for the worker: the socket and the
/// addresses the accept reported (copied: WSK lends them for the call).
#[derive(Clone, Copy, Debug)]
pub struct Accepted {
    /// The connection socket (ours to close).
    pub socket: *mut WSK_SOCKET,
    /// The client's address and port (`None` if unreadable).
    pub remote: Option<core::net::SocketAddr>,
    /// The local address and port it connected to.
    pub local: Option<core::net::SocketAddr>,
}

// SAFETY: the socket pointer is a WSK object usable from any thread; the
// worker that pops it becomes its only user.
unsafe impl Send for Accepted {}

/// Accepted connections waiting for the worker (allocated once, never grown).
pub struct AcceptQueue {
    items: crate::pool::PoolVec<Accepted>,
}

impl AcceptQueue {
    /// An empty queue with room for [`ACCEPT_QUEUE`] sockets (None: no memory).
    pub fn new() -> Option<AcceptQueue> {
        Some(AcceptQueue {
            items: crate::pool::PoolVec::with_capacity(ACCEPT_QUEUE).ok()?,
        })
    }

    /// Adds a connection; false when full (no allocation).
    pub fn push(&mut self, a: Accepted) -> bool {
        self.items.push(a).is_ok()
    }

    /// Takes one connection.
    pub fn pop(&mut self) -> Option<Accepted> {
        self.items.pop()
    }

    /// Sockets waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether none wait.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Everything shared.
pub struct Driver {
    /// The configuration in force.
    pub cfg: DriverConfig,
    /// The decision engine.
    pub gate: Gate<KSpinLock>,
    /// WSK registration storage (owned by WSK between register/deregister).
    pub registration: UnsafeCell<WSK_REGISTRATION>,
    /// Our client NPI (WSK may keep the pointer).
    pub client_npi: WSK_CLIENT_NPI,
    /// Pended requests, the listener socket they belong to, and their timer.
    pub pending: PendingTable,
    /// Accepted connections for the worker to handle.
    pub accepted: SpinMutex<AcceptQueue>,
    /// Wakes the worker (synchronization event).
    pub wake: KEvent,
    /// One `--persist` change at a time, from before its live change until
    /// its registry write is done (a synchronization event used as a
    /// PASSIVE_LEVEL lock: signalled = free; `control::persist::Turn`).
    pub persist_turn: KEvent,
    /// Set by unload: the worker winds down.
    pub stopping: AtomicBool,
    /// Why the current listener stopped working, set once by the first
    /// callback that learns it (NULL InspectID, STATUS_FILE_FORCED_CLOSED,
    /// NULL accept socket) and reset by the worker for each new listener:
    /// 0 = working, else [`DEAD`] | cause << 32 | status, in one word so a
    /// reader never pairs the flag with an earlier close's cause or status.
    pub dead: AtomicU64,
    /// Callbacks in progress.
    pub rundown: Rundown,
    /// The driver's counters.
    pub stats: Stats,
    /// Interrupt time at DriverEntry.
    pub started_at: u64,
    /// gate-core's BanStarted total at the previous Counters event (the
    /// BansStarted summary reports the difference; only the listener worker
    /// touches it).
    pub bans_reported: AtomicU64,
    /// gate-core's `Banned` decisions total at the previous Counters event.
    pub banned_reported: AtomicU64,
}

// SAFETY: `registration` is only touched by WSK (through WskRegister /
// WskCaptureProviderNPI / WskDeregister, which are safe to call from
// several threads); every other field is Sync on its own.
unsafe impl Sync for Driver {}
// SAFETY: as above; nothing is tied to the creating thread.
unsafe impl Send for Driver {}

impl Driver {
    /// The registration pointer for WSK calls.
    pub fn registration(&self) -> *mut WSK_REGISTRATION {
        self.registration.get()
    }

    /// A callback learnt that the listener no longer works: record why
    /// (first report wins) and wake the worker, which closes and re-creates
    /// it (never inline).
    pub fn signal_listener_dead(&self, cause: CloseCause, status: NTSTATUS) {
        let v = DEAD | (u64::from(cause as u8) << 32) | u64::from(status as u32);
        let _ = self
            .dead
            .compare_exchange(0, v, Ordering::AcqRel, Ordering::Acquire);
        self.wake.set();
    }

    /// Whether the current listener was reported dead.
    pub fn listener_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire) != 0
    }

    /// The report on the current listener: (cause as u8, status), if any.
    pub fn dead_report(&self) -> Option<(u8, NTSTATUS)> {
        let v = self.dead.load(Ordering::Acquire);
        (v != 0).then_some((((v >> 32) & 0xFF) as u8, v as u32 as NTSTATUS))
    }

    /// A new listener: no report yet.
    pub fn reset_dead(&self) {
        self.dead.store(0, Ordering::Release);
    }
}

/// The "reported" bit of [`Driver::dead`].
pub const DEAD: u64 = 1 << 63;
