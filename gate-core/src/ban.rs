//! Bans: after `ban_threshold` rejections within `ban_window_ms`, a key is
//! rejected outright for `ban_ms`.
//!
//! The state lives in the key's table entry, so bans cost no memory of
//! their own: a 16-bit rejection count and a 40-bit *span* in exact ticks,
//! kept relative to the entry's exact `last` time:
//!
//! * while banned, the span is the ban time left after `last`;
//! * otherwise, while rejections are being counted, it is the age of the
//!   window (ticks from the rejection that opened it to `last`).
//!
//! Every decision for the key moves `last` forward and the span with it
//! (`advance`), so no comparison ever reads a truncated clock (40 bits of
//! ticks hold 30 hours; the longest ban is 24 hours, the longest window 1
//! hour). Hence, exactly:
//!
//! * a ban that starts at `r` rejects every SYN stamped in `[r, r + ban_ms)`
//!   and none after;
//! * a window opens at a counted rejection `r` and holds the rejections
//!   stamped in `[r, r + ban_window_ms)`; the `ban_threshold`-th rejection
//!   of one window starts the ban; the first rejection after the window
//!   opens a new one (a fixed window anchored at its first rejection, not a
//!   sliding one: a key is never banned unless `ban_threshold` rejections
//!   fell within `ban_window_ms`, but with a threshold of 3 or more a run of
//!   rejections straddling two windows may not ban).
//!
//! Rejections that count: `RateExceeded` and `PendBudgetSpent` (not
//! `GlobalLimit`, which honest clients hit during a flood). While a key is
//! banned, its count holds the rejections that banned it plus every
//! refusal during the ban (the control API's top-N ranks by it); the count
//! is cleared when the ban ends.
//!
//! **Bans off** (`ban_threshold` 0, which a live change can set): no
//! automatic ban is enforced and nothing is counted. A ban or window an
//! entry still records is cleared at the key's next decision (`advance`)
//! and ignored by `BanParams::active` meanwhile, so there is no scan of
//! the table. Manual bans (a separate list) are not affected.

use crate::table::{Entry, BANNED};
use crate::time::Ticks;

/// Largest span an entry holds (40 bits of ticks, about 30.5 hours).
pub(crate) const SPAN_MAX: Ticks = (1 << 40) - 1;
const _: () = assert!(
    crate::config::MAX_BAN_MS as u64 * crate::time::TICKS_PER_MS <= SPAN_MAX
        && crate::config::MAX_BAN_WINDOW_MS as u64 * crate::time::TICKS_PER_MS <= SPAN_MAX
);

/// Ban parameters, in ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BanParams {
    /// 0 = bans off.
    pub threshold: u16,
    pub window: Ticks,
    pub ban: Ticks,
}

impl BanParams {
    pub(crate) fn new(threshold: u16, window: Ticks, ban: Ticks) -> BanParams {
        BanParams {
            threshold,
            window,
            ban,
        }
    }

    /// Whether the entry carries ban state that matters at `now` (a ban
    /// still running, or a window still open with rejections in it).
    #[inline]
    pub(crate) fn active(&self, e: &Entry, now: Ticks) -> bool {
        if self.threshold == 0 {
            // Bans off: no ban is enforced, no window counts (see `advance`).
            return false;
        }
        let idle_for = now.saturating_sub(e.last);
        if e.meta & BANNED != 0 {
            idle_for < e.span()
        } else {
            e.rejects != 0 && e.span().saturating_add(idle_for) < self.window
        }
    }
}

/// Moves the entry's ban and window state from `prior_last` to `now`
/// (`now >= prior_last`; the entry's `last` becomes `now`): a ban or window
/// that ran out by `now` is cleared. Returns whether the key is banned at
/// `now`.
#[inline]
pub(crate) fn advance(e: &mut Entry, p: &BanParams, now: Ticks, prior_last: Ticks) -> bool {
    // The common case, no ban and no rejection counted: nothing to move.
    if e.meta & BANNED == 0 && e.rejects == 0 {
        return false;
    }
    advance_state(e, p, now, prior_last)
}

/// [`advance`] for an entry with ban or window state (out of line).
#[inline(never)]
fn advance_state(e: &mut Entry, p: &BanParams, now: Ticks, prior_last: Ticks) -> bool {
    let d = now.saturating_sub(prior_last);
    if e.meta & BANNED != 0 {
        let left = e.span();
        // Bans off (threshold 0, a live change): an automatic ban still
        // recorded is lifted here, at the key's next decision, not by a
        // scan of the table.
        if d >= left || p.threshold == 0 {
            e.meta &= !BANNED;
            e.rejects = 0;
            e.set_span(0);
            return false;
        }
        e.set_span(left.saturating_sub(d));
        return true;
    }
    if e.rejects != 0 {
        let age = e.span().saturating_add(d);
        if age >= p.window || p.threshold == 0 {
            e.rejects = 0;
            e.set_span(0);
        } else {
            e.set_span(age);
        }
    }
    false
}

