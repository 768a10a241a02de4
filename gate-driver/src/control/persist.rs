//! `--persist`: writes a live change to `<registry path>\Parameters` (the
//! values and formats of CONFIG.md) so the next start keeps it. The key
//! must exist (the installer creates it); a failure is reported with
//! STATUS_REGISTRY_IO_FAILED after the live change stands.

use alloc::vec::Vec;
use core::fmt::Write;

use gate_core::Cidr;
use gate_ksys::*;

use crate::kernel::dbg::Line;
use crate::kernel::ustr::WideString;
use crate::pool::push_reserved;

/// An open Parameters key (closed on drop).
struct Key(HANDLE);

impl Drop for Key {
    fn drop(&mut self) {
        // SAFETY: opened by `open`, closed once.
        unsafe { ZwClose(self.0) };
    }
}

fn open() -> Result<Key, NTSTATUS> {
    let Some(path) = super::device::parameters_path() else {
        return Err(STATUS_REGISTRY_IO_FAILED);
    };
    let mut us = path.as_unicode();
    let mut attrs = OBJECT_ATTRIBUTES {
        Length: core::mem::size_of::<OBJECT_ATTRIBUTES>() as u32,
        RootDirectory: core::ptr::null_mut(),
        ObjectName: &mut us,
        Attributes: OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE,
        SecurityDescriptor: core::ptr::null_mut(),
        SecurityQualityOfService: core::ptr::null_mut(),
    };
    let mut h: HANDLE = core::ptr::null_mut();
    // SAFETY: valid attributes and name for the call (PASSIVE_LEVEL).
    let st = unsafe { ZwOpenKey(&mut h, KEY_SET_VALUE, &mut attrs) };
    if NT_SUCCESS(st) && !h.is_null() {
        Ok(Key(h))
    } else {
        Err(STATUS_REGISTRY_IO_FAILED)
    }
}

fn set(name: &str, kind: u32, data: &[u8]) -> Result<(), NTSTATUS> {
    let key = open()?;
    let wname = WideString::from_text(name).map_err(|_| STATUS_INSUFFICIENT_RESOURCES)?;
    let mut us = wname.as_unicode();
    let len = u32::try_from(data.len()).map_err(|_| STATUS_REGISTRY_IO_FAILED)?;
    // SAFETY: an open key handle, a valid name and `len` readable bytes.
    let st = unsafe {
        ZwSetValueKey(
            key.0,
            &mut us,
            0,
            kind,
            data.as_ptr().cast_mut().cast(),
            len,
        )
    };
    if NT_SUCCESS(st) {
        Ok(())
    } else {
        Err(STATUS_REGISTRY_IO_FAILED)
    }
}

/// Writes a REG_DWORD.
pub fn dword(name: &str, v: u32) -> Result<(), NTSTATUS> {
    set(name, REG_DWORD, &v.to_le_bytes())
}

/// Writes a REG_QWORD.
pub fn qword(name: &str, v: u64) -> Result<(), NTSTATUS> {
    set(name, REG_QWORD, &v.to_le_bytes())
}

/// Writes a list as REG_MULTI_SZ of `address/prefix` strings.
pub fn cidrs(name: &str, list: &[Cidr]) -> Result<(), NTSTATUS> {
    let mut data: Vec<u8> = Vec::new();
    // ~40 UTF-16 units per entry at most, plus the final NUL.
    data.try_reserve(list.len().saturating_mul(100).saturating_add(2))
        .map_err(|_| STATUS_INSUFFICIENT_RESOURCES)?;
    for c in list {
        let mut line = Line::new();
        let _ = write!(line, "{c}");
        for b in line.as_bytes() {
            for x in u16::from(*b).to_le_bytes() {
                push_reserved(&mut data, x);
            }
        }
        push_reserved(&mut data, 0);
        push_reserved(&mut data, 0);
    }
    // The final NUL (reserved: entries are at most 88 bytes of the 100 each).
    push_reserved(&mut data, 0);
    push_reserved(&mut data, 0);
    set(name, REG_MULTI_SZ, &data)
}
