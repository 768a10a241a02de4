//! DriverEntry and DriverUnload: the start-up and tear-down order.
//!
//! Start: pool and clock routines, ETW, configuration (refused: the driver
//! does not start, STATUS_INVALID_PARAMETER), gate-core with a fresh seed,
//! the Driver object (pending table with its IRPs), WskRegister, then the
//! worker thread (which captures the provider NPI and runs the listener:
//! DriverEntry never blocks on WSK).
//!
//! Unload: stop (the worker closes the listener, rejecting pended requests,
//! closes accepted connections and stops the relay, which tears every
//! relayed connection down), WskDeregister (also ends a capture
//! wait), join the worker, close the rundown (callbacks in flight), cancel
//! the timer and flush DPCs, unregister ETW, free the Driver.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use gate_core::Gate;
use gate_ksys::*;

use crate::config::{self, Rejected};
use crate::kernel::clock;
use crate::kernel::event::KEvent;
use crate::kernel::spin::SpinMutex;
use crate::kernel::thread::SystemThread;
use crate::pending::PendingTable;
use crate::pool::PoolBox;
use crate::state::{AcceptQueue, Driver, Rundown, Stats};
use crate::{listener, seed, telemetry};

/// The running driver (NULL when not started).
static DRIVER: AtomicPtr<Driver> = AtomicPtr::new(core::ptr::null_mut());
/// The worker thread of the running driver (its handle).
static WORKER: AtomicPtr<core::ffi::c_void> = AtomicPtr::new(core::ptr::null_mut());

/// Our WSK client dispatch (no client-level events).
static CLIENT_DISPATCH: WSK_CLIENT_DISPATCH = WSK_CLIENT_DISPATCH {
    Version: WSK_VERSION_1_0,
    Reserved: 0,
    WskClientEvent: None,
};

/// The driver's entry point.
///
/// # Safety
/// Called by the I/O manager (PASSIVE_LEVEL) with a valid driver object and
/// registry path.
#[no_mangle]
pub unsafe extern "system" fn DriverEntry(
    driver: *mut DRIVER_OBJECT,
    registry_path: *mut UNICODE_STRING,
) -> NTSTATUS {
    crate::pool::init();
    if driver.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    crate::errorlog::set_driver(driver);
    if clock::init() == clock::Source::None {
        crate::dbg_print!(DPFLTR_ERROR_LEVEL, "gate: no interrupt-time routine");
        return STATUS_NOT_SUPPORTED;
    }
    let etw = telemetry::register();
    if etw != crate::etw::RegisterOutcome::Registered {
        crate::dbg_print!(DPFLTR_WARNING_LEVEL, "gate: ETW off: {:?}", etw);
    }
    // SAFETY: the registry path is the one the I/O manager passed.
    let st = match unsafe { start(registry_path) } {
        Ok(()) => STATUS_SUCCESS,
        Err(st) => st,
    };
    if !NT_SUCCESS(st) {
        telemetry::unregister();
        crate::pool::reset();
        return st;
    }
    // SAFETY: the I/O manager passes a valid driver object we may modify.
    unsafe { (*driver).DriverUnload = Some(driver_unload) };
    // SAFETY: DriverEntry's own arguments; the gate is running.
    if let Err(st) = unsafe { crate::control::device::create(driver, registry_path) } {
        // The gate runs without live control rather than not at all.
        crate::dbg_print!(DPFLTR_ERROR_LEVEL, "gate: no control device: {:#x}", st);
    }
    telemetry::driver_loaded();
    STATUS_SUCCESS
}

fn refuse(r: &Rejected) -> NTSTATUS {
    telemetry::config_rejected(r);
    STATUS_INVALID_PARAMETER
}

