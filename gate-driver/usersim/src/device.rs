//! Device objects and the I/O manager's side of a control device:
//! IoCreateDevice / IoDeleteDevice, symbolic links, the security routines
//! a driver uses to put a DACL on its device (ObOpenObjectByPointer +
//! ZwSetSecurityObject with an absolute descriptor built by the Rtl*
//! routines; the DACL is decoded and kept so tests can check it), and
//! user-mode opens of the device ([`open`]) dispatched as the I/O manager
//! does: IRP_MJ_CREATE, IRP_MJ_DEVICE_CONTROL with METHOD_BUFFERED
//! semantics (one system buffer of max(in, out) bytes holding the input;
//! the output is copied back from the same buffer, nothing for an error
//! status, `Information` bytes for success and warning statuses), the
//! CTL_CODE access bits checked against the handle's granted access before
//! the driver sees the request, IRP_MJ_CLEANUP and IRP_MJ_CLOSE on close.
//! IofCompleteRequest completes such IRPs; a dispatch routine that returns
//! without completing (or completes twice) is a violation.

use crate::irql;
use crate::objects::{self, HandleObject};
use crate::registry::read_unicode;
use crate::violation::{record, ViolationKind};
use gate_ksys::*;
use std::collections::{HashMap, HashSet};
use std::ffi::c_void;
use std::sync::{LazyLock, Mutex, MutexGuard};

/// One access-allowed ACE of a device's DACL: mask and SID (`S-1-5-18`).
pub type Ace = (u32, String);

#[derive(Clone, Debug)]
struct DeviceInfo {
    name: String,
    driver: usize,
    device_type: u32,
    characteristics: u32,
    dacl: Option<Vec<Ace>>,
}

#[derive(Default)]
struct Devices {
    devices: HashMap<usize, DeviceInfo>,
    /// link (lower case) -> target name (lower case)
    links: HashMap<String, String>,
    /// IRPs handed to a dispatch routine and not completed yet.
    dispatched: HashSet<usize>,
    /// Completed dispatched IRPs: irp -> times completed.
    completed: HashMap<usize, u32>,
    /// Handles user mode holds: file object -> device.
    open_files: HashMap<usize, usize>,
}

static DEV: LazyLock<Mutex<Devices>> = LazyLock::new(|| Mutex::new(Devices::default()));

fn dev() -> MutexGuard<'static, Devices> {
    DEV.lock().unwrap_or_else(|e| e.into_inner())
}

thread_local! {
    static CALLER_PID: std::cell::Cell<usize> = const { std::cell::Cell::new(4) };
}

pub(crate) fn reset() {
    let mut g = dev();
    for (&p, _) in g.devices.iter() {
        // SAFETY: allocated by IoCreateDevice as a Box<DeviceBlock>.
        drop(unsafe { Box::from_raw(p as *mut DeviceBlock) });
    }
    *g = Devices::default();
}

/// Devices not deleted and symbolic links not removed.
pub(crate) fn leaks() -> (usize, usize) {
    let g = dev();
    (g.devices.len(), g.links.len())
}

/// What tests can see of a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceView {
    /// `\Device\...` name as created.
    pub name: String,
    /// `FILE_DEVICE_*` type.
    pub device_type: u32,
    /// Characteristics (e.g. FILE_DEVICE_SECURE_OPEN).
    pub characteristics: u32,
    /// The DACL set with ZwSetSecurityObject, if any.
    pub dacl: Option<Vec<Ace>>,
}

/// Every device, in no particular order.
pub fn devices() -> Vec<DeviceView> {
    dev()
        .devices
        .values()
        .map(|d| DeviceView {
            name: d.name.clone(),
            device_type: d.device_type,
            characteristics: d.characteristics,
            dacl: d.dacl.clone(),
        })
        .collect()
}

/// Symbolic links: (link, target), lower case.
pub fn links() -> Vec<(String, String)> {
    dev()
        .links
        .iter()
        .map(|(a, b)| (a.clone(), b.clone()))
        .collect()
}

/// A device object's memory (the driver never reads it: opaque).
#[repr(C, align(16))]
struct DeviceBlock([u8; 0x150]);

