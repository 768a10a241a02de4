//! Clock, time units, and the rounding rule for every time the engine keeps.
//!
//! gate-core reads no clock. Every call takes `now`, a monotonic time in
//! 100 ns units (a "tick") chosen by the caller: in the driver this is the
//! kernel's interrupt time (`KeQueryInterruptTimePrecise`/`KeQueryInterruptTime`),
//! in tests and the demo a simulated clock. Only differences between times
//! matter; the origin is arbitrary.
//!
//! **Clamping.** Each table shard keeps the latest `now` any decision of
//! that shard has seen (its clock), and a `now` older than it is raised to
//! it; so, per shard, time never goes back, whichever CPU's reading comes
//! first. A clock that steps back (or two CPUs racing with slightly
//! different readings) therefore can never make tokens appear, not even
//! across the eviction and re-creation of a key's entry: an entry is only
//! evicted as idle when its bucket is full at the shard's clock, and a new
//! entry starts full at a time no earlier than that. (The global bucket
//! needs no clamp: an older `now` only makes it stricter.)
//!
//! **Rounding rule.** Every limit rounds toward its stricter side, and no
//! limit reads a truncated clock:
//!
//! * Token intervals are kept in fixed point with up to
//!   [`INTERVAL_PRECISION_BITS`] fractional bits of a tick (see
//!   [`Interval`]), rounded *up*: the delivered rate is never above the
//!   configured one and at most 2^-12 (0.025 %) below it, for every valid
//!   rate.
//! * A pend's accept time is rounded *up* to a whole tick (never early),
//!   and a pend whose delay, so rounded, exceeds `max_delay_ms` is not made.
//! * Bans and rejection windows are kept in exact ticks (`ban`): a ban lasts
//!   exactly `ban_ms`, and a rejection counts towards a ban exactly when it
//!   falls less than `ban_window_ms` after the one that opened the window.
//! * Tokens reported in a decision are rounded down.
//! * A bucket time converted to coarser units (a live change to a slower
//!   rate, see `bucket`) is rounded *up*, by less than one new unit (a
//!   later `tat`: never a token more); to finer units it is exact.
//!
//! The one place where the caller's tick is taken as a span rather than an
//! instant: a SYN stamped `now` may have arrived anywhere in `[now, now + 1
//! tick)`, so a bucket whose tolerance is below one tick (burst 1, more than
//! 2441 tokens per second, see `bucket`) accepts it if it conforms at some
//! instant of that tick. Without this, burst-1 buckets at high rates would
//! deliver `1 / ceil(interval)` (e.g. 2.5 M/s for 3 M/s) to a flood
//! stamped in whole ticks.

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

/// Fractional bits kept for the fastest rates: every interval is exact to
/// within 2^-12 of itself (the delivered rate within 0.025 % of the
/// configured one).
pub const INTERVAL_PRECISION_BITS: u32 = 12;

/// The interval between two tokens (the GCRA emission interval) in fixed
/// point: `units` units of `2^-shift` ticks.
///
/// `shift` is chosen per rate so that `units >= 2^12` (the relative rounding
/// error is below 2^-12) while slow rates keep whole ticks (`shift` 0 for
/// intervals of 4096 ticks and more, i.e. rates up to 2441/s), so that a
/// bucket's times, in these units, stay far from `u64::MAX`: times are exact
/// up to `2^(64 - shift)` ticks (at least 2^52 ticks, 14 years of uptime;
/// later they saturate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    /// The interval in units of `2^-shift` ticks, rounded up (>= 1).
    pub units: u64,
    /// Fractional bits, 0..=12.
    pub shift: u32,
}

