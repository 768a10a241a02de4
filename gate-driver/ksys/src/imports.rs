//! The functions gate-driver imports, by module.
//!
//! Windows targets link them from ntoskrnl.exe and netio.sys with raw-dylib
//! (no import library needed). Other targets leave them unresolved here;
//! gate-usersim defines each with `#[no_mangle]` and the same signature.
//! Routines that older Windows or Wine lack (ExAllocatePool2, the precise
//! interrupt-time query, the Etw* family) are not imported at all: the driver
//! resolves them with MmGetSystemRoutineAddress, so a missing one never stops
//! the image from loading.
//!
//! DbgPrintEx is C-variadic; it is declared here with exactly the one `%s`
//! argument the driver passes. On x64 Windows integer and pointer arguments
//! of a variadic call travel exactly as in a fixed-arity call, so this is
//! ABI-identical for that use, and the simulation can define it in stable
//! Rust.

use crate::dev::{ACL, DEVICE_OBJECT, SECURITY_DESCRIPTOR};
use crate::io::{DRIVER_OBJECT, IRP};
use crate::ke::*;
use crate::types::*;
use crate::wsk::{WSK_CLIENT_NPI, WSK_PROVIDER_NPI, WSK_REGISTRATION};
use core::ffi::c_void;

#[cfg_attr(
    windows,
    link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")
)]
extern "system" {
    // ---- pool ----
    pub fn ExAllocatePoolWithTag(pool_type: i32, bytes: SIZE_T, tag: u32) -> *mut c_void;
    pub fn ExFreePoolWithTag(p: *mut c_void, tag: u32);
    pub fn MmGetSystemRoutineAddress(name: *mut UNICODE_STRING) -> *mut c_void;

    // ---- failure and debug output ----
    pub fn KeBugCheckEx(code: u32, p1: ULONG_PTR, p2: ULONG_PTR, p3: ULONG_PTR, p4: ULONG_PTR)
        -> !;

    // ---- spin locks ----
    pub fn KeAcquireSpinLockRaiseToDpc(lock: *mut KSPIN_LOCK) -> KIRQL;
    pub fn KeReleaseSpinLock(lock: *mut KSPIN_LOCK, new_irql: KIRQL);

    // ---- events and waits ----
    pub fn KeInitializeEvent(event: *mut KEVENT, kind: EVENT_TYPE, state: BOOLEAN);
    pub fn KeSetEvent(event: *mut KEVENT, increment: KPRIORITY, wait: BOOLEAN) -> i32;
    pub fn KeClearEvent(event: *mut KEVENT);
    pub fn KeWaitForSingleObject(
        object: *mut c_void,
        reason: KWAIT_REASON,
        mode: KPROCESSOR_MODE,
        alertable: BOOLEAN,
        timeout: *const i64,
    ) -> NTSTATUS;
    pub fn KeWaitForMultipleObjects(
        count: u32,
        objects: *const *mut c_void,
        wait_type: WAIT_TYPE,
        reason: KWAIT_REASON,
        mode: KPROCESSOR_MODE,
        alertable: BOOLEAN,
        timeout: *const i64,
        wait_blocks: *mut c_void,
    ) -> NTSTATUS;
    pub fn KeDelayExecutionThread(
        mode: KPROCESSOR_MODE,
        alertable: BOOLEAN,
        interval: *const i64,
    ) -> NTSTATUS;

    // ---- timers and DPCs ----
    pub fn KeInitializeTimerEx(timer: *mut KTIMER, kind: TIMER_TYPE);
    pub fn KeSetTimerEx(
        timer: *mut KTIMER,
        due_time: i64,
        period_ms: i32,
        dpc: *mut KDPC,
    ) -> BOOLEAN;
    pub fn KeCancelTimer(timer: *mut KTIMER) -> BOOLEAN;
    pub fn KeInitializeDpc(dpc: *mut KDPC, routine: KDEFERRED_ROUTINE, context: *mut c_void);
    pub fn KeInsertQueueDpc(dpc: *mut KDPC, arg1: *mut c_void, arg2: *mut c_void) -> BOOLEAN;
    pub fn KeFlushQueuedDpcs();

    // ---- system threads and objects ----
    pub fn PsCreateSystemThread(
        thread: *mut HANDLE,
        access: u32,
        attributes: *mut OBJECT_ATTRIBUTES,
        process: HANDLE,
        client_id: *mut c_void,
        start: KSTART_ROUTINE,
        context: *mut c_void,
    ) -> NTSTATUS;
    pub fn PsTerminateSystemThread(status: NTSTATUS) -> NTSTATUS;
    pub fn ObReferenceObjectByHandle(
        handle: HANDLE,
        access: u32,
        object_type: *mut c_void,
        mode: KPROCESSOR_MODE,
        object: *mut *mut c_void,
        info: *mut c_void,
    ) -> NTSTATUS;
    pub fn ObfDereferenceObject(object: *mut c_void) -> isize;
    pub fn ZwClose(handle: HANDLE) -> NTSTATUS;
    pub fn ZwWaitForSingleObject(
        handle: HANDLE,
        alertable: BOOLEAN,
        timeout: *const i64,
    ) -> NTSTATUS;

    // ---- registry ----
    pub fn ZwOpenKey(key: *mut HANDLE, access: u32, attributes: *mut OBJECT_ATTRIBUTES)
        -> NTSTATUS;
    pub fn ZwQueryValueKey(
        key: HANDLE,
        name: *mut UNICODE_STRING,
        class: i32,
        info: *mut c_void,
        length: u32,
        result_length: *mut u32,
    ) -> NTSTATUS;

    pub fn ZwEnumerateValueKey(
        key: HANDLE,
        index: u32,
        class: i32,
        info: *mut c_void,
        length: u32,
        result_length: *mut u32,
    ) -> NTSTATUS;

    // ---- IRPs ----
    pub fn IoAllocateIrp(stack_size: i8, charge_quota: BOOLEAN) -> *mut IRP;
    pub fn IoFreeIrp(irp: *mut IRP);
    pub fn IoReuseIrp(irp: *mut IRP, status: NTSTATUS);
    /// Cancels a pending IRP (the relay: a connect that never answers, a
    /// receive on a socket whose WskDisconnect is a stub).
    pub fn IoCancelIrp(irp: *mut IRP) -> BOOLEAN;

    // ---- MDLs (the relay's buffers, described to WskSend/WskReceive) ----
    pub fn IoAllocateMdl(
        virtual_address: *mut c_void,
        length: u32,
        secondary_buffer: BOOLEAN,
        charge_quota: BOOLEAN,
        irp: *mut IRP,
    ) -> PMDL;
    pub fn IoFreeMdl(mdl: PMDL);
    pub fn MmBuildMdlForNonPagedPool(mdl: PMDL);

    // ---- the control device ----
    pub fn IoCreateDevice(
        driver: *mut DRIVER_OBJECT,
        extension_size: u32,
        name: *mut UNICODE_STRING,
        device_type: u32,
        characteristics: u32,
        exclusive: BOOLEAN,
        device: *mut *mut DEVICE_OBJECT,
    ) -> NTSTATUS;
    pub fn IoDeleteDevice(device: *mut DEVICE_OBJECT);
    pub fn IoCreateSymbolicLink(link: *mut UNICODE_STRING, target: *mut UNICODE_STRING)
        -> NTSTATUS;
    pub fn IoDeleteSymbolicLink(link: *mut UNICODE_STRING) -> NTSTATUS;
    pub fn IofCompleteRequest(irp: *mut IRP, priority_boost: i8);
    pub fn PsGetCurrentProcessId() -> HANDLE;
    pub fn ObOpenObjectByPointer(
        object: *mut c_void,
        attributes: u32,
        access_state: *mut c_void,
        access: u32,
        object_type: *mut c_void,
        mode: KPROCESSOR_MODE,
        handle: *mut HANDLE,
    ) -> NTSTATUS;
    pub fn ZwSetSecurityObject(
        handle: HANDLE,
        information: u32,
        descriptor: *mut SECURITY_DESCRIPTOR,
    ) -> NTSTATUS;
    pub fn RtlCreateSecurityDescriptor(
        descriptor: *mut SECURITY_DESCRIPTOR,
        revision: u32,
    ) -> NTSTATUS;
    pub fn RtlCreateAcl(acl: *mut ACL, length: u32, revision: u32) -> NTSTATUS;
    pub fn RtlAddAccessAllowedAce(
        acl: *mut ACL,
        revision: u32,
        mask: u32,
        sid: *mut c_void,
    ) -> NTSTATUS;
    pub fn RtlSetDaclSecurityDescriptor(
        descriptor: *mut SECURITY_DESCRIPTOR,
        present: BOOLEAN,
        dacl: *mut ACL,
        defaulted: BOOLEAN,
    ) -> NTSTATUS;

    // ---- registry writes (--persist) ----
    /// Opens `attributes`' key, or creates it (its parent must exist).
    /// Prototype: wdm.h `ZwCreateKey` (learn.microsoft.com, "ZwCreateKey
    /// function (wdm.h)"); PASSIVE_LEVEL. Exported by Wine 8's ntoskrnl.exe
    /// (forwarded to NtCreateKey).
    pub fn ZwCreateKey(
        key: *mut HANDLE,
        access: u32,
        attributes: *mut OBJECT_ATTRIBUTES,
        title_index: u32,
        class: *mut UNICODE_STRING,
        create_options: u32,
        disposition: *mut u32,
    ) -> NTSTATUS;
    pub fn ZwSetValueKey(
        key: HANDLE,
        name: *mut UNICODE_STRING,
        title_index: u32,
        kind: u32,
        data: *mut c_void,
        size: u32,
    ) -> NTSTATUS;
    // ---- I/O error log (System event log) ----
    /// Returns a zeroed `IO_ERROR_LOG_PACKET` of `entry_size` bytes (at most
    /// `ERROR_LOG_MAXIMUM_SIZE`), or NULL; `io_object` is a driver or
    /// device object. IRQL <= DISPATCH_LEVEL.
    pub fn IoAllocateErrorLogEntry(io_object: PVOID, entry_size: u8) -> PVOID;
    /// Queues the entry for the Event Log service; the entry then belongs to
    /// the I/O manager. IRQL <= DISPATCH_LEVEL.
    pub fn IoWriteErrorLogEntry(entry: PVOID);
}

#[cfg_attr(
    windows,
    link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")
)]
extern "C" {
    /// `DbgPrintEx(ComponentId, Level, "%s", text)`; see the module docs.
    pub fn DbgPrintEx(component: u32, level: u32, format: *const u8, text: *const u8) -> u32;
}

#[cfg_attr(
    windows,
    link(name = "netio.sys", kind = "raw-dylib", modifiers = "+verbatim")
)]
extern "system" {
    pub fn WskRegister(
        client: *const WSK_CLIENT_NPI,
        registration: *mut WSK_REGISTRATION,
    ) -> NTSTATUS;
    pub fn WskDeregister(registration: *mut WSK_REGISTRATION);
    pub fn WskCaptureProviderNPI(
        registration: *mut WSK_REGISTRATION,
        wait_timeout: u32,
        provider: *mut WSK_PROVIDER_NPI,
    ) -> NTSTATUS;
    pub fn WskReleaseProviderNPI(registration: *mut WSK_REGISTRATION);
}
