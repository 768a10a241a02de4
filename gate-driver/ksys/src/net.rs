//! Socket address types and option constants (ws2def.h, ws2ipdef.h).
//! Note: Windows' AF_INET6 is 23, not Linux's 10.

pub type ADDRESS_FAMILY = u16;
pub const AF_INET: ADDRESS_FAMILY = 2;
pub const AF_INET6: ADDRESS_FAMILY = 23;

pub const SOCK_STREAM: u16 = 1;
pub const IPPROTO_TCP: u32 = 6;
pub const IPPROTO_IPV6: u32 = 41;

pub const SOL_SOCKET: u32 = 0xffff;
pub const SO_REUSEADDR: u32 = 0x0004;
/// `SO_EXCLUSIVEADDRUSE` is `(int)(~SO_REUSEADDR)`.
pub const SO_EXCLUSIVEADDRUSE: u32 = !SO_REUSEADDR;
pub const SO_CONDITIONAL_ACCEPT: u32 = 0x3002;
pub const IPV6_V6ONLY: u32 = 27;

/// `SOCKADDR`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SOCKADDR {
    pub sa_family: ADDRESS_FAMILY,
    pub sa_data: [u8; 14],
}
crate::assert_layout!(SOCKADDR, size = 16, sa_family = 0, sa_data = 2);

/// `SOCKADDR_IN`; port and address in network byte order. 4-aligned as in
/// ws2def.h, where `sin_addr` is an `IN_ADDR` (a union with a ULONG); the
/// bytes are kept as `[u8; 4]` here, the alignment comes from the repr.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default)]
pub struct SOCKADDR_IN {
    pub sin_family: ADDRESS_FAMILY,
    pub sin_port: u16,
    pub sin_addr: [u8; 4],
    pub sin_zero: [u8; 8],
}
crate::assert_layout!(
    SOCKADDR_IN,
    size = 16,
    sin_family = 0,
    sin_port = 2,
    sin_addr = 4,
    sin_zero = 8
);
const _: () = assert!(core::mem::align_of::<SOCKADDR_IN>() == 4);

/// `SOCKADDR_IN6`; port, flow info and address in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SOCKADDR_IN6 {
    pub sin6_family: ADDRESS_FAMILY,
    pub sin6_port: u16,
    pub sin6_flowinfo: u32,
    pub sin6_addr: [u8; 16],
    pub sin6_scope_id: u32,
}
crate::assert_layout!(
    SOCKADDR_IN6,
    size = 28,
    sin6_family = 0,
    sin6_port = 2,
    sin6_flowinfo = 4,
    sin6_addr = 8,
    sin6_scope_id = 24,
);

/// `SOCKADDR_STORAGE`: 128 bytes, 8-aligned, large enough for any family.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct SOCKADDR_STORAGE {
    pub ss_family: ADDRESS_FAMILY,
    pub __ss_pad1: [u8; 6],
    pub __ss_align: i64,
    pub __ss_pad2: [u8; 112],
}
crate::assert_layout!(SOCKADDR_STORAGE, size = 128, ss_family = 0, __ss_align = 8);
