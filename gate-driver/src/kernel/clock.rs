//! The gate's clock: interrupt time in 100 ns ticks (monotonic, counts
//! from boot). [`init`] resolves, first found wins:
//! `KeQueryInterruptTimePrecise` (sub-tick precision, Windows 8.1+),
//! `KeQueryUnbiasedInterruptTime` (excludes sleep), `KeQueryInterruptTime`.
//! All are resolved at run time so a system lacking one (Wine lacks the
//! precise one) still loads the driver.

use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use gate_ksys::{PFN_KeQueryInterruptTime, PFN_KeQueryInterruptTimePrecise};

/// Which routine the clock reads.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// No routine found: the driver does not start.
    None = 0,
    /// KeQueryInterruptTimePrecise.
    Precise = 1,
    /// KeQueryUnbiasedInterruptTime.
    Unbiased = 2,
    /// KeQueryInterruptTime.
    Plain = 3,
}

static KIND: AtomicU8 = AtomicU8::new(Source::None as u8);
static ROUTINE: AtomicUsize = AtomicUsize::new(0);

/// Resolves the clock routine (PASSIVE_LEVEL, from DriverEntry).
pub fn init() -> Source {
    let candidates = [
        ("KeQueryInterruptTimePrecise", Source::Precise),
        ("KeQueryUnbiasedInterruptTime", Source::Unbiased),
        ("KeQueryInterruptTime", Source::Plain),
    ];
    for (name, kind) in candidates {
        let p = super::routine::system_routine(name);
        if !p.is_null() {
            ROUTINE.store(p as usize, Ordering::Release);
            KIND.store(kind as u8, Ordering::Release);
            return kind;
        }
    }
    ROUTINE.store(0, Ordering::Release);
    KIND.store(Source::None as u8, Ordering::Release);
    Source::None
}

/// Interrupt time now, in 100 ns ticks (0 if [`init`] found nothing).
pub fn now() -> u64 {
    let f = ROUTINE.load(Ordering::Acquire);
    if f == 0 {
        return 0;
    }
    if KIND.load(Ordering::Acquire) == Source::Precise as u8 {
        // SAFETY: `f` was resolved for "KeQueryInterruptTimePrecise", whose
        // signature is PFN_KeQueryInterruptTimePrecise; callable at any IRQL.
        let f: PFN_KeQueryInterruptTimePrecise = unsafe { core::mem::transmute(f) };
        let mut qpc = 0u64;
        // SAFETY: `qpc` is a valid out-parameter for the call.
        unsafe { f(&mut qpc) }
    } else {
        // SAFETY: `f` was resolved for KeQueryUnbiasedInterruptTime or
        // KeQueryInterruptTime, both PFN_KeQueryInterruptTime; any IRQL.
        let f: PFN_KeQueryInterruptTime = unsafe { core::mem::transmute(f) };
        // SAFETY: no arguments; reads the clock.
        unsafe { f() }
    }
}
