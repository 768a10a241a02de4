//! Debug output (DbgPrintEx, captured line by line) and KeBugCheckEx.
//!
//! Set the environment variable `GATE_SIM_DEBUG` (any value) to echo the
//! driver's debug output and every recorded violation to stderr.

use crate::recent::Ring;
use crate::violation::{record, ViolationKind};
use gate_ksys::ULONG_PTR;
use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// One DbgPrintEx call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebugLine {
    pub component: u32,
    pub level: u32,
    pub text: String,
}

/// One KeBugCheckEx call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BugCheck {
    pub code: u32,
    pub params: [usize; 4],
}

/// Most recent debug lines kept (older ones are counted, not kept).
pub const DEBUG_LINES_LIMIT: usize = 16_384;

static LINES: Mutex<Ring<DebugLine>> = Mutex::new(Ring::new(DEBUG_LINES_LIMIT));
static BUGCHECKS: Mutex<Vec<BugCheck>> = Mutex::new(Vec::new());
static PARK_ON_BUGCHECK: AtomicBool = AtomicBool::new(false);

pub(crate) fn echo_enabled() -> bool {
    std::env::var_os("GATE_SIM_DEBUG").is_some()
}

pub(crate) fn lines() -> Vec<DebugLine> {
    LINES.lock().unwrap_or_else(|e| e.into_inner()).to_vec()
}

pub(crate) fn bugchecks() -> Vec<BugCheck> {
    BUGCHECKS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

pub(crate) fn set_park_on_bugcheck(on: bool) {
    PARK_ON_BUGCHECK.store(on, Ordering::SeqCst);
}

pub(crate) fn reset() {
    LINES.lock().unwrap_or_else(|e| e.into_inner()).clear();
    BUGCHECKS.lock().unwrap_or_else(|e| e.into_inner()).clear();
    PARK_ON_BUGCHECK.store(false, Ordering::SeqCst);
}

/// `DbgPrintEx(component, level, "%s", text)`: any other format string is
/// captured as it is (the driver only ever passes "%s").
///
/// # Safety
/// `format` must be a NUL-terminated string; with "%s", so must `text`.
#[no_mangle]
pub unsafe extern "C" fn DbgPrintEx(
    component: u32,
    level: u32,
    format: *const u8,
    text: *const u8,
) -> u32 {
    let _sim = crate::fault::sim();
    crate::hold::point("DbgPrintEx");
    if format.is_null() {
        record(ViolationKind::Other, "DbgPrintEx with a NULL format");
        return 0;
    }
    // SAFETY: the caller passes a NUL-terminated format string.
    let fmt = unsafe { CStr::from_ptr(format.cast()) }
        .to_string_lossy()
        .into_owned();
    let text = if fmt == "%s" {
        if text.is_null() {
            "(null)".to_string()
        } else {
            // SAFETY: with "%s" the argument is a NUL-terminated string.
            unsafe { CStr::from_ptr(text.cast()) }
                .to_string_lossy()
                .into_owned()
        }
    } else {
        fmt
    };
    let text = text.trim_end_matches('\n').to_string();
    if echo_enabled() {
        eprintln!("[driver {component}/{level}] {text}");
    }
    LINES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(DebugLine {
            component,
            level,
            text,
        });
    0
}

/// Records the bugcheck and stops: by default the process aborts with a clear
/// message (a bugcheck stops the machine); with
/// `Sim::park_on_bugcheck(true)` the calling thread parks forever instead,
/// so a test can assert on `Sim::bugchecks()`.
#[no_mangle]
pub unsafe extern "system" fn KeBugCheckEx(
    code: u32,
    p1: ULONG_PTR,
    p2: ULONG_PTR,
    p3: ULONG_PTR,
    p4: ULONG_PTR,
) -> ! {
    let _sim = crate::fault::sim();
    crate::hold::point("KeBugCheckEx");
    let msg = format!("KeBugCheckEx({code:#x}, {p1:#x}, {p2:#x}, {p3:#x}, {p4:#x})");
    record(ViolationKind::BugCheck, msg.clone());
    BUGCHECKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(BugCheck {
            code,
            params: [p1, p2, p3, p4],
        });
    if PARK_ON_BUGCHECK.load(Ordering::SeqCst) {
        eprintln!("*** simulated {msg}: thread parked");
        loop {
            std::thread::park();
        }
    }
    eprintln!("*** simulated {msg}: the machine stops here (aborting the test process)");
    std::process::abort();
}
