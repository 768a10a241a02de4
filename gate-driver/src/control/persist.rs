//! `--persist`: writes a live change to `<registry path>\Parameters` (the
//! values and formats of CONFIG.md) so the next start keeps it. The key is
//! opened or created (ZwCreateKey, REG_OPTION_NON_VOLATILE: a default
//! install has no Parameters key). A failure is a [`PersistError`] naming
//! the registry call and its NTSTATUS, also printed to the debug output;
//! the IOCTL then completes with STATUS_REGISTRY_IO_FAILED after the live
//! change stands.
//!
//! Writing allocates nothing (value names are converted on the stack), so
//! an allocation failure can never leave a change half-persisted: the one
//! buffer a list needs ([`multi_sz`]) is built inside the change's edit,
//! and a failure there refuses the whole change (issue 10, part 2).

use alloc::vec::Vec;
use core::fmt::Write;

use gate_core::Cidr;
use gate_ksys::*;

use crate::kernel::dbg::Line;
use crate::pool::push_reserved;

/// The longest a `--persist` change waits for the one before it to finish
/// its registry write (ms); then it is refused as busy (gatectl retries).
pub const TURN_WAIT_MS: u32 = 5_000;

/// The right to make one `--persist` change: held from before the live
/// change until its registry write is done, so persisted changes reach the
/// registry in the order they were installed and the registry ends equal
/// to the last persisted configuration. Without it, two concurrent
/// `allow add --persist` could both succeed while the registry kept only
/// one of them (review s3, D1: gate-core admits the next change as soon as
/// one is installed, before its registry write). Changes without
/// `--persist` do not take it. Released on drop.
pub struct Turn<'a>(&'a crate::kernel::event::KEvent);

impl<'a> Turn<'a> {
    /// Waits (PASSIVE_LEVEL, an IOCTL's dispatch) up to [`TURN_WAIT_MS`]
    /// for `d`'s persist turn; `None` when another persisted change held it
    /// all that time.
    pub fn take(d: &'a crate::state::Driver) -> Option<Turn<'a>> {
        d.persist_turn
            .wait(Some(TURN_WAIT_MS))
            .then_some(Turn(&d.persist_turn))
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.set();
    }
}

/// An open Parameters key (closed on drop).
struct Key(HANDLE);

impl Drop for Key {
    fn drop(&mut self) {
        // SAFETY: opened by `open`, closed once.
        unsafe { ZwClose(self.0) };
    }
}

/// Why writing a value failed: the registry call and its NTSTATUS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PersistError {
    /// `ZwCreateKey` (the Parameters key) or `ZwSetValueKey`, or
    /// `allocation`.
    pub call: &'static str,
    /// The call's status.
    pub status: NTSTATUS,
}

impl PersistError {
    /// What the status means for an operator, when it is a common one.
    fn hint(&self) -> &'static str {
        match self.status {
            STATUS_OBJECT_NAME_NOT_FOUND => {
                " (the service key is missing: is the driver installed?)"
            }
            STATUS_ACCESS_DENIED => " (access denied)",
            STATUS_INSUFFICIENT_RESOURCES => " (no memory)",
            _ => "",
        }
    }
}

fn open() -> Result<Key, PersistError> {
    let Some(path) = super::device::parameters_path() else {
        return Err(PersistError {
            call: "allocation",
            status: STATUS_INSUFFICIENT_RESOURCES,
        });
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
    let mut disposition = 0u32;
    // SAFETY: valid attributes and name for the call (PASSIVE_LEVEL); no
    // class; `disposition` is writable.
    let st = unsafe {
        ZwCreateKey(
            &mut h,
            KEY_SET_VALUE,
            &mut attrs,
            0,
            core::ptr::null_mut(),
            REG_OPTION_NON_VOLATILE,
            &mut disposition,
        )
    };
    if NT_SUCCESS(st) && !h.is_null() {
        Ok(Key(h))
    } else {
        Err(PersistError {
            call: "ZwCreateKey",
            status: if NT_SUCCESS(st) {
                STATUS_REGISTRY_IO_FAILED
            } else {
                st
            },
        })
    }
}

fn set(name: &str, kind: u32, data: &[u8]) -> Result<(), PersistError> {
    let r = write(name, kind, data);
    if let Err(e) = r {
        crate::dbg_print!(
            DPFLTR_ERROR_LEVEL,
            "gate: --persist {}: {} failed with {:#010x}{} (the live change stands)",
            name,
            e.call,
            e.status as u32,
            e.hint()
        );
    }
    r
}

/// Longest value name written (UTF-16 units; CONFIG.md's names are at
/// most 24).
const NAME_UNITS: usize = 64;

fn write(name: &str, kind: u32, data: &[u8]) -> Result<(), PersistError> {
    // The value name as UTF-16 on the stack (no allocation).
    let n = name.encode_utf16().count();
    if n > NAME_UNITS {
        return Err(PersistError {
            call: "ZwSetValueKey",
            status: STATUS_INVALID_PARAMETER,
        });
    }
    let mut units = [0u16; NAME_UNITS];
    for (slot, u) in units.iter_mut().zip(name.encode_utf16()) {
        *slot = u;
    }
    let key = open()?;
    // At most 128 bytes (NAME_UNITS units).
    let bytes = (n as u16).saturating_mul(2);
    let mut us = UNICODE_STRING {
        Length: bytes,
        MaximumLength: bytes,
        Buffer: units.as_mut_ptr(),
    };
    let len = u32::try_from(data.len()).map_err(|_| PersistError {
        call: "ZwSetValueKey",
        status: STATUS_INVALID_PARAMETER,
    })?;
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
        Err(PersistError {
            call: "ZwSetValueKey",
            status: st,
        })
    }
}

/// Writes a REG_DWORD.
pub fn dword(name: &str, v: u32) -> Result<(), PersistError> {
    set(name, REG_DWORD, &v.to_le_bytes())
}

/// Writes a REG_QWORD.
pub fn qword(name: &str, v: u64) -> Result<(), PersistError> {
    set(name, REG_QWORD, &v.to_le_bytes())
}

/// A list as REG_MULTI_SZ data: UTF-16LE `address/prefix` strings, each
/// NUL-terminated, then a final NUL. One allocation (fallible: `None`
/// when there is no memory); build it before the change it persists is
/// installed, so a failure changes nothing.
pub fn multi_sz(list: &[Cidr]) -> Option<Vec<u8>> {
    let mut data: Vec<u8> = Vec::new();
    // At most 43 characters per entry (a full IPv6 address and /128) and
    // its NUL, as UTF-16: 88 bytes of the 100 reserved; plus the final NUL.
    data.try_reserve_exact(list.len().saturating_mul(100).saturating_add(2))
        .ok()?;
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
    push_reserved(&mut data, 0);
    push_reserved(&mut data, 0);
    Some(data)
}

/// Writes REG_MULTI_SZ data built by [`multi_sz`].
pub fn cidrs(name: &str, data: &[u8]) -> Result<(), PersistError> {
    set(name, REG_MULTI_SZ, data)
}
