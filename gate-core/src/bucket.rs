//! Token-bucket state and arithmetic (GCRA form), integer only.
//!
//! A bucket of `burst` tokens refilled at `rate` is kept as one number, the
//! *theoretical arrival time* `tat` (the generic cell rate algorithm of ITU-T
//! I.371, used by ATM and by the `governor` crate): with `T` the interval
//! between tokens and `cap = burst * T`, the bucket holds
//! `(cap - (tat - now)) / T` tokens, capped at `burst` (when `tat <= now` it
//! is full). Taking a token moves `tat` to `max(tat, now) + T`; that is
//! allowed when `max(tat, now) - now` is at most the tolerance `tau`
//! (`(burst - 1) * T`). A full bucket (`tat <= now`) carries no
//! information, which is what lets the table evict such keys at no cost.
//!
//! **Units.** `T`, `tat` and `tau` are fixed point: units of `2^-shift`
//! ticks, with `shift` chosen per rate ([`Interval`]), so a rate of 3 M/s
//! has `T` = 3.3335 ticks, not 4 (which delivered 2.5 M/s). `T` is rounded
//! up: the delivered rate never exceeds the configured one and is within
//! 2^-12 of it. The caller's `now` is in whole ticks.
//!
//! **Units across a live change.** A live change builds every bucket's
//! parameters afresh, in the new rate's own units, so the new rate too is
//! delivered within 2^-12 (a gate started at 1/s, whole ticks, and changed
//! live to 3 M/s gets `T` = 3.3335 ticks, not 4). A `tat` kept from before
//! the change is converted to the new units, never scanned for: a table
//! entry records its units (`Entry::units`) and the decision that touches
//! it converts it (`time::rescale`: exact to finer units, rounded up, i.e.
//! later, to coarser ones); the global bucket, one value, is converted by
//! the change itself (`Gate::reconfigure`), while no decision can touch it
//! (`AtomicBucket::hold`).
//!
//! **Tolerance of one tick.** A caller stamps times in whole ticks, so a
//! SYN stamped `now` arrived somewhere in `[now, now + 1 tick)`. When
//! `(burst - 1) * T` is less than one tick (burst 1, `shift > 0`), the
//! tolerance is raised to one tick less one unit: the SYN is accepted if it
//! conforms at some instant of its tick. Then, for every window, accepted
//! `<= 1 + rate * (w + 1 tick)` where `w` is the difference of the stamps;
//! otherwise (burst >= 2, or `shift == 0`) accepted `<= burst + rate * w`,
//! exactly. Both hold with aborted pends in the mix (see `gate`).
//!
//! All arithmetic saturates; nothing can overflow or divide by zero.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::time::{Interval, Ticks};

/// Parameters of one kind of bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BucketParams {
    /// Units of `tat`, `t`, `cap` and `limit`.
    pub iv: Interval,
    /// Interval between tokens, in units (>= 1).
    pub t: u64,
    /// `burst * t`, in units.
    pub cap: u64,
    /// Tolerance `tau`: the largest `tat - now` (units) that still allows a
    /// take: `max((burst - 1) * t, one tick - 1 unit)`.
    pub limit: u64,
    /// The largest `tat - now` (units) a bucket reaches under these
    /// parameters: `limit + t` by taking, plus the longest pend delay when
    /// pends are on ([`Self::with_pend`]). [`Self::clamp`] holds a bucket to
    /// it, which is what bounds a key's wait after a live change.
    pub ceil: u64,
    /// [`Self::ceil`] while pends promised under an earlier configuration
    /// may still be outstanding: its pend term raised to what those pends
    /// may have reserved ([`Self::hold`]), so their debt is not dropped by
    /// [`Self::clamp`]. Equal to `ceil` when nothing is held.
    pub held: u64,
    /// The largest time in ticks that converts to units without saturating.
    max_ticks: Ticks,
    /// Division by `t` of the tokens reported, as a multiplication.
    per_mille: PerMille,
}