impl Interval {
    /// The interval for a rate given in milli-connections per second
    /// (1..=10^10, i.e. up to one token per tick), rounded *up* so the
    /// effective rate never exceeds the configured one. `None` for a rate of
    /// 0 or above 10^10.
    pub const fn of_rate_milli(rate_milli: u64) -> Option<Interval> {
        // 1 token per (1000 / rate_milli) s = 10^10 / rate_milli ticks.
        const NUM: u64 = TICKS_PER_SEC * 1000;
        let whole = match NUM.checked_div(rate_milli) {
            Some(w) if w >= 1 => w,
            _ => return None,
        };
        let log2 = 63u32.saturating_sub(whole.leading_zeros());
        let shift = INTERVAL_PRECISION_BITS.saturating_sub(log2);
        // NUM << 12 < 2^46: no overflow.
        let num = NUM << shift;
        let units = match num.checked_div(rate_milli) {
            Some(q) if num.is_multiple_of(rate_milli) => q,
            Some(q) => q.saturating_add(1),
            None => return None,
        };
        Some(Interval { units, shift })
    }

    /// The interval for `rate_milli` in units of `2^-shift` ticks (a given
    /// `shift`, 0..=12, rather than the rate's own: the engine uses
    /// [`Self::of_rate_milli`] at start and at every live change, and
    /// converts kept times with [`Self::rescale`]), rounded up. `None` for
    /// a rate of 0 or above 10^10, or a shift above 12.
    pub const fn with_shift(rate_milli: u64, shift: u32) -> Option<Interval> {
        const NUM: u64 = TICKS_PER_SEC * 1000;
        if shift > INTERVAL_PRECISION_BITS || rate_milli == 0 || rate_milli > NUM {
            return None;
        }
        // NUM << 12 < 2^46: no overflow.
        let num = NUM << shift;
        let units = match num.checked_div(rate_milli) {
            Some(q) if num.is_multiple_of(rate_milli) => q,
            Some(q) => q.saturating_add(1),
            None => return None,
        };
        Some(Interval { units, shift })
    }

    /// One tick in these units (`2^shift`).
    pub const fn tick(self) -> u64 {
        1u64 << self.shift
    }

    /// A time in ticks, in these units (saturating).
    #[inline]
    pub const fn to_units(self, t: Ticks) -> u64 {
        if t > (u64::MAX >> self.shift) {
            u64::MAX
        } else {
            t << self.shift
        }
    }

    /// A bucket time `u` kept in units of `2^-from` ticks (an older
    /// configuration's), in these units: exact when these are finer
    /// (saturating, like every time in units), else rounded *up* by less
    /// than one of these units (a later `tat`: never a token more; see
    /// the rounding rule in the module docs).
    #[inline]
    pub const fn rescale(self, u: u64, from: u32) -> u64 {
        rescale(u, from, self.shift)
    }

    /// A time in these units, in whole ticks, rounded up (never early).
    #[inline]
    pub const fn ceil_ticks(self, u: u64) -> Ticks {
        let q = u >> self.shift;
        if u & self.tick().saturating_sub(1) != 0 {
            q.saturating_add(1)
        } else {
            q
        }
    }
}

