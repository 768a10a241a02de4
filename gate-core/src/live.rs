//! The live part of the configuration: what an operator may change while
//! the gate runs (limits, observe mode, ban and pend parameters, the allow
//! and deny lists, manual bans), swapped as one object.
//!
//! [`Live`] is built whole (and allocated) by the control path, never by a
//! decision. [`LiveCell`] holds a pointer to the one in force. A decision
//! reads that pointer once, *with its shard lock held*, and uses only that
//! object, so it sees the whole old or the whole new configuration, never a
//! mix. A change swaps the pointer and then takes and releases every shard
//! lock once (a grace period of `shards` short lock hand-offs, no table
//! scan): every decision that could still hold the old pointer has ended,
//! and the old object can be freed. Decisions pay nothing for this: no
//! atomic read-modify-write, no reference count, one extra pointer load.
//!
//! Changes are serialized by a flag, not a lock: [`LiveCell::begin_change`]
//! admits one change at a time (a second one is refused, never made to
//! wait), and the change it admits reads, copies and builds without any
//! lock (only a change replaces the object, and only one runs). The
//! gate's control spin lock is held only for the pointer swap, so the
//! control path's readers ([`crate::Gate::with_config`]) see the old or
//! the new object whole; the grace period runs after it is released.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::net::IpAddr;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use crate::ban::BanParams;
use crate::bucket::BucketParams;
use crate::config::{Config, ConfigError, FullTablePolicy};
use crate::key::{canonical, v4_mask, v6_mask};
use crate::lists::{Cidr, CidrSet};
use crate::time::{ms_to_ticks, Ticks};

/// Most manual bans in force at once.
pub const MAX_MANUAL_BANS: usize = 1024;

/// A manual ban: every address in `cidr` is rejected (reason `Banned`)
/// until `until` (ticks of the caller's clock; [`Ticks::MAX`] = until
/// lifted). Distinct from automatic bans, which live in table entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManualBan {
    /// The banned range.
    pub cidr: Cidr,
    /// End of the ban (exclusive), or `Ticks::MAX` for "until unban".
    pub until: Ticks,
}

/// Derived, ready-to-use decision parameters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    pub key: BucketParams,
    pub global: Option<BucketParams>,
    pub ban: BanParams,
    pub policy: FullTablePolicy,
    pub observe: bool,
    pub pend_on: bool,
    pub max_delay: Ticks,
    /// The pend term `key.held` keeps (ticks; 0: nothing held): how far
    /// ahead pends promised under earlier configurations may have reserved
    /// (see the gate's `pend_hold`).
    pub held_term: Ticks,
}

impl Params {
    /// How far ahead (ticks) a pend under these parameters may reserve.
    pub(crate) fn pend_term(&self) -> Ticks {
        if self.pend_on {
            self.max_delay
        } else {
            0
        }
    }
}

impl Params {
    /// From a validated configuration. With `prev` (a live change), the
    /// buckets keep the running buckets' units (see `bucket`), so every
    /// `tat` in the table and the global bucket stays valid.
    pub(crate) fn from_config(
        config: &Config,
        prev: Option<&Params>,
    ) -> Result<Params, BuildError> {
        let p = Self::fresh(config).map_err(BuildError::Config)?;
        let Some(prev) = prev else { return Ok(p) };
        let restart = |field, value| BuildError::NeedsRestart { field, value };
        let key = BucketParams::with_shift(config.rate_milli, config.burst, prev.key.iv.shift)
            .ok_or_else(|| restart(crate::config::field::RATE_MILLI, config.rate_milli))?;
        let global = match (p.global, prev.global) {
            (Some(_), Some(g)) => Some(
                BucketParams::with_shift(config.global_rate_milli, config.global_burst, g.iv.shift)
                    .ok_or_else(|| {
                        restart(
                            crate::config::field::GLOBAL_RATE_MILLI,
                            config.global_rate_milli,
                        )
                    })?,
            ),
            (g, _) => g,
        };
        let key = if p.pend_on {
            key.with_pend(p.max_delay)
        } else {
            key
        };
        Ok(Params { key, global, ..p })
    }