/// Records a rejection at the entry's `last` (call [`advance`] first);
/// returns true if it started a ban.
#[inline]
pub(crate) fn record_reject(e: &mut Entry, p: &BanParams) -> bool {
    if p.threshold == 0 {
        return false;
    }
    if e.rejects == 0 {
        // This rejection opens a window.
        e.set_span(0);
    }
    e.rejects = e.rejects.saturating_add(1);
    if e.rejects >= p.threshold {
        // The count stays: while banned it goes on counting the refusals
        // ([`record_banned`]), so an operator's top-N ranks banned keys by
        // what they sent; it is cleared when the ban ends ([`advance`]).
        e.meta |= BANNED;
        e.set_span(p.ban);
        return true;
    }
    false
}

/// Records a refusal of a banned key (call after [`advance`] said it is
/// banned): the rejection count goes on growing during the ban (it is
/// only read by the control API's query and top; the ban's end does not
/// depend on it).
#[inline]
pub(crate) fn record_banned(e: &mut Entry) {
    e.rejects = e.rejects.saturating_add(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Key;
    use crate::time::{TICKS_PER_MS, TICKS_PER_SEC};

    fn entry() -> Entry {
        Entry::new(&Key::new([10, 0, 0, 1].into(), 32, 64), 0, 0)
    }

    /// Moves `e` to `now` as a decision does; returns whether banned.
    fn at(e: &mut Entry, p: &BanParams, now: Ticks) -> bool {
        let prior = e.last;
        e.last = now;
        advance(e, p, now, prior)
    }

    fn reject(e: &mut Entry, p: &BanParams, now: Ticks) -> bool {
        assert!(!at(e, p, now), "banned already at {now}");
        record_reject(e, p)
    }

    #[test]
    fn threshold_within_window_bans_then_expires_exactly() {
        let p = BanParams::new(3, 10 * TICKS_PER_SEC, 60 * TICKS_PER_SEC);
        let mut e = entry();
        let t0 = 1000 * TICKS_PER_SEC + 12345;
        assert!(!reject(&mut e, &p, t0));
        assert!(!reject(&mut e, &p, t0 + 1));
        assert!(reject(&mut e, &p, t0 + 2));
        assert!(at(&mut e, &p, t0 + 59 * TICKS_PER_SEC));
        assert!(at(&mut e, &p, t0 + 2 + 60 * TICKS_PER_SEC - 1));
        assert!(!at(&mut e, &p, t0 + 2 + 60 * TICKS_PER_SEC));
        assert_eq!(e.meta & BANNED, 0);
    }

    #[test]
    fn rejections_spread_beyond_window_do_not_ban() {
        let p = BanParams::new(3, 10 * TICKS_PER_SEC, 60 * TICKS_PER_SEC);
        let mut e = entry();
        let mut t = 1000 * TICKS_PER_SEC;
        for _ in 0..10 {
            assert!(!reject(&mut e, &p, t));
            t += 6 * TICKS_PER_SEC;
        }
    }

    #[test]
    fn window_counts_to_the_tick_at_any_phase() {
        let p = BanParams::new(2, 1000 * TICKS_PER_MS, 1000 * TICKS_PER_MS);
        for phase in [0, 1, 65_535, 65_536, 1 << 20, 123_456_789] {
            let t = 10_000_000_000 + phase;
            let mut e = entry();
            assert!(!reject(&mut e, &p, t));
            assert!(reject(&mut e, &p, t + p.window - 1), "phase {phase}");
            let mut e = entry();
            assert!(!reject(&mut e, &p, t));
            assert!(!reject(&mut e, &p, t + p.window), "phase {phase}");
        }
    }

    #[test]
    fn active_matches_the_exact_ends() {
        let p = BanParams::new(1, 100, 1000);
        let mut e = entry();
        assert!(reject(&mut e, &p, 50));
        assert!(p.active(&e, 50 + 999));
        assert!(!p.active(&e, 50 + 1000));
        let p = BanParams::new(5, 100, 1000);
        let mut e = entry();
        assert!(!reject(&mut e, &p, 50));
        assert!(p.active(&e, 149));
        assert!(!p.active(&e, 150));
    }

    #[test]
    fn the_count_survives_the_ban_start_and_grows_while_banned_then_clears() {
        let p = BanParams::new(3, 10 * TICKS_PER_SEC, 60 * TICKS_PER_SEC);
        let mut e = entry();
        let t0 = 1000 * TICKS_PER_SEC;
        assert!(!reject(&mut e, &p, t0));
        assert!(!reject(&mut e, &p, t0 + 1));
        assert!(reject(&mut e, &p, t0 + 2));
        assert_eq!(e.rejects, 3, "the ban start keeps the count");
        for i in 0..5 {
            assert!(at(&mut e, &p, t0 + 3 + i));
            record_banned(&mut e);
        }
        assert_eq!(e.rejects, 8);
        // The ban's end is exact whatever the count, and clears it.
        assert!(at(&mut e, &p, t0 + 2 + 60 * TICKS_PER_SEC - 1));
        assert!(!at(&mut e, &p, t0 + 2 + 60 * TICKS_PER_SEC));
        assert_eq!(e.rejects, 0);
        // A new window then counts from 1.
        assert!(!record_reject(&mut e, &p));
        assert_eq!(e.rejects, 1);
    }

    #[test]
    fn threshold_zero_is_off() {
        let p = BanParams::new(0, 1, 1);
        let mut e = entry();
        for i in 0..100 {
            assert!(!reject(&mut e, &p, i));
        }
    }
}
