//! Creating and deleting the control device, its symbolic link and its
//! DACL. The DACL (GENERIC_ALL for LocalSystem and BUILTIN\Administrators,
//! nobody else) is put on the device right after IoCreateDevice with
//! exported routines only: an absolute security descriptor built with
//! RtlCreateSecurityDescriptor / RtlCreateAcl / RtlAddAccessAllowedAce /
//! RtlSetDaclSecurityDescriptor, applied through a kernel handle from
//! ObOpenObjectByPointer and ZwSetSecurityObject. (IoCreateDeviceSecure
//! lives in the static wdmsec.lib, not in ntoskrnl: not imported.) The
//! device has FILE_DEVICE_SECURE_OPEN so the DACL also guards opens of
//! names below it.

use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, Ordering};

use gate_ksys::*;

use crate::kernel::ustr::WideString;
use crate::pool::PoolBox;

/// The device (NULL when not created).
static DEVICE: AtomicPtr<DEVICE_OBJECT> = AtomicPtr::new(core::ptr::null_mut());

/// Names kept while the device exists: the link (deleting it needs no
/// allocation) and `<registry path>\Parameters` (for `--persist`).
struct Names {
    link: WideString,
    params: WideString,
}

/// The kept names (NULL when not created).
static NAMES: AtomicPtr<Names> = AtomicPtr::new(core::ptr::null_mut());

fn names() -> Option<&'static Names> {
    let p = NAMES.load(Ordering::Acquire);
    // SAFETY: set once by `create` from a PoolBox, freed by `delete` after
    // the device (its only user) is gone.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// `<registry path>\Parameters`, if the device exists.
pub(super) fn parameters_path() -> Option<&'static WideString> {
    names().map(|n| &n.params)
}

/// Creates the device, sets its DACL, links it and installs the dispatch
/// routines (PASSIVE_LEVEL, from DriverEntry after the gate started).
///
/// # Safety
/// `driver` is DriverEntry's driver object; `registry_path` its path.
pub unsafe fn create(
    driver: *mut DRIVER_OBJECT,
    registry_path: *const UNICODE_STRING,
) -> Result<(), NTSTATUS> {
    // No request can arrive before the device exists.
    super::reset_changes();
    let oom = |_| STATUS_INSUFFICIENT_RESOURCES;
    let name = WideString::from_text(gate_ioctl::DEVICE_NAME).map_err(oom)?;
    // SAFETY: per the caller.
    let params =
        unsafe { WideString::from_unicode_and(registry_path, "\\Parameters") }.map_err(oom)?;
    let names = PoolBox::try_new(Names {
        link: WideString::from_text(gate_ioctl::LINK_NAME).map_err(oom)?,
        params,
    })
    .map_err(oom)?;
    let link = &names.link;
    let mut us_name = name.as_unicode();
    let mut us_link = link.as_unicode();
    let mut dev: *mut DEVICE_OBJECT = core::ptr::null_mut();
    // SAFETY: valid driver object and name; `dev` receives the device.
    let st = unsafe {
        IoCreateDevice(
            driver,
            0,
            &mut us_name,
            gate_ioctl::FILE_DEVICE_TCP_FRONT_GATE,
            FILE_DEVICE_SECURE_OPEN,
            FALSE,
            &mut dev,
        )
    };
    if !NT_SUCCESS(st) {
        return Err(st);
    }
    // SAFETY: `dev` was just created.
    if let Err(st) = unsafe { set_dacl(dev) } {
        // SAFETY: ours, not linked, no handles.
        unsafe { IoDeleteDevice(dev) };
        return Err(st);
    }
    // SAFETY: valid names.
    let st = unsafe { IoCreateSymbolicLink(&mut us_link, &mut us_name) };
    if !NT_SUCCESS(st) {
        // SAFETY: ours, no handles yet.
        unsafe { IoDeleteDevice(dev) };
        return Err(st);
    }
    NAMES.store(PoolBox::into_raw(names), Ordering::Release);
    // SAFETY: the I/O manager reads the table only to dispatch IRPs.
    unsafe {
        let mf = &mut (*driver).MajorFunction;
        let create_close = super::dispatch::create_close as DRIVER_DISPATCH as PVOID;
        for mj in [IRP_MJ_CREATE, IRP_MJ_CLOSE, IRP_MJ_CLEANUP] {
            if let Some(slot) = mf.get_mut(mj) {
                *slot = create_close;
            }
        }
        if let Some(slot) = mf.get_mut(IRP_MJ_DEVICE_CONTROL) {
            *slot = super::dispatch::device_control as DRIVER_DISPATCH as PVOID;
        }
    }
    DEVICE.store(dev, Ordering::Release);
    Ok(())
}