    fn fresh(config: &Config) -> Result<Params, ConfigError> {
        let bad_rate = |field, value| ConfigError {
            field,
            value,
            expected: "a rate and burst giving a usable bucket",
        };
        let key = BucketParams::new(config.rate_milli, config.burst)
            .ok_or_else(|| bad_rate(crate::config::field::RATE_MILLI, config.rate_milli))?;
        let max_delay = ms_to_ticks(config.max_delay_ms);
        let key = if config.max_pending > 0 {
            key.with_pend(max_delay)
        } else {
            key
        };
        let global = if config.global_rate_milli == 0 {
            None
        } else {
            Some(
                BucketParams::new(config.global_rate_milli, config.global_burst).ok_or_else(
                    || {
                        bad_rate(
                            crate::config::field::GLOBAL_RATE_MILLI,
                            config.global_rate_milli,
                        )
                    },
                )?,
            )
        };
        Ok(Params {
            key,
            global,
            ban: BanParams::new(
                u16::try_from(config.ban_threshold).unwrap_or(u16::MAX),
                ms_to_ticks(config.ban_window_ms),
                ms_to_ticks(config.ban_ms),
            ),
            policy: config.full_table,
            observe: config.observe,
            pend_on: config.max_pending > 0,
            max_delay,
            held_term: 0,
        })
    }
}

/// Why a live object could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BuildError {
    Config(ConfigError),
    /// A rate the running bucket's units cannot hold (see `bucket`).
    NeedsRestart {
        field: &'static str,
        value: u64,
    },
    OutOfMemory,
}

/// The configuration in force, whole.
pub(crate) struct Live {
    pub p: Params,
    /// Whether any allow or deny entry or manual ban is in force: a
    /// decision looks at the lists and bans only then (one test on the
    /// common path instead of one per list).
    pub screened: bool,
    pub allow: CidrSet,
    pub deny: CidrSet,
    pub bans: BanSet,
    /// The configuration as given (lists included), for reports.
    pub config: Config,
    /// The manual bans as given, for reports and changes.
    pub ban_list: Vec<ManualBan>,
    /// Changes installed before this object (0 for the first): a reader
    /// that copies a list in pages checks that it did not change between
    /// them ([`crate::Gate::with_config_generation`]).
    pub generation: u64,
}

impl Live {
    /// Validates and builds (allocates: control path only); `prev`: the
    /// parameters in force (a live change keeps their bucket units).
    pub(crate) fn build(
        config: Config,
        ban_list: Vec<ManualBan>,
        prev: Option<&Params>,
    ) -> Result<Live, BuildError> {
        config.validate().map_err(BuildError::Config)?;
        let p = Params::from_config(&config, prev)?;
        let allow = CidrSet::build(&config.allow).map_err(|_| BuildError::OutOfMemory)?;
        let deny = CidrSet::build(&config.deny).map_err(|_| BuildError::OutOfMemory)?;
        let bans = BanSet::build(&ban_list).ok_or(BuildError::OutOfMemory)?;
        Ok(Live {
            p,
            screened: !(allow.is_empty() && deny.is_empty() && bans.is_empty()),
            allow,
            deny,
            bans,
            config,
            ban_list,
            generation: 0,
        })
    }

    /// Bytes this object allocated, itself included.
    pub(crate) fn heap_bytes(&self) -> usize {
        let cidr = core::mem::size_of::<Cidr>();
        let lists = self
            .config
            .allow
            .capacity()
            .saturating_add(self.config.deny.capacity())
            .saturating_mul(cidr);
        core::mem::size_of::<Live>()
            .saturating_add(lists)
            .saturating_add(
                self.ban_list
                    .capacity()
                    .saturating_mul(core::mem::size_of::<ManualBan>()),
            )
            .saturating_add(self.allow.heap_bytes())
            .saturating_add(self.deny.heap_bytes())
            .saturating_add(self.bans.heap_bytes())
    }
}

/// The pointer to the [`Live`] in force (see the module docs for the rule
/// that makes reading it safe).
pub(crate) struct LiveCell {
    ptr: AtomicPtr<Live>,
    /// A change is running (see [`LiveCell::begin_change`]).
    changing: AtomicBool,
}

impl LiveCell {
    pub(crate) fn new(live: Box<Live>) -> LiveCell {
        LiveCell {
            ptr: AtomicPtr::new(Box::into_raw(live)),
            changing: AtomicBool::new(false),
        }
    }

