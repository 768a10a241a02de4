//! Winsock Kernel (wsk.h): registration, provider and client dispatch
//! tables, the conditional-accept callbacks, and their constants.

use crate::io::IRP;
use crate::net::{ADDRESS_FAMILY, SOCKADDR};
use crate::types::*;
use core::ffi::c_void;

/// `WSK_MAKE_VERSION(1, 0)`.
pub const WSK_VERSION_1_0: u16 = 0x0100;
pub const WSK_INFINITE_WAIT: u32 = 0xFFFF_FFFF;
pub const WSK_NO_WAIT: u32 = 0;

pub const WSK_FLAG_BASIC_SOCKET: u32 = 0x0000_0000;
pub const WSK_FLAG_LISTEN_SOCKET: u32 = 0x0000_0001;
pub const WSK_FLAG_CONNECTION_SOCKET: u32 = 0x0000_0002;
pub const WSK_FLAG_AT_DISPATCH_LEVEL: u32 = 0x0000_0008;
/// `WskDisconnect` flag: abortive (RST) disconnect.
pub const WSK_FLAG_ABORTIVE: u32 = 0x0000_0001;

/// `SO_WSK_EVENT_CALLBACK` (level SOL_SOCKET).
pub const SO_WSK_EVENT_CALLBACK: u32 = 0x4002;
pub const WSK_EVENT_ACCEPT: u32 = 0x0000_0200;
pub const WSK_EVENT_DISABLE: u32 = 0x8000_0000;

/// `NPI_WSK_INTERFACE_ID` {2227E803-8D8B-11D4-ABAD-009027719E09}, exported
/// by netio.sys as data; WSK compares it by value, so a copy serves.
pub const NPI_WSK_INTERFACE_ID: GUID = GUID {
    Data1: 0x2227_E803,
    Data2: 0x8D8B,
    Data3: 0x11D4,
    Data4: [0xAB, 0xAD, 0x00, 0x90, 0x27, 0x71, 0x9E, 0x09],
};

/// `WSK_CONTROL_SOCKET_TYPE`.
pub type WSK_CONTROL_SOCKET_TYPE = i32;
pub const WskSetOption: WSK_CONTROL_SOCKET_TYPE = 0;
pub const WskGetOption: WSK_CONTROL_SOCKET_TYPE = 1;
pub const WskIoctl: WSK_CONTROL_SOCKET_TYPE = 2;

/// `WSK_INSPECT_ACTION`.
pub type WSK_INSPECT_ACTION = i32;
pub const WskInspectReject: WSK_INSPECT_ACTION = 0;
pub const WskInspectAccept: WSK_INSPECT_ACTION = 1;
pub const WskInspectPend: WSK_INSPECT_ACTION = 2;

/// `WSK_INSPECT_ID`: identifies a connection request by value.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct WSK_INSPECT_ID {
    pub Key: ULONG_PTR,
    pub SerialNumber: u32,
}
crate::assert_layout!(WSK_INSPECT_ID, size = 16, Key = 0, SerialNumber = 8);

/// `WSK_SOCKET`: the provider's socket object; `Dispatch` points at the
/// provider dispatch table of the socket's category.
#[repr(C)]
pub struct WSK_SOCKET {
    pub Dispatch: *const c_void,
}
crate::assert_layout!(WSK_SOCKET, size = 8, Dispatch = 0);

/// `WSK_CLIENT` is opaque.
pub type WSK_CLIENT = c_void;

/// `WSK_BUF`.
#[repr(C)]
pub struct WSK_BUF {
    pub Mdl: PMDL,
    pub Offset: u32,
    pub Length: SIZE_T,
}
crate::assert_layout!(WSK_BUF, size = 24, Mdl = 0, Offset = 8, Length = 16);

/// `WSK_EVENT_CALLBACK_CONTROL` (for SO_WSK_EVENT_CALLBACK).
#[repr(C)]
pub struct WSK_EVENT_CALLBACK_CONTROL {
    pub NpiId: *const GUID,
    pub EventMask: u32,
}
crate::assert_layout!(
    WSK_EVENT_CALLBACK_CONTROL,
    size = 16,
    NpiId = 0,
    EventMask = 8
);

// ---- client side: registration and callbacks ----

