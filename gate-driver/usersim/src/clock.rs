//! Interrupt time: a virtual clock by default (tests move it with
//! `Sim::advance`; timers and wait timeouts follow it), or real time
//! (monotonic host clock) for interactive and NFQUEUE use.
//!
//! Units are the kernel's: 100 ns. The virtual clock starts at
//! [`VIRTUAL_START`] (one hour of uptime) so "time zero" bugs show. System
//! time (absolute due times) is interrupt time plus [`SYSTEM_TIME_AT_BOOT`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Virtual interrupt time right after reset: one hour, in 100 ns units.
pub const VIRTUAL_START: u64 = 3600 * 10_000_000;
/// System time (100 ns since 1601) at interrupt time 0: 2026-01-01.
pub const SYSTEM_TIME_AT_BOOT: u64 = 134_116_992_000_000_000;

static REAL: AtomicBool = AtomicBool::new(false);
/// Wine 8's KeQueryInterruptTime: milliseconds (NtGetTickCount), not 100 ns.
static WINE_INTERRUPT_TIME: AtomicBool = AtomicBool::new(false);

/// The simulated performance counter's frequency (the ACPI PM timer's
/// 3.579545 MHz: not a divisor of 10^7, so a caller's scaling shows).
pub const QPC_FREQUENCY: u64 = 3_579_545;
static VIRTUAL_NOW: AtomicU64 = AtomicU64::new(VIRTUAL_START);
static REAL_BASE: AtomicU64 = AtomicU64::new(VIRTUAL_START);

fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

fn real_now() -> u64 {
    let ns = epoch().elapsed().as_nanos();
    REAL_BASE
        .load(Ordering::SeqCst)
        .saturating_add(u64::try_from(ns / 100).unwrap_or(u64::MAX))
}

/// Current interrupt time in 100 ns units.
pub fn now() -> u64 {
    if REAL.load(Ordering::SeqCst) {
        real_now()
    } else {
        VIRTUAL_NOW.load(Ordering::SeqCst)
    }
}

/// Whether the clock follows real time.
pub fn is_real() -> bool {
    REAL.load(Ordering::SeqCst)
}

/// Switches between virtual and real time, continuing from the current value.
pub(crate) fn set_real(real: bool) {
    let cur = now();
    if real {
        let elapsed = u64::try_from(epoch().elapsed().as_nanos() / 100).unwrap_or(0);
        REAL_BASE.store(cur.saturating_sub(elapsed), Ordering::SeqCst);
    } else {
        VIRTUAL_NOW.store(cur, Ordering::SeqCst);
    }
    REAL.store(real, Ordering::SeqCst);
}

/// Sets the virtual clock (only the dispatcher's advance loop calls this).
pub(crate) fn set_virtual(t: u64) {
    VIRTUAL_NOW.fetch_max(t, Ordering::SeqCst);
}

/// Makes `KeQueryInterruptTime` return milliseconds as Wine 8's does
/// (`KeQueryTickCount` -> `NtGetTickCount()`), or 100 ns units again.
pub(crate) fn set_wine_interrupt_time(on: bool) {
    WINE_INTERRUPT_TIME.store(on, Ordering::SeqCst);
}

pub(crate) fn reset() {
    REAL.store(false, Ordering::SeqCst);
    WINE_INTERRUPT_TIME.store(false, Ordering::SeqCst);
    VIRTUAL_NOW.store(VIRTUAL_START, Ordering::SeqCst);
}

/// Converts a kernel timeout/due time (negative = relative 100 ns, positive
/// = absolute system time) into an absolute interrupt time.
pub fn deadline_from(due: i64) -> u64 {
    let n = now();
    if due <= 0 {
        n.saturating_add(due.unsigned_abs())
    } else {
        (due as u64).saturating_sub(SYSTEM_TIME_AT_BOOT)
    }
}

/// `KeQueryInterruptTime` (resolved through MmGetSystemRoutineAddress).
/// With [`set_wine_interrupt_time`] on it returns milliseconds, as Wine 8.
pub unsafe extern "system" fn KeQueryInterruptTime() -> u64 {
    let _sim = crate::fault::sim();
    crate::hold::point("KeQueryInterruptTime");
    if WINE_INTERRUPT_TIME.load(Ordering::SeqCst) {
        now() / 10_000
    } else {
        now()
    }
}

/// `KeQueryPerformanceCounter` (HAL): interrupt time as a counter at
/// [`QPC_FREQUENCY`]; the frequency goes to `frequency` when not NULL.
///
/// # Safety
/// `frequency` must be NULL or writable.
pub unsafe extern "system" fn KeQueryPerformanceCounter(frequency: *mut i64) -> i64 {
    let _sim = crate::fault::sim();
    crate::hold::point("KeQueryPerformanceCounter");
    if !frequency.is_null() {
        // SAFETY: the caller passes a writable i64.
        unsafe { frequency.write(QPC_FREQUENCY as i64) };
    }
    let counts = u128::from(now()) * u128::from(QPC_FREQUENCY) / 10_000_000;
    i64::try_from(counts).unwrap_or(i64::MAX)
}

/// `KeQueryUnbiasedInterruptTime` (the simulation never sleeps, so it equals
/// interrupt time).
pub unsafe extern "system" fn KeQueryUnbiasedInterruptTime() -> u64 {
    let _sim = crate::fault::sim();
    crate::hold::point("KeQueryUnbiasedInterruptTime");
    now()
}

/// `KeQueryInterruptTimePrecise`: `qpc` receives a performance counter
/// running at 10 MHz (the same 100 ns ticks).
///
/// # Safety
/// `qpc` must be NULL or writable.
pub unsafe extern "system" fn KeQueryInterruptTimePrecise(qpc: *mut u64) -> u64 {
    let _sim = crate::fault::sim();
    crate::hold::point("KeQueryInterruptTimePrecise");
    let t = now();
    if !qpc.is_null() {
        // SAFETY: the caller passes a writable u64.
        unsafe { qpc.write(t) };
    }
    t
}
