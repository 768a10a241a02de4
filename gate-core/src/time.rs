//! Clock and time units.
//!
//! gate-core reads no clock. Every call takes `now`, a monotonic time in
//! 100 ns units (a "tick") chosen by the caller: in the driver this is the
//! kernel's interrupt time (`KeQueryInterruptTimePrecise`/`KeQueryInterruptTime`),
//! in tests and the demo a simulated clock. Only differences between times
//! matter; the origin is arbitrary.
//!
//! A `now` older than the last one seen for a key is clamped to that last
//! one, so a clock that steps back (or two CPUs racing with slightly
//! different readings) can never make tokens appear.

/// A monotonic time or duration in 100 ns units.
pub type Ticks = u64;

/// Ticks in one second.
pub const TICKS_PER_SEC: Ticks = 10_000_000;
/// Ticks in one millisecond.
pub const TICKS_PER_MS: Ticks = 10_000;

/// Converts whole milliseconds to ticks (saturating; cannot overflow for `u32` input).
pub const fn ms_to_ticks(ms: u32) -> Ticks {
    (ms as u64).saturating_mul(TICKS_PER_MS)
}

/// Ticks between two tokens for a rate given in milli-connections per
/// second, rounded *up* so the effective rate never exceeds the configured
/// one. `None` for a zero rate.
pub const fn ticks_per_token(rate_milli: u64) -> Option<Ticks> {
    // 1 token per (1000 / rate_milli) s = 10^10 / rate_milli ticks.
    const NUM: u64 = TICKS_PER_SEC * 1000;
    match NUM.checked_div(rate_milli) {
        Some(q) => {
            if matches!(NUM.checked_rem(rate_milli), Some(0)) {
                Some(q)
            } else {
                Some(q.saturating_add(1))
            }
        }
        None => None,
    }
}

/// Coarse time unit used for the ban and rejection-window fields of a table
/// entry, stored as `u32` to keep entries at 40 bytes: 2^16 ticks = 6.5536 ms.
/// A `u32` of these wraps after about 325 days; entries also keep the exact
/// time they were last seen, which guards every coarse comparison.
pub(crate) const COARSE_SHIFT: u32 = 16;

/// `now` in coarse units (truncated to 32 bits, compared with wrapping arithmetic).
pub(crate) const fn coarse(now: Ticks) -> u32 {
    (now >> COARSE_SHIFT) as u32
}

/// A duration in coarse units, rounded up.
pub(crate) const fn coarse_ceil(d: Ticks) -> u32 {
    let unit: u64 = 1 << COARSE_SHIFT;
    let q = d >> COARSE_SHIFT;
    let q = if d & (unit - 1) != 0 {
        q.saturating_add(1)
    } else {
        q
    };
    if q > u32::MAX as u64 {
        u32::MAX
    } else {
        q as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_per_token_rounds_up() {
        assert_eq!(ticks_per_token(1000), Some(TICKS_PER_SEC));
        assert_eq!(ticks_per_token(500), Some(2 * TICKS_PER_SEC));
        assert_eq!(ticks_per_token(3000), Some(3_333_334));
        assert_eq!(ticks_per_token(10_000_000_000), Some(1));
        assert_eq!(ticks_per_token(0), None);
    }

    #[test]
    fn coarse_ceil_rounds_up() {
        assert_eq!(coarse_ceil(0), 0);
        assert_eq!(coarse_ceil(1), 1);
        assert_eq!(coarse_ceil(65536), 1);
        assert_eq!(coarse_ceil(65537), 2);
    }
}
