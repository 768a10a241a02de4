//! The relay: every accepted connection is carried to the protected
//! backend, the way HAProxy's TCP mode does it in user mode, with the life
//! cycle of Microsoft's WSK echo server sample (issue 12).
//!
//! | module | owns |
//! |---|---|
//! | this one | [`Relay`]: start/stop, the hand-over of accepted connections ([`adopt`]), the ready queue completion routines feed, counters |
//! | [`pair`] | one relayed connection: its IRPs, buffers and state machine (connect, two receive -> send loops, half-close, teardown) |
//! | [`worker`] | the relay worker thread: runs every pair's steps, its timeouts and the teardown on stop |
//! | [`proxy`] | the PROXY protocol header (v1 text, v2 binary), pure |
//!
//! Threading (platform facts, Wine section): completion routines only
//! record which IRP finished and queue the pair; every WSK call is made by
//! the one relay worker thread; a pair's sockets are closed only once no
//! IRP is pending on them (or, after a bounded grace, once cancelled ones
//! were given the chance to finish). Nothing here runs on the decision
//! path: the listen callbacks only queue the accepted socket and its
//! addresses ([`crate::state::AcceptQueue`]); the listener worker hands it
//! over with [`adopt`], which allocates the pair (fallibly) at
//! PASSIVE_LEVEL, bounded by `MaxConnections`.
//!
//! Memory per relay: two buffers of `RelayBufferBytes`, three IRPs, two
//! MDLs and the pair itself ([`pair::Pair`]); a slow peer never costs more
//! (the next receive is posted only after the send completed).

pub mod pair;
pub mod proxy;
pub mod worker;

use core::ffi::c_void;
use core::net::SocketAddr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use gate_ksys::*;

use crate::config::RelayConfig;
use crate::kernel::event::KEvent;
use crate::kernel::spin::SpinMutex;
use crate::kernel::thread::SystemThread;
use crate::pool::PoolBox;
use crate::state::{Accepted, Driver, Rundown};
use crate::telemetry;

pub use pair::Cause;

/// The running relay, set by [`start`] and cleared by [`Running::stop`],
/// both on the listener worker thread (which is also the only caller of
/// [`adopt`]).
static CURRENT: AtomicPtr<Relay> = AtomicPtr::new(core::ptr::null_mut());

/// The totals of the last relay that stopped, for the final `Counters`
/// event DriverUnload writes after the relay is gone: written by
/// [`Running::stop`] once its worker ended (every counter final), read
/// after the listener worker was joined. Fields in [`RelaySnapshot`]'s
/// order; `LAST_VALID` says whether they hold a stopped relay's totals.
static LAST: [AtomicU64; 14] = [const { AtomicU64::new(0) }; 14];
static LAST_VALID: AtomicBool = AtomicBool::new(false);

impl RelaySnapshot {
    fn to_array(self) -> [u64; 14] {
        [
            u64::from(self.active),
            self.opened,
            self.closed,
            self.failed,
            self.refused_at_limit,
            self.no_memory,
            self.connect_timeouts,
            self.backend_refused,
            self.idle_timeouts,
            self.resets,
            self.bytes_to_backend,
            self.bytes_to_client,
            self.abandoned,
            self.abandoned_freed,
        ]
    }

    fn from_array(a: [u64; 14]) -> RelaySnapshot {
        let [active, opened, closed, failed, refused_at_limit, no_memory, connect_timeouts, backend_refused, idle_timeouts, resets, bytes_to_backend, bytes_to_client, abandoned, abandoned_freed] =
            a;
        RelaySnapshot {
            active: u32::try_from(active).unwrap_or(u32::MAX),
            opened,
            closed,
            failed,
            refused_at_limit,
            no_memory,
            connect_timeouts,
            backend_refused,
            idle_timeouts,
            resets,
            bytes_to_backend,
            bytes_to_client,
            abandoned,
            abandoned_freed,
        }
    }
}

/// The totals of the relay that stopped last ([`Running::stop`]), or
/// `None` if none stopped since the last [`start`]. For the final
/// `Counters` event at unload.
pub fn last_snapshot() -> Option<RelaySnapshot> {
    if !LAST_VALID.load(Ordering::Acquire) {
        return None;
    }
    let mut a = [0u64; 14];
    for (v, c) in a.iter_mut().zip(LAST.iter()) {
        *v = c.load(Ordering::Relaxed);
    }
    Some(RelaySnapshot::from_array(a))
}