/// # Safety
/// Arguments as for the kernel routine.
#[no_mangle]
pub unsafe extern "system" fn IoCreateDevice(
    driver: *mut DRIVER_OBJECT,
    extension_size: u32,
    name: *mut UNICODE_STRING,
    device_type: u32,
    characteristics: u32,
    _exclusive: BOOLEAN,
    device: *mut *mut DEVICE_OBJECT,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    irql::require_passive("IoCreateDevice");
    if driver.is_null() || device.is_null() || extension_size != 0 {
        record(
            ViolationKind::Other,
            format!("IoCreateDevice: driver {driver:p}, out {device:p}, extension {extension_size} (the sim supports none)"),
        );
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: NULL or a valid UNICODE_STRING per the contract.
    let Some(n) = (unsafe { read_unicode(name) }) else {
        record(ViolationKind::Other, "IoCreateDevice: malformed name");
        return STATUS_INVALID_PARAMETER;
    };
    let mut g = dev();
    if g.devices.values().any(|d| d.name.eq_ignore_ascii_case(&n)) {
        return STATUS_OBJECT_NAME_COLLISION;
    }
    let p = Box::into_raw(Box::new(DeviceBlock([0; 0x150]))) as usize;
    g.devices.insert(
        p,
        DeviceInfo {
            name: n,
            driver: driver as usize,
            device_type,
            characteristics,
            dacl: None,
        },
    );
    // SAFETY: checked non-null.
    unsafe { device.write(p as *mut DEVICE_OBJECT) };
    STATUS_SUCCESS
}

/// # Safety
/// `device` from IoCreateDevice.
#[no_mangle]
pub unsafe extern "system" fn IoDeleteDevice(device: *mut DEVICE_OBJECT) {
    let _sim = crate::fault::sim();
    irql::require_passive("IoDeleteDevice");
    let mut g = dev();
    if g.devices.remove(&(device as usize)).is_none() {
        record(
            ViolationKind::BadHandle,
            format!("IoDeleteDevice({device:p}): not a device"),
        );
        return;
    }
    if g.open_files.values().any(|d| *d == device as usize) {
        record(
            ViolationKind::Other,
            "IoDeleteDevice with handles still open (the I/O manager keeps the object until they close; the sim frees it now)",
        );
        g.open_files.retain(|_, d| *d != device as usize);
    }
    // SAFETY: allocated by IoCreateDevice; removed from the map, so freed once.
    drop(unsafe { Box::from_raw(device as *mut DeviceBlock) });
}

/// # Safety
/// Valid UNICODE_STRINGs.
#[no_mangle]
pub unsafe extern "system" fn IoCreateSymbolicLink(
    link: *mut UNICODE_STRING,
    target: *mut UNICODE_STRING,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    irql::require_passive("IoCreateSymbolicLink");
    // SAFETY: per the contract.
    let (Some(l), Some(t)) = (unsafe { read_unicode(link) }, unsafe {
        read_unicode(target)
    }) else {
        record(ViolationKind::Other, "IoCreateSymbolicLink: malformed name");
        return STATUS_INVALID_PARAMETER;
    };
    let mut g = dev();
    let l = l.to_ascii_lowercase();
    if g.links.contains_key(&l) {
        return STATUS_OBJECT_NAME_COLLISION;
    }
    g.links.insert(l, t.to_ascii_lowercase());
    STATUS_SUCCESS
}

/// # Safety
/// A valid UNICODE_STRING.
#[no_mangle]
pub unsafe extern "system" fn IoDeleteSymbolicLink(link: *mut UNICODE_STRING) -> NTSTATUS {
    let _sim = crate::fault::sim();
    irql::require_passive("IoDeleteSymbolicLink");
    // SAFETY: per the contract.
    let Some(l) = (unsafe { read_unicode(link) }) else {
        return STATUS_INVALID_PARAMETER;
    };
    if dev().links.remove(&l.to_ascii_lowercase()).is_none() {
        return STATUS_OBJECT_NAME_NOT_FOUND;
    }
    STATUS_SUCCESS
}

/// # Safety
/// `irp` is an IRP dispatched to the driver.
#[no_mangle]
pub unsafe extern "system" fn IofCompleteRequest(irp: *mut IRP, _boost: i8) {
    let _sim = crate::fault::sim();
    irql::require_at_most_dispatch("IofCompleteRequest");
    let mut g = dev();
    if !g.dispatched.remove(&(irp as usize)) {
        let twice = g.completed.contains_key(&(irp as usize));
        drop(g);
        record(
            ViolationKind::BadIrp,
            format!(
                "IofCompleteRequest({irp:p}): {}",
                if twice {
                    "completed twice"
                } else {
                    "not an IRP dispatched to the driver"
                }
            ),
        );
        return;
    }
    *g.completed.entry(irp as usize).or_default() += 1;
}

#[no_mangle]
pub extern "system" fn PsGetCurrentProcessId() -> HANDLE {
    let _sim = crate::fault::sim();
    CALLER_PID.with(|p| p.get()) as HANDLE
}

/// # Safety
/// Arguments as for the kernel routine.
#[no_mangle]
pub unsafe extern "system" fn ObOpenObjectByPointer(
    object: *mut c_void,
    attributes: u32,
    _access_state: *mut c_void,
    _access: u32,
    _object_type: *mut c_void,
    mode: KPROCESSOR_MODE,
    handle: *mut HANDLE,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    irql::require_passive("ObOpenObjectByPointer");
    if handle.is_null() || !dev().devices.contains_key(&(object as usize)) {
        record(
            ViolationKind::BadHandle,
            format!("ObOpenObjectByPointer({object:p}): not a device object (the sim knows only devices)"),
        );
        return STATUS_INVALID_PARAMETER;
    }
    if attributes & OBJ_KERNEL_HANDLE == 0 || mode != KernelMode {
        record(
            ViolationKind::Other,
            "ObOpenObjectByPointer without OBJ_KERNEL_HANDLE/KernelMode (a user-mode handle)",
        );
    }
    let h = objects::open_handle(HandleObject::Device(object as usize));
    // SAFETY: checked non-null.
    unsafe { handle.write(h) };
    STATUS_SUCCESS
}

fn sid_string(p: *const u8) -> Option<(String, usize)> {
    // SAFETY: the caller's SID buffer; revision, count and authority read first.
    let (rev, n, auth) = unsafe { (*p, *p.add(1), std::slice::from_raw_parts(p.add(2), 6)) };
    if rev != 1 || n > 15 {
        return None;
    }
    let a = auth.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b));
    let mut s = format!("S-1-{a}");
    for i in 0..usize::from(n) {
        // SAFETY: `n` sub-authorities follow the 8-byte header.
        let v = unsafe { p.add(8 + 4 * i).cast::<u32>().read_unaligned() };
        s.push_str(&format!("-{v}"));
    }
    Some((s, 8 + 4 * usize::from(n)))
}