/// `floor(avail * 1000 / t)` for every `avail <= cap`, as one 64x64-bit
/// multiplication and a shift: with `k = 64 + shift` and
/// `magic = ceil(1000 * 2^k / t)`, the error `e = magic * t - 1000 * 2^k`
/// is below `t`, and `floor(avail * magic / 2^k)` is exact whenever
/// `avail * e < 2^k` (Granlund and Montgomery, "Division by invariant
/// integers using multiplication", PLDI 1994, Thm 4.2, with the dividend
/// bounded by `cap`). [`PerMille::new`] checks that bound for `cap` once
/// per configuration; where it fails (a bucket with `t <= 1000` units, or
/// `cap * 1000` beyond `u64`: no valid configuration builds one, since every
/// bucket is built in its own rate's units, but the check stays) `magic` is
/// 0 and `tokens_milli` divides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PerMille {
    /// `ceil(1000 * 2^(64 + shift) / t)`, or 0: divide instead.
    magic: u64,
    shift: u32,
}

impl PerMille {
    /// For an interval of `t >= 1` units and a capacity of `cap` units.
    fn new(t: u64, cap: u64) -> PerMille {
        const DIVIDE: PerMille = PerMille { magic: 0, shift: 0 };
        let t128 = u128::from(t.max(1));
        if cap.checked_mul(1000).is_none() {
            return DIVIDE;
        }
        // The largest shift whose magic fits in 64 bits (the most precise);
        // 1000 << (64 + 53) < 2^127.
        for shift in (0..=53u32).rev() {
            let k = 64u32.saturating_add(shift);
            let num = 1000u128 << k;
            let magic = num.div_ceil(t128);
            let Ok(m) = u64::try_from(magic) else {
                continue;
            };
            let e = magic.saturating_mul(t128).saturating_sub(num);
            return if u128::from(cap).saturating_mul(e) < (1u128 << k) {
                PerMille { magic: m, shift }
            } else {
                DIVIDE
            };
        }
        DIVIDE
    }
}

/// Result of [`BucketParams::take`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Take {
    /// A token was available; the new `tat` (units).
    Ok(u64),
    /// No token; one is free at `at` (ticks, rounded up). Reserving it now
    /// (a pend) sets `tat` to `tat_if_taken` (units).
    NotUntil { at: Ticks, tat_if_taken: u64 },
}

impl BucketParams {
    /// From a rate (milli-connections per second, 1..=10^10) and a burst (> 0).
    pub(crate) fn new(rate_milli: u64, burst: u32) -> Option<BucketParams> {
        Self::with_interval(Interval::of_rate_milli(rate_milli)?, burst)
    }

    /// From a rate in units of `2^-shift` ticks rather than the rate's own
    /// (tests: buckets whose `PerMille` must divide); `None` when
    /// `burst * T` would not fit in 64 bits in those units.
    #[cfg(test)]
    pub(crate) fn with_shift(rate_milli: u64, burst: u32, shift: u32) -> Option<BucketParams> {
        let iv = Interval::with_shift(rate_milli, shift)?;
        iv.units.checked_mul(u64::from(burst))?;
        Self::with_interval(iv, burst)
    }

    fn with_interval(iv: Interval, burst: u32) -> Option<BucketParams> {
        if burst == 0 {
            return None;
        }
        let t = iv.units;
        let by_burst = t.saturating_mul(u64::from(burst).saturating_sub(1));
        let by_tick = iv.tick().saturating_sub(1);
        let limit = if by_burst > by_tick {
            by_burst
        } else {
            by_tick
        };
        Some(BucketParams {
            iv,
            t,
            cap: t.saturating_mul(u64::from(burst)),
            limit,
            ceil: limit.saturating_add(t),
            held: limit.saturating_add(t),
            max_ticks: u64::MAX >> iv.shift,
            per_mille: PerMille::new(t, t.saturating_mul(u64::from(burst))),
        })
    }

    /// The same parameters for a key bucket whose debt may be reserved up
    /// to `max_delay` ticks ahead (a pend): raises [`Self::ceil`] by it.
    pub(crate) fn with_pend(mut self, max_delay: Ticks) -> BucketParams {
        self.ceil = self.ceil.saturating_add(self.units(max_delay));
        self.held = self.ceil;
        self
    }