/// The relay's counters (totals since the relay started).
#[derive(Default)]
pub struct RelayStats {
    /// Relays alive now (connecting, relaying or tearing down).
    pub active: AtomicU32,
    /// Backend connections established (RelayOpened events).
    pub opened: AtomicU64,
    /// Relays that ended after being opened (RelayClosed events).
    pub closed: AtomicU64,
    /// Relays that never reached the backend (RelayFailed events),
    /// including refusals at `MaxConnections` and allocation failures.
    pub failed: AtomicU64,
    /// Connections closed abortively because `MaxConnections` relays ran.
    pub refused_at_limit: AtomicU64,
    /// Connections closed abortively because a relay could not be allocated.
    pub no_memory: AtomicU64,
    /// Backends that did not answer within `ConnectTimeoutMs`.
    pub connect_timeouts: AtomicU64,
    /// Backends that refused the connection.
    pub backend_refused: AtomicU64,
    /// Relays aborted after `IdleTimeoutMs` without traffic.
    pub idle_timeouts: AtomicU64,
    /// Relays aborted by a reset or error on either side.
    pub resets: AtomicU64,
    /// Relays given up on: their IRPs did not come back within two
    /// teardown graces after close (never on Windows; see the worker).
    /// The pair stays allocated until they do; unload waits for them.
    pub abandoned: AtomicU64,
    /// Of those, freed later when their last IRP completed.
    pub abandoned_freed: AtomicU64,
    /// Bytes relayed client -> backend (without PROXY headers).
    pub bytes_to_backend: AtomicU64,
    /// Bytes relayed backend -> client.
    pub bytes_to_client: AtomicU64,
}

/// A plain copy of [`RelayStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelaySnapshot {
    pub active: u32,
    pub opened: u64,
    pub closed: u64,
    pub failed: u64,
    pub refused_at_limit: u64,
    pub no_memory: u64,
    pub connect_timeouts: u64,
    pub backend_refused: u64,
    pub idle_timeouts: u64,
    pub resets: u64,
    pub bytes_to_backend: u64,
    pub bytes_to_client: u64,
    pub abandoned: u64,
    pub abandoned_freed: u64,
}

