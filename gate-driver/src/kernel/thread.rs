//! [`SystemThread`]: a kernel system thread the driver starts and, before
//! unloading, waits for (so no code of the image runs after unload).
//!
//! The thread is kept by its kernel handle (OBJ_KERNEL_HANDLE, so no user
//! process can use it) and waited for with ZwWaitForSingleObject: once
//! PsCreateSystemThread succeeded there is always a way to wait for the
//! thread, so no failure path can leave a thread running in an image that
//! is about to unload.

use core::ffi::c_void;

use gate_ksys::*;

/// A running system thread, waited for by [`SystemThread::join`].
pub struct SystemThread {
    handle: HANDLE,
}

// SAFETY: a kernel handle is usable from any thread of the system process.
unsafe impl Send for SystemThread {}
// SAFETY: shared access only reads the handle value.
unsafe impl Sync for SystemThread {}

impl SystemThread {
    /// Starts `start(context)` on a new system thread (PASSIVE_LEVEL).
    /// Fails with PsCreateSystemThread's status (no thread exists then).
    ///
    /// # Safety
    /// `context` must stay valid until the thread has finished using it.
    pub unsafe fn spawn(start: KSTART_ROUTINE, context: *mut c_void) -> Result<Self, NTSTATUS> {
        let mut handle: HANDLE = core::ptr::null_mut();
        let mut attrs = OBJECT_ATTRIBUTES {
            Length: core::mem::size_of::<OBJECT_ATTRIBUTES>() as u32,
            RootDirectory: core::ptr::null_mut(),
            ObjectName: core::ptr::null_mut(),
            Attributes: OBJ_KERNEL_HANDLE,
            SecurityDescriptor: core::ptr::null_mut(),
            SecurityQualityOfService: core::ptr::null_mut(),
        };
        // SAFETY: out-parameters and attributes are valid for the call; the
        // caller guarantees `context` outlives the thread's use of it.
        let st = unsafe {
            PsCreateSystemThread(
                &mut handle,
                THREAD_ALL_ACCESS,
                &mut attrs,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                start,
                context,
            )
        };
        if !NT_SUCCESS(st) {
            return Err(st);
        }
        Ok(SystemThread { handle })
    }

    /// The raw handle (for tools).
    pub fn handle(&self) -> HANDLE {
        self.handle
    }

    /// Rebuilds a thread from [`SystemThread::into_raw`].
    ///
    /// # Safety
    /// `handle` came from `into_raw` and is taken back once.
    pub unsafe fn from_raw(handle: HANDLE) -> SystemThread {
        SystemThread { handle }
    }

    /// The handle, for keeping in a static (see [`SystemThread::from_raw`]).
    pub fn into_raw(self) -> HANDLE {
        self.handle
    }

    /// Waits for the thread to end and closes the handle (PASSIVE_LEVEL).
    /// The thread object is signalled once the thread terminated: after
    /// PsTerminateSystemThread, in kernel code, so none of the driver's
    /// code is running on it any more.
    pub fn join(self) {
        // SAFETY: `handle` is our kernel handle to the thread; a wait with
        // no timeout returns when the thread terminates.
        let st = unsafe { ZwWaitForSingleObject(self.handle, FALSE, core::ptr::null()) };
        if st != STATUS_SUCCESS {
            crate::dbg_print!(
                DPFLTR_ERROR_LEVEL,
                "gate: waiting for the worker thread failed: {:#x}",
                st
            );
        }
        // SAFETY: the handle is ours and closed once.
        unsafe { ZwClose(self.handle) };
    }
}