    /// The same parameters with [`Self::held`] set for pends that an
    /// earlier configuration promised up to `term` ticks ahead, where that
    /// configuration let a key wait at most `wait` ticks (its `ceil - limit`,
    /// or `held - limit` while it held pends of its own): `limit` plus the
    /// larger of this configuration's own `t + pend term` and
    /// `min(wait, t + term)`.
    ///
    /// Both terms of the `min` are at least `term` (a `wait` always is:
    /// `t` plus a pend term at least `term`), so the debt of every pend
    /// promised before the change is kept: beyond this configuration's own
    /// burst tolerance (`limit`, which a change raising the burst grants at
    /// once), the key's next admission comes no earlier than the last of
    /// those pends; and neither term exceeds the larger of the two
    /// configurations' own waits, so the change never makes a key wait
    /// longer than the old or the new limits allow (the `swap_model`
    /// property in `tests/control.rs`; `t + term` alone let a key that
    /// went from 1/s to 0.5/s and from 1.8 s to 1 ms pends wait 3 s, above
    /// both 2.8 s and 2 s).
    pub(crate) fn hold(mut self, term: Ticks, wait: Ticks) -> BucketParams {
        let by_term = self.t.saturating_add(self.units(term));
        let by_wait = self.units(wait);
        let kept = if by_wait < by_term { by_wait } else { by_term };
        let by_old = self.limit.saturating_add(kept);
        self.held = if by_old > self.ceil {
            by_old
        } else {
            self.ceil
        };
        self
    }

    /// The longest a key may wait for its next token under these
    /// parameters, in ticks (rounded up): `ceil - limit`, or
    /// `held - limit` while [`Self::held`] is raised.
    pub(crate) fn wait_ticks(&self, held: bool) -> Ticks {
        let top = if held { self.held } else { self.ceil };
        self.iv.ceil_ticks(top.saturating_sub(self.limit))
    }

    /// A bucket's `tat` held to at most `at + ceil` (units), where `at` is
    /// the time of the bucket's last take or refusal: the most debt these
    /// parameters can leave at that time. It changes nothing in a bucket
    /// only ever used under these parameters; after a live change it drops
    /// the debt the old limits left beyond what the new ones allow, so no
    /// key waits longer than the new limits allow (gate-core's README,
    /// "Live changes"). Relative to the last decision, not to the current
    /// time: a clamp to `now + ceil` at every decision would keep a key
    /// at its most debt for as long as its old debt lasted.
    ///
    /// `held`: pends promised under an earlier configuration may still be
    /// outstanding at `now` (the gate's `pend_hold`): the ceiling is then
    /// [`Self::held`], which keeps their reserved debt. (Those pends are
    /// still delivered; dropping their debt would let new SYNs in on top
    /// of them, up to about twice the limits until they drain: review 13c.)
    #[inline]
    pub(crate) fn clamp(&self, tat: u64, now: u64, held: bool) -> u64 {
        let most = now.saturating_add(if held { self.held } else { self.ceil });
        if tat > most {
            most
        } else {
            tat
        }
    }

    /// `now` (ticks) in this bucket's units, saturating: one compare and
    /// one shift, done once per decision (the methods below take units; a
    /// fresh, full bucket's `tat` is `units(now)`).
    #[inline]
    pub(crate) fn units(&self, now: Ticks) -> u64 {
        if now > self.max_ticks {
            u64::MAX
        } else {
            now << self.iv.shift
        }
    }

    /// Whether a bucket at `tat` is full at `now` (units).
    #[inline]
    pub(crate) fn is_full(&self, tat: u64, now: u64) -> bool {
        tat <= now
    }

    /// Outcome of trying to take a token at `now` (units) from a bucket at `tat`.
    #[inline]
    pub(crate) fn take(&self, tat: u64, now: u64) -> Take {
        let base = if tat > now { tat } else { now };
        let debt = base.saturating_sub(now);
        let next = base.saturating_add(self.t);
        if debt <= self.limit {
            Take::Ok(next)
        } else {
            Take::NotUntil {
                at: self.iv.ceil_ticks(base.saturating_sub(self.limit)),
                tat_if_taken: next,
            }
        }
    }

