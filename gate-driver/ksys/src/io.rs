//! I/O manager types: DRIVER_OBJECT, IRP, IO_STACK_LOCATION, and the wdm.h
//! inline helpers around them (the WDK defines these in the header, so they
//! are mirrored here rather than imported).

use crate::types::*;
use core::ffi::c_void;

/// `DRIVER_OBJECT` (wdm.h). Only `DriverUnload` is written by the gate.
#[repr(C)]
pub struct DRIVER_OBJECT {
    pub Type: i16,
    pub Size: i16,
    pub DeviceObject: PVOID,
    pub Flags: u32,
    pub DriverStart: PVOID,
    pub DriverSize: u32,
    pub DriverSection: PVOID,
    pub DriverExtension: PVOID,
    pub DriverName: UNICODE_STRING,
    pub HardwareDatabase: *mut UNICODE_STRING,
    pub FastIoDispatch: PVOID,
    pub DriverInit: PVOID,
    pub DriverStartIo: PVOID,
    pub DriverUnload: Option<DRIVER_UNLOAD>,
    pub MajorFunction: [PVOID; 28],
}
crate::assert_layout!(
    DRIVER_OBJECT,
    size = 0x150,
    DeviceObject = 0x08,
    Flags = 0x10,
    DriverStart = 0x18,
    DriverSize = 0x20,
    DriverSection = 0x28,
    DriverExtension = 0x30,
    DriverName = 0x38,
    HardwareDatabase = 0x48,
    FastIoDispatch = 0x50,
    DriverInit = 0x58,
    DriverStartIo = 0x60,
    DriverUnload = 0x68,
    MajorFunction = 0x70,
);

/// `DRIVER_UNLOAD`.
pub type DRIVER_UNLOAD = unsafe extern "system" fn(driver: *mut DRIVER_OBJECT);

/// `IO_STATUS_BLOCK` (wdm.h); the Status/Pointer union is kept as `Status`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IO_STATUS_BLOCK {
    pub Status: NTSTATUS,
    pub _pad: u32,
    pub Information: ULONG_PTR,
}
crate::assert_layout!(IO_STATUS_BLOCK, size = 16, Status = 0, Information = 8);

/// `IO_COMPLETION_ROUTINE`: return `STATUS_MORE_PROCESSING_REQUIRED` for an
/// IRP the driver allocated itself.
pub type IO_COMPLETION_ROUTINE =
    unsafe extern "system" fn(device: PVOID, irp: *mut IRP, context: PVOID) -> NTSTATUS;

/// `IO_STACK_LOCATION` (wdm.h). The 32-byte `Parameters` union is opaque:
/// the gate only hands IRPs to WSK, which uses it.
#[repr(C)]
pub struct IO_STACK_LOCATION {
    pub MajorFunction: u8,
    pub MinorFunction: u8,
    pub Flags: u8,
    pub Control: u8,
    pub Parameters: [usize; 4],
    pub DeviceObject: PVOID,
    pub FileObject: PVOID,
    pub CompletionRoutine: Option<IO_COMPLETION_ROUTINE>,
    pub Context: PVOID,
}
crate::assert_layout!(
    IO_STACK_LOCATION,
    size = 0x48,
    MajorFunction = 0,
    Control = 3,
    Parameters = 8,
    DeviceObject = 0x28,
    FileObject = 0x30,
    CompletionRoutine = 0x38,
    Context = 0x40,
);

pub const SL_INVOKE_ON_CANCEL: u8 = 0x20;
pub const SL_INVOKE_ON_SUCCESS: u8 = 0x40;
pub const SL_INVOKE_ON_ERROR: u8 = 0x80;

/// `Tail.Overlay` of an IRP (the only view of the Tail union used here):
/// 0x50 bytes, as in wdm.h (10.0.26100), Wine and mingw-w64. The union's
/// other member, `KAPC Apc` (0x58 bytes), makes the union itself 0x58; the
/// IRP's 16-byte alignment pads this view to the same end (0xD0).
#[repr(C)]
pub struct IRP_TAIL_OVERLAY {
    pub DriverContext: [PVOID; 4],
    pub Thread: PETHREAD,
    pub AuxiliaryBuffer: PVOID,
    pub ListEntry: LIST_ENTRY,
    /// Union with `PacketType`.
    pub CurrentStackLocation: *mut IO_STACK_LOCATION,
    pub OriginalFileObject: PVOID,
}
crate::assert_layout!(
    IRP_TAIL_OVERLAY,
    size = 0x50,
    DriverContext = 0,
    Thread = 0x20,
    AuxiliaryBuffer = 0x28,
    ListEntry = 0x30,
    CurrentStackLocation = 0x40,
    OriginalFileObject = 0x48,
);
const _: () = assert!(core::mem::align_of::<IRP_TAIL_OVERLAY>() == 8);

