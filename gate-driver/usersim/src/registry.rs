//! An in-memory registry tests populate: ZwOpenKey and ZwCreateKey
//! (absolute, or relative to an open key) and ZwQueryValueKey with KeyValuePartialInformation,
//! including the STATUS_BUFFER_TOO_SMALL / STATUS_BUFFER_OVERFLOW split,
//! and ZwSetValueKey (the driver persisting a live change).
//!
//! Key paths and value names compare case-insensitively, as in Windows.
//! A key exists once a value was set under it or it was created with
//! `Sim::registry_create_key`.

use crate::irql;
use crate::objects::{self, HandleObject};
use crate::violation::{record, ViolationKind};
use gate_ksys::*;
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::sync::Mutex;

/// A registry value a test stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegValue {
    Dword(u32),
    Qword(u64),
    /// REG_SZ, stored as UTF-16 with a terminating NUL.
    Sz(String),
    /// REG_MULTI_SZ, each string NUL-terminated, plus a final NUL.
    MultiSz(Vec<String>),
    /// Any type with raw bytes (to feed malformed data).
    Raw(u32, Vec<u8>),
}

impl RegValue {
    fn encode(&self) -> (u32, Vec<u8>) {
        fn utf16z(s: &str, out: &mut Vec<u8>) {
            for u in s.encode_utf16().chain([0]) {
                out.extend_from_slice(&u.to_le_bytes());
            }
        }
        match self {
            RegValue::Dword(v) => (REG_DWORD, v.to_le_bytes().to_vec()),
            RegValue::Qword(v) => (REG_QWORD, v.to_le_bytes().to_vec()),
            RegValue::Sz(s) => {
                let mut b = Vec::new();
                utf16z(s, &mut b);
                (REG_SZ, b)
            }
            RegValue::MultiSz(v) => {
                let mut b = Vec::new();
                for s in v {
                    utf16z(s, &mut b);
                }
                b.extend_from_slice(&[0, 0]);
                (REG_MULTI_SZ, b)
            }
            RegValue::Raw(t, b) => (*t, b.clone()),
        }
    }
}

/// Lower-case name -> (name as set, type, data).
type Key = BTreeMap<String, (String, u32, Vec<u8>)>;
static REG: Mutex<BTreeMap<String, Key>> = Mutex::new(BTreeMap::new());

fn norm(path: &str) -> String {
    path.trim_end_matches('\\').to_ascii_lowercase()
}

pub(crate) fn set(key: &str, name: &str, value: &RegValue) {
    REG.lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(norm(key))
        .or_default()
        .insert(name.to_ascii_lowercase(), {
            let (ty, data) = value.encode();
            (name.to_string(), ty, data)
        });
}

pub(crate) fn create_key(key: &str) {
    REG.lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(norm(key))
        .or_default();
}

/// Removes a key, its values and every key below it.
pub(crate) fn delete_key(key: &str) {
    let k = norm(key);
    let under = format!("{k}\\");
    REG.lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p, _| p != &k && !p.starts_with(&under));
}

pub(crate) fn delete_value(key: &str, name: &str) {
    if let Some(k) = REG
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(&norm(key))
    {
        k.remove(&name.to_ascii_lowercase());
    }
}