/// Everything after the routines are resolved.
unsafe fn start(registry_path: *const UNICODE_STRING) -> Result<(), NTSTATUS> {
    // Each unknown value name but the last is reported as found; the
    // error (the last one, or another refusal) is reported below.
    let mut report = |r: &Rejected| telemetry::config_rejected(r);
    // SAFETY: per DriverEntry's contract.
    let cfg = unsafe { config::load(registry_path, &mut report) }.map_err(|e| match e {
        config::LoadError::Rejected(r) => refuse(&r),
        config::LoadError::NoMemory(m) => {
            crate::dbg_print!(
                DPFLTR_ERROR_LEVEL,
                "gate: no memory reading the configuration ({} bytes)",
                m.bytes
            );
            STATUS_INSUFFICIENT_RESOURCES
        }
    })?;
    let now = clock::now();
    let (seed, sources) = seed::new_seed(now);
    crate::dbg_print!(
        DPFLTR_INFO_LEVEL,
        "gate: seed from {} rdseed + {} rdrand draws, clock and stack address",
        sources.rdseed,
        sources.rdrand
    );
    let gate = Gate::new(&cfg.core, seed).map_err(|e| match e {
        gate_core::Error::Config(c) => refuse(&Rejected {
            name: config::value_name_of_field(c.field),
            problem: c.expected,
            value: c.value,
            text: config::RejectedText::None,
        }),
        gate_core::Error::OutOfMemory { bytes } => {
            crate::dbg_print!(
                DPFLTR_ERROR_LEVEL,
                "gate: no memory for the table ({} bytes)",
                bytes
            );
            STATUS_INSUFFICIENT_RESOURCES
        }
    })?;
    // The inspect-ID index is keyed from the same per-start randomness.
    let id_key = seed[0] ^ seed[1].rotate_left(29);
    let pending =
        PendingTable::new(cfg.core.max_pending, id_key).ok_or(STATUS_INSUFFICIENT_RESOURCES)?;
    let accepted = AcceptQueue::new().ok_or(STATUS_INSUFFICIENT_RESOURCES)?;
    telemetry::config_loaded(&cfg);
    let d = PoolBox::try_new(Driver {
        cfg,
        gate,
        registration: UnsafeCell::new(WSK_REGISTRATION {
            ReservedRegistrationState: 0,
            ReservedRegistrationContext: core::ptr::null_mut(),
            ReservedRegistrationLock: 0,
        }),
        client_npi: WSK_CLIENT_NPI {
            ClientContext: core::ptr::null_mut(),
            Dispatch: &CLIENT_DISPATCH,
        },
        pending,
        accepted: SpinMutex::new(accepted),
        wake: KEvent::uninit(),
        persist_turn: KEvent::uninit(),
        stopping: AtomicBool::new(false),
        dead: AtomicU64::new(0),
        rundown: Rundown::new(),
        stats: Stats::default(),
        started_at: now,
        bans_reported: AtomicU64::new(0),
        banned_reported: AtomicU64::new(0),
    })
    .map_err(|e| {
        crate::dbg_print!(
            DPFLTR_ERROR_LEVEL,
            "gate: no memory for the driver state ({} bytes)",
            e.bytes
        );
        STATUS_INSUFFICIENT_RESOURCES
    })?;
    let d: *mut Driver = PoolBox::into_raw(d);
    // SAFETY: `d` is a fresh, final pool allocation; nothing uses its event
    // or timer yet.
    unsafe {
        (*d).wake.init(true);
        (*d).persist_turn.init(true);
        (*d).persist_turn.set();
        (*d).rundown.init();
        (*d).pending.attach(d);
    }
    // SAFETY: `d` is valid; WskRegister reads the NPI and fills the
    // registration (both inside the Driver, which outlives WskDeregister).
    let st = unsafe { WskRegister(&(*d).client_npi, (*d).registration()) };
    if !NT_SUCCESS(st) {
        crate::dbg_print!(DPFLTR_ERROR_LEVEL, "gate: WskRegister failed: {:#x}", st);
        // SAFETY: nothing else knows `d`.
        drop(unsafe { PoolBox::from_raw(d) });
        return Err(st);
    }
    // SAFETY: the Driver outlives the thread (unload joins it before freeing).
    match unsafe { SystemThread::spawn(listener::worker_main, d.cast()) } {
        Ok(t) => {
            WORKER.store(t.into_raw(), Ordering::Release);
            DRIVER.store(d, Ordering::Release);
            Ok(())
        }
        Err(st) => {
            crate::dbg_print!(DPFLTR_ERROR_LEVEL, "gate: worker thread failed: {:#x}", st);
            // No thread exists: nothing else knows `d`.
            // SAFETY: registered above, deregistered once (no socket, no
            // capture: the worker never ran).
            unsafe { WskDeregister((*d).registration()) };
            // SAFETY: as above.
            drop(unsafe { PoolBox::from_raw(d) });
            Err(st)
        }
    }
}