    /// Admits one change: `None` while another change runs. The change
    /// holds the returned guard until it has installed its object, waited
    /// out the grace period and no longer reads the old one; dropping the
    /// guard (on every path, errors included) admits the next change.
    pub(crate) fn begin_change(&self) -> Option<ChangeGuard<'_>> {
        self.changing
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| ChangeGuard { cell: self })
    }

    /// The object in force.
    ///
    /// # Safety
    /// The caller holds a shard lock of the gate owning this cell, or its
    /// control lock, for as long as it uses the reference: a replaced object
    /// is freed only after the replacing change swapped the pointer under
    /// the control lock and then took and released every shard lock.
    #[inline]
    pub(crate) unsafe fn get(&self) -> &Live {
        // SAFETY: never NULL (set from a Box in `new`/`replace`); alive
        // while the caller holds a lock per the contract above.
        unsafe { &*self.ptr.load(Ordering::Acquire) }
    }
}

/// The right to change a [`LiveCell`] (one holder at a time): see
/// [`LiveCell::begin_change`].
pub(crate) struct ChangeGuard<'a> {
    cell: &'a LiveCell,
}

impl ChangeGuard<'_> {
    /// The object in force, read without a lock: only the guard's holder
    /// replaces it, so it stays alive while the guard is borrowed.
    pub(crate) fn current(&self) -> &Live {
        // SAFETY: never NULL; only `replace` (through a guard, of which one
        // exists at a time) unlinks an object, and it needs `&mut self`,
        // so no reference from `current` outlives the swap.
        unsafe { &*self.cell.ptr.load(Ordering::Acquire) }
    }

    /// Installs `new` and returns the old object. The caller holds the
    /// control lock (readers under it see the old or the new object whole)
    /// and must not free the old object before taking and releasing every
    /// shard lock (after releasing the control lock).
    pub(crate) fn replace(&mut self, new: Box<Live>) -> Box<Live> {
        let old = self.cell.ptr.swap(Box::into_raw(new), Ordering::AcqRel);
        // SAFETY: `old` came from Box::into_raw and is no longer reachable
        // through the cell; ownership moves to the caller.
        unsafe { Box::from_raw(old) }
    }
}

impl Drop for ChangeGuard<'_> {
    fn drop(&mut self) {
        // Release: the next change sees everything this one wrote (the
        // pointer, the global bucket).
        self.cell.changing.store(false, Ordering::Release);
    }
}

impl Drop for LiveCell {
    fn drop(&mut self) {
        let p = *self.ptr.get_mut();
        // SAFETY: from Box::into_raw; `&mut self` means no reader remains.
        drop(unsafe { Box::from_raw(p) });
    }
}

/// Manual bans as disjoint sorted ranges per family, each with the latest
/// end of the bans covering it: one binary search per lookup.
#[derive(Debug, Default)]
pub(crate) struct BanSet {
    v4: Vec<(u32, u32, Ticks)>,
    v6: Vec<(u128, u128, Ticks)>,
}

/// Range ends of a CIDR.
pub(crate) fn cidr_range(c: &Cidr) -> Range {
    match c.addr() {
        IpAddr::V4(a) => {
            let m = v4_mask(c.prefix_len());
            let lo = u32::from(a) & m;
            Range::V4(lo, lo | !m)
        }
        IpAddr::V6(a) => {
            let m = v6_mask(c.prefix_len());
            let lo = u128::from(a) & m;
            Range::V6(lo, lo | !m)
        }
    }
}

/// A range of one family, inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Range {
    V4(u32, u32),
    V6(u128, u128),
}

impl Range {
    /// Whether `other` lies inside `self`.
    pub(crate) fn covers(&self, other: &Range) -> bool {
        match (self, other) {
            (Range::V4(a, b), Range::V4(c, d)) => a <= c && d <= b,
            (Range::V6(a, b), Range::V6(c, d)) => a <= c && d <= b,
            _ => false,
        }
    }
}

/// Splits overlapping `(lo, hi, until)` ranges into disjoint ones carrying
/// the latest `until`; merges neighbours with the same end.
fn partition<T: Ord + Copy + Next>(mut r: Vec<(T, T, Ticks)>) -> Option<Vec<(T, T, Ticks)>> {
    let mut bounds: Vec<T> = Vec::new();
    bounds.try_reserve_exact(r.len().checked_mul(2)?).ok()?;
    for &(lo, hi, _) in &r {
        bounds.push(lo);
        if let Some(n) = hi.next() {
            bounds.push(n);
        }
    }
    bounds.sort_unstable();
    bounds.dedup();
    r.sort_unstable_by_key(|a| a.0);
    let mut out: Vec<(T, T, Ticks)> = Vec::new();
    out.try_reserve_exact(bounds.len()).ok()?;
    for (i, &lo) in bounds.iter().enumerate() {
        let hi = match bounds.get(i.wrapping_add(1)) {
            Some(n) => n.prev(),
            None => T::MAX,
        };
        let until = r
            .iter()
            .filter(|b| b.0 <= lo && hi <= b.1)
            .map(|b| b.2)
            .max();
        let Some(until) = until else { continue };
        match out.last_mut() {
            Some(last) if last.2 == until && last.1.next() == Some(lo) => last.1 = hi,
            _ => out.push((lo, hi, until)),
        }
    }
    Some(out)
}

