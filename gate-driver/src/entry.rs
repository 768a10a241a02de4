//! DriverEntry and DriverUnload (skeleton: the start-up order lands next).

use gate_ksys::*;

/// The driver's entry point.
///
/// # Safety
/// Called by the I/O manager with a valid driver object and registry path.
#[no_mangle]
pub unsafe extern "system" fn DriverEntry(
    driver: *mut DRIVER_OBJECT,
    _registry_path: *mut UNICODE_STRING,
) -> NTSTATUS {
    crate::pool::init();
    if driver.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the I/O manager passes a valid driver object we may modify.
    unsafe { (*driver).DriverUnload = Some(driver_unload) };
    STATUS_SUCCESS
}

unsafe extern "system" fn driver_unload(_driver: *mut DRIVER_OBJECT) {
    crate::pool::reset();
}
