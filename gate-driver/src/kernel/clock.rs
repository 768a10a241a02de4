//! The gate's clock: interrupt time in 100 ns ticks (monotonic, counts
//! from boot). [`init`] resolves, first found wins:
//! `KeQueryInterruptTimePrecise` (sub-tick precision, Windows 8.1+),
//! `KeQueryUnbiasedInterruptTime` (excludes sleep, Windows 7+),
//! `KeQueryPerformanceCounter` scaled to 100 ns, `KeQueryInterruptTime`.
//! All are resolved at run time so a system lacking one still loads the
//! driver. Wine 8 has neither of the first two, and its
//! `KeQueryInterruptTime` returns `NtGetTickCount()`: milliseconds, not
//! 100 ns units (dlls/ntoskrnl.exe/ntoskrnl.c), so a driver reading it sees
//! time run 10,000 times slow (buckets never refill, bans never end). Its
//! `KeQueryPerformanceCounter` (hal.dll, NtQueryPerformanceCounter) is right,
//! hence that order.

use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

use gate_ksys::{
    PFN_KeQueryInterruptTime, PFN_KeQueryInterruptTimePrecise, PFN_KeQueryPerformanceCounter,
};

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
    /// KeQueryPerformanceCounter, scaled by its frequency.
    PerformanceCounter = 4,
}

static KIND: AtomicU8 = AtomicU8::new(Source::None as u8);
static ROUTINE: AtomicUsize = AtomicUsize::new(0);
/// The performance counter's frequency (counts per second), read once.
static QPC_FREQUENCY: AtomicU64 = AtomicU64::new(0);

/// 100 ns ticks in `counts` of a counter running at `frequency` counts per
/// second, without overflow for any `counts`: whole seconds, then the
/// remainder (< `frequency`, so `rem * 10^7` fits for any frequency below
/// 1.8e12 Hz); saturates at u64::MAX, and is 0 for a zero frequency.
/// Integer only (no floating point in the driver).
pub const fn counts_to_100ns(counts: u64, frequency: u64) -> u64 {
    let (Some(secs), Some(rem)) = (counts.checked_div(frequency), counts.checked_rem(frequency))
    else {
        return 0;
    };
    let frac = match rem.saturating_mul(10_000_000).checked_div(frequency) {
        Some(f) => f,
        None => 0,
    };
    secs.saturating_mul(10_000_000).saturating_add(frac)
}

/// Resolves the clock routine (PASSIVE_LEVEL, from DriverEntry).
pub fn init() -> Source {
    let candidates = [
        ("KeQueryInterruptTimePrecise", Source::Precise),
        ("KeQueryUnbiasedInterruptTime", Source::Unbiased),
        ("KeQueryPerformanceCounter", Source::PerformanceCounter),
        ("KeQueryInterruptTime", Source::Plain),
    ];
    for (name, kind) in candidates {
        let p = super::routine::system_routine(name);
        if p.is_null() {
            continue;
        }
        if kind == Source::PerformanceCounter {
            // SAFETY: `p` was resolved for "KeQueryPerformanceCounter",
            // whose signature is PFN_KeQueryPerformanceCounter.
            let f: PFN_KeQueryPerformanceCounter = unsafe { core::mem::transmute(p) };
            let mut freq = 0i64;
            // SAFETY: `freq` is a valid out-parameter; callable at any IRQL.
            unsafe { f(&mut freq) };
            match u64::try_from(freq) {
                Ok(hz) if hz > 0 && hz < 1_000_000_000_000 => {
                    QPC_FREQUENCY.store(hz, Ordering::Release)
                }
                _ => continue,
            }
        }
        ROUTINE.store(p as usize, Ordering::Release);
        KIND.store(kind as u8, Ordering::Release);
        return kind;
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
    let kind = KIND.load(Ordering::Acquire);
    if kind == Source::PerformanceCounter as u8 {
        // SAFETY: `f` was resolved for "KeQueryPerformanceCounter", whose
        // signature is PFN_KeQueryPerformanceCounter; callable at any IRQL;
        // NULL asks for no frequency.
        let f: PFN_KeQueryPerformanceCounter = unsafe { core::mem::transmute(f) };
        // SAFETY: as above.
        let counts = unsafe { f(core::ptr::null_mut()) };
        let hz = QPC_FREQUENCY.load(Ordering::Acquire).max(1);
        return counts_to_100ns(u64::try_from(counts).unwrap_or(0), hz);
    }
    if kind == Source::Precise as u8 {
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

#[cfg(test)]
mod tests {
    use super::counts_to_100ns;

    /// Against exact 128-bit arithmetic, over counter frequencies seen in
    /// practice (ACPI PM timer, 10 MHz, TSC rates) and the extremes, for
    /// counts from a fixed pseudo-random sequence and the edges.
    #[test]
    fn counts_scale_exactly_to_100ns_for_any_count() {
        let freqs = [
            1u64,
            3_579_545,
            10_000_000,
            14_318_180,
            2_400_000_000,
            999_999_999_999,
        ];
        let check = |c: u64| {
            for &f in &freqs {
                let exact = u128::from(c) * 10_000_000 / u128::from(f);
                let want = u64::try_from(exact).unwrap_or(u64::MAX);
                assert_eq!(counts_to_100ns(c, f), want, "counts {c} at {f} Hz");
            }
        };
        for c in [0u64, 1, u64::MAX, u64::MAX - 1] {
            check(c);
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            check(x >> (x % 64));
        }
        assert_eq!(counts_to_100ns(12345, 0), 0);
    }
}
