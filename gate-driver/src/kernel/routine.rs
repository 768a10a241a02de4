//! MmGetSystemRoutineAddress by Rust string name (PASSIVE_LEVEL only).

use core::ffi::c_void;

/// The address of the exported kernel routine `name` (ASCII, at most 63
/// characters), or NULL if the system lacks it.
pub fn system_routine(name: &str) -> *mut c_void {
    let mut wide = [0u16; 64];
    let mut n = 0usize;
    for (slot, b) in wide.iter_mut().zip(name.bytes()) {
        *slot = u16::from(b);
        n = n.saturating_add(1);
    }
    system_routine_wide(wide.get(..n).unwrap_or(&[]))
}

/// The same, from UTF-16 (the form the ETW module passes).
pub fn system_routine_wide(name: &[u16]) -> *mut c_void {
    let bytes = name.len().saturating_mul(2);
    let Ok(len) = u16::try_from(bytes) else {
        return core::ptr::null_mut();
    };
    let mut us = gate_ksys::UNICODE_STRING {
        Length: len,
        MaximumLength: len,
        Buffer: name.as_ptr().cast_mut(),
    };
    // SAFETY: `us` describes `name`, valid for the call; the routine only
    // reads it, and is called at PASSIVE_LEVEL (DriverEntry and the worker).
    unsafe { gate_ksys::MmGetSystemRoutineAddress(&mut us) }
}