pub type PFN_WSK_CLIENT_EVENT = unsafe extern "system" fn(
    client_context: PVOID,
    event_type: i32,
    information: PVOID,
    information_length: SIZE_T,
) -> NTSTATUS;

/// `WSK_CLIENT_DISPATCH`.
#[repr(C)]
pub struct WSK_CLIENT_DISPATCH {
    pub Version: u16,
    pub Reserved: u16,
    pub WskClientEvent: Option<PFN_WSK_CLIENT_EVENT>,
}
crate::assert_layout!(
    WSK_CLIENT_DISPATCH,
    size = 16,
    Version = 0,
    Reserved = 2,
    WskClientEvent = 8
);

/// `WSK_CLIENT_NPI`.
#[repr(C)]
pub struct WSK_CLIENT_NPI {
    pub ClientContext: PVOID,
    pub Dispatch: *const WSK_CLIENT_DISPATCH,
}
crate::assert_layout!(WSK_CLIENT_NPI, size = 16, ClientContext = 0, Dispatch = 8);

/// `WSK_REGISTRATION`: opaque storage owned by WSK between WskRegister and
/// WskDeregister.
#[repr(C)]
pub struct WSK_REGISTRATION {
    pub ReservedRegistrationState: u64,
    pub ReservedRegistrationContext: PVOID,
    pub ReservedRegistrationLock: KSPIN_LOCK,
}
crate::assert_layout!(
    WSK_REGISTRATION,
    size = 24,
    ReservedRegistrationState = 0,
    ReservedRegistrationContext = 8,
    ReservedRegistrationLock = 16,
);

pub type PFN_WSK_ACCEPT_EVENT = unsafe extern "system" fn(
    socket_context: PVOID,
    flags: u32,
    local: *const SOCKADDR,
    remote: *const SOCKADDR,
    accept_socket: *mut WSK_SOCKET,
    accept_socket_context: *mut PVOID,
    accept_socket_dispatch: *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
) -> NTSTATUS;

pub type PFN_WSK_INSPECT_EVENT = unsafe extern "system" fn(
    socket_context: PVOID,
    local: *const SOCKADDR,
    remote: *const SOCKADDR,
    inspect_id: *const WSK_INSPECT_ID,
) -> WSK_INSPECT_ACTION;

pub type PFN_WSK_ABORT_EVENT =
    unsafe extern "system" fn(socket_context: PVOID, inspect_id: *const WSK_INSPECT_ID) -> NTSTATUS;

/// `WSK_CLIENT_LISTEN_DISPATCH`.
#[repr(C)]
pub struct WSK_CLIENT_LISTEN_DISPATCH {
    pub WskAcceptEvent: Option<PFN_WSK_ACCEPT_EVENT>,
    pub WskInspectEvent: Option<PFN_WSK_INSPECT_EVENT>,
    pub WskAbortEvent: Option<PFN_WSK_ABORT_EVENT>,
}
crate::assert_layout!(
    WSK_CLIENT_LISTEN_DISPATCH,
    size = 24,
    WskAcceptEvent = 0,
    WskInspectEvent = 8,
    WskAbortEvent = 16,
);

pub type PFN_WSK_RECEIVE_EVENT = unsafe extern "system" fn(
    socket_context: PVOID,
    flags: u32,
    data_indication: PVOID,
    bytes_indicated: SIZE_T,
    bytes_accepted: *mut SIZE_T,
) -> NTSTATUS;
pub type PFN_WSK_DISCONNECT_EVENT =
    unsafe extern "system" fn(socket_context: PVOID, flags: u32) -> NTSTATUS;
pub type PFN_WSK_SEND_BACKLOG_EVENT =
    unsafe extern "system" fn(socket_context: PVOID, ideal_backlog_size: SIZE_T) -> NTSTATUS;

/// `WSK_CLIENT_CONNECTION_DISPATCH`.
#[repr(C)]
pub struct WSK_CLIENT_CONNECTION_DISPATCH {
    pub WskReceiveEvent: Option<PFN_WSK_RECEIVE_EVENT>,
    pub WskDisconnectEvent: Option<PFN_WSK_DISCONNECT_EVENT>,
    pub WskSendBacklogEvent: Option<PFN_WSK_SEND_BACKLOG_EVENT>,
}
crate::assert_layout!(WSK_CLIENT_CONNECTION_DISPATCH, size = 24);

