//! Raw ETW types and routine signatures (evntprov.h, wdm.h), x64 layout.
//!
//! The driver never imports the Etw* routines statically: Wine's ntoskrnl
//! lacks them, and calling a missing import aborts the host process. It
//! resolves them at run time through `MmGetSystemRoutineAddress` and calls
//! them through the function pointer types below (see gate-driver's `etw`
//! module).

use core::ffi::c_void;

use crate::types::{GUID, NTSTATUS};

/// `REGHANDLE`: an opaque provider registration handle.
pub type REGHANDLE = u64;

/// `EVENT_DESCRIPTOR` (evntprov.h): identifies one event.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EVENT_DESCRIPTOR {
    pub Id: u16,
    pub Version: u8,
    pub Channel: u8,
    pub Level: u8,
    pub Opcode: u8,
    pub Task: u16,
    pub Keyword: u64,
}
crate::assert_layout!(
    EVENT_DESCRIPTOR,
    size = 16,
    Id = 0,
    Version = 2,
    Channel = 3,
    Level = 4,
    Opcode = 5,
    Task = 6,
    Keyword = 8
);

/// `EVENT_DATA_DESCRIPTOR` (evntprov.h): one block of event data.
///
/// `Type` shares the bytes older headers call `Reserved`; ETW honours it once
/// the provider has set traits (`EventProviderSetTraits`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EVENT_DATA_DESCRIPTOR {
    /// Address of the data, as a 64-bit integer.
    pub Ptr: u64,
    /// Size of the data in bytes.
    pub Size: u32,
    /// `EVENT_DATA_DESCRIPTOR_TYPE_*`.
    pub Type: u8,
    pub Reserved1: u8,
    pub Reserved2: u16,
}
crate::assert_layout!(
    EVENT_DATA_DESCRIPTOR,
    size = 16,
    Ptr = 0,
    Size = 8,
    Type = 12,
    Reserved1 = 13,
    Reserved2 = 14
);

/// `EVENT_FILTER_DESCRIPTOR` (evntprov.h), passed to the enable callback.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EVENT_FILTER_DESCRIPTOR {
    pub Ptr: u64,
    pub Size: u32,
    pub Type: u32,
}
crate::assert_layout!(
    EVENT_FILTER_DESCRIPTOR,
    size = 16,
    Ptr = 0,
    Size = 8,
    Type = 12
);

/// Plain payload data.
pub const EVENT_DATA_DESCRIPTOR_TYPE_NONE: u8 = 0;
/// TraceLogging event metadata blob.
pub const EVENT_DATA_DESCRIPTOR_TYPE_EVENT_METADATA: u8 = 1;
/// TraceLogging provider metadata (traits) blob.
pub const EVENT_DATA_DESCRIPTOR_TYPE_PROVIDER_METADATA: u8 = 2;

/// `EVENT_INFO_CLASS::EventProviderSetTraits`.
pub const EventProviderSetTraits: u32 = 2;
/// `EVENT_INFO_CLASS::EventProviderUseDescriptorType`.
pub const EventProviderUseDescriptorType: u32 = 3;

/// Enable-callback control code: a session stopped listening (or the last one).
pub const EVENT_CONTROL_CODE_DISABLE_PROVIDER: u32 = 0;
/// Enable-callback control code: a session enabled the provider.
pub const EVENT_CONTROL_CODE_ENABLE_PROVIDER: u32 = 1;
/// Enable-callback control code: a session asks for a state dump.
pub const EVENT_CONTROL_CODE_CAPTURE_STATE: u32 = 2;

/// Channel 11: TraceLogging (self-describing) events.
pub const WINEVENT_CHANNEL_TRACELOGGING: u8 = 11;

/// `PETWENABLECALLBACK` (wdm.h).
pub type PETWENABLECALLBACK = Option<
    unsafe extern "system" fn(
        SourceId: *const GUID,
        ControlCode: u32,
        Level: u8,
        MatchAnyKeyword: u64,
        MatchAllKeyword: u64,
        FilterData: *const EVENT_FILTER_DESCRIPTOR,
        CallbackContext: *mut c_void,
    ),
>;

/// `NTSTATUS EtwRegister(LPCGUID, PETWENABLECALLBACK, PVOID, PREGHANDLE)`.
pub type EtwRegisterFn = unsafe extern "system" fn(
    ProviderId: *const GUID,
    EnableCallback: PETWENABLECALLBACK,
    CallbackContext: *mut c_void,
    RegHandle: *mut REGHANDLE,
) -> NTSTATUS;

/// `NTSTATUS EtwUnregister(REGHANDLE)`.
pub type EtwUnregisterFn = unsafe extern "system" fn(RegHandle: REGHANDLE) -> NTSTATUS;

/// `NTSTATUS EtwSetInformation(REGHANDLE, EVENT_INFO_CLASS, PVOID, ULONG)`.
pub type EtwSetInformationFn = unsafe extern "system" fn(
    RegHandle: REGHANDLE,
    InformationClass: u32,
    EventInformation: *const c_void,
    InformationLength: u32,
) -> NTSTATUS;

/// `NTSTATUS EtwWriteTransfer(REGHANDLE, PCEVENT_DESCRIPTOR, LPCGUID, LPCGUID,
/// ULONG, PEVENT_DATA_DESCRIPTOR)`.
pub type EtwWriteTransferFn = unsafe extern "system" fn(
    RegHandle: REGHANDLE,
    EventDescriptor: *const EVENT_DESCRIPTOR,
    ActivityId: *const GUID,
    RelatedActivityId: *const GUID,
    UserDataCount: u32,
    UserData: *const EVENT_DATA_DESCRIPTOR,
) -> NTSTATUS;

/// `BOOLEAN EtwEventEnabled(REGHANDLE, PCEVENT_DESCRIPTOR)`.
pub type EtwEventEnabledFn =
    unsafe extern "system" fn(RegHandle: REGHANDLE, EventDescriptor: *const EVENT_DESCRIPTOR) -> u8;

const _: () = assert!(core::mem::size_of::<PETWENABLECALLBACK>() == core::mem::size_of::<usize>());
