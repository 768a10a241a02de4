//! Token-bucket state and arithmetic (GCRA form), integer only.
//!
//! A bucket of `burst` tokens refilled at `rate` is kept as one number, the
//! *theoretical arrival time* `tat` (the generic cell rate algorithm used by
//! ATM and by the `governor` crate): with `t` = ticks per token and
//! `cap = burst * t`, the bucket holds `(cap - (tat - now)) / t` tokens,
//! capped at `burst` (when `tat <= now` it is full). Taking a token moves
//! `tat` to `max(tat, now) + t`; that is allowed when the result is at most
//! `now + cap`. A full bucket (`tat <= now`) carries no information, which
//! is what lets the table evict such keys at no cost.
//!
//! `t` is rounded up from the configured rate, so the effective rate never
//! exceeds it. All arithmetic saturates; nothing can overflow or divide by zero.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::time::{ticks_per_token, Ticks};

/// Parameters of one kind of bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BucketParams {
    /// Ticks per token (>= 1).
    pub t: Ticks,
    /// `burst * t`.
    pub cap: Ticks,
    /// `(burst - 1) * t`: the largest `tat - now` that still allows a take.
    pub limit: Ticks,
}

impl BucketParams {
    /// From a rate (milli-connections per second, > 0) and a burst (> 0).
    pub(crate) fn new(rate_milli: u64, burst: u32) -> Option<BucketParams> {
        let t = ticks_per_token(rate_milli)?;
        if burst == 0 || t == 0 {
            return None;
        }
        Some(BucketParams {
            t,
            cap: t.saturating_mul(u64::from(burst)),
            limit: t.saturating_mul(u64::from(burst).saturating_sub(1)),
        })
    }

    /// Outcome of trying to take a token at `now` from a bucket at `tat`.
    /// On success the new `tat`; on failure the earliest time a take succeeds.
    #[inline]
    pub(crate) fn take(&self, tat: Ticks, now: Ticks) -> Take {
        let base = if tat > now { tat } else { now };
        let debt = base.saturating_sub(now);
        if debt <= self.limit {
            Take::Ok(base.saturating_add(self.t))
        } else {
            Take::NotUntil {
                at: base.saturating_sub(self.limit),
                tat_if_taken: base.saturating_add(self.t),
            }
        }
    }

    /// Tokens in a bucket at `tat`, at `now`, in thousandths (scale 1000),
    /// rounded down. One division: `avail * 1000` fits in `u64` because
    /// `cap <= 10^6 * 10^10` under a valid configuration (saturating otherwise).
    #[inline]
    pub(crate) fn tokens_milli(&self, tat: Ticks, now: Ticks) -> u32 {
        let debt = tat.saturating_sub(now);
        let avail = self.cap.saturating_sub(debt);
        let m = avail.saturating_mul(1000).checked_div(self.t).unwrap_or(0);
        u32::try_from(m).unwrap_or(u32::MAX)
    }
}

/// Result of [`BucketParams::take`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Take {
    /// A token was available; the new `tat`.
    Ok(Ticks),
    /// No token; one is free at `at`. Reserving it now (a pend) sets `tat` to `tat_if_taken`.
    NotUntil { at: Ticks, tat_if_taken: Ticks },
}

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

    /// Takes a token at `now` if one is there.
    #[inline]
    pub(crate) fn try_take(&self, p: &BucketParams, now: Ticks) -> bool {
        let mut cur = self.tat.load(Ordering::Relaxed);
        loop {
            let Take::Ok(next) = p.take(cur, now) else {
                return false;
            };
            match self
                .tat
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => cur = seen,
            }
        }
    }

    /// Gives a token back (a pend aborted).
    pub(crate) fn give_back(&self, p: &BucketParams) {
        let _ = self
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(p.t))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::TICKS_PER_SEC;

    #[test]
    fn burst_then_rate() {
        let p = BucketParams::new(1000, 3).unwrap(); // 1/s, burst 3
        let mut tat = 0;
        let now = 100 * TICKS_PER_SEC;
        assert_eq!(p.tokens_milli(tat, now), 3000);
        for left in [2000, 1000, 0] {
            match p.take(tat, now) {
                Take::Ok(t) => tat = t,
                Take::NotUntil { .. } => panic!("burst not honoured"),
            }
            assert_eq!(p.tokens_milli(tat, now), left);
        }
        match p.take(tat, now) {
            Take::NotUntil { at, .. } => assert_eq!(at, now + TICKS_PER_SEC),
            Take::Ok(_) => panic!("took a fourth token"),
        }
        // Half a second later: half a token.
        assert_eq!(p.tokens_milli(tat, now + TICKS_PER_SEC / 2), 500);
        assert!(matches!(p.take(tat, now + TICKS_PER_SEC), Take::Ok(_)));
    }

    #[test]
    fn fractional_rate() {
        let p = BucketParams::new(500, 1).unwrap(); // 0.5/s
        assert_eq!(p.t, 2 * TICKS_PER_SEC);
        let Take::Ok(tat) = p.take(0, 0) else {
            panic!()
        };
        assert!(matches!(p.take(tat, TICKS_PER_SEC), Take::NotUntil { .. }));
        assert!(matches!(p.take(tat, 2 * TICKS_PER_SEC), Take::Ok(_)));
    }

    #[test]
    fn global_bucket_counts_down_and_refunds() {
        let p = BucketParams::new(1000, 2).unwrap();
        let g = AtomicBucket::new();
        let now = 10 * TICKS_PER_SEC;
        assert!(g.try_take(&p, now));
        assert!(g.try_take(&p, now));
        assert!(!g.try_take(&p, now));
        g.give_back(&p);
        assert!(g.try_take(&p, now));
        assert!(!g.try_take(&p, now));
    }

    #[test]
    fn rejects_zero() {
        assert!(BucketParams::new(0, 1).is_none());
        assert!(BucketParams::new(1, 0).is_none());
    }
}
