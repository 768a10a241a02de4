//! Recorded violations: kernel-rule and WSK-contract breaches the driver
//! commits under simulation. Real Windows would bugcheck, hang or misbehave;
//! the simulation records them so a test can assert the list is empty.

use crate::recent::Ring;
use std::sync::Mutex;

/// What rule was broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ViolationKind {
    // ---- pool ----
    /// ExFreePoolWithTag on an address that was freed already.
    DoubleFree,
    /// ExFreePoolWithTag on an address the pool never handed out.
    FreeUnknownPointer,
    /// ExFreePoolWithTag with a tag other than the allocation's.
    FreeWrongTag,
    /// Pool allocation with tag 0, a paged pool at DISPATCH_LEVEL, or bad
    /// ExAllocatePool2 flags.
    BadPoolCall,
    /// Freed memory still held an armed timer or a queued DPC.
    FreeActiveObject,
    // ---- IRQL and locks ----
    /// A blocking wait (or a routine that may block) at DISPATCH_LEVEL.
    WaitAtDispatch,
    /// A PASSIVE_LEVEL-only routine called above PASSIVE_LEVEL.
    IrqlTooHigh,
    /// KeReleaseSpinLock while not at DISPATCH_LEVEL, or with a new IRQL
    /// above DISPATCH_LEVEL.
    SpinLockReleaseIrql,
    /// KeReleaseSpinLock on a lock this thread does not hold.
    SpinLockNotHeld,
    /// KeAcquireSpinLockRaiseToDpc on a lock this thread already holds.
    SpinLockRecursive,
    /// A callback, DPC or completion routine returned at another IRQL
    /// than it was called at (a spin lock left held, or an IRQL leaked).
    IrqlLeak,
    /// A system thread ended at an IRQL other than PASSIVE_LEVEL.
    ThreadExitIrql,
    // ---- dispatcher objects ----
    /// Wait on, set or clear something that is not an initialised
    /// event/timer/thread object.
    BadDispatcherObject,
    /// KeWaitForMultipleObjects with too many objects for its wait blocks.
    TooManyWaitObjects,
    /// Bad handle given to ZwClose / ObReferenceObjectByHandle / registry.
    BadHandle,
    /// ObfDereferenceObject more often than referenced.
    ObjectOverDereferenced,
    // ---- IRPs ----
    /// IRP not from IoAllocateIrp, or freed already.
    BadIrp,
    /// IRP handed to WSK while WSK still owns it, or freed/reused while WSK
    /// owns it.
    IrpInFlight,
    /// IRP with no stack location left for the provider.
    NoIrpStackLocation,
    /// A driver-allocated IRP completed up to the top: no completion routine
    /// returned STATUS_MORE_PROCESSING_REQUIRED.
    IrpCompletedToTop,
    /// A WSK call that requires an IRP got NULL.
    MissingIrp,
    // ---- WSK ----
    /// WSK routine called with a bad argument (wrong version, bad option
    /// buffer, unknown socket pointer, ...).
    WskBadCall,
    /// A call on a socket after WskCloseSocket was called on it.
    WskUseAfterClose,
    /// WskCloseSocket concurrently with another call on the same socket.
    WskCloseConcurrent,
    /// WskCloseSocket from inside a callback on that same socket.
    WskCloseInCallback,
    /// WskInspectComplete for an id that was never pended (unknown, or its
    /// request was accepted/rejected directly).
    InspectCompleteUnknown,
    /// WskInspectComplete twice for the same request.
    InspectCompleteTwice,
    /// WskInspectComplete with an action other than Accept or Reject.
    InspectCompleteBadAction,
    /// A callback returned something the contract does not allow (abort
    /// event not returning STATUS_SUCCESS, unknown inspect action).
    BadCallbackResult,
    /// WskDeregister gave up waiting: sockets still open or the provider
    /// NPI still captured.
    DeregisterBlocked,
    /// Provider NPI captured or released out of balance, or used after
    /// WskDeregister.
    NpiMisuse,
    /// KeBugCheckEx was called.
    BugCheck,
    // ---- unload ----
    /// Driver code called an import after DriverUnload returned (the image
    /// may be gone; see [`crate::hold`]), or DriverUnload returned while a
    /// driver routine was still running.
    CodeAfterUnload,
    /// Anything else (see the detail text).
    Other,
}

/// One recorded violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    pub detail: String,
}

/// Most recent violations kept; [`count`] counts all of them.
pub const VIOLATIONS_LIMIT: usize = 4096;

static VIOLATIONS: Mutex<Ring<Violation>> = Mutex::new(Ring::new(VIOLATIONS_LIMIT));

/// Records a violation (also echoed to stderr when `GATE_SIM_DEBUG` is set).
pub fn record(kind: ViolationKind, detail: impl Into<String>) {
    let detail = detail.into();
    if crate::debug::echo_enabled() {
        eprintln!("[sim violation] {kind:?}: {detail}");
    }
    lock().push(Violation { kind, detail });
}

fn lock() -> std::sync::MutexGuard<'static, Ring<Violation>> {
    VIOLATIONS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The violations recorded since the last reset (the most recent
/// [`VIOLATIONS_LIMIT`]; a good run has none).
pub fn all() -> Vec<Violation> {
    lock().to_vec()
}

/// How many violations were recorded since the last reset (kept or not).
pub fn count() -> u64 {
    lock().total()
}

/// Forget all violations.
pub fn reset() {
    lock().clear();
}