// ---- provider side: dispatch tables ----

pub type PFN_WSK_SOCKET = unsafe extern "system" fn(
    client: *mut WSK_CLIENT,
    family: ADDRESS_FAMILY,
    socket_type: u16,
    protocol: u32,
    flags: u32,
    socket_context: PVOID,
    dispatch: *const c_void,
    owning_process: PEPROCESS,
    owning_thread: PETHREAD,
    security_descriptor: PSECURITY_DESCRIPTOR,
    irp: *mut IRP,
) -> NTSTATUS;

pub type PFN_WSK_CONTROL_CLIENT = unsafe extern "system" fn(
    client: *mut WSK_CLIENT,
    control_code: u32,
    input_size: SIZE_T,
    input: PVOID,
    output_size: SIZE_T,
    output: PVOID,
    output_size_returned: *mut SIZE_T,
    irp: *mut IRP,
) -> NTSTATUS;

/// `WSK_PROVIDER_DISPATCH`. Entries the gate never calls are kept as
/// pointers so the layout is exact.
#[repr(C)]
pub struct WSK_PROVIDER_DISPATCH {
    pub Version: u16,
    pub Reserved: u16,
    pub WskSocket: Option<PFN_WSK_SOCKET>,
    pub WskSocketConnect: PVOID,
    pub WskControlClient: Option<PFN_WSK_CONTROL_CLIENT>,
    pub WskGetAddressInfo: PVOID,
    pub WskFreeAddressInfo: PVOID,
    pub WskGetNameInfo: PVOID,
}
crate::assert_layout!(
    WSK_PROVIDER_DISPATCH,
    size = 56,
    Version = 0,
    WskSocket = 8,
    WskSocketConnect = 16,
    WskControlClient = 24,
    WskGetAddressInfo = 32,
    WskFreeAddressInfo = 40,
    WskGetNameInfo = 48,
);

/// `WSK_PROVIDER_NPI`.
#[repr(C)]
pub struct WSK_PROVIDER_NPI {
    pub Client: *mut WSK_CLIENT,
    pub Dispatch: *const WSK_PROVIDER_DISPATCH,
}
crate::assert_layout!(WSK_PROVIDER_NPI, size = 16, Client = 0, Dispatch = 8);

pub type PFN_WSK_CONTROL_SOCKET = unsafe extern "system" fn(
    socket: *mut WSK_SOCKET,
    request_type: WSK_CONTROL_SOCKET_TYPE,
    control_code: u32,
    level: u32,
    input_size: SIZE_T,
    input: PVOID,
    output_size: SIZE_T,
    output: PVOID,
    output_size_returned: *mut SIZE_T,
    irp: *mut IRP,
) -> NTSTATUS;

pub type PFN_WSK_CLOSE_SOCKET =
    unsafe extern "system" fn(socket: *mut WSK_SOCKET, irp: *mut IRP) -> NTSTATUS;

pub type PFN_WSK_BIND = unsafe extern "system" fn(
    socket: *mut WSK_SOCKET,
    local: *const SOCKADDR,
    flags: u32,
    irp: *mut IRP,
) -> NTSTATUS;

pub type PFN_WSK_ACCEPT = unsafe extern "system" fn(
    listen_socket: *mut WSK_SOCKET,
    flags: u32,
    accept_socket_context: PVOID,
    accept_socket_dispatch: *const WSK_CLIENT_CONNECTION_DISPATCH,
    local: *mut SOCKADDR,
    remote: *mut SOCKADDR,
    irp: *mut IRP,
) -> NTSTATUS;

pub type PFN_WSK_INSPECT_COMPLETE = unsafe extern "system" fn(
    listen_socket: *mut WSK_SOCKET,
    inspect_id: *const WSK_INSPECT_ID,
    action: WSK_INSPECT_ACTION,
    irp: *mut IRP,
) -> NTSTATUS;

pub type PFN_WSK_GET_ADDRESS = unsafe extern "system" fn(
    socket: *mut WSK_SOCKET,
    addr: *mut SOCKADDR,
    irp: *mut IRP,
) -> NTSTATUS;

