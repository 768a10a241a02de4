//! gate-ioctl: the gate's control API, defined once for the driver
//! (gate-driver's control device), the operator's CLI (gatectl) and the
//! Linux front's control channel.
//!
//! # Shape
//! - The device is [`DEVICE_NAME`] with the link [`LINK_NAME`]; user mode
//!   opens [`USER_PATH`]. Every code is `METHOD_BUFFERED`: the I/O manager
//!   copies the input into one system buffer of `max(in, out)` bytes and the
//!   output back out of the same buffer, so the driver copies the input
//!   before writing the reply.
//! - Reads ([`IOCTL_GATE_STATUS`], [`IOCTL_GATE_QUERY`], [`IOCTL_GATE_TOP`],
//!   [`IOCTL_GATE_LIST_GET`]) need `FILE_READ_ACCESS`; changes
//!   ([`IOCTL_GATE_SET`], [`IOCTL_GATE_LIST_CHANGE`], [`IOCTL_GATE_BAN`],
//!   [`IOCTL_GATE_UNBAN`], [`IOCTL_GATE_RESET`]) need `FILE_WRITE_ACCESS`
//!   (the access bits of `CTL_CODE`, checked by the I/O manager against the
//!   handle).
//! - Every request starts with `version: u32` ([`VERSION`]) and
//!   `flags: u32`; every reply with `version: u32` and `size: u32` (its own
//!   size in bytes). All structs are `#[repr(C)]`, made of integers only
//!   (every bit pattern is valid), with explicit reserved fields so there is
//!   no padding: the layout is the same for the x64 driver, a Linux host and
//!   C (`include/gate_ioctl.h`, checked against these structs by this
//!   crate's tests).
//! - Versions: requests carry [`VERSION`]. A reply that gains fields
//!   appends them at its end (every older field keeps its offset) and gets
//!   a version of its own, higher by one ([`STATUS_REPLY_VERSION`]); the
//!   driver still answers a caller whose output buffer only holds an older
//!   version with that version's bytes (see [`STATUS_REPLY_V1_SIZE`]).
//! - A request of the wrong length, version or value is refused with a
//!   precise NTSTATUS (see [`status`]) and the driver names the field in an
//!   ETW event. Units: durations in milliseconds, rates in
//!   milli-connections per second (as gate-core's `Config`).
//!
//! # The Linux control channel
//! The Linux front (gate-sim) carries the same codes and bytes over a Unix
//! stream socket into the driver's own IRP_MJ_DEVICE_CONTROL handler; the
//! framing is [`ChannelRequest`] + input bytes, answered by
//! [`ChannelReply`] + output bytes.
#![no_std]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
#![warn(missing_docs)]

pub mod wire;

pub use wire::*;

/// Version of every request and reply struct in this crate. It goes up by
/// one whenever a struct's layout changes other than by appending to a
/// reply that has a version of its own ([`STATUS_REPLY_VERSION`]): the
/// driver refuses a request of any other version with
/// [`status::STATUS_NOT_SUPPORTED`], so a gatectl and a driver of different
/// releases fail at once with that message, never by misreading bytes.
/// History: 1, the first release; 2, `ListGetReply.generation` and
/// `TopReply.auto_bans` (torn-list detection and automatic bans in force).
pub const VERSION: u32 = 2;

/// Kernel name of the control device.
pub const DEVICE_NAME: &str = r"\Device\TcpFrontGate";
/// Symbolic link to the device in the DOS devices namespace.
pub const LINK_NAME: &str = r"\DosDevices\TcpFrontGate";
/// Path user mode opens with CreateFile.
pub const USER_PATH: &str = r"\\.\TcpFrontGate";

/// Device type of the control device (vendor range is 0x8000..=0xFFFF).
pub const FILE_DEVICE_TCP_FRONT_GATE: u32 = 0x8A7E;
/// `METHOD_BUFFERED` (devioctl.h).
pub const METHOD_BUFFERED: u32 = 0;
/// `FILE_ANY_ACCESS` (devioctl.h).
pub const FILE_ANY_ACCESS: u32 = 0;
/// `FILE_READ_ACCESS` (devioctl.h).
pub const FILE_READ_ACCESS: u32 = 1;
/// `FILE_WRITE_ACCESS` (devioctl.h).
pub const FILE_WRITE_ACCESS: u32 = 2;

/// `CTL_CODE(DeviceType, Function, Method, Access)` (devioctl.h).
pub const fn ctl_code(device_type: u32, function: u32, method: u32, access: u32) -> u32 {
    (device_type << 16) | (access << 14) | (function << 2) | method
}

/// The access bits (`FILE_READ_ACCESS`/`FILE_WRITE_ACCESS`) of a code.
pub const fn required_access(code: u32) -> u32 {
    (code >> 14) & 3
}

/// The transfer method of a code.
pub const fn method_of(code: u32) -> u32 {
    code & 3
}

const fn read_code(function: u32) -> u32 {
    ctl_code(
        FILE_DEVICE_TCP_FRONT_GATE,
        function,
        METHOD_BUFFERED,
        FILE_READ_ACCESS,
    )
}

const fn write_code(function: u32) -> u32 {
    ctl_code(
        FILE_DEVICE_TCP_FRONT_GATE,
        function,
        METHOD_BUFFERED,
        FILE_WRITE_ACCESS,
    )
}

