//! What a panic does in the kernel: print it, then stop the machine with a
//! gate-specific bug check (a panic here is a bug; continuing would run on
//! broken state). The image root's `#[panic_handler]` calls [`bugcheck`].
//! The crate denies the lints that introduce panics, so this is a last resort.

use core::panic::PanicInfo;

/// The bug-check code: "GA7E" plus 0x01 in the low byte. Parameters: 1 =
/// source line, 2 = column, 3 = address of the file name, 4 = its length.
pub const GATE_BUGCHECK_CODE: u32 = 0x6A7E_0001;

/// Prints the panic message (DbgPrintEx) and bug-checks.
pub fn bugcheck(info: &PanicInfo) -> ! {
    crate::dbg_print!(
        gate_ksys::DPFLTR_ERROR_LEVEL,
        "gate: PANIC: {}",
        info.message()
    );
    let (line, col, file) = match info.location() {
        Some(l) => (l.line(), l.column(), l.file()),
        None => (0, 0, ""),
    };
    // SAFETY: KeBugCheckEx may be called at any IRQL and never returns; the
    // parameters are plain numbers for the crash dump.
    unsafe {
        gate_ksys::KeBugCheckEx(
            GATE_BUGCHECK_CODE,
            line as usize,
            col as usize,
            file.as_ptr() as usize,
            file.len(),
        )
    }
}
