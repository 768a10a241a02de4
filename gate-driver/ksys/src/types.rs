//! Basic Windows scalar types, as wdm.h/ntdef.h spell them.

use core::ffi::c_void;

pub type NTSTATUS = i32;
pub type ULONG = u32;
pub type USHORT = u16;
pub type UCHAR = u8;
pub type BOOLEAN = u8;
pub type KIRQL = u8;
pub type KPRIORITY = i32;
pub type KPROCESSOR_MODE = i8;
pub type SIZE_T = usize;
pub type ULONG_PTR = usize;
pub type PVOID = *mut c_void;
pub type HANDLE = *mut c_void;
pub type KSPIN_LOCK = usize;
pub type PEPROCESS = *mut c_void;
pub type PETHREAD = *mut c_void;
pub type PSECURITY_DESCRIPTOR = *mut c_void;
pub type PMDL = *mut c_void;

pub const TRUE: BOOLEAN = 1;
pub const FALSE: BOOLEAN = 0;

/// `GUID` (guiddef.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GUID {
    pub Data1: u32,
    pub Data2: u16,
    pub Data3: u16,
    pub Data4: [u8; 8],
}
crate::assert_layout!(GUID, size = 16, Data1 = 0, Data2 = 4, Data3 = 6, Data4 = 8);

/// `LIST_ENTRY` (ntdef.h).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LIST_ENTRY {
    pub Flink: *mut LIST_ENTRY,
    pub Blink: *mut LIST_ENTRY,
}
crate::assert_layout!(LIST_ENTRY, size = 16, Flink = 0, Blink = 8);

/// `UNICODE_STRING` (ntdef.h): counted UTF-16, lengths in bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UNICODE_STRING {
    pub Length: u16,
    pub MaximumLength: u16,
    pub Buffer: *mut u16,
}
crate::assert_layout!(
    UNICODE_STRING,
    size = 16,
    Length = 0,
    MaximumLength = 2,
    Buffer = 8
);

/// `OBJECT_ATTRIBUTES` (ntdef.h).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OBJECT_ATTRIBUTES {
    pub Length: u32,
    pub RootDirectory: HANDLE,
    pub ObjectName: *mut UNICODE_STRING,
    pub Attributes: u32,
    pub SecurityDescriptor: PVOID,
    pub SecurityQualityOfService: PVOID,
}
crate::assert_layout!(
    OBJECT_ATTRIBUTES,
    size = 0x30,
    Length = 0,
    RootDirectory = 8,
    ObjectName = 0x10,
    Attributes = 0x18,
    SecurityDescriptor = 0x20,
    SecurityQualityOfService = 0x28,
);

pub const OBJ_CASE_INSENSITIVE: u32 = 0x40;
pub const OBJ_KERNEL_HANDLE: u32 = 0x200;