/// Builds the DACL and applies it to `dev`.
unsafe fn set_dacl(dev: *mut DEVICE_OBJECT) -> Result<(), NTSTATUS> {
    // ACL header + 2 ACEs (8 bytes + SID each: 12 and 16 bytes).
    #[repr(C, align(8))]
    struct AclBuf([u8; 64]);
    let mut acl = AclBuf([0; 64]);
    let acl_ptr = acl.0.as_mut_ptr().cast::<ACL>();
    let mut system = SID_LOCAL_SYSTEM;
    let mut admins = SID_BUILTIN_ADMINISTRATORS;
    let mut sd = SECURITY_DESCRIPTOR {
        Revision: 0,
        Sbz1: 0,
        Control: 0,
        Owner: core::ptr::null_mut(),
        Group: core::ptr::null_mut(),
        Sacl: core::ptr::null_mut(),
        Dacl: core::ptr::null_mut(),
    };
    let check = |st: NTSTATUS| if NT_SUCCESS(st) { Ok(()) } else { Err(st) };
    // SAFETY: every pointer is to a local that outlives the calls.
    unsafe {
        check(RtlCreateSecurityDescriptor(
            &mut sd,
            SECURITY_DESCRIPTOR_REVISION,
        ))?;
        check(RtlCreateAcl(acl_ptr, 64, ACL_REVISION))?;
        check(RtlAddAccessAllowedAce(
            acl_ptr,
            ACL_REVISION,
            GENERIC_ALL,
            (&mut system as *mut SID2).cast::<c_void>(),
        ))?;
        check(RtlAddAccessAllowedAce(
            acl_ptr,
            ACL_REVISION,
            GENERIC_ALL,
            (&mut admins as *mut SID2).cast::<c_void>(),
        ))?;
        check(RtlSetDaclSecurityDescriptor(&mut sd, TRUE, acl_ptr, FALSE))?;
    }
    let mut h: HANDLE = core::ptr::null_mut();
    // SAFETY: `dev` is a live device object; a kernel handle for WRITE_DAC.
    check(unsafe {
        ObOpenObjectByPointer(
            dev.cast(),
            OBJ_KERNEL_HANDLE,
            core::ptr::null_mut(),
            WRITE_DAC,
            core::ptr::null_mut(),
            KernelMode,
            &mut h,
        )
    })?;
    // SAFETY: `h` is the handle just opened; `sd` is a valid absolute descriptor.
    let st = unsafe { ZwSetSecurityObject(h, DACL_SECURITY_INFORMATION, &mut sd) };
    // SAFETY: opened above, closed once.
    unsafe { ZwClose(h) };
    check(st)
}

/// Deletes the link and the device (PASSIVE_LEVEL, first thing in
/// DriverUnload; the I/O manager calls DriverUnload only once no handle is
/// open, so no IRP is in progress).
pub fn delete() {
    let dev = DEVICE.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if dev.is_null() {
        return;
    }
    let p = NAMES.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !p.is_null() {
        // SAFETY: from PoolBox::into_raw in `create`, taken once.
        let names = unsafe { PoolBox::from_raw(p) };
        let mut us_link = names.link.as_unicode();
        // SAFETY: a link `create` made.
        unsafe { IoDeleteSymbolicLink(&mut us_link) };
    }
    // SAFETY: created by `create`; deleted once, after its link.
    unsafe { IoDeleteDevice(dev) };
}