pub(crate) fn reset() {
    REG.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// Reads a UNICODE_STRING into a Rust string (lossy); None when malformed.
///
/// # Safety
/// `s` must be NULL or a valid UNICODE_STRING.
pub(crate) unsafe fn read_unicode(s: *const UNICODE_STRING) -> Option<String> {
    if s.is_null() {
        return None;
    }
    // SAFETY: per the contract.
    let us = unsafe { s.read() };
    if us.Length % 2 != 0 || us.Length > us.MaximumLength || (us.Length > 0 && us.Buffer.is_null())
    {
        return None;
    }
    if us.Length == 0 {
        return Some(String::new());
    }
    // SAFETY: Buffer holds Length bytes of UTF-16.
    let units = unsafe { std::slice::from_raw_parts(us.Buffer, usize::from(us.Length / 2)) };
    Some(String::from_utf16_lossy(units))
}

/// The normalised key path named by `attributes` (absolute, or relative
/// to an open key), checked as the kernel routines `call` do.
///
/// # Safety
/// `attributes` NULL or a valid OBJECT_ATTRIBUTES.
unsafe fn path_of(call: &str, attributes: *const OBJECT_ATTRIBUTES) -> Result<String, NTSTATUS> {
    // SAFETY: the caller passes NULL (checked by the callers) or valid attributes.
    let oa = unsafe { attributes.read() };
    if oa.Length as usize != std::mem::size_of::<OBJECT_ATTRIBUTES>() {
        record(
            ViolationKind::Other,
            format!("{call}: OBJECT_ATTRIBUTES.Length {}", oa.Length),
        );
        return Err(STATUS_INVALID_PARAMETER);
    }
    if oa.Attributes & OBJ_KERNEL_HANDLE == 0 {
        record(
            ViolationKind::Other,
            format!("{call} without OBJ_KERNEL_HANDLE (a user-mode handle)"),
        );
    }
    // SAFETY: ObjectName is NULL or a valid UNICODE_STRING.
    let Some(name) = (unsafe { read_unicode(oa.ObjectName) }) else {
        record(
            ViolationKind::Other,
            format!("{call}: malformed ObjectName"),
        );
        return Err(STATUS_INVALID_PARAMETER);
    };
    let path = if oa.RootDirectory.is_null() {
        name
    } else {
        let Some(root) = objects::key_path(oa.RootDirectory) else {
            record(
                ViolationKind::BadHandle,
                format!("{call}: RootDirectory {:p} is not a key", oa.RootDirectory),
            );
            return Err(STATUS_INVALID_PARAMETER);
        };
        if name.is_empty() {
            root
        } else {
            format!("{root}\\{name}")
        }
    };
    Ok(norm(&path))
}

/// # Safety
/// `key` writable; `attributes` a valid OBJECT_ATTRIBUTES.
#[no_mangle]
pub unsafe extern "system" fn ZwOpenKey(
    key: *mut HANDLE,
    _access: u32,
    attributes: *mut OBJECT_ATTRIBUTES,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::hold::point("ZwOpenKey");
    irql::require_passive("ZwOpenKey");
    if key.is_null() || attributes.is_null() {
        record(ViolationKind::Other, "ZwOpenKey with a NULL argument");
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: checked non-null; the caller passes valid attributes.
    let p = match unsafe { path_of("ZwOpenKey", attributes) } {
        Ok(p) => p,
        Err(st) => return st,
    };
    if !REG
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(&p)
    {
        return STATUS_OBJECT_NAME_NOT_FOUND;
    }
    let h = objects::open_handle(HandleObject::Key(p));
    // SAFETY: checked non-null.
    unsafe { key.write(h) };
    STATUS_SUCCESS
}

/// ZwCreateKey: opens the key, or creates it (the last path component
/// only, as on Windows: a missing parent is STATUS_OBJECT_NAME_NOT_FOUND).
/// `create_options` must be REG_OPTION_NON_VOLATILE or
/// REG_OPTION_VOLATILE (the simulation keeps both in memory);
/// `disposition`, if given, receives REG_CREATED_NEW_KEY or
/// REG_OPENED_EXISTING_KEY.
///
/// # Safety
/// `key` writable; `attributes` a valid OBJECT_ATTRIBUTES; `class` NULL or
/// a valid UNICODE_STRING; `disposition` NULL or writable.
#[no_mangle]
pub unsafe extern "system" fn ZwCreateKey(
    key: *mut HANDLE,
    _access: u32,
    attributes: *mut OBJECT_ATTRIBUTES,
    _title_index: u32,
    _class: *mut UNICODE_STRING,
    create_options: u32,
    disposition: *mut u32,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::hold::point("ZwCreateKey");
    irql::require_passive("ZwCreateKey");
    if key.is_null() || attributes.is_null() {
        record(ViolationKind::Other, "ZwCreateKey with a NULL argument");
        return STATUS_INVALID_PARAMETER;
    }
    if create_options & !(REG_OPTION_VOLATILE) != 0 {
        record(
            ViolationKind::Other,
            format!("ZwCreateKey: CreateOptions {create_options:#x}"),
        );
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: checked non-null; the caller passes valid attributes.
    let p = match unsafe { path_of("ZwCreateKey", attributes) } {
        Ok(p) => p,
        Err(st) => return st,
    };
    let created = {
        let mut reg = REG.lock().unwrap_or_else(|e| e.into_inner());
        if reg.contains_key(&p) {
            false
        } else {
            // The parent must exist: as a key, or as the path above one
            // (the simulation stores only keys tests or drivers made).
            let parent = p.rsplit_once('\\').map(|(a, _)| a).unwrap_or("");
            let under = format!("{parent}\\");
            if parent.is_empty()
                || !(reg.contains_key(parent) || reg.keys().any(|k| k.starts_with(&under)))
            {
                return STATUS_OBJECT_NAME_NOT_FOUND;
            }
            reg.insert(p.clone(), Key::new());
            true
        }
    };
    if !disposition.is_null() {
        // SAFETY: non-null, writable per the contract.
        unsafe {
            disposition.write(if created {
                REG_CREATED_NEW_KEY
            } else {
                REG_OPENED_EXISTING_KEY
            })
        };
    }
    let h = objects::open_handle(HandleObject::Key(p));
    // SAFETY: checked non-null.
    unsafe { key.write(h) };
    STATUS_SUCCESS
}

/// # Safety
/// Arguments as for the kernel routine.
#[no_mangle]
pub unsafe extern "system" fn ZwQueryValueKey(
    key: HANDLE,
    name: *mut UNICODE_STRING,
    class: i32,
    info: *mut c_void,
    length: u32,
    result_length: *mut u32,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::hold::point("ZwQueryValueKey");
    irql::require_passive("ZwQueryValueKey");
    let Some(path) = objects::key_path(key) else {
        record(
            ViolationKind::BadHandle,
            format!("ZwQueryValueKey({key:p}): not a key handle"),
        );
        return STATUS_INVALID_PARAMETER;
    };
    if class != KeyValuePartialInformation {
        return STATUS_INVALID_PARAMETER;
    }
    if result_length.is_null() {
        record(
            ViolationKind::Other,
            "ZwQueryValueKey with NULL ResultLength",
        );
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the caller passes a valid UNICODE_STRING (or NULL).
    let Some(vname) = (unsafe { read_unicode(name) }) else {
        return STATUS_INVALID_PARAMETER;
    };
    let value = REG
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&path)
        .and_then(|k| k.get(&vname.to_ascii_lowercase()).cloned());
    let Some((_, ty, data)) = value else {
        return STATUS_OBJECT_NAME_NOT_FOUND;
    };
    const HEADER: usize = 12;
    let need = HEADER + data.len();
    // SAFETY: checked non-null.
    unsafe { result_length.write(need as u32) };
    if (length as usize) < HEADER || info.is_null() {
        return STATUS_BUFFER_TOO_SMALL;
    }
    let out = info.cast::<u8>();
    // SAFETY: `info` has at least `length` >= 12 writable bytes.
    unsafe {
        out.cast::<u32>().write_unaligned(0);
        out.add(4).cast::<u32>().write_unaligned(ty);
        out.add(8).cast::<u32>().write_unaligned(data.len() as u32);
    }
    if (length as usize) < need {
        return STATUS_BUFFER_OVERFLOW;
    }
    // SAFETY: `length` >= need, so the data fits after the header.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), out.add(HEADER), data.len()) };
    STATUS_SUCCESS
}

/// # Safety
/// Arguments as for the kernel routine: `data` has `size` readable bytes.
#[no_mangle]
pub unsafe extern "system" fn ZwSetValueKey(
    key: HANDLE,
    name: *mut UNICODE_STRING,
    _title_index: u32,
    kind: u32,
    data: *mut c_void,
    size: u32,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    irql::require_passive("ZwSetValueKey");
    let Some(path) = objects::key_path(key) else {
        record(
            ViolationKind::BadHandle,
            format!("ZwSetValueKey({key:p}): not a key handle"),
        );
        return STATUS_INVALID_PARAMETER;
    };
    // SAFETY: the caller passes a valid UNICODE_STRING.
    let Some(vname) = (unsafe { read_unicode(name) }) else {
        return STATUS_INVALID_PARAMETER;
    };
    if size > 0 && data.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    let bytes = if size == 0 {
        Vec::new()
    } else {
        // SAFETY: `data` has `size` readable bytes per the contract.
        unsafe { std::slice::from_raw_parts(data.cast::<u8>(), size as usize) }.to_vec()
    };
    REG.lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(path)
        .or_default()
        .insert(vname.to_ascii_lowercase(), (vname.clone(), kind, bytes));
    STATUS_SUCCESS
}

/// Whether `key` exists.
pub(crate) fn key_exists(key: &str) -> bool {
    REG.lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(&norm(key))
}

/// A value as stored: (type, bytes), for tests.
pub fn get_raw(key: &str, name: &str) -> Option<(u32, Vec<u8>)> {
    REG.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&norm(key))
        .and_then(|k| k.get(&name.to_ascii_lowercase()).cloned())
        .map(|(_, ty, data)| (ty, data))
}

/// ZwEnumerateValueKey with KeyValueBasicInformation: the `index`-th value
/// of the key (in name order), STATUS_NO_MORE_ENTRIES past the end, and the
/// STATUS_BUFFER_TOO_SMALL / STATUS_BUFFER_OVERFLOW split of the query.
///
/// # Safety
/// `info` must have `length` writable bytes; `result_length` writable.
#[no_mangle]
pub unsafe extern "system" fn ZwEnumerateValueKey(
    key: HANDLE,
    index: u32,
    class: i32,
    info: *mut c_void,
    length: u32,
    result_length: *mut u32,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::hold::point("ZwEnumerateValueKey");
    irql::require_passive("ZwEnumerateValueKey");
    let Some(path) = objects::key_path(key) else {
        record(
            ViolationKind::BadHandle,
            format!("ZwEnumerateValueKey({key:p}): not a key handle"),
        );
        return STATUS_INVALID_PARAMETER;
    };
    if class != KeyValueBasicInformation || result_length.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    let value = REG
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&path)
        .and_then(|k| k.values().nth(index as usize).cloned());
    let Some((name, ty, _)) = value else {
        return STATUS_NO_MORE_ENTRIES;
    };
    let wide: Vec<u16> = name.encode_utf16().collect();
    const HEADER: usize = 12;
    let need = HEADER + wide.len() * 2;
    // SAFETY: checked non-null.
    unsafe { result_length.write(need as u32) };
    if (length as usize) < HEADER || info.is_null() {
        return STATUS_BUFFER_TOO_SMALL;
    }
    let out = info.cast::<u8>();
    // SAFETY: `info` has at least `length` >= 12 writable bytes.
    unsafe {
        out.cast::<u32>().write_unaligned(0);
        out.add(4).cast::<u32>().write_unaligned(ty);
        out.add(8)
            .cast::<u32>()
            .write_unaligned((wide.len() * 2) as u32);
    }
    if (length as usize) < need {
        return STATUS_BUFFER_OVERFLOW;
    }
    // SAFETY: `length` >= need: the name fits after the header.
    unsafe {
        std::ptr::copy_nonoverlapping(wide.as_ptr().cast::<u8>(), out.add(HEADER), wide.len() * 2)
    };
    STATUS_SUCCESS
}
