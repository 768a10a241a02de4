//! Host test of the binding layouts. The same sizes and offsets are also
//! asserted at compile time next to each type (so the Windows build checks
//! them too); this test names them so a failure reads as a report.

use core::mem::{align_of, offset_of, size_of};
use gate_ksys::*;

#[test]
fn wdm_layouts_match_x64_headers() {
    assert_eq!(size_of::<DRIVER_OBJECT>(), 0x150);
    assert_eq!(offset_of!(DRIVER_OBJECT, DriverUnload), 0x68);
    assert_eq!(offset_of!(DRIVER_OBJECT, MajorFunction), 0x70);
    assert_eq!(size_of::<IRP>(), 0xD0);
    assert_eq!(
        align_of::<IRP>(),
        16,
        "DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)"
    );
    assert_eq!(offset_of!(IRP, IoStatus), 0x30);
    assert_eq!(size_of::<IRP_TAIL_OVERLAY>(), 0x50, "Tail.Overlay");
    assert_eq!(align_of::<IRP_TAIL_OVERLAY>(), 8);
    assert_eq!(
        offset_of!(IRP, Tail) + offset_of!(IRP_TAIL_OVERLAY, CurrentStackLocation),
        0xB8
    );
    assert_eq!(size_of::<IO_STACK_LOCATION>(), 0x48);
    assert_eq!(align_of::<IO_STACK_LOCATION>(), 8);
    assert_eq!(align_of::<DRIVER_OBJECT>(), 8);
    assert_eq!(align_of::<IO_STATUS_BLOCK>(), 8);
    assert_eq!(align_of::<KEVENT>(), 8);
    assert_eq!(align_of::<KDPC>(), 8);
    assert_eq!(align_of::<UNICODE_STRING>(), 8);
    assert_eq!(align_of::<OBJECT_ATTRIBUTES>(), 8);
    assert_eq!(offset_of!(IO_STACK_LOCATION, CompletionRoutine), 0x38);
    assert_eq!(size_of::<KEVENT>(), 0x18);
    assert_eq!(size_of::<KTIMER>(), 0x40);
    assert_eq!(size_of::<KDPC>(), 0x40);
    assert_eq!(align_of::<KTIMER>(), 8);
    assert_eq!(size_of::<UNICODE_STRING>(), 16);
    assert_eq!(size_of::<OBJECT_ATTRIBUTES>(), 0x30);
    assert_eq!(offset_of!(KEY_VALUE_PARTIAL_INFORMATION, Data), 12);
}

#[test]
fn wsk_layouts_match_x64_headers() {
    assert_eq!(size_of::<WSK_INSPECT_ID>(), 16);
    assert_eq!(align_of::<WSK_INSPECT_ID>(), 8);
    assert_eq!(align_of::<WSK_PROVIDER_CONNECTION_DISPATCH>(), 8);
    assert_eq!(align_of::<WSK_BUF>(), 8);
    assert_eq!(offset_of!(WSK_INSPECT_ID, SerialNumber), 8);
    assert_eq!(size_of::<WSK_CLIENT_LISTEN_DISPATCH>(), 24);
    assert_eq!(size_of::<WSK_PROVIDER_LISTEN_DISPATCH>(), 48);
    assert_eq!(
        offset_of!(WSK_PROVIDER_LISTEN_DISPATCH, WskInspectComplete),
        32
    );
    assert_eq!(size_of::<WSK_PROVIDER_DISPATCH>(), 56);
    assert_eq!(offset_of!(WSK_PROVIDER_DISPATCH, WskSocket), 8);
    assert_eq!(size_of::<WSK_PROVIDER_CONNECTION_DISPATCH>(), 104);
    assert_eq!(
        offset_of!(WSK_PROVIDER_CONNECTION_DISPATCH, WskDisconnect),
        64
    );
    assert_eq!(size_of::<WSK_REGISTRATION>(), 24);
    assert_eq!(size_of::<WSK_EVENT_CALLBACK_CONTROL>(), 16);
    assert_eq!(size_of::<WSK_BUF>(), 24);
}

#[test]
fn sockaddr_layouts_match_ws2def() {
    assert_eq!(size_of::<SOCKADDR_IN>(), 16);
    assert_eq!(align_of::<SOCKADDR_IN>(), 4, "IN_ADDR holds a ULONG");
    assert_eq!(align_of::<SOCKADDR_IN6>(), 4, "ULONG sin6_flowinfo");
    assert_eq!(align_of::<SOCKADDR_STORAGE>(), 8);
    assert_eq!(size_of::<SOCKADDR_IN6>(), 28);
    assert_eq!(offset_of!(SOCKADDR_IN6, sin6_addr), 8);
    assert_eq!(size_of::<SOCKADDR_STORAGE>(), 128);
    assert_eq!(AF_INET6, 23, "Windows AF_INET6 is 23");
}

#[test]
fn constants_match_headers() {
    assert_eq!(SO_CONDITIONAL_ACCEPT, 0x3002);
    assert_eq!(SO_WSK_EVENT_CALLBACK, 0x4002);
    assert_eq!(WSK_EVENT_ACCEPT, 0x200);
    assert_eq!(SOL_SOCKET, 0xffff);
    assert_eq!(SO_EXCLUSIVEADDRUSE, 0xFFFF_FFFB);
    assert_eq!(
        (WskInspectReject, WskInspectAccept, WskInspectPend),
        (0, 1, 2)
    );
    assert_eq!(STATUS_FILE_FORCED_CLOSED as u32, 0xC000_00B6);
    assert_eq!(STATUS_MORE_PROCESSING_REQUIRED as u32, 0xC000_0016);
    assert_eq!(NPI_WSK_INTERFACE_ID.Data1, 0x2227_E803);
}