/// # Safety
/// Arguments as for the kernel routine.
#[no_mangle]
pub unsafe extern "system" fn ZwSetSecurityObject(
    handle: HANDLE,
    information: u32,
    descriptor: *mut SECURITY_DESCRIPTOR,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    irql::require_passive("ZwSetSecurityObject");
    let Some(device) = objects::device_of(handle) else {
        record(
            ViolationKind::BadHandle,
            format!("ZwSetSecurityObject({handle:p}): not a device handle"),
        );
        return STATUS_INVALID_HANDLE;
    };
    if information != DACL_SECURITY_INFORMATION || descriptor.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: a descriptor built by RtlCreateSecurityDescriptor.
    let sd = unsafe { &*descriptor };
    if sd.Revision != 1 || sd.Dacl.is_null() {
        return STATUS_INVALID_SECURITY_DESCR;
    }
    let acl = sd.Dacl.cast::<u8>();
    // SAFETY: an ACL built by RtlCreateAcl/RtlAddAccessAllowedAce.
    let (count, size) = unsafe { ((*sd.Dacl).AceCount, usize::from((*sd.Dacl).AclSize)) };
    let mut aces = Vec::new();
    let mut off = 8usize;
    for _ in 0..count {
        if off + 8 > size {
            return STATUS_INVALID_ACL;
        }
        // SAFETY: inside the ACL's AclSize bytes.
        let (kind, ace_size, mask) = unsafe {
            (
                *acl.add(off),
                acl.add(off + 2).cast::<u16>().read_unaligned(),
                acl.add(off + 4).cast::<u32>().read_unaligned(),
            )
        };
        if kind != 0 {
            return STATUS_INVALID_ACL;
        }
        // SAFETY: the SID follows the mask inside the ACE.
        let Some((sid, _)) = sid_string(unsafe { acl.add(off + 8) }) else {
            return STATUS_INVALID_ACL;
        };
        aces.push((mask, sid));
        off += usize::from(ace_size);
    }
    if let Some(d) = dev().devices.get_mut(&device) {
        d.dacl = Some(aces);
    }
    STATUS_SUCCESS
}

