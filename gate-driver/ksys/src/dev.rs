//! Device objects, dispatch routines and security descriptors: what the
//! control device needs (wdm.h, ntifs.h, winnt.h). Device objects are kept
//! opaque (the gate never reads their fields); IRP_MJ_DEVICE_CONTROL's
//! parameters are read through [`IO_STACK_LOCATION::Parameters`] with the
//! x64 offsets of `Parameters.DeviceIoControl` (each ULONG is
//! POINTER_ALIGNMENT, so 8 bytes apart).

use crate::io::{IO_STACK_LOCATION, IRP};
use crate::types::*;
use core::ffi::c_void;

/// `DEVICE_OBJECT` (opaque).
#[repr(C)]
pub struct DEVICE_OBJECT {
    _opaque: [u8; 0],
}

/// `DRIVER_DISPATCH`: one routine per IRP major function.
pub type DRIVER_DISPATCH =
    unsafe extern "system" fn(device: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS;

pub const IRP_MJ_CREATE: usize = 0x00;
pub const IRP_MJ_CLOSE: usize = 0x02;
pub const IRP_MJ_DEVICE_CONTROL: usize = 0x0e;
pub const IRP_MJ_CLEANUP: usize = 0x12;
pub const IRP_MJ_MAXIMUM_FUNCTION: usize = 0x1b;

/// `FILE_DEVICE_SECURE_OPEN`: the device's security applies to opens of
/// any name below it, not just the device itself.
pub const FILE_DEVICE_SECURE_OPEN: u32 = 0x0000_0100;

/// `Parameters.DeviceIoControl.OutputBufferLength` of a stack location.
///
/// # Safety
/// `sp` points to a valid IRP_MJ_DEVICE_CONTROL stack location.
pub unsafe fn ioctl_output_length(sp: *const IO_STACK_LOCATION) -> u32 {
    // SAFETY: per the caller; the ULONG sits at Parameters + 0.
    unsafe { (*sp).Parameters[0] as u32 }
}

/// `Parameters.DeviceIoControl.InputBufferLength`.
///
/// # Safety
/// As [`ioctl_output_length`].
pub unsafe fn ioctl_input_length(sp: *const IO_STACK_LOCATION) -> u32 {
    // SAFETY: per the caller; at Parameters + 8.
    unsafe { (*sp).Parameters[1] as u32 }
}

/// `Parameters.DeviceIoControl.IoControlCode`.
///
/// # Safety
/// As [`ioctl_output_length`].
pub unsafe fn ioctl_code(sp: *const IO_STACK_LOCATION) -> u32 {
    // SAFETY: per the caller; at Parameters + 16.
    unsafe { (*sp).Parameters[2] as u32 }
}

/// `IoGetCurrentIrpStackLocation` (wdm.h inline).
///
/// # Safety
/// `irp` is a valid IRP being dispatched to this driver.
pub unsafe fn IoGetCurrentIrpStackLocation(irp: *mut IRP) -> *mut IO_STACK_LOCATION {
    // SAFETY: per the caller.
    unsafe { (*irp).Tail.CurrentStackLocation }
}

/// `SECURITY_DESCRIPTOR` (absolute form, winnt.h).
#[repr(C)]
pub struct SECURITY_DESCRIPTOR {
    pub Revision: u8,
    pub Sbz1: u8,
    pub Control: u16,
    pub Owner: PVOID,
    pub Group: PVOID,
    pub Sacl: *mut ACL,
    pub Dacl: *mut ACL,
}
crate::assert_layout!(
    SECURITY_DESCRIPTOR,
    size = 40,
    Control = 2,
    Owner = 8,
    Group = 16,
    Sacl = 24,
    Dacl = 32
);

/// `ACL` header (winnt.h); ACEs follow it in the same buffer.
#[repr(C)]
pub struct ACL {
    pub AclRevision: u8,
    pub Sbz1: u8,
    pub AclSize: u16,
    pub AceCount: u16,
    pub Sbz2: u16,
}
crate::assert_layout!(ACL, size = 8, AclSize = 2, AceCount = 4);

pub const SECURITY_DESCRIPTOR_REVISION: u32 = 1;
pub const ACL_REVISION: u32 = 2;
pub const DACL_SECURITY_INFORMATION: u32 = 4;
pub const GENERIC_ALL: u32 = 0x1000_0000;
pub const FILE_ALL_ACCESS: u32 = 0x001F_01FF;
pub const WRITE_DAC: u32 = 0x0004_0000;
pub const UserMode: KPROCESSOR_MODE = 1;

/// A SID with up to two sub-authorities, as winnt.h lays one out.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SID2 {
    pub Revision: u8,
    pub SubAuthorityCount: u8,
    pub IdentifierAuthority: [u8; 6],
    pub SubAuthority: [u32; 2],
}

/// `S-1-5-18` (LocalSystem).
pub const SID_LOCAL_SYSTEM: SID2 = SID2 {
    Revision: 1,
    SubAuthorityCount: 1,
    IdentifierAuthority: [0, 0, 0, 0, 0, 5],
    SubAuthority: [18, 0],
};

/// `S-1-5-32-544` (BUILTIN\Administrators).
pub const SID_BUILTIN_ADMINISTRATORS: SID2 = SID2 {
    Revision: 1,
    SubAuthorityCount: 2,
    IdentifierAuthority: [0, 0, 0, 0, 0, 5],
    SubAuthority: [32, 544],
};

/// Unused; keeps `c_void` in scope for the import signatures' docs.
pub type PSID = *mut c_void;