/// Status: [`StatusRequest`] -> [`StatusReply`].
pub const IOCTL_GATE_STATUS: u32 = read_code(0x800);
/// One key's state: [`QueryRequest`] -> [`QueryReply`].
pub const IOCTL_GATE_QUERY: u32 = read_code(0x801);
/// Top talkers, one bounded slice of one shard per call: [`TopRequest`] -> [`TopReply`].
pub const IOCTL_GATE_TOP: u32 = read_code(0x802);
/// A page of the allow or deny list, or of the manual bans: [`ListGetRequest`] -> [`ListGetReply`].
pub const IOCTL_GATE_LIST_GET: u32 = read_code(0x803);
/// Change limits live: [`SetRequest`] -> [`SetReply`].
pub const IOCTL_GATE_SET: u32 = write_code(0x810);
/// Add, remove, replace or clear allow/deny entries: [`ListChangeHeader`] + entries -> [`ListChangeReply`].
pub const IOCTL_GATE_LIST_CHANGE: u32 = write_code(0x811);
/// Manual ban of an address or prefix: [`BanRequest`] -> [`BanReply`].
pub const IOCTL_GATE_BAN: u32 = write_code(0x812);
/// Lift manual and automatic bans: [`UnbanRequest`] -> [`UnbanReply`].
pub const IOCTL_GATE_UNBAN: u32 = write_code(0x813);
/// Reset counters: [`ResetRequest`] -> [`ResetReply`].
pub const IOCTL_GATE_RESET: u32 = write_code(0x814);

/// Every code, with its name (for tools and tests).
pub const ALL_CODES: [(u32, &str); 9] = [
    (IOCTL_GATE_STATUS, "IOCTL_GATE_STATUS"),
    (IOCTL_GATE_QUERY, "IOCTL_GATE_QUERY"),
    (IOCTL_GATE_TOP, "IOCTL_GATE_TOP"),
    (IOCTL_GATE_LIST_GET, "IOCTL_GATE_LIST_GET"),
    (IOCTL_GATE_SET, "IOCTL_GATE_SET"),
    (IOCTL_GATE_LIST_CHANGE, "IOCTL_GATE_LIST_CHANGE"),
    (IOCTL_GATE_BAN, "IOCTL_GATE_BAN"),
    (IOCTL_GATE_UNBAN, "IOCTL_GATE_UNBAN"),
    (IOCTL_GATE_RESET, "IOCTL_GATE_RESET"),
];

/// The NTSTATUS values the control device answers with, and what each
/// means for a request (the Win32 error user mode sees in brackets).
pub mod status {
    /// Done (0).
    pub const STATUS_SUCCESS: i32 = 0;
    /// A field has a bad value: the ETW event and the reply name it (87).
    pub const STATUS_INVALID_PARAMETER: i32 = 0xC000_000Du32 as i32;
    /// Unknown control code (1).
    pub const STATUS_INVALID_DEVICE_REQUEST: i32 = 0xC000_0010u32 as i32;
    /// Input shorter or longer than the request struct (24).
    pub const STATUS_INFO_LENGTH_MISMATCH: i32 = 0xC000_0004u32 as i32;
    /// Output buffer smaller than the reply struct (122).
    pub const STATUS_BUFFER_TOO_SMALL: i32 = 0xC000_0023u32 as i32;
    /// The request's version is not [`crate::VERSION`] (50).
    pub const STATUS_NOT_SUPPORTED: i32 = 0xC000_00BBu32 as i32;
    /// The handle lacks the access the code needs (5).
    pub const STATUS_ACCESS_DENIED: i32 = 0xC000_0022u32 as i32;
    /// Another change is being applied; retry (170).
    pub const STATUS_DEVICE_BUSY: i32 = 0x8000_0011u32 as i32;
    /// No memory for the request (a copy of its input, the new
    /// configuration or its registry data): nothing changed (1450).
    pub const STATUS_INSUFFICIENT_RESOURCES: i32 = 0xC000_009Au32 as i32;
    /// The driver is not running (21).
    pub const STATUS_DEVICE_NOT_READY: i32 = 0xC000_00A3u32 as i32;
    /// A list or the manual ban table is full (no bytes were changed) (112).
    pub const STATUS_QUOTA_EXCEEDED: i32 = 0xC000_0044u32 as i32;
    /// Writing the change to the registry failed (the live change stands).
    pub const STATUS_REGISTRY_IO_FAILED: i32 = 0xC000_016Du32 as i32;

    /// A short name for a status (for messages).
    pub fn name(st: i32) -> &'static str {
        match st {
            STATUS_SUCCESS => "STATUS_SUCCESS",
            STATUS_INVALID_PARAMETER => "STATUS_INVALID_PARAMETER",
            STATUS_INVALID_DEVICE_REQUEST => "STATUS_INVALID_DEVICE_REQUEST",
            STATUS_INFO_LENGTH_MISMATCH => "STATUS_INFO_LENGTH_MISMATCH",
            STATUS_BUFFER_TOO_SMALL => "STATUS_BUFFER_TOO_SMALL",
            STATUS_NOT_SUPPORTED => "STATUS_NOT_SUPPORTED",
            STATUS_ACCESS_DENIED => "STATUS_ACCESS_DENIED",
            STATUS_DEVICE_BUSY => "STATUS_DEVICE_BUSY",
            STATUS_INSUFFICIENT_RESOURCES => "STATUS_INSUFFICIENT_RESOURCES",
            STATUS_DEVICE_NOT_READY => "STATUS_DEVICE_NOT_READY",
            STATUS_QUOTA_EXCEEDED => "STATUS_QUOTA_EXCEEDED",
            STATUS_REGISTRY_IO_FAILED => "STATUS_REGISTRY_IO_FAILED",
            _ => "NTSTATUS",
        }
    }
}