    /// Tokens in a bucket at `tat`, at `now` (units), in thousandths (scale
    /// 1000), rounded down: `floor(avail * 1000 / t)` with `avail` the
    /// tokens' worth of units left (`avail * 1000` saturating), computed
    /// with a multiplication (see [`PerMille`]).
    #[inline]
    pub(crate) fn tokens_milli(&self, tat: u64, now: u64) -> u32 {
        let debt = tat.saturating_sub(now);
        let avail = self.cap.saturating_sub(debt);
        let pm = self.per_mille;
        let m = if pm.magic != 0 {
            // avail <= cap: exact (see `PerMille`).
            // A 64x64-bit product: cannot wrap.
            (u128::from(avail).wrapping_mul(u128::from(pm.magic)) >> 64) as u64 >> pm.shift
        } else {
            avail.saturating_mul(1000).checked_div(self.t).unwrap_or(0)
        };
        u32::try_from(m).unwrap_or(u32::MAX)
    }
}

/// The global bucket's `tat` while [`AtomicBucket::hold`] holds it.
pub(crate) const HELD: u64 = u64::MAX;

/// The global bucket over all sources: one atomic `tat`, updated by compare-and-swap
/// (no lock; every CPU may take from it).
#[derive(Debug)]
pub(crate) struct AtomicBucket {
    tat: AtomicU64,
}

impl AtomicBucket {
    pub(crate) const fn new() -> AtomicBucket {
        AtomicBucket {
            tat: AtomicU64::new(0),
        }
    }

