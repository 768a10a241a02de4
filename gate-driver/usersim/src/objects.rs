//! Handles and objects: system threads (PsCreateSystemThread /
//! PsTerminateSystemThread, waitable, signalled on exit), the handle table
//! (ZwClose, ObReferenceObjectByHandle, ObfDereferenceObject) shared with the
//! registry's key handles.
//!
//! A system thread is a host thread starting at PASSIVE_LEVEL. Since a
//! Rust thread cannot be unwound through the driver's `extern "system"`
//! frames, PsTerminateSystemThread signals the thread object and parks the
//! host thread for good (it never touches driver state again).

use crate::dispatcher;
use crate::irql;
use crate::violation::{record, ViolationKind};
use gate_ksys::*;
use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{LazyLock, Mutex, MutexGuard};

const STATUS_INVALID_HANDLE: NTSTATUS = 0xC000_0008_u32 as i32;

/// The simulated thread object; starts with a dispatcher header so the
/// waits treat it like a KTHREAD.
#[repr(C, align(8))]
struct ThreadObject {
    header: [u64; 3],
}

#[derive(Clone, Copy)]
struct ThreadInfo {
    exited: bool,
    exit_status: NTSTATUS,
    refs: isize,
}

pub(crate) enum HandleObject {
    Thread(usize),
    Key(String),
    /// A device object (ObOpenObjectByPointer).
    Device(usize),
}

#[derive(Default)]
struct Objects {
    handles: HashMap<usize, HandleObject>,
    next_handle: usize,
    threads: HashMap<usize, ThreadInfo>,
    /// PsCreateSystemThread calls to let succeed before failing.
    thread_skip: u64,
    /// PsCreateSystemThread calls to fail after those.
    thread_failures: u64,
}

static OBJ: LazyLock<Mutex<Objects>> = LazyLock::new(|| Mutex::new(Objects::default()));

fn obj() -> MutexGuard<'static, Objects> {
    OBJ.lock().unwrap_or_else(|e| e.into_inner())
}

thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// Opens a handle to `o` (kernel handles: high bit set, multiples of 4).
pub(crate) fn open_handle(o: HandleObject) -> HANDLE {
    let mut g = obj();
    g.next_handle += 4;
    let h = 0xFFFF_FFFF_8000_0000usize | g.next_handle;
    g.handles.insert(h, o);
    h as HANDLE
}

/// The registry path of a key handle.
pub(crate) fn key_path(h: HANDLE) -> Option<String> {
    match obj().handles.get(&(h as usize)) {
        Some(HandleObject::Key(p)) => Some(p.clone()),
        _ => None,
    }
}

/// The device object of a device handle.
pub(crate) fn device_of(h: HANDLE) -> Option<usize> {
    match obj().handles.get(&(h as usize)) {
        Some(HandleObject::Device(d)) => Some(*d),
        _ => None,
    }
}

/// Thread and handle counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ObjectStats {
    /// System threads created by the driver that have not exited.
    pub threads_running: usize,
    /// Handles (threads, registry keys) not closed with ZwClose.
    pub handles_open: usize,
    /// ObReferenceObjectByHandle references not yet dereferenced.
    pub object_refs: isize,
}

pub(crate) fn stats() -> ObjectStats {
    let g = obj();
    ObjectStats {
        threads_running: g.threads.values().filter(|t| !t.exited).count(),
        handles_open: g.handles.len(),
        object_refs: g.threads.values().map(|t| t.refs.max(0)).sum(),
    }
}

pub(crate) fn reset() {
    let mut g = obj();
    g.handles.clear();
    g.threads.clear();
    g.thread_skip = 0;
    g.thread_failures = 0;
}

/// Lets `skip` PsCreateSystemThread calls succeed, then fails the next
/// `count` with STATUS_INSUFFICIENT_RESOURCES (no thread, no handle).
pub(crate) fn fail_thread_creations(skip: u64, count: u64) {
    let mut g = obj();
    g.thread_skip = skip;
    g.thread_failures = count;
}

/// Whether this PsCreateSystemThread call is to fail (counts it).
fn thread_creation_fails() -> bool {
    let mut g = obj();
    if g.thread_failures == 0 {
        return false;
    }
    if g.thread_skip > 0 {
        g.thread_skip -= 1;
        return false;
    }
    g.thread_failures -= 1;
    true
}

fn thread_exit(t: usize, status: NTSTATUS) {
    {
        let mut g = obj();
        if let Some(info) = g.threads.get_mut(&t) {
            if info.exited {
                return;
            }
            info.exited = true;
            info.exit_status = status;
        }
    }
    if irql::current() != PASSIVE_LEVEL || irql::locks_held() > 0 {
        record(
            ViolationKind::ThreadExitIrql,
            format!(
                "system thread exited at IRQL {} holding {} spin lock(s)",
                irql::current(),
                irql::locks_held()
            ),
        );
    }
    // SAFETY: `t` is a leaked ThreadObject initialised with a header.
    unsafe { dispatcher::signal(t as *mut c_void) };
}

struct SendPtr(*mut c_void);
// SAFETY: the context pointer is handed to the driver's thread routine,
// exactly as the kernel does; the driver is responsible for its use.
unsafe impl Send for SendPtr {}

