//! MmGetSystemRoutineAddress: the routines the driver resolves at run time
//! (ExAllocatePool2, the interrupt-time queries, the Etw* family), each of
//! which a test can hide to act like Wine or an old Windows.

use crate::violation::{record, ViolationKind};
use gate_ksys::UNICODE_STRING;
use std::collections::HashSet;
use std::ffi::c_void;
use std::sync::Mutex;

static HIDDEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);

pub(crate) fn hide(name: &str, hidden: bool) {
    let mut g = HIDDEN.lock().unwrap_or_else(|e| e.into_inner());
    let set = g.get_or_insert_with(HashSet::new);
    if hidden {
        set.insert(name.to_string());
    } else {
        set.remove(name);
    }
}

pub(crate) fn reset() {
    *HIDDEN.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

fn is_hidden(name: &str) -> bool {
    HIDDEN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|s| s.contains(name))
}

/// The address of a routine the simulation provides, or NULL.
pub(crate) fn resolve(name: &str) -> *mut c_void {
    if is_hidden(name) {
        return std::ptr::null_mut();
    }
    match name {
        "ExAllocatePool2" => crate::pool::ExAllocatePool2 as *const () as *mut c_void,
        "KeQueryInterruptTime" => crate::clock::KeQueryInterruptTime as *const () as *mut c_void,
        "KeQueryUnbiasedInterruptTime" => {
            crate::clock::KeQueryUnbiasedInterruptTime as *const () as *mut c_void
        }
        "KeQueryInterruptTimePrecise" => {
            crate::clock::KeQueryInterruptTimePrecise as *const () as *mut c_void
        }
        "KeQueryPerformanceCounter" => {
            crate::clock::KeQueryPerformanceCounter as *const () as *mut c_void
        }
        _ => crate::etw_routine(name),
    }
}

/// # Safety
/// `name` must be a valid UNICODE_STRING.
#[no_mangle]
pub unsafe extern "system" fn MmGetSystemRoutineAddress(name: *mut UNICODE_STRING) -> *mut c_void {
    let _sim = crate::fault::sim();
    crate::hold::point("MmGetSystemRoutineAddress");
    crate::irql::require_passive("MmGetSystemRoutineAddress");
    // SAFETY: per the contract.
    match unsafe { crate::registry::read_unicode(name) } {
        Some(n) => resolve(&n),
        None => {
            record(
                ViolationKind::Other,
                "MmGetSystemRoutineAddress with a malformed name",
            );
            std::ptr::null_mut()
        }
    }
}