    /// Holds the state to what `p` allows at `now` (units; see
    /// [`BucketParams::clamp`]): done once at a live change, with `now` the
    /// latest time any shard has seen.
    pub(crate) fn clamp(&self, p: &BucketParams, now: u64) {
        let _ = self
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                // The global token of a pend is taken at its decision (not
                // reserved ahead), so `limit + t` covers it: nothing held.
                let c = p.clamp(cur, now, false);
                (c != cur).then_some(c)
            });
    }

    /// Empties the state (a full bucket), for a bucket switched on live
    /// while no decision uses it.
    pub(crate) fn reset(&self) {
        self.tat.store(0, Ordering::Relaxed);
    }

    /// Holds the bucket for a change of its units: returns its `tat` and
    /// leaves [`HELD`] (`u64::MAX`) in its place, which no take and no give
    /// back can change (a take from it fails: its debt is beyond every
    /// tolerance while times are exact, i.e. below `2^(64 - shift)` ticks;
    /// a give back compares against its own take). [`Self::release`] puts
    /// the converted value back once no decision can still hold the old
    /// parameters.
    pub(crate) fn hold(&self) -> u64 {
        self.tat.swap(HELD, Ordering::AcqRel)
    }

    /// Ends [`Self::hold`] with `tat` (in the new units).
    pub(crate) fn release(&self, tat: u64) {
        self.tat.store(tat, Ordering::Release);
    }

    /// Takes a token at `now` if one is there; returns the `tat` it set.
    #[inline]
    pub(crate) fn try_take(&self, p: &BucketParams, now: Ticks) -> Option<u64> {
        let now = p.units(now);
        let mut cur = self.tat.load(Ordering::Relaxed);
        loop {
            let Take::Ok(next) = p.take(cur, now) else {
                return None;
            };
            match self
                .tat
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(next),
                Err(seen) => cur = seen,
            }
        }
    }

    /// Gives back the token whose take moved `tat` from `was` to `set` (a
    /// pend aborted), only if no take has happened since (`tat` is still
    /// `set`): a later take was computed from this one and depends on it
    /// (x/time/rate's rule for a cancelled reservation). Restores `was`,
    /// not `set - T` of the parameters now in force: a live change may
    /// have changed `T` since. The caller checks the units are still those
    /// of the take. Returns whether it gave it back.
    pub(crate) fn give_back(&self, set: u64, was: u64) -> bool {
        self.tat
            .compare_exchange(set, was, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::TICKS_PER_SEC;

    #[test]
    fn burst_then_rate() {
        let p = BucketParams::new(1000, 3).unwrap(); // 1/s, burst 3
        let now = 100 * TICKS_PER_SEC;
        let mut tat = p.units(now);
        assert_eq!(p.tokens_milli(tat, p.units(now)), 3000);
        for left in [2000, 1000, 0] {
            match p.take(tat, p.units(now)) {
                Take::Ok(t) => tat = t,
                Take::NotUntil { .. } => panic!("burst not honoured"),
            }
            assert_eq!(p.tokens_milli(tat, p.units(now)), left);
        }
        match p.take(tat, p.units(now)) {
            Take::NotUntil { at, .. } => assert_eq!(at, now + TICKS_PER_SEC),
            Take::Ok(_) => panic!("took a fourth token"),
        }
        // Half a second later: half a token.
        assert_eq!(p.tokens_milli(tat, p.units(now + TICKS_PER_SEC / 2)), 500);
        assert!(matches!(
            p.take(tat, p.units(now + TICKS_PER_SEC)),
            Take::Ok(_)
        ));
    }

    #[test]
    fn fractional_rate() {
        let p = BucketParams::new(500, 1).unwrap(); // 0.5/s
        assert_eq!(p.t, 2 * TICKS_PER_SEC);
        assert_eq!(p.limit, 0, "whole ticks: no tolerance");
        let Take::Ok(tat) = p.take(0, p.units(0)) else {
            panic!()
        };
        assert!(matches!(
            p.take(tat, p.units(TICKS_PER_SEC)),
            Take::NotUntil { .. }
        ));
        assert!(matches!(
            p.take(tat, p.units(2 * TICKS_PER_SEC)),
            Take::Ok(_)
        ));
    }

    /// Issue #9, 4th input: 3 M/s, burst 1, one take attempt per tick for
    /// 1 ms delivered 2501 (2.5 M/s) with the interval rounded to 4 ticks.
    #[test]
    fn three_million_per_second_burst_one_per_tick_flood() {
        let p = BucketParams::new(3_000_000_000, 1).unwrap();
        let t0 = 10_000_000_000u64;
        let mut tat = p.units(t0);
        let mut n = 0u64;
        for now in t0..t0 + 10_000 {
            if let Take::Ok(next) = p.take(tat, p.units(now)) {
                tat = next;
                n += 1;
            }
        }
        assert_eq!(n, 3000);
    }

    #[test]
    fn pend_time_rounds_up_to_a_whole_tick() {
        let p = BucketParams::new(3_000_000_000, 2).unwrap();
        let mut tat = p.units(0);
        for _ in 0..2 {
            let Take::Ok(t) = p.take(tat, p.units(0)) else {
                panic!()
            };
            tat = t;
        }
        // Two tokens spent at 0: the next is free at 3.33 ticks, i.e. at tick 4.
        let Take::NotUntil { at, tat_if_taken } = p.take(tat, p.units(0)) else {
            panic!()
        };
        assert_eq!(at, 4);
        assert!(matches!(p.take(tat, p.units(3)), Take::NotUntil { .. }));
        assert!(matches!(p.take(tat, p.units(4)), Take::Ok(t) if t == tat_if_taken));
    }

    #[test]
    fn global_bucket_counts_down_and_refunds_only_the_latest() {
        let p = BucketParams::new(1000, 2).unwrap();
        let g = AtomicBucket::new();
        let now = 10 * TICKS_PER_SEC;
        assert!(g.try_take(&p, now).is_some());
        let second = g.try_take(&p, now).unwrap();
        assert!(g.try_take(&p, now).is_none());
        assert!(g.give_back(second, second - p.t));
        assert!(!g.give_back(second, second - p.t), "given back twice");
        let again = g.try_take(&p, now + TICKS_PER_SEC).unwrap();
        let _later = g.try_take(&p, now + TICKS_PER_SEC).unwrap();
        assert!(
            !g.give_back(again, again - p.t),
            "a later take depends on it"
        );
        // Held (a change of units): nothing takes and nothing gives back.
        let held = g.hold();
        assert!(g.try_take(&p, now + 100 * TICKS_PER_SEC).is_none());
        assert!(!g.give_back(held, held - p.t));
        g.release(held);
        assert!(g.try_take(&p, now + 100 * TICKS_PER_SEC).is_some());
    }

    /// `tokens_milli` against the plain formula, for every kind of bucket
    /// (fresh configurations over the whole valid range, and the units a
    /// live change may keep) and `avail` at the edges and at random.
    #[test]
    fn tokens_milli_is_exact() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut buckets = alloc::vec::Vec::new();
        for e in 0..=10u32 {
            let p = 10u64.pow(e);
            for r in [p.saturating_sub(1).max(1), p, p + 1, 3 * p, 7 * p] {
                for burst in [1, 2, 3, 999, 1000, 65_535, 1_000_000] {
                    buckets.extend(BucketParams::new(r, burst));
                    for shift in [0, 5, 12] {
                        buckets.extend(BucketParams::with_shift(r, burst, shift));
                    }
                }
            }
        }
        for _ in 0..300 {
            let r = rnd() % 10_000_000_000 + 1;
            let burst = (rnd() % 1_000_000) as u32 + 1;
            buckets.extend(BucketParams::new(r, burst));
            buckets.extend(BucketParams::with_shift(r, burst, (rnd() % 13) as u32));
        }
        let mut fast = 0;
        for p in &buckets {
            let reference = |avail: u64| {
                let m = avail.saturating_mul(1000) / p.t;
                u32::try_from(m).unwrap_or(u32::MAX)
            };
            let mut avails =
                alloc::vec![0, 1, p.t - 1, p.t, p.t + 1, p.cap, p.cap.saturating_sub(1)];
            for j in 1..50 {
                avails.push(p.cap / 50 * j);
                avails.push(p.t.saturating_mul(j).min(p.cap));
                avails.push(p.t.saturating_mul(j).saturating_sub(1).min(p.cap));
                avails.push(rnd() % p.cap.saturating_add(1).max(1));
            }
            for avail in avails.into_iter().filter(|&a| a <= p.cap) {
                // tat - now = cap - avail.
                let got = p.tokens_milli(p.cap - avail, 0);
                assert_eq!(
                    got,
                    reference(avail),
                    "t {} cap {} avail {avail}",
                    p.t,
                    p.cap
                );
            }
            fast += usize::from(p.per_mille.magic != 0);
        }
        // Every fresh configuration takes the multiplication.
        for r in [
            1,
            17,
            1000,
            2_441_406,
            2_441_407,
            3_000_000_000,
            10_000_000_000,
        ] {
            for burst in [1, 1000, 1_000_000] {
                let p = BucketParams::new(r, burst).unwrap();
                assert_ne!(p.per_mille.magic, 0, "rate {r} burst {burst}");
            }
        }
        assert!(fast > buckets.len() / 2, "{fast} of {}", buckets.len());
    }

    /// Why `PerMille::new` checks `cap * e < 2^k`: for this interval the
    /// most precise 64-bit magic is off by one at an `avail` below the
    /// capacity, so such a bucket must divide.
    #[test]
    fn per_mille_falls_back_where_the_magic_is_not_exact() {
        let (t, avail) = (10_000_000_007u64, 16_717_321_441_702_125u64);
        let shift = 23;
        let k = 64 + shift;
        let magic = (1000u128 << k).div_ceil(u128::from(t));
        assert!(
            magic <= u128::from(u64::MAX)
                && (1000u128 << (k + 1)).div_ceil(u128::from(t)) > u128::from(u64::MAX)
        );
        let unchecked = (u128::from(avail) * magic) >> k;
        assert_eq!(unchecked, 1_671_732_143);
        assert_eq!(avail * 1000 / t, 1_671_732_142);
        assert_eq!(PerMille::new(t, avail).magic, 0);
        assert_ne!(PerMille::new(t, avail / 4).magic, 0);
    }

    #[test]
    fn rejects_zero() {
        assert!(BucketParams::new(0, 1).is_none());
        assert!(BucketParams::new(1, 0).is_none());
    }
}
