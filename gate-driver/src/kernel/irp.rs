//! IRPs the driver allocates itself.
//!
//! [`OwnedIrp`] wraps IoAllocateIrp/IoFreeIrp. [`SyncIrp`] pairs one with a
//! completion event so the worker thread can make a WSK call and wait for
//! it (PASSIVE_LEVEL only), the way the WSK samples do: the completion
//! routine sets the event and returns STATUS_MORE_PROCESSING_REQUIRED, so
//! the I/O manager leaves the IRP to us for reuse.

use core::ffi::c_void;

use gate_ksys::*;

use super::event::KEvent;
use crate::pool::PoolBox;
use crate::state::Rundown;

/// An IRP from IoAllocateIrp with one stack location (WSK needs one),
/// freed on drop.
pub struct OwnedIrp(*mut IRP);

// SAFETY: an IRP is a plain pool object; the driver hands it to one WSK call
// at a time (callers keep that rule), from any thread.
unsafe impl Send for OwnedIrp {}
// SAFETY: shared references only read the pointer value.
unsafe impl Sync for OwnedIrp {}

impl OwnedIrp {
    /// Allocates an IRP, or `None` when the pool is exhausted.
    pub fn new() -> Option<OwnedIrp> {
        // SAFETY: IoAllocateIrp may be called at IRQL <= DISPATCH_LEVEL and
        // returns NULL on failure.
        let irp = unsafe { IoAllocateIrp(1, FALSE) };
        if irp.is_null() {
            None
        } else {
            Some(OwnedIrp(irp))
        }
    }

    /// The raw IRP.
    pub fn as_ptr(&self) -> *mut IRP {
        self.0
    }

    /// Re-initialises the IRP for its next request and sets `routine` to
    /// run (with `context`) on success, error and cancel.
    ///
    /// # Safety
    /// The IRP must not be in use by a request (its last completion routine
    /// has run), and `context` must stay valid until the routine runs.
    pub unsafe fn prepare(&self, routine: IO_COMPLETION_ROUTINE, context: *mut c_void) {
        // SAFETY: the caller guarantees the IRP is idle; IoReuseIrp resets
        // it to the state IoAllocateIrp gave it, keeping one stack location.
        unsafe {
            IoReuseIrp(self.0, STATUS_UNSUCCESSFUL);
            IoSetCompletionRoutine(self.0, routine, context, true, true, true);
        }
    }

    /// The final status and information of the last request.
    ///
    /// # Safety
    /// The last request has completed.
    pub unsafe fn io_status(&self) -> (NTSTATUS, usize) {
        // SAFETY: the IRP is valid and idle per the caller.
        unsafe { ((*self.0).IoStatus.Status, (*self.0).IoStatus.Information) }
    }
}

impl Drop for OwnedIrp {
    fn drop(&mut self) {
        // SAFETY: we allocated the IRP and every request on it has completed
        // (owners drop it only when idle).
        unsafe { IoFreeIrp(self.0) }
    }
}

/// An IRP plus completion event for synchronous WSK calls (worker thread).
///
/// Each call holds a reference on the driver's [`Rundown`] from before the
/// request is issued until the completion routine's last action, so unload
/// cannot free the driver while the routine still runs.
pub struct SyncIrp {
    irp: OwnedIrp,
    done: KEvent,
    rundown: *const Rundown,
}

// SAFETY: the rundown pointer targets the Driver, which outlives the
// worker thread that owns this SyncIrp.
unsafe impl Send for SyncIrp {}

unsafe extern "system" fn sync_irp_done(_dev: PVOID, _irp: *mut IRP, context: PVOID) -> NTSTATUS {
    // SAFETY: `context` is the SyncIrp whose `call` is waiting for this
    // routine, so it is alive until `done` is set; the rundown pointer is
    // read before that.
    let (done, rundown) = unsafe {
        let s = &*context.cast::<SyncIrp>();
        (&s.done as *const KEvent, s.rundown)
    };
    // SAFETY: still alive (the waiter has not been woken yet).
    unsafe { (*done).set() };
    // SAFETY: the Driver (and its rundown) stays alive while this
    // request's reference is held; releasing it is the last action.
    unsafe { (*rundown).release() };
    STATUS_MORE_PROCESSING_REQUIRED
}

impl SyncIrp {
    /// Allocates one (in the pool, so the event never moves); `rundown` is
    /// the driver's (see the type's docs). `None`: no memory.
    pub fn new(rundown: &Rundown) -> Option<PoolBox<SyncIrp>> {
        let irp = OwnedIrp::new()?;
        let s = PoolBox::try_new(SyncIrp {
            irp,
            done: KEvent::uninit(),
            rundown,
        })
        .ok()?;
        // SAFETY: the event is at its final address (inside the pool block)
        // and nobody waits on it yet.
        unsafe { s.done.init(false) };
        Some(s)
    }

    /// Makes one WSK call with the IRP and waits for it to complete (PASSIVE_LEVEL).
    /// Returns the IRP's final status and information.
    pub fn call(&mut self, f: impl FnOnce(*mut IRP) -> NTSTATUS) -> (NTSTATUS, usize) {
        self.done.clear();
        let ctx = (self as *const SyncIrp).cast_mut().cast::<c_void>();
        // SAFETY: `&mut self` means no request is in flight on this IRP (each
        // call waits for completion before returning); `ctx` is self.
        unsafe { self.irp.prepare(sync_irp_done, ctx) };
        // SAFETY: the Driver outlives the worker, which owns this SyncIrp.
        unsafe { (*self.rundown).acquire() };
        let returned = f(self.irp.as_ptr());
        if returned != STATUS_PENDING && !self.done.wait(Some(0)) {
            // A call that returns anything but STATUS_PENDING has completed
            // its IRP before returning (I/O manager rule; real WSK does so
            // even for failures), so the event is already set. Wine's netio
            // stubs (WskControlSocket, WskDisconnect, ...) return
            // STATUS_NOT_IMPLEMENTED without touching the IRP: it is still
            // ours, its routine never runs, and the returned status is the
            // answer.
            // SAFETY: as above; the reference the routine would have released.
            unsafe { (*self.rundown).release() };
            return (returned, 0);
        }
        self.done.wait(None);
        // SAFETY: the completion routine ran, so the request is complete.
        unsafe { self.irp.io_status() }
    }
}
