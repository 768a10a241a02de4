//! Kernel dispatcher objects (events, timers, DPCs, threads) and wait
//! arguments. The objects are opaque: only their size and alignment matter
//! to the driver, which initialises them with the Ke* routines.

use crate::types::*;
use core::ffi::c_void;

/// `KEVENT` (wdm.h): a DISPATCHER_HEADER, 0x18 bytes.
#[repr(C, align(8))]
pub struct KEVENT {
    pub Opaque: [u64; 3],
}
crate::assert_layout!(KEVENT, size = 0x18);

/// `KTIMER` (wdm.h), 0x40 bytes on x64.
#[repr(C, align(8))]
pub struct KTIMER {
    pub Opaque: [u64; 8],
}
crate::assert_layout!(KTIMER, size = 0x40);

/// `KDPC` (wdm.h), 0x40 bytes on x64.
#[repr(C, align(8))]
pub struct KDPC {
    pub Opaque: [u64; 8],
}
crate::assert_layout!(KDPC, size = 0x40);

/// `KDEFERRED_ROUTINE`: runs at DISPATCH_LEVEL when a timer's DPC is queued.
pub type KDEFERRED_ROUTINE = unsafe extern "system" fn(
    dpc: *mut KDPC,
    context: *mut c_void,
    arg1: *mut c_void,
    arg2: *mut c_void,
);

/// `KSTART_ROUTINE`: a system thread's body.
pub type KSTART_ROUTINE = unsafe extern "system" fn(context: *mut c_void);

/// `EVENT_TYPE`.
pub type EVENT_TYPE = i32;
pub const NotificationEvent: EVENT_TYPE = 0;
pub const SynchronizationEvent: EVENT_TYPE = 1;

/// `TIMER_TYPE`.
pub type TIMER_TYPE = i32;
pub const NotificationTimer: TIMER_TYPE = 0;
pub const SynchronizationTimer: TIMER_TYPE = 1;

/// `KWAIT_REASON` (only `Executive` is used).
pub type KWAIT_REASON = i32;
pub const Executive: KWAIT_REASON = 0;

/// `MODE` (only `KernelMode` is used).
pub const KernelMode: KPROCESSOR_MODE = 0;

/// `WAIT_TYPE`.
pub type WAIT_TYPE = i32;
pub const WaitAll: WAIT_TYPE = 0;
pub const WaitAny: WAIT_TYPE = 1;

/// `THREAD_WAIT_OBJECTS`: most objects KeWaitForMultipleObjects takes without
/// a caller-supplied wait block array.
pub const THREAD_WAIT_OBJECTS: u32 = 3;

/// IRQL levels.
pub const PASSIVE_LEVEL: KIRQL = 0;
pub const APC_LEVEL: KIRQL = 1;
pub const DISPATCH_LEVEL: KIRQL = 2;

/// `THREAD_ALL_ACCESS` for PsCreateSystemThread / ObReferenceObjectByHandle.
pub const THREAD_ALL_ACCESS: u32 = 0x001F_FFFF;
/// `SYNCHRONIZE` access right.
pub const SYNCHRONIZE: u32 = 0x0010_0000;
