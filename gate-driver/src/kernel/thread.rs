//! [`SystemThread`]: a kernel system thread the driver starts and, before
//! unloading, waits for (so no code of the image runs after unload).

use core::ffi::c_void;

use gate_ksys::*;

/// Why [`SystemThread::spawn`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnError {
    /// PsCreateSystemThread failed: no thread exists.
    NotStarted(NTSTATUS),
    /// The thread runs but no reference could be taken to wait for it: the
    /// caller must make it stop and must keep `context` alive for good.
    Unjoinable(NTSTATUS),
}

/// A running system thread, referenced until [`SystemThread::join`].
pub struct SystemThread {
    object: *mut c_void,
}

// SAFETY: the thread object pointer is a referenced kernel object usable
// from any thread.
unsafe impl Send for SystemThread {}
// SAFETY: shared access only reads the pointer.
unsafe impl Sync for SystemThread {}

impl SystemThread {
    /// Starts `start(context)` on a new system thread (PASSIVE_LEVEL).
    ///
    /// # Safety
    /// `context` must stay valid until the thread has finished using it.
    pub unsafe fn spawn(start: KSTART_ROUTINE, context: *mut c_void) -> Result<Self, SpawnError> {
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
            return Err(SpawnError::NotStarted(st));
        }
        let mut object: *mut c_void = core::ptr::null_mut();
        // SAFETY: `handle` is the kernel handle just returned; we take a
        // reference on the thread object so we can wait for it later.
        let st = unsafe {
            ObReferenceObjectByHandle(
                handle,
                SYNCHRONIZE,
                core::ptr::null_mut(),
                KernelMode,
                &mut object,
                core::ptr::null_mut(),
            )
        };
        // SAFETY: the handle is ours and no longer needed either way.
        unsafe { ZwClose(handle) };
        if !NT_SUCCESS(st) {
            return Err(SpawnError::Unjoinable(st));
        }
        Ok(SystemThread { object })
    }

    /// Waits for the thread to end and drops the reference (PASSIVE_LEVEL).
    pub fn join(self) {
        // SAFETY: `object` is a referenced thread object; waiting on it
        // returns when the thread terminates.
        unsafe {
            KeWaitForSingleObject(self.object, Executive, KernelMode, FALSE, core::ptr::null());
            ObfDereferenceObject(self.object);
        }
    }
}