impl RelayStats {
    /// (abandoned, abandoned and freed later).
    fn snapshot_abandoned(&self) -> (u64, u64) {
        (
            self.abandoned.load(Ordering::Acquire),
            self.abandoned_freed.load(Ordering::Acquire),
        )
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> RelaySnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RelaySnapshot {
            active: self.active.load(Ordering::Acquire),
            opened: r(&self.opened),
            closed: r(&self.closed),
            failed: r(&self.failed),
            refused_at_limit: r(&self.refused_at_limit),
            no_memory: r(&self.no_memory),
            connect_timeouts: r(&self.connect_timeouts),
            backend_refused: r(&self.backend_refused),
            idle_timeouts: r(&self.idle_timeouts),
            resets: r(&self.resets),
            bytes_to_backend: r(&self.bytes_to_backend),
            bytes_to_client: r(&self.bytes_to_client),
            abandoned: self.abandoned.load(Ordering::Acquire),
            abandoned_freed: self.abandoned_freed.load(Ordering::Acquire),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Pairs whose IRPs completed (or that are new), for the worker. An
/// intrusive FIFO through [`pair::Link`]: pushing never allocates.
pub(crate) struct ReadyQueue {
    head: *mut pair::Pair,
    tail: *mut pair::Pair,
    /// The worker found the queue empty and waits (or is about to) on
    /// [`Relay::wake`]: the next [`Relay::signal`] sets the event. While
    /// the worker runs, completions only queue (no KeSetEvent each).
    sleeping: bool,
}

// SAFETY: the raw pointers are only followed under the queue's spin lock
// and point at pairs that stay allocated while queued (the worker frees a
// pair only once it is out of the queue with no IRP outstanding).
unsafe impl Send for ReadyQueue {}

/// Bit in [`pair::Link::bits`]: a new pair to start.
pub(crate) const NEW: u8 = 0x80;

/// Everything the relay worker shares with completion routines and the
/// listener worker.
pub struct Relay {
    /// The relay's configuration (backend is `Some`).
    pub cfg: RelayConfig,
    pub(crate) backend: SocketAddr,
    pub(crate) proxy: Option<proxy::Version>,
    /// The provider NPI the listener worker captured (released only after
    /// the relay worker was joined).
    pub(crate) npi: WSK_PROVIDER_NPI,
    /// The driver's rundown: every relay IRP holds a reference on it from
    /// its issue until its completion routine's last action.
    pub(crate) rundown: *const Rundown,
    pub(crate) ready: SpinMutex<ReadyQueue>,
    /// Wakes the worker (synchronization event).
    pub(crate) wake: KEvent,
    /// Set by [`Running::stop`]: the worker tears every pair down and ends.
    pub(crate) stopping: AtomicBool,
    /// The counters.
    pub stats: RelayStats,
    /// The backend's state as the worker last saw it (only the relay worker
    /// touches it): 0 = reachable (or not tried yet), else the interrupt time
    /// of the failed connect that wrote RelayBackendDown.
    pub(crate) backend_down_since: AtomicU64,
    /// `stats.failed` when RelayBackendDown was written.
    pub(crate) failed_at_down: AtomicU64,
}

// SAFETY: the NPI holds the provider's client handle and dispatch table,
// both usable from any thread while captured; the rundown pointer targets
// the Driver, which outlives the relay; every other field is Sync.
unsafe impl Sync for Relay {}
// SAFETY: as above.
unsafe impl Send for Relay {}

impl Relay {
    /// Records that slot `bits` of `p` completed (or that `p` is new) and
    /// queues `p` for the worker. Any IRQL <= DISPATCH_LEVEL; no
    /// allocation. The event is set under the lock, so once the worker has
    /// taken the lock after this, nothing of this call touches the pair or
    /// the relay any more.
    pub(crate) fn signal(&self, p: *const pair::Pair, bits: u8) {
        let mut q = self.ready.lock();
        // SAFETY: `p` is a live pair (it has an IRP outstanding or is new,
        // so the worker cannot free it); its link is guarded by this lock.
        let link = unsafe { &mut *(*p).link.get() };
        link.bits |= bits;
        if !link.queued {
            link.queued = true;
            link.next = core::ptr::null_mut();
            let pm = p.cast_mut();
            if q.tail.is_null() {
                q.head = pm;
            } else {
                // SAFETY: the tail is a queued, live pair (guarded by the lock).
                unsafe { (*(*q.tail).link.get()).next = pm };
            }
            q.tail = pm;
        }
        if q.sleeping {
            q.sleeping = false;
            self.wake.set();
        }
        drop(q);
    }

    /// The worker is about to wait: true (and marked sleeping) when the
    /// queue is empty, false when a pair is queued (process it instead).
    pub(crate) fn may_sleep(&self) -> bool {
        let mut q = self.ready.lock();
        q.sleeping = q.head.is_null();
        q.sleeping
    }

    /// Takes the next queued pair and its completion bits.
    pub(crate) fn pop(&self) -> Option<(*mut pair::Pair, u8)> {
        let mut q = self.ready.lock();
        let p = q.head;
        if p.is_null() {
            return None;
        }
        // SAFETY: queued pairs are live; the link is guarded by the lock.
        let link = unsafe { &mut *(*p).link.get() };
        q.head = link.next;
        if q.head.is_null() {
            q.tail = core::ptr::null_mut();
        }
        link.next = core::ptr::null_mut();
        link.queued = false;
        let bits = core::mem::take(&mut link.bits);
        Some((p, bits))
    }
}

/// The relay started by [`start`]; [`Running::stop`] ends it.
pub struct Running {
    relay: *mut Relay,
    thread: SystemThread,
}

/// Starts the relay worker if a backend is configured (listener worker,
/// PASSIVE_LEVEL, with the provider NPI it captured). Without a backend it
/// says so (Warning event and debug line: the gate then protects nothing
/// behind it) and returns `None`.
pub fn start(d: &Driver, npi: &WSK_PROVIDER_NPI) -> Option<Running> {
    LAST_VALID.store(false, Ordering::Release);
    let Some(backend) = d.cfg.relay.backend else {
        telemetry::relay_off();
        return None;
    };
    let r = pair::try_box(Relay {
        cfg: d.cfg.relay,
        backend,
        proxy: proxy::Version::from_config(d.cfg.relay.proxy_protocol),
        npi: WSK_PROVIDER_NPI {
            Client: npi.Client,
            Dispatch: npi.Dispatch,
        },
        rundown: &d.rundown,
        ready: SpinMutex::new(ReadyQueue {
            head: core::ptr::null_mut(),
            tail: core::ptr::null_mut(),
            sleeping: false,
        }),
        wake: KEvent::uninit(),
        stopping: AtomicBool::new(false),
        stats: RelayStats::default(),
        backend_down_since: AtomicU64::new(0),
        failed_at_down: AtomicU64::new(0),
    });
    let Some(r) = r else {
        crate::dbg_print!(
            DPFLTR_ERROR_LEVEL,
            "gate: relay: no memory; connections are closed"
        );
        return None;
    };
    let r = PoolBox::into_raw(r);
    // SAFETY: `r` is a fresh allocation at its final address; nobody uses
    // its event yet.
    unsafe { (*r).wake.init(true) };
    // SAFETY: the Relay outlives the thread: `stop` joins it before freeing.
    match unsafe { SystemThread::spawn(worker::worker_main, r.cast::<c_void>()) } {
        Ok(thread) => {
            CURRENT.store(r, Ordering::Release);
            telemetry::relay_on(backend, &d.cfg.relay);
            Some(Running { relay: r, thread })
        }
        Err(st) => {
            crate::dbg_print!(DPFLTR_ERROR_LEVEL, "gate: relay worker failed: {:#x}", st);
            // No thread exists (a started thread is always joinable: see
            // kernel::thread); nothing else knows `r`.
            // SAFETY: as above.
            drop(unsafe { PoolBox::from_raw(r) });
            None
        }
    }
}

impl Running {
    /// Tears every relay down, waits for every relay IRP (also those of
    /// pairs abandoned earlier: see [`worker`]), joins the worker and
    /// frees the relay. Listener worker, PASSIVE_LEVEL, before it releases
    /// the provider NPI. On Windows this is bounded: WskCloseSocket
    /// completes every IRP still pending on the socket it closes. A
    /// provider that never completes a pending IRP (Wine was seen holding
    /// a receive) makes this, and so DriverUnload, wait for it: no driver
    /// code may run after DriverUnload returns.
    pub fn stop(self) {
        CURRENT.store(core::ptr::null_mut(), Ordering::Release);
        // SAFETY: `relay` is live until freed below.
        let r = unsafe { &*self.relay };
        r.stopping.store(true, Ordering::Release);
        r.wake.set();
        self.thread.join();
        // The worker ended: these totals are final (the unload's last
        // Counters event reports them).
        for (c, v) in LAST.iter().zip(r.stats.snapshot().to_array()) {
            c.store(v, Ordering::Relaxed);
        }
        LAST_VALID.store(true, Ordering::Release);
        // SAFETY: the worker ended only with every pair freed (abandoned
        // ones too), i.e. every IRP completed and every completion taken
        // from the queue; completion routines set the event under the
        // queue lock, which the worker took after each of them, and they
        // touch nothing of the relay after it (their last action is the
        // rundown release, on the Driver).
        drop(unsafe { PoolBox::from_raw(self.relay) });
    }
}

/// Hands an accepted connection to the relay (listener worker,
/// PASSIVE_LEVEL). `Err(abortive)`: the caller closes the connection
/// itself — `false` when no relay runs (today's accept-and-close),
/// `true` when the relay refused it (`MaxConnections` reached, no memory).
pub fn adopt(d: &Driver, acc: Accepted) -> Result<(), bool> {
    let r = CURRENT.load(Ordering::Acquire);
    if r.is_null() || d.stopping.load(Ordering::Acquire) {
        return Err(false);
    }
    // SAFETY: CURRENT is set and cleared on this (the listener worker)
    // thread, so the relay is live for this call.
    let r = unsafe { &*r };
    let active = r.stats.active.load(Ordering::Acquire);
    if active >= r.cfg.max_connections {
        bump(&r.stats.refused_at_limit);
        bump(&r.stats.failed);
        telemetry::relay_failed(
            acc.remote,
            r.backend,
            STATUS_INSUFFICIENT_RESOURCES,
            Cause::MaxConnections,
        );
        return Err(true);
    }
    let Some(p) = pair::Pair::new(r, acc) else {
        bump(&r.stats.no_memory);
        bump(&r.stats.failed);
        telemetry::relay_failed(
            acc.remote,
            r.backend,
            STATUS_INSUFFICIENT_RESOURCES,
            Cause::NoMemory,
        );
        return Err(true);
    };
    r.stats.active.fetch_add(1, Ordering::AcqRel);
    r.signal(PoolBox::into_raw(p), NEW);
    Ok(())
}

/// The running relay's counters (`None` without a relay). For the
/// listener worker's Counters event (the thread that starts and stops the
/// relay), control requests (the relay stops only in DriverUnload, never
/// concurrent with one) and tests; must not race with unload.
pub fn snapshot() -> Option<RelaySnapshot> {
    let r = CURRENT.load(Ordering::Acquire);
    if r.is_null() {
        return None;
    }
    // SAFETY: set while the relay runs; tools do not race with unload.
    Some(unsafe { (*r).stats.snapshot() })
}

/// The running relay's abandoned relays: (given up on, freed later when
/// their last IRP came back). For tests and tools, like [`snapshot`].
pub fn abandoned() -> Option<(u64, u64)> {
    let r = CURRENT.load(Ordering::Acquire);
    if r.is_null() {
        return None;
    }
    // SAFETY: as in `snapshot`.
    Some(unsafe { (*r).stats.snapshot_abandoned() })
}
