//! Run-time library, registry, pool and debug-output definitions.

use crate::types::*;
use core::ffi::c_void;

/// `KEY_VALUE_INFORMATION_CLASS` value used with ZwQueryValueKey.
pub const KeyValuePartialInformation: i32 = 2;

/// `KEY_VALUE_INFORMATION_CLASS` value used with ZwEnumerateValueKey.
pub const KeyValueBasicInformation: i32 = 0;

/// `KEY_VALUE_BASIC_INFORMATION` header; `Name` (UTF-16, not terminated)
/// runs on for `NameLength` bytes.
#[repr(C)]
pub struct KEY_VALUE_BASIC_INFORMATION {
    pub TitleIndex: u32,
    pub Type: u32,
    pub NameLength: u32,
    pub Name: [u16; 1],
}
crate::assert_layout!(
    KEY_VALUE_BASIC_INFORMATION,
    size = 16,
    TitleIndex = 0,
    Type = 4,
    NameLength = 8,
    Name = 12,
);

/// `KEY_VALUE_PARTIAL_INFORMATION` header; `Data` runs on for `DataLength`.
#[repr(C)]
pub struct KEY_VALUE_PARTIAL_INFORMATION {
    pub TitleIndex: u32,
    pub Type: u32,
    pub DataLength: u32,
    pub Data: [u8; 1],
}
crate::assert_layout!(
    KEY_VALUE_PARTIAL_INFORMATION,
    size = 16,
    TitleIndex = 0,
    Type = 4,
    DataLength = 8,
    Data = 12,
);

pub const REG_SZ: u32 = 1;
pub const REG_DWORD: u32 = 4;
pub const REG_MULTI_SZ: u32 = 7;
pub const REG_QWORD: u32 = 11;

/// `KEY_READ` access mask.
pub const KEY_READ: u32 = 0x0002_0019;
/// `KEY_SET_VALUE` access mask.
pub const KEY_SET_VALUE: u32 = 0x0002;
/// ZwCreateKey `CreateOptions`: the key is kept across restarts.
pub const REG_OPTION_NON_VOLATILE: u32 = 0;
/// ZwCreateKey `CreateOptions`: the key lives until the next boot.
pub const REG_OPTION_VOLATILE: u32 = 1;
/// ZwCreateKey `Disposition`: a new key was created.
pub const REG_CREATED_NEW_KEY: u32 = 1;
/// ZwCreateKey `Disposition`: an existing key was opened.
pub const REG_OPENED_EXISTING_KEY: u32 = 2;

/// `POOL_FLAGS` for ExAllocatePool2.
pub const POOL_FLAG_UNINITIALIZED: u64 = 0x0000_0002;
pub const POOL_FLAG_NON_PAGED: u64 = 0x0000_0040;

/// `POOL_TYPE` for ExAllocatePoolWithTag: non-paged, non-executable.
pub const NonPagedPoolNx: i32 = 512;

/// `ExAllocatePool2`, resolved at run time (absent before Windows 10 2004,
/// and in Wine).
pub type PFN_ExAllocatePool2 =
    unsafe extern "system" fn(flags: u64, bytes: SIZE_T, tag: u32) -> *mut c_void;

/// `KeQueryInterruptTimePrecise`, resolved at run time (absent in Wine).
pub type PFN_KeQueryInterruptTimePrecise = unsafe extern "system" fn(qpc: *mut u64) -> u64;

/// `DPFLTR_IHVDRIVER_ID`: the debug-output component for third-party drivers.
pub const DPFLTR_IHVDRIVER_ID: u32 = 77;
pub const DPFLTR_ERROR_LEVEL: u32 = 0;
pub const DPFLTR_WARNING_LEVEL: u32 = 1;
pub const DPFLTR_TRACE_LEVEL: u32 = 2;
pub const DPFLTR_INFO_LEVEL: u32 = 3;

/// `KeQueryUnbiasedInterruptTime` / `KeQueryInterruptTime` (both take no
/// argument and return 100 ns units), resolved at run time.
pub type PFN_KeQueryInterruptTime = unsafe extern "system" fn() -> u64;

/// `KeQueryPerformanceCounter` (HAL): the performance counter, and its
/// frequency in counts per second through `frequency` (may be NULL);
/// resolved at run time. LARGE_INTEGER is returned in RAX on x64.
pub type PFN_KeQueryPerformanceCounter = unsafe extern "system" fn(frequency: *mut i64) -> i64;
