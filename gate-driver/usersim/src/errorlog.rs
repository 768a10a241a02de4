//! The I/O error log: IoAllocateErrorLogEntry and IoWriteErrorLogEntry.
//! Written entries are decoded (packet head and insertion strings) into
//! [`ErrorLogEntry`] values a test reads with
//! [`Sim::error_log`](crate::Sim::error_log).
//!
//! As on Windows: an entry is at most `ERROR_LOG_MAXIMUM_SIZE` bytes and at
//! least the packet head (else NULL), both calls need IRQL <=
//! DISPATCH_LEVEL, and the entry is zeroed. Checked here beyond Windows:
//! the strings lie inside the entry and are NUL-terminated UTF-16.
//! [`Sim::set_error_log_supported`](crate::Sim::set_error_log_supported)
//! makes allocation return NULL, as Wine's stub does.

use crate::irql;
use crate::violation::{record, ViolationKind};
use gate_ksys::{ERROR_LOG_MAXIMUM_SIZE, IO_ERROR_LOG_PACKET, NTSTATUS, PVOID};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// One written entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorLogEntry {
    /// The object given to IoAllocateErrorLogEntry (driver or device).
    pub io_object: usize,
    pub error_code: NTSTATUS,
    pub final_status: NTSTATUS,
    pub unique_error_value: u32,
    /// The insertion strings (`%2`, `%3`, ... of the message).
    pub strings: Vec<String>,
    /// Total entry size in bytes.
    pub size: usize,
}

/// Allocated entries not yet written: address -> (bytes, io_object).
type OpenEntries = HashMap<usize, (Box<[u8]>, usize)>;
static OPEN: Mutex<Option<OpenEntries>> = Mutex::new(None);
static WRITTEN: Mutex<Vec<ErrorLogEntry>> = Mutex::new(Vec::new());
static UNSUPPORTED: AtomicBool = AtomicBool::new(false);

pub(crate) fn reset() {
    *OPEN.lock().unwrap_or_else(|e| e.into_inner()) = None;
    WRITTEN.lock().unwrap_or_else(|e| e.into_inner()).clear();
    UNSUPPORTED.store(false, Ordering::SeqCst);
}

pub(crate) fn written() -> Vec<ErrorLogEntry> {
    WRITTEN.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Entries allocated but never written (a leak on Windows).
pub(crate) fn outstanding() -> usize {
    OPEN.lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map_or(0, HashMap::len)
}

pub(crate) fn set_supported(on: bool) {
    UNSUPPORTED.store(!on, Ordering::SeqCst);
}

const HEAD: usize = std::mem::size_of::<IO_ERROR_LOG_PACKET>();

#[no_mangle]
pub unsafe extern "system" fn IoAllocateErrorLogEntry(io_object: PVOID, entry_size: u8) -> PVOID {
    let _sim = crate::fault::sim();
    irql::require_at_most_dispatch("IoAllocateErrorLogEntry");
    if io_object.is_null() {
        record(
            ViolationKind::Other,
            "IoAllocateErrorLogEntry with a NULL IoObject",
        );
        return std::ptr::null_mut();
    }
    let size = usize::from(entry_size);
    if UNSUPPORTED.load(Ordering::SeqCst) || !(HEAD..=ERROR_LOG_MAXIMUM_SIZE).contains(&size) {
        return std::ptr::null_mut();
    }
    let mut bytes = vec![0u8; size].into_boxed_slice();
    let p = bytes.as_mut_ptr();
    OPEN.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(p as usize, (bytes, io_object as usize));
    p.cast()
}

#[no_mangle]
pub unsafe extern "system" fn IoWriteErrorLogEntry(entry: PVOID) {
    let _sim = crate::fault::sim();
    irql::require_at_most_dispatch("IoWriteErrorLogEntry");
    let taken = OPEN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
        .and_then(|m| m.remove(&(entry as usize)));
    let Some((bytes, io_object)) = taken else {
        record(
            ViolationKind::Other,
            format!("IoWriteErrorLogEntry({entry:p}): not an entry from IoAllocateErrorLogEntry, or written twice"),
        );
        return;
    };
    match decode(&bytes, io_object) {
        Ok(e) => WRITTEN.lock().unwrap_or_else(|e| e.into_inner()).push(e),
        Err(why) => record(ViolationKind::Other, format!("IoWriteErrorLogEntry: {why}")),
    }
}

fn decode(bytes: &[u8], io_object: usize) -> Result<ErrorLogEntry, String> {
    // SAFETY: `bytes` holds at least HEAD bytes (checked at allocation);
    // the packet is plain data.
    let p: IO_ERROR_LOG_PACKET =
        unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<IO_ERROR_LOG_PACKET>()) };
    let mut strings = Vec::new();
    let mut at = usize::from(p.StringOffset);
    if p.NumberOfStrings > 0 && at < HEAD {
        return Err(format!(
            "StringOffset {at} lies inside the {HEAD}-byte packet head"
        ));
    }
    for i in 0..p.NumberOfStrings {
        let mut units = Vec::new();
        loop {
            let Some(pair) = bytes.get(at..at + 2) else {
                return Err(format!(
                    "string {i} runs past the end of the {}-byte entry",
                    bytes.len()
                ));
            };
            at += 2;
            let u = u16::from_le_bytes([pair[0], pair[1]]);
            if u == 0 {
                break;
            }
            units.push(u);
        }
        strings.push(String::from_utf16(&units).map_err(|e| format!("string {i}: {e}"))?);
    }
    Ok(ErrorLogEntry {
        io_object,
        error_code: p.ErrorCode,
        final_status: p.FinalStatus,
        unique_error_value: p.UniqueErrorValue,
        strings,
        size: bytes.len(),
    })
}