/// A time `u` in units of `2^-from` ticks, in units of `2^-to` ticks
/// (shifts 0..=63): exact when `to >= from` (saturating at `u64::MAX`),
/// else rounded up (toward the later time).
#[inline]
pub const fn rescale(u: u64, from: u32, to: u32) -> u64 {
    if to >= from {
        let d = to.saturating_sub(from);
        if d >= 64 || u > (u64::MAX >> d) {
            u64::MAX
        } else {
            u << d
        }
    } else {
        let d = from.saturating_sub(to);
        if d >= 64 {
            return (u != 0) as u64;
        }
        let q = u >> d;
        if u & ((1u64 << d).wrapping_sub(1)) != 0 {
            q.saturating_add(1)
        } else {
            q
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(rate_milli: u64) -> Interval {
        Interval::of_rate_milli(rate_milli).unwrap()
    }

    #[test]
    fn slow_rates_keep_whole_ticks_rounded_up() {
        assert_eq!(
            iv(1000),
            Interval {
                units: TICKS_PER_SEC,
                shift: 0
            }
        );
        assert_eq!(iv(500).units, 2 * TICKS_PER_SEC);
        assert_eq!(
            iv(3000),
            Interval {
                units: 3_333_334,
                shift: 0
            }
        );
        assert_eq!(
            iv(1),
            Interval {
                units: 10_000_000_000,
                shift: 0
            }
        );
        // 2441.406/s: 4096 ticks per token; just above it, sub-tick units.
        assert_eq!(
            iv(2_441_406),
            Interval {
                units: 4097,
                shift: 0
            }
        );
        assert_eq!(iv(2_441_407).shift, 1);
        assert_eq!(iv(2_441_407).units, 8192);
    }

    #[test]
    fn fast_rates_keep_sub_tick_precision() {
        // 3 M/s: 3.333.. ticks, kept to 2^-11 of a tick (shift 11, not 4 ticks).
        let i = iv(3_000_000_000);
        assert_eq!(i.shift, 11);
        assert_eq!(i.units, 6827); // ceil(3.3333 * 2048)
        assert_eq!(
            iv(10_000_000_000),
            Interval {
                units: 4096,
                shift: 12
            }
        );
        assert_eq!(Interval::of_rate_milli(0), None);
        assert_eq!(Interval::of_rate_milli(10_000_000_001), None);
    }

    #[test]
    fn error_is_below_2_pow_minus_12_for_every_rate() {
        // Exhaustive over powers and neighbours, plus a stride over the range.
        let mut rates = alloc::vec::Vec::new();
        for e in 0..=10u32 {
            let p = 10u64.pow(e);
            rates.extend([p.saturating_sub(1).max(1), p, p + 1, 3 * p, 7 * p]);
        }
        rates.extend((1..10_000_000_000u64).step_by(9_999_991));
        for r in rates.into_iter().filter(|&r| r <= 10_000_000_000) {
            let i = iv(r);
            // units / 2^shift >= 10^10 / r  and  < (10^10 / r) * (1 + 2^-12)
            let lhs = u128::from(i.units) * u128::from(r);
            let exact = 10_000_000_000u128 << i.shift;
            assert!(lhs >= exact, "rate {r}: interval rounded down");
            assert!(lhs * 4096 < exact * 4097, "rate {r}: error >= 2^-12");
            assert!(i.units >= 4096 || i.shift == 0, "rate {r}: {i:?}");
        }
    }

    #[test]
    fn rescale_is_exact_to_finer_units_and_rounds_up_to_coarser() {
        assert_eq!(rescale(5, 0, 11), 5 << 11);
        assert_eq!(rescale(5 << 11, 11, 0), 5);
        assert_eq!(rescale((5 << 11) + 1, 11, 0), 6);
        assert_eq!(rescale((5 << 11) - 1, 11, 0), 5);
        assert_eq!(rescale(7, 3, 3), 7);
        assert_eq!(rescale(u64::MAX >> 4, 0, 4), u64::MAX - 15);
        assert_eq!(rescale((u64::MAX >> 4) + 1, 0, 4), u64::MAX);
        assert_eq!(rescale(u64::MAX, 12, 0), 1 << 52);
        assert_eq!(rescale(0, 12, 0), 0);
        // There and back never moves a time earlier.
        for u in [0u64, 1, 4095, 4096, 4097, 123_456_789, u64::MAX >> 12] {
            for (a, b) in [(0, 12), (12, 0), (3, 11), (11, 3)] {
                assert!(rescale(rescale(u, a, b), b, a) >= u, "{u} {a} {b}");
            }
        }
        let i = iv(3_000_000_000);
        assert_eq!(i.rescale(5, 0), 5 << 11);
    }

    #[test]
    fn conversions() {
        let i = iv(3_000_000_000);
        assert_eq!(i.to_units(5), 5 << 11);
        assert_eq!(i.to_units(u64::MAX), u64::MAX);
        assert_eq!(i.ceil_ticks(5 << 11), 5);
        assert_eq!(i.ceil_ticks((5 << 11) + 1), 6);
    }
}
