//! [`KEvent`]: a kernel event, and waits on one or several of them.
//!
//! A KEVENT is a dispatcher object: once initialised it must not move, so
//! a `KEvent` lives inside a pool allocation (a `Box`) and is initialised
//! in place with [`KEvent::init`].

use core::cell::UnsafeCell;
use core::ffi::c_void;

use gate_ksys::*;

/// A kernel event (notification or synchronization).
pub struct KEvent(UnsafeCell<KEVENT>);

// SAFETY: a KEVENT is designed for use from several CPUs; every access is
// through the kernel's event routines.
unsafe impl Sync for KEvent {}
// SAFETY: nothing ties an event to a thread.
unsafe impl Send for KEvent {}

/// 100 ns units per millisecond.
const TICKS_PER_MS: i64 = 10_000;

/// A relative kernel due time (negative 100 ns units) of `ms` milliseconds.
fn relative_ms(ms: u32) -> i64 {
    0i64.saturating_sub(i64::from(ms).saturating_mul(TICKS_PER_MS))
}

impl KEvent {
    /// Zeroed storage; call [`KEvent::init`] once it is at its final address.
    pub const fn uninit() -> KEvent {
        KEvent(UnsafeCell::new(KEVENT { Opaque: [0; 3] }))
    }

    /// Initialises the event, not signalled. `synchronization`: a wait
    /// resets it (auto-reset); otherwise it stays set until cleared.
    ///
    /// # Safety
    /// `self` must not move afterwards and no one may wait on it yet.
    pub unsafe fn init(&self, synchronization: bool) {
        let kind = if synchronization {
            SynchronizationEvent
        } else {
            NotificationEvent
        };
        // SAFETY: the caller guarantees the storage is final and unused.
        unsafe { KeInitializeEvent(self.0.get(), kind, FALSE) }
    }

    /// Signals the event (any IRQL <= DISPATCH_LEVEL).
    pub fn set(&self) {
        // SAFETY: the event was initialised (every owner calls init first).
        unsafe { KeSetEvent(self.0.get(), 0, FALSE) };
    }

    /// Resets the event.
    pub fn clear(&self) {
        // SAFETY: as in `set`.
        unsafe { KeClearEvent(self.0.get()) }
    }

    /// The raw object, for waits on several objects.
    pub fn as_object(&self) -> *mut c_void {
        self.0.get().cast()
    }

    /// Waits (PASSIVE_LEVEL) until signalled or `timeout_ms` passed
    /// (`None`: forever). True if signalled.
    pub fn wait(&self, timeout_ms: Option<u32>) -> bool {
        let due = timeout_ms.map(relative_ms);
        let due_ptr = due.as_ref().map_or(core::ptr::null(), |d| d as *const i64);
        // SAFETY: the event is initialised; `due_ptr` is NULL or points at a
        // relative due time on this stack for the duration of the wait.
        let st = unsafe {
            KeWaitForSingleObject(self.as_object(), Executive, KernelMode, FALSE, due_ptr)
        };
        st == STATUS_SUCCESS
    }
}

/// Sleeps the calling thread (PASSIVE_LEVEL) for `ms` milliseconds.
pub fn sleep_ms(ms: u32) {
    let due = relative_ms(ms);
    // SAFETY: a relative interval on this stack, valid for the call.
    unsafe { KeDelayExecutionThread(KernelMode, FALSE, &due) };
}