/// `IRP` (wdm.h), x64. The stack locations follow the structure in memory.
/// `DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)` in the header: 16-aligned.
#[repr(C, align(16))]
pub struct IRP {
    pub Type: i16,
    pub Size: u16,
    pub AllocationProcessorNumber: u16,
    pub Reserved: u16,
    pub MdlAddress: PMDL,
    pub Flags: u32,
    pub AssociatedIrp: PVOID,
    pub ThreadListEntry: LIST_ENTRY,
    pub IoStatus: IO_STATUS_BLOCK,
    pub RequestorMode: i8,
    pub PendingReturned: BOOLEAN,
    pub StackCount: i8,
    pub CurrentLocation: i8,
    pub Cancel: BOOLEAN,
    pub CancelIrql: KIRQL,
    pub ApcEnvironment: i8,
    pub AllocationFlags: u8,
    pub UserIosb: PVOID,
    pub UserEvent: PVOID,
    pub Overlay: [usize; 2],
    pub CancelRoutine: PVOID,
    pub UserBuffer: PVOID,
    pub Tail: IRP_TAIL_OVERLAY,
}
crate::assert_layout!(
    IRP,
    size = 0xD0,
    Type = 0,
    Size = 2,
    MdlAddress = 0x08,
    Flags = 0x10,
    AssociatedIrp = 0x18,
    ThreadListEntry = 0x20,
    IoStatus = 0x30,
    RequestorMode = 0x40,
    PendingReturned = 0x41,
    StackCount = 0x42,
    CurrentLocation = 0x43,
    Cancel = 0x44,
    CancelIrql = 0x45,
    UserIosb = 0x48,
    UserEvent = 0x50,
    Overlay = 0x58,
    CancelRoutine = 0x68,
    UserBuffer = 0x70,
    Tail = 0x78,
);
const _: () = assert!(core::mem::align_of::<IRP>() == 16);

/// `IO_NO_INCREMENT`, the priority boost for IoCompleteRequest.
pub const IO_NO_INCREMENT: i8 = 0;

/// `IoGetNextIrpStackLocation` (wdm.h inline).
///
/// # Safety
/// `irp` must point to a valid IRP with at least one stack location left.
#[inline]
pub unsafe fn IoGetNextIrpStackLocation(irp: *mut IRP) -> *mut IO_STACK_LOCATION {
    // SAFETY: per the caller's contract the IRP is valid and has a next
    // location, which lies directly below the current one.
    unsafe { (*irp).Tail.CurrentStackLocation.wrapping_sub(1) }
}

/// `IoSetCompletionRoutine` (wdm.h inline): the routine runs when the IRP is
/// completed with a status of the selected kinds.
///
/// # Safety
/// `irp` must point to a valid IRP the caller owns, with a next stack location.
#[inline]
pub unsafe fn IoSetCompletionRoutine(
    irp: *mut IRP,
    routine: IO_COMPLETION_ROUTINE,
    context: *mut c_void,
    on_success: bool,
    on_error: bool,
    on_cancel: bool,
) {
    // SAFETY: the caller guarantees the IRP and its next location are valid.
    unsafe {
        let sp = IoGetNextIrpStackLocation(irp);
        (*sp).CompletionRoutine = Some(routine);
        (*sp).Context = context;
        let mut control = 0u8;
        if on_success {
            control |= SL_INVOKE_ON_SUCCESS;
        }
        if on_error {
            control |= SL_INVOKE_ON_ERROR;
        }
        if on_cancel {
            control |= SL_INVOKE_ON_CANCEL;
        }
        (*sp).Control = control;
    }
}

/// `IO_ERROR_LOG_PACKET` (wdm.h): the head of an I/O error log entry. The
/// insertion strings (NUL-terminated UTF-16, `NumberOfStrings` of them)
/// follow at `StringOffset` bytes from the start of the packet; the Event
/// Log service formats the message `ErrorCode` from the source's
/// EventMessageFile with them as `%2`, `%3`, ... (`%1` is the device or
/// driver name).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IO_ERROR_LOG_PACKET {
    pub MajorFunctionCode: u8,
    pub RetryCount: u8,
    pub DumpDataSize: u16,
    pub NumberOfStrings: u16,
    pub StringOffset: u16,
    pub EventCategory: u16,
    pub ErrorCode: NTSTATUS,
    pub UniqueErrorValue: u32,
    pub FinalStatus: NTSTATUS,
    pub SequenceNumber: u32,
    pub IoControlCode: u32,
    pub DeviceOffset: i64,
    pub DumpData: [u32; 1],
}
crate::assert_layout!(
    IO_ERROR_LOG_PACKET,
    size = 0x30,
    DumpDataSize = 0x02,
    NumberOfStrings = 0x04,
    StringOffset = 0x06,
    EventCategory = 0x08,
    ErrorCode = 0x0C,
    UniqueErrorValue = 0x10,
    FinalStatus = 0x14,
    SequenceNumber = 0x18,
    IoControlCode = 0x1C,
    DeviceOffset = 0x20,
    DumpData = 0x28,
);

/// `ERROR_LOG_MAXIMUM_SIZE` (wdm.h): the largest error log entry, packet
/// and strings together, in bytes.
pub const ERROR_LOG_MAXIMUM_SIZE: usize = 240;
