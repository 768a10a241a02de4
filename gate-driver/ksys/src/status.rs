//! NTSTATUS values the driver produces or tests for (ntstatus.h).

use crate::types::NTSTATUS;

pub const STATUS_SUCCESS: NTSTATUS = 0;
pub const STATUS_WAIT_0: NTSTATUS = 0;
pub const STATUS_WAIT_1: NTSTATUS = 1;
pub const STATUS_WAIT_2: NTSTATUS = 2;
pub const STATUS_TIMEOUT: NTSTATUS = 0x102;
pub const STATUS_PENDING: NTSTATUS = 0x103;
pub const STATUS_BUFFER_OVERFLOW: NTSTATUS = 0x8000_0005_u32 as i32;
pub const STATUS_NO_MORE_ENTRIES: NTSTATUS = 0x8000_001A_u32 as i32;
pub const STATUS_UNSUCCESSFUL: NTSTATUS = 0xC000_0001_u32 as i32;
pub const STATUS_NOT_IMPLEMENTED: NTSTATUS = 0xC000_0002_u32 as i32;
pub const STATUS_INVALID_PARAMETER: NTSTATUS = 0xC000_000D_u32 as i32;
pub const STATUS_MORE_PROCESSING_REQUIRED: NTSTATUS = 0xC000_0016_u32 as i32;
pub const STATUS_BUFFER_TOO_SMALL: NTSTATUS = 0xC000_0023_u32 as i32;
pub const STATUS_OBJECT_TYPE_MISMATCH: NTSTATUS = 0xC000_0024_u32 as i32;
pub const STATUS_OBJECT_NAME_NOT_FOUND: NTSTATUS = 0xC000_0034_u32 as i32;
pub const STATUS_INSUFFICIENT_RESOURCES: NTSTATUS = 0xC000_009A_u32 as i32;
pub const STATUS_DEVICE_NOT_READY: NTSTATUS = 0xC000_00A3_u32 as i32;
pub const STATUS_FILE_FORCED_CLOSED: NTSTATUS = 0xC000_00B6_u32 as i32;
/// WskAcceptEvent's "not taken" answer: WSK closes the connection itself.
pub const STATUS_REQUEST_NOT_ACCEPTED: NTSTATUS = 0xC000_00D0_u32 as i32;
pub const STATUS_NOT_SUPPORTED: NTSTATUS = 0xC000_00BB_u32 as i32;
pub const STATUS_CANCELLED: NTSTATUS = 0xC000_0120_u32 as i32;
pub const STATUS_INVALID_DEVICE_STATE: NTSTATUS = 0xC000_0184_u32 as i32;
pub const STATUS_NOT_FOUND: NTSTATUS = 0xC000_0225_u32 as i32;
pub const STATUS_ADDRESS_ALREADY_EXISTS: NTSTATUS = 0xC000_020A_u32 as i32;
pub const STATUS_CONNECTION_ABORTED: NTSTATUS = 0xC000_0241_u32 as i32;
pub const STATUS_CONNECTION_RESET: NTSTATUS = 0xC000_020D_u32 as i32;

/// `NT_SUCCESS`: success and informational codes (>= 0).
#[inline]
pub const fn NT_SUCCESS(status: NTSTATUS) -> bool {
    status >= 0
}
/// The remote refused the connection (WskConnect to a closed port).
pub const STATUS_CONNECTION_REFUSED: NTSTATUS = 0xC000_0236_u32 as i32;
/// An operation did not finish in time (the relay's connect and idle timeouts).
pub const STATUS_IO_TIMEOUT: NTSTATUS = 0xC000_00B5_u32 as i32;
/// The remote end closed gracefully (a send after the peer's FIN).
pub const STATUS_CONNECTION_DISCONNECTED: NTSTATUS = 0xC000_020C_u32 as i32;