/// # Safety
/// `thread` must be writable; `start` is called with `context` on a new
/// thread.
#[no_mangle]
pub unsafe extern "system" fn PsCreateSystemThread(
    thread: *mut HANDLE,
    _access: u32,
    _attributes: *mut OBJECT_ATTRIBUTES,
    _process: HANDLE,
    _client_id: *mut c_void,
    start: KSTART_ROUTINE,
    context: *mut c_void,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::hold::point("PsCreateSystemThread");
    irql::require_passive("PsCreateSystemThread");
    if thread.is_null() {
        record(
            ViolationKind::Other,
            "PsCreateSystemThread with a NULL handle pointer",
        );
        return STATUS_INVALID_PARAMETER;
    }
    if thread_creation_fails() {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    let object = Box::into_raw(Box::new(ThreadObject { header: [0; 3] }));
    // SAFETY: a fresh, leaked, 8-aligned 24-byte object.
    unsafe { dispatcher::init_header(object.cast(), dispatcher::TYPE_THREAD, false) };
    let t = object as usize;
    obj().threads.insert(
        t,
        ThreadInfo {
            exited: false,
            exit_status: 0,
            refs: 0,
        },
    );
    let h = open_handle(HandleObject::Thread(t));
    let ctx = SendPtr(context);
    let spawned = std::thread::Builder::new()
        .name("sim-system-thread".into())
        .spawn(move || {
            let ctx = ctx;
            CURRENT.with(|c| c.set(t));
            crate::hold::in_routine(crate::hold::Routine::SystemThread, start as usize, || {
                // SAFETY: the driver's thread routine, called like the kernel does.
                unsafe { start(ctx.0) }
            });
            thread_exit(t, STATUS_SUCCESS);
        });
    if spawned.is_err() {
        obj().handles.remove(&(h as usize));
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    // SAFETY: checked non-null above.
    unsafe { thread.write(h) };
    STATUS_SUCCESS
}

#[no_mangle]
pub unsafe extern "system" fn PsTerminateSystemThread(status: NTSTATUS) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::hold::point("PsTerminateSystemThread");
    let t = CURRENT.with(|c| c.get());
    if t == 0 {
        record(
            ViolationKind::Other,
            "PsTerminateSystemThread from a thread that is not a system thread",
        );
        return STATUS_INVALID_PARAMETER;
    }
    thread_exit(t, status);
    loop {
        std::thread::park();
    }
}

/// # Safety
/// `object` must be writable.
#[no_mangle]
pub unsafe extern "system" fn ObReferenceObjectByHandle(
    handle: HANDLE,
    _access: u32,
    _object_type: *mut c_void,
    _mode: KPROCESSOR_MODE,
    object: *mut *mut c_void,
    _info: *mut c_void,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::hold::point("ObReferenceObjectByHandle");
    irql::require_passive("ObReferenceObjectByHandle");
    let mut g = obj();
    let t = match g.handles.get(&(handle as usize)) {
        Some(HandleObject::Thread(t)) => *t,
        Some(HandleObject::Key(_) | HandleObject::Device(_)) => return STATUS_OBJECT_TYPE_MISMATCH,
        None => {
            drop(g);
            record(
                ViolationKind::BadHandle,
                format!("ObReferenceObjectByHandle({handle:p}): no such handle"),
            );
            return STATUS_INVALID_HANDLE;
        }
    };
    if let Some(info) = g.threads.get_mut(&t) {
        info.refs += 1;
    }
    if !object.is_null() {
        // SAFETY: the caller passes a writable pointer.
        unsafe { object.write(t as *mut c_void) };
    }
    STATUS_SUCCESS
}

/// # Safety
/// `object` must be an object referenced with ObReferenceObjectByHandle.
#[no_mangle]
pub unsafe extern "system" fn ObfDereferenceObject(object: *mut c_void) -> isize {
    let _sim = crate::fault::sim();
    crate::hold::point("ObfDereferenceObject");
    let mut g = obj();
    let Some(info) = g.threads.get_mut(&(object as usize)) else {
        drop(g);
        record(
            ViolationKind::BadHandle,
            format!("ObfDereferenceObject({object:p}): unknown object"),
        );
        return 0;
    };
    info.refs -= 1;
    let r = info.refs;
    drop(g);
    if r < 0 {
        record(
            ViolationKind::ObjectOverDereferenced,
            format!("ObfDereferenceObject({object:p}) below zero"),
        );
    }
    r
}

#[no_mangle]
pub unsafe extern "system" fn ZwClose(handle: HANDLE) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::hold::point("ZwClose");
    irql::require_passive("ZwClose");
    if obj().handles.remove(&(handle as usize)).is_none() {
        record(
            ViolationKind::BadHandle,
            format!("ZwClose({handle:p}): no such handle"),
        );
        return STATUS_INVALID_HANDLE;
    }
    STATUS_SUCCESS
}

/// Waits on the object behind a handle (threads only: the driver waits
/// for its worker by handle).
///
/// # Safety
/// `timeout` must be NULL or readable.
#[no_mangle]
pub unsafe extern "system" fn ZwWaitForSingleObject(
    handle: HANDLE,
    _alertable: BOOLEAN,
    timeout: *const i64,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::hold::point("ZwWaitForSingleObject");
    irql::require_passive("ZwWaitForSingleObject");
    let t = match obj().handles.get(&(handle as usize)) {
        Some(HandleObject::Thread(t)) => *t,
        Some(HandleObject::Key(_) | HandleObject::Device(_)) => return STATUS_OBJECT_TYPE_MISMATCH,
        None => {
            record(
                ViolationKind::BadHandle,
                format!("ZwWaitForSingleObject({handle:p}): no such handle"),
            );
            return STATUS_INVALID_HANDLE;
        }
    };
    // `t` is a live thread object (leaked, never freed); `timeout` per the caller.
    dispatcher::wait_objects(&[t as *mut c_void], true, timeout, "ZwWaitForSingleObject")
}