pub type PFN_WSK_CONNECT = unsafe extern "system" fn(
    socket: *mut WSK_SOCKET,
    remote: *const SOCKADDR,
    flags: u32,
    irp: *mut IRP,
) -> NTSTATUS;

pub type PFN_WSK_SEND_RECEIVE = unsafe extern "system" fn(
    socket: *mut WSK_SOCKET,
    buffer: *mut WSK_BUF,
    flags: u32,
    irp: *mut IRP,
) -> NTSTATUS;

pub type PFN_WSK_DISCONNECT = unsafe extern "system" fn(
    socket: *mut WSK_SOCKET,
    buffer: *mut WSK_BUF,
    flags: u32,
    irp: *mut IRP,
) -> NTSTATUS;

pub type PFN_WSK_RELEASE_DATA_INDICATION_LIST =
    unsafe extern "system" fn(socket: *mut WSK_SOCKET, data_indication: PVOID) -> NTSTATUS;

/// `WSK_PROVIDER_BASIC_DISPATCH`: the first part of every socket dispatch.
#[repr(C)]
pub struct WSK_PROVIDER_BASIC_DISPATCH {
    pub WskControlSocket: Option<PFN_WSK_CONTROL_SOCKET>,
    pub WskCloseSocket: Option<PFN_WSK_CLOSE_SOCKET>,
}
crate::assert_layout!(
    WSK_PROVIDER_BASIC_DISPATCH,
    size = 16,
    WskControlSocket = 0,
    WskCloseSocket = 8
);

/// `WSK_PROVIDER_LISTEN_DISPATCH`.
#[repr(C)]
pub struct WSK_PROVIDER_LISTEN_DISPATCH {
    pub Basic: WSK_PROVIDER_BASIC_DISPATCH,
    pub WskBind: Option<PFN_WSK_BIND>,
    pub WskAccept: Option<PFN_WSK_ACCEPT>,
    pub WskInspectComplete: Option<PFN_WSK_INSPECT_COMPLETE>,
    pub WskGetLocalAddress: Option<PFN_WSK_GET_ADDRESS>,
}
crate::assert_layout!(
    WSK_PROVIDER_LISTEN_DISPATCH,
    size = 48,
    Basic = 0,
    WskBind = 16,
    WskAccept = 24,
    WskInspectComplete = 32,
    WskGetLocalAddress = 40,
);

/// `WSK_PROVIDER_CONNECTION_DISPATCH` with the `WskSendEx` / `WskReceiveEx`
/// entries at the end, as in the 10.0.26100 headers, Wine's and
/// mingw-w64's. Older SDKs lack them (10.0.16299, RS3, does; they came
/// later than RS2). The driver never calls them, so on a system whose
/// provider table ends before them only fields it has are read.
#[repr(C)]
pub struct WSK_PROVIDER_CONNECTION_DISPATCH {
    pub Basic: WSK_PROVIDER_BASIC_DISPATCH,
    pub WskBind: Option<PFN_WSK_BIND>,
    pub WskConnect: Option<PFN_WSK_CONNECT>,
    pub WskGetLocalAddress: Option<PFN_WSK_GET_ADDRESS>,
    pub WskGetRemoteAddress: Option<PFN_WSK_GET_ADDRESS>,
    pub WskSend: Option<PFN_WSK_SEND_RECEIVE>,
    pub WskReceive: Option<PFN_WSK_SEND_RECEIVE>,
    pub WskDisconnect: Option<PFN_WSK_DISCONNECT>,
    pub WskRelease: Option<PFN_WSK_RELEASE_DATA_INDICATION_LIST>,
    pub WskConnectEx: PVOID,
    pub WskSendEx: PVOID,
    pub WskReceiveEx: PVOID,
}
crate::assert_layout!(
    WSK_PROVIDER_CONNECTION_DISPATCH,
    size = 104,
    Basic = 0,
    WskBind = 16,
    WskConnect = 24,
    WskGetLocalAddress = 32,
    WskGetRemoteAddress = 40,
    WskSend = 48,
    WskReceive = 56,
    WskDisconnect = 64,
    WskRelease = 72,
    WskConnectEx = 80,
    WskSendEx = 88,
    WskReceiveEx = 96,
);