/// # Safety
/// `descriptor` writable.
#[no_mangle]
pub unsafe extern "system" fn RtlCreateSecurityDescriptor(
    descriptor: *mut SECURITY_DESCRIPTOR,
    revision: u32,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    if revision != SECURITY_DESCRIPTOR_REVISION {
        return STATUS_UNKNOWN_REVISION;
    }
    // SAFETY: per the contract.
    unsafe {
        descriptor.write(SECURITY_DESCRIPTOR {
            Revision: 1,
            Sbz1: 0,
            Control: 0,
            Owner: std::ptr::null_mut(),
            Group: std::ptr::null_mut(),
            Sacl: std::ptr::null_mut(),
            Dacl: std::ptr::null_mut(),
        })
    };
    STATUS_SUCCESS
}

/// # Safety
/// `acl` has `length` writable bytes.
#[no_mangle]
pub unsafe extern "system" fn RtlCreateAcl(acl: *mut ACL, length: u32, revision: u32) -> NTSTATUS {
    let _sim = crate::fault::sim();
    if !(8..=0xFFFF).contains(&length) || !(2..=4).contains(&revision) {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: per the contract.
    unsafe {
        std::ptr::write_bytes(acl.cast::<u8>(), 0, length as usize);
        acl.write(ACL {
            AclRevision: revision as u8,
            Sbz1: 0,
            AclSize: length as u16,
            AceCount: 0,
            Sbz2: 0,
        });
    }
    STATUS_SUCCESS
}

/// # Safety
/// `acl` from RtlCreateAcl; `sid` a valid SID.
#[no_mangle]
pub unsafe extern "system" fn RtlAddAccessAllowedAce(
    acl: *mut ACL,
    _revision: u32,
    mask: u32,
    sid: *mut c_void,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    let Some((_, sid_len)) = sid_string(sid.cast::<u8>()) else {
        return STATUS_INVALID_SID;
    };
    let p = acl.cast::<u8>();
    // SAFETY: an ACL header.
    let (count, size) = unsafe { ((*acl).AceCount, usize::from((*acl).AclSize)) };
    let mut off = 8usize;
    for _ in 0..count {
        // SAFETY: walking the ACEs already added, inside the ACL.
        off += usize::from(unsafe { p.add(off + 2).cast::<u16>().read_unaligned() });
    }
    let ace = 8 + sid_len;
    if off + ace > size {
        return STATUS_ALLOTTED_SPACE_EXCEEDED;
    }
    // SAFETY: `off + ace <= size` bytes of the ACL buffer.
    unsafe {
        *p.add(off) = 0; // ACCESS_ALLOWED_ACE_TYPE
        *p.add(off + 1) = 0;
        p.add(off + 2).cast::<u16>().write_unaligned(ace as u16);
        p.add(off + 4).cast::<u32>().write_unaligned(mask);
        std::ptr::copy_nonoverlapping(sid.cast::<u8>(), p.add(off + 8), sid_len);
        (*acl).AceCount = count + 1;
    }
    STATUS_SUCCESS
}

/// # Safety
/// `descriptor` from RtlCreateSecurityDescriptor.
#[no_mangle]
pub unsafe extern "system" fn RtlSetDaclSecurityDescriptor(
    descriptor: *mut SECURITY_DESCRIPTOR,
    present: BOOLEAN,
    dacl: *mut ACL,
    _defaulted: BOOLEAN,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    // SAFETY: per the contract.
    unsafe {
        (*descriptor).Dacl = if present != 0 {
            dacl
        } else {
            std::ptr::null_mut()
        };
        (*descriptor).Control |= 0x0004; // SE_DACL_PRESENT
    }
    STATUS_SUCCESS
}

// ---- user mode's side ----

/// A dispatched IRP with its one stack location.
#[repr(C)]
struct IrpBlock {
    irp: IRP,
    loc: IO_STACK_LOCATION,
}

/// A fake FILE_OBJECT (the driver only compares the pointer).
#[repr(C, align(16))]
struct FileBlock([u8; 0xD8]);

/// An open handle to a device (like a user-mode HANDLE from CreateFile).
#[derive(Debug)]
pub struct DeviceHandle {
    device: usize,
    file: usize,
    access: u32,
    pid: usize,
    closed: bool,
}

/// What a DeviceIoControl call got back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoctlResult {
    /// Final NTSTATUS of the IRP (or of the I/O manager's refusal).
    pub status: NTSTATUS,
    /// IoStatus.Information.
    pub information: usize,
    /// Bytes copied back to the caller's output buffer.
    pub output: Vec<u8>,
}