/// What the running driver has counted so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// gate-core's counters (decisions by reason, events, pends outstanding).
    pub gate: gate_core::Counters,
    /// The driver's own counters.
    pub stats: crate::state::StatsSnapshot,
    /// Pending-table slots in use.
    pub pending_in_use: usize,
    /// Keys tracked in gate-core's table.
    pub tracked_keys: usize,
}

/// A snapshot of the running driver's counters, or `None` when it is not
/// running. For tools and tests; must not race with DriverUnload (the I/O
/// manager never runs it concurrently with other driver entry points).
pub fn snapshot() -> Option<Snapshot> {
    let d = DRIVER.load(Ordering::Acquire);
    if d.is_null() {
        return None;
    }
    // SAFETY: set by DriverEntry, freed only by DriverUnload, which the
    // caller does not run concurrently.
    let d = unsafe { &*d };
    Some(Snapshot {
        gate: d.gate.counters(),
        stats: d.stats.snapshot(),
        pending_in_use: d.pending.in_use(),
        tracked_keys: d.gate.tracked_keys(),
    })
}

/// The running driver, for the control device's dispatch routines (which
/// the I/O manager never runs concurrently with DriverUnload, and which
/// also enter the Driver's rundown).
pub(crate) fn running() -> Option<&'static Driver> {
    let d = DRIVER.load(Ordering::Acquire);
    // SAFETY: set by DriverEntry, freed by DriverUnload after deleting the
    // control device (see above).
    (!d.is_null()).then(|| unsafe { &*d })
}

/// Runs `f` on the running driver's state (`None` when not running). For
/// benchmarks and tests that measure the driver's own code paths; the same
/// rule as [`snapshot`]: not concurrently with DriverUnload.
pub fn with_running<R>(f: impl FnOnce(&Driver) -> R) -> Option<R> {
    let d = DRIVER.load(Ordering::Acquire);
    if d.is_null() {
        return None;
    }
    // SAFETY: as in `snapshot`.
    Some(f(unsafe { &*d }))
}

/// DriverUnload (PASSIVE_LEVEL).
unsafe extern "system" fn driver_unload(_driver: *mut DRIVER_OBJECT) {
    crate::control::device::delete();
    let d = DRIVER.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if d.is_null() {
        return;
    }
    // SAFETY: set by DriverEntry; freed only below.
    let dr = unsafe { &*d };
    let uptime_ms = clock::now().saturating_sub(dr.started_at) / 10_000;
    telemetry::driver_unloading(uptime_ms);
    dr.stopping.store(true, Ordering::Release);
    dr.wake.set();
    let worker = WORKER.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !worker.is_null() {
        // SAFETY: stored by DriverEntry from `into_raw`; taken once.
        unsafe { SystemThread::from_raw(worker) }.join();
    }
    // SAFETY: registered in DriverEntry; deregistered once, after the worker
    // ended: no capture is waiting or can start, the NPI is released and
    // every socket is closed.
    unsafe { WskDeregister(dr.registration()) };
    dr.rundown.close_and_wait();
    dr.pending.stop(dr, false);
    crate::kernel::timer::flush_dpcs();
    dr.pending.detach();
    // Issue 12: the last Counters event carries the final totals (the
    // relay has stopped; its totals were kept for this).
    telemetry::final_counters(dr);
    telemetry::unregister();
    // SAFETY: every user of the Driver has stopped: worker joined, sockets
    // closed (no callbacks), rundown empty, timer cancelled and DPCs flushed,
    // completions done.
    drop(unsafe { PoolBox::from_raw(d) });
    crate::pool::reset();
}

/// Unloads the running driver as the I/O manager would (for the simulation
/// tests and tools): calls the DriverUnload routine DriverEntry set.
///
/// # Safety
/// `driver` is the object DriverEntry succeeded on; no concurrent unload.
pub unsafe fn unload(driver: *mut DRIVER_OBJECT) {
    // SAFETY: per the caller.
    if let Some(f) = unsafe { (*driver).DriverUnload } {
        // SAFETY: the routine DriverEntry installed.
        unsafe { f(driver) };
    }
}