trait Next: Sized {
    const MAX: Self;
    fn next(self) -> Option<Self>;
    fn prev(self) -> Self;
}
impl Next for u32 {
    const MAX: u32 = u32::MAX;
    fn next(self) -> Option<u32> {
        self.checked_add(1)
    }
    fn prev(self) -> u32 {
        self.saturating_sub(1)
    }
}
impl Next for u128 {
    const MAX: u128 = u128::MAX;
    fn next(self) -> Option<u128> {
        self.checked_add(1)
    }
    fn prev(self) -> u128 {
        self.saturating_sub(1)
    }
}

fn lookup<T: Ord + Copy>(ranges: &[(T, T, Ticks)], x: T) -> Option<Ticks> {
    let i = ranges.partition_point(|r| r.0 <= x);
    match i.checked_sub(1).and_then(|j| ranges.get(j)) {
        Some(&(_, hi, until)) if x <= hi => Some(until),
        _ => None,
    }
}

impl BanSet {
    /// Builds the set (control path; `None`: no memory).
    pub(crate) fn build(bans: &[ManualBan]) -> Option<BanSet> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        v4.try_reserve_exact(bans.len()).ok()?;
        v6.try_reserve_exact(bans.len()).ok()?;
        for b in bans {
            match cidr_range(&b.cidr) {
                Range::V4(lo, hi) => v4.push((lo, hi, b.until)),
                Range::V6(lo, hi) => v6.push((lo, hi, b.until)),
            }
        }
        Some(BanSet {
            v4: partition(v4)?,
            v6: partition(v6)?,
        })
    }

    /// Whether any ban is configured.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// The end of the manual ban covering `addr` at `now`, if any.
    #[inline]
    pub(crate) fn banned_until(&self, addr: IpAddr, now: Ticks) -> Option<Ticks> {
        let until = match canonical(addr) {
            IpAddr::V4(a) => lookup(&self.v4, u32::from(a)),
            IpAddr::V6(a) => lookup(&self.v6, u128::from(a)),
        }?;
        (until > now).then_some(until)
    }

    fn heap_bytes(&self) -> usize {
        self.v4
            .capacity()
            .saturating_mul(core::mem::size_of::<(u32, u32, Ticks)>())
            .saturating_add(self.v6.capacity().saturating_mul(core::mem::size_of::<(
                u128,
                u128,
                Ticks,
            )>()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(s: &str, until: Ticks) -> ManualBan {
        ManualBan {
            cidr: Cidr::parse(s).unwrap(),
            until,
        }
    }

    #[test]
    fn overlapping_bans_take_the_latest_end() {
        let set = BanSet::build(&[
            ban("10.0.0.0/8", 100),
            ban("10.1.0.0/16", 500),
            ban("10.1.2.3", 50),
            ban("2001:db8::/32", Ticks::MAX),
        ])
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(set.banned_until(ip("10.9.9.9"), 0), Some(100));
        assert_eq!(set.banned_until(ip("10.1.2.3"), 0), Some(500));
        assert_eq!(set.banned_until(ip("10.1.2.3"), 499), Some(500));
        assert_eq!(set.banned_until(ip("10.1.2.3"), 500), None);
        assert_eq!(set.banned_until(ip("10.2.0.0"), 100), None);
        assert_eq!(set.banned_until(ip("11.0.0.0"), 0), None);
        assert_eq!(set.banned_until(ip("9.255.255.255"), 0), None);
        assert_eq!(set.banned_until(ip("::ffff:10.1.0.1"), 0), Some(500));
        assert_eq!(
            set.banned_until(ip("2001:db8::1"), 1 << 60),
            Some(Ticks::MAX)
        );
        assert!(BanSet::build(&[]).unwrap().is_empty());
        let all = BanSet::build(&[ban("0.0.0.0/0", 7)]).unwrap();
        assert_eq!(all.banned_until(ip("255.255.255.255"), 0), Some(7));
        assert_eq!(all.v4.len(), 1);
    }
}