/// The device a name opens: `\\.\X`, `\DosDevices\X`, `\??\X` or `\Device\X`.
fn resolve(path: &str) -> Option<usize> {
    let g = dev();
    let lower = path.to_ascii_lowercase();
    let target = if let Some(rest) = lower.strip_prefix(r"\\.\") {
        g.links.get(&format!(r"\dosdevices\{rest}")).cloned()?
    } else if let Some(rest) = lower.strip_prefix(r"\??\") {
        g.links.get(&format!(r"\dosdevices\{rest}")).cloned()?
    } else if lower.starts_with(r"\dosdevices\") {
        g.links.get(&lower).cloned()?
    } else {
        lower
    };
    g.devices
        .iter()
        .find(|(_, d)| d.name.eq_ignore_ascii_case(&target))
        .map(|(p, _)| *p)
}

/// Runs one IRP through the driver's dispatch routine for `major` on the
/// calling thread (PASSIVE_LEVEL) and returns its final status.
fn dispatch(
    device: usize,
    file: usize,
    major: usize,
    buffer: *mut u8,
    params: [usize; 4],
    pid: usize,
) -> (NTSTATUS, usize) {
    let driver = match dev().devices.get(&device) {
        Some(d) => d.driver as *mut DRIVER_OBJECT,
        None => return (STATUS_DELETE_PENDING, 0),
    };
    // SAFETY: the driver object outlives its devices (the harness frees it
    // after unload, which deletes them).
    let routine = unsafe { (*driver).MajorFunction[major] };
    if routine.is_null() {
        // The I/O manager's default: IopInvalidDeviceRequest.
        return (STATUS_INVALID_DEVICE_REQUEST, 0);
    }
    // SAFETY: the driver stored a DRIVER_DISPATCH there.
    let routine: DRIVER_DISPATCH = unsafe { std::mem::transmute(routine) };
    // SAFETY: all-zero is a valid IRP/stack location (NULL pointers).
    let mut block: Box<IrpBlock> = Box::new(unsafe { std::mem::zeroed() });
    block.irp.Type = 6;
    block.irp.Size = std::mem::size_of::<IrpBlock>() as u16;
    block.irp.StackCount = 1;
    block.irp.CurrentLocation = 1;
    block.irp.RequestorMode = UserMode;
    block.irp.AssociatedIrp = buffer.cast();
    block.irp.IoStatus.Status = STATUS_PENDING;
    block.loc.MajorFunction = major as u8;
    block.loc.Parameters = params;
    block.loc.DeviceObject = device as PVOID;
    block.loc.FileObject = file as PVOID;
    let irp: *mut IRP = &mut block.irp;
    // SAFETY: `block` is one allocation; the location follows the IRP.
    unsafe { (*irp).Tail.CurrentStackLocation = &mut block.loc };
    dev().dispatched.insert(irp as usize);
    let prev = CALLER_PID.with(|p| p.replace(pid));
    let st = {
        // Driver code until it returns (the thread's allocation plan counts it).
        let _driver = crate::fault::driver();
        // SAFETY: the driver's dispatch routine with its device and a fresh IRP.
        unsafe { routine(device as *mut DEVICE_OBJECT, irp) }
    };
    CALLER_PID.with(|p| p.set(prev));
    let mut g = dev();
    let completed = g.completed.remove(&(irp as usize)).unwrap_or(0);
    let pending = g.dispatched.remove(&(irp as usize));
    drop(g);
    if pending || completed != 1 {
        record(
            ViolationKind::BadIrp,
            format!("dispatch of IRP_MJ {major:#x} returned {st:#x} without completing the IRP (the sim supports synchronous completion only)"),
        );
        return (st, 0);
    }
    let io = block.irp.IoStatus;
    if io.Status != st {
        record(
            ViolationKind::BadIrp,
            format!(
                "dispatch of IRP_MJ {major:#x} returned {st:#x} but completed with {:#x}",
                io.Status
            ),
        );
    }
    (io.Status, io.Information)
}

