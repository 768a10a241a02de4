//! Bans: after `ban_threshold` rejections within `ban_window_ms`, a key is
//! rejected outright for `ban_ms`.
//!
//! The state lives in the key's table entry (a 16-bit rejection count and
//! one coarse 32-bit time that is the window start, or the ban end while
//! banned), so bans cost no memory of their own. Coarse times are in units
//! of 6.55 ms (a ban may last up to one unit longer than asked); the entry's
//! exact `last` time guards against the coarse clock wrapping (~325 days).
//! Rejections that count: `RateExceeded` and `PendBudgetSpent` (not
//! `GlobalLimit`, which honest clients hit during a flood).

use crate::table::{Entry, BANNED};
use crate::time::{coarse, coarse_ceil, Ticks, COARSE_SHIFT};

/// Ban parameters, in ticks and coarse units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BanParams {
    /// 0 = bans off.
    pub threshold: u16,
    pub window: Ticks,
    pub window_c: u32,
    pub ban: Ticks,
    pub ban_c: u32,
}

impl BanParams {
    pub(crate) fn new(threshold: u16, window: Ticks, ban: Ticks) -> BanParams {
        BanParams {
            threshold,
            window,
            window_c: coarse_ceil(window),
            ban,
            ban_c: coarse_ceil(ban),
        }
    }

    /// Whether the entry carries ban state that matters at `now`.
    #[inline]
    pub(crate) fn active(&self, e: &Entry, now: Ticks) -> bool {
        let idle_for = now.saturating_sub(e.last);
        if e.meta & BANNED != 0 {
            idle_for <= self.ban.saturating_add(1 << COARSE_SHIFT)
        } else {
            e.rejects != 0 && idle_for < self.window
        }
    }
}

/// Whether `e` is banned at `now` (`prior_last` = its `last` before this
/// call); clears a ban that has run out.
#[inline]
pub(crate) fn is_banned(e: &mut Entry, p: &BanParams, now: Ticks, prior_last: Ticks) -> bool {
    if e.meta & BANNED == 0 {
        return false;
    }
    let left = e.coarse.wrapping_sub(coarse(now)) as i32;
    let surely_over = now.saturating_sub(prior_last) > p.ban.saturating_add(1 << COARSE_SHIFT);
    if left <= 0 || surely_over {
        e.meta &= !BANNED;
        e.rejects = 0;
        e.coarse = coarse(now);
        return false;
    }
    true
}

/// Records a rejection at `now`; returns true if it started a ban.
#[inline]
pub(crate) fn record_reject(e: &mut Entry, p: &BanParams, now: Ticks, prior_last: Ticks) -> bool {
    if p.threshold == 0 {
        return false;
    }
    let c = coarse(now);
    let expired = e.rejects == 0
        || now.saturating_sub(prior_last) >= p.window
        || c.wrapping_sub(e.coarse) >= p.window_c;
    if expired {
        e.coarse = c;
        e.rejects = 0;
    }
    e.rejects = e.rejects.saturating_add(1);
    if e.rejects >= p.threshold {
        e.meta |= BANNED;
        e.coarse = c.wrapping_add(p.ban_c);
        e.rejects = 0;
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Key;
    use crate::time::TICKS_PER_SEC;

    #[test]
    fn threshold_within_window_bans_then_expires() {
        let p = BanParams::new(3, 10 * TICKS_PER_SEC, 60 * TICKS_PER_SEC);
        let mut e = Entry::new(&Key::new([10, 0, 0, 1].into(), 32, 64), 0);
        let t0 = 1000 * TICKS_PER_SEC;
        assert!(!record_reject(&mut e, &p, t0, t0));
        assert!(!record_reject(&mut e, &p, t0 + 1, t0));
        assert!(record_reject(&mut e, &p, t0 + 2, t0 + 1));
        assert!(is_banned(&mut e, &p, t0 + 59 * TICKS_PER_SEC, t0 + 2));
        assert!(!is_banned(
            &mut e,
            &p,
            t0 + 61 * TICKS_PER_SEC,
            t0 + 59 * TICKS_PER_SEC
        ));
        assert_eq!(e.meta & BANNED, 0);
    }

    #[test]
    fn rejections_spread_beyond_window_do_not_ban() {
        let p = BanParams::new(3, 10 * TICKS_PER_SEC, 60 * TICKS_PER_SEC);
        let mut e = Entry::new(&Key::new([10, 0, 0, 1].into(), 32, 64), 0);
        let mut t = 1000 * TICKS_PER_SEC;
        let mut last = t;
        for _ in 0..10 {
            assert!(!record_reject(&mut e, &p, t, last));
            last = t;
            t += 6 * TICKS_PER_SEC;
        }
    }

    #[test]
    fn threshold_zero_is_off() {
        let p = BanParams::new(0, 1, 1);
        let mut e = Entry::new(&Key::new([10, 0, 0, 1].into(), 32, 64), 0);
        for i in 0..100 {
            assert!(!record_reject(&mut e, &p, i, i));
        }
    }
}