/// Opens a device by name with the given access (`FILE_READ_ACCESS` = 1,
/// `FILE_WRITE_ACCESS` = 2, both = 3) for process `pid`: IRP_MJ_CREATE.
pub fn open(path: &str, access: u32, pid: usize) -> Result<DeviceHandle, NTSTATUS> {
    let Some(device) = resolve(path) else {
        return Err(STATUS_OBJECT_NAME_NOT_FOUND);
    };
    let file = Box::into_raw(Box::new(FileBlock([0; 0xD8]))) as usize;
    let (st, _) = dispatch(
        device,
        file,
        IRP_MJ_CREATE,
        std::ptr::null_mut(),
        [0; 4],
        pid,
    );
    if !NT_SUCCESS(st) {
        // SAFETY: allocated just above, never shared.
        drop(unsafe { Box::from_raw(file as *mut FileBlock) });
        return Err(st);
    }
    dev().open_files.insert(file, device);
    Ok(DeviceHandle {
        device,
        file,
        access,
        pid,
        closed: false,
    })
}

impl DeviceHandle {
    /// DeviceIoControl: checks the code's access bits against the handle
    /// (STATUS_ACCESS_DENIED without reaching the driver), then sends a
    /// METHOD_BUFFERED IRP with one system buffer of max(in, out) bytes
    /// (bytes past the input hold 0xCD garbage, as pool does).
    pub fn ioctl(&self, code: u32, input: &[u8], out_len: usize) -> IoctlResult {
        let refuse = |status| IoctlResult {
            status,
            information: 0,
            output: Vec::new(),
        };
        if self.closed {
            return refuse(STATUS_INVALID_HANDLE);
        }
        let need = (code >> 14) & 3;
        if need & !self.access != 0 {
            return refuse(STATUS_ACCESS_DENIED);
        }
        if code & 3 != 0 {
            record(
                ViolationKind::Other,
                format!("ioctl {code:#x}: the sim implements METHOD_BUFFERED only"),
            );
            return refuse(STATUS_NOT_IMPLEMENTED);
        }
        let size = input.len().max(out_len);
        let mut buf = vec![0xCDu8; size.max(1)];
        buf[..input.len()].copy_from_slice(input);
        let ptr = if size == 0 {
            std::ptr::null_mut()
        } else {
            buf.as_mut_ptr()
        };
        let params = [out_len, input.len(), code as usize, 0];
        let (st, info) = dispatch(
            self.device,
            self.file,
            IRP_MJ_DEVICE_CONTROL,
            ptr,
            params,
            self.pid,
        );
        if info > out_len && (st as u32) >> 30 != 3 {
            record(
                ViolationKind::BadIrp,
                format!("ioctl {code:#x}: Information {info} > output length {out_len}"),
            );
        }
        // NT_ERROR (severity 3): nothing is copied back.
        let output = if (st as u32) >> 30 == 3 {
            Vec::new()
        } else {
            buf[..info.min(out_len)].to_vec()
        };
        IoctlResult {
            status: st,
            information: info,
            output,
        }
    }

    /// The access this handle was opened with.
    pub fn access(&self) -> u32 {
        self.access
    }

    /// Closes the handle: IRP_MJ_CLEANUP then IRP_MJ_CLOSE.
    pub fn close(mut self) {
        self.close_inner();
    }

    fn close_inner(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if dev().open_files.remove(&self.file).is_some() {
            for mj in [IRP_MJ_CLEANUP, IRP_MJ_CLOSE] {
                let _ = dispatch(
                    self.device,
                    self.file,
                    mj,
                    std::ptr::null_mut(),
                    [0; 4],
                    self.pid,
                );
            }
        }
        // SAFETY: allocated by `open`; closed once.
        drop(unsafe { Box::from_raw(self.file as *mut FileBlock) });
    }
}

impl Drop for DeviceHandle {
    fn drop(&mut self) {
        self.close_inner();
    }
}
