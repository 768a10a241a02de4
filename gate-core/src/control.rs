//! The control path: what an operator reads and changes while the gate
//! runs (the driver's control device calls these at PASSIVE_LEVEL).
//!
//! - Changes ([`Gate::reconfigure`], [`Gate::ban`], [`Gate::unban`]) build
//!   a new live configuration (allocating here, never on the decision
//!   path), swap it in whole and wait out one grace period (each shard
//!   lock taken and released once), keeping the table state: buckets,
//!   rejection counts and automatic bans carry over. One change runs at a
//!   time (a concurrent one is refused with [`ChangeError::Busy`], never
//!   made to wait); it copies, edits and builds with no lock held and holds
//!   the control spin lock only to swap the pointer (a constant time,
//!   whatever the list sizes or shard count).
//! - Reads of the table ([`Gate::query`], [`Gate::scan`],
//!   [`Gate::lift_auto_bans`]) hold one shard lock at a time for a bounded
//!   number of slots: never a whole-table scan under a lock.
//! - Fields that place keys or size allocations (`capacity`, `shards`,
//!   `ipv4_prefix`, `ipv6_prefix`, `max_pending`, `nat64_prefixes`) cannot
//!   change live:
//!   [`ChangeError::NeedsRestart`] names them.

use alloc::alloc::{alloc, Layout};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::net::IpAddr;
use core::sync::atomic::Ordering;

use crate::config::{field, Config, ConfigError};
use crate::gate::Gate;
use crate::hash::hash_key;
use crate::key::Key;
use crate::lists::Cidr;
use crate::live::{cidr_range, BuildError, Live, ManualBan, MAX_MANUAL_BANS};
use crate::lock::RawLock;
use crate::table::{self, Entry, BANNED, V6};
use crate::time::Ticks;

/// Allocates a box, `None` when the allocator refuses (no abort).
pub(crate) fn try_box<T>(v: T) -> Option<Box<T>> {
    let layout = Layout::new::<T>();
    if layout.size() == 0 {
        return Some(Box::new(v));
    }
    // SAFETY: non-zero size.
    let p = unsafe { alloc(layout) }.cast::<T>();
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` is a fresh allocation for one `T` with its layout;
    // writing then boxing it hands ownership to the Box (global allocator).
    unsafe {
        p.write(v);
        Some(Box::from_raw(p))
    }
}

fn try_clone_vec<T: Clone>(v: &[T]) -> Option<Vec<T>> {
    let mut out = Vec::new();
    out.try_reserve_exact(v.len()).ok()?;
    out.extend_from_slice(v);
    Some(out)
}

/// A copy of `c` whose list allocations may fail (`None`) instead of aborting.
pub(crate) fn try_clone_config(c: &Config) -> Option<Config> {
    Some(Config {
        allow: try_clone_vec(&c.allow)?,
        deny: try_clone_vec(&c.deny)?,
        nat64_prefixes: try_clone_vec(&c.nat64_prefixes)?,
        ..*c
    })
}

/// Why a change was refused (nothing changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeError {
    /// A value is not allowed (names the field and value).
    Config(ConfigError),
    /// The field places keys or sizes memory: it changes only with a restart.
    NeedsRestart {
        /// The field (one of [`field`]).
        field: &'static str,
        /// The value asked for.
        value: u64,
    },
    /// The manual ban table is full ([`MAX_MANUAL_BANS`]).
    TooManyBans,
    /// No memory for the new configuration.
    OutOfMemory,
    /// Another change is being applied (one runs at a time; nothing
    /// changed): retry.
    Busy,
}

impl core::fmt::Display for ChangeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ChangeError::Config(e) => e.fmt(f),
            ChangeError::NeedsRestart { field, value } => {
                write!(f, "{field} = {value}: changes only with a restart")
            }
            ChangeError::TooManyBans => write!(f, "more than {MAX_MANUAL_BANS} manual bans"),
            ChangeError::OutOfMemory => f.write_str("out of memory"),
            ChangeError::Busy => f.write_str("another change is being applied; retry"),
        }
    }
}

impl From<BuildError> for ChangeError {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::Config(c) => ChangeError::Config(c),
            BuildError::OutOfMemory => ChangeError::OutOfMemory,
        }
    }
}

/// What [`Gate::ban`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BanOutcome {
    /// The same prefix was banned already (its end was replaced).
    pub replaced: bool,
    /// Manual bans in force now.
    pub count: usize,
}

/// One key's state, as [`Gate::query`] and [`Gate::scan`] report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyState {
    /// The key.
    pub key: Key,
    /// Whether the key has a table entry (else the other fields describe a
    /// fresh key: full bucket, no rejections, no ban).
    pub tracked: bool,
    /// Tokens left, thousandths.
    pub tokens_milli: u32,
    /// Earliest time a token is there (`<= now`: there is one now).
    pub next_token: Ticks,
    /// How far the bucket is ahead of `now` (its debt), ticks.
    pub debt: Ticks,
    /// Rejections in the key's current ban window: those counted toward a
    /// ban and, while banned, those that banned it plus every refusal
    /// during the ban; 0 once the window or the ban has ended (see `ban`).
    /// Counted only while bans are on; saturates at 65535.
    pub rejects: u16,
    /// End of an automatic ban in force (to within 6.6 ms).
    pub auto_ban_until: Option<Ticks>,
    /// Last time the key was seen.
    pub last_seen: Option<Ticks>,
}

/// What [`Gate::query`] reports besides the key's table state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Membership {
    /// On the allow list.
    pub allowed: bool,
    /// On the deny list.
    pub denied: bool,
    /// End of the manual ban covering the address, if any.
    pub manual_ban_until: Option<Ticks>,
}

/// Slots [`Gate::scan`] looks at per lock hold.
pub const SCAN_CHUNK: usize = 64;

impl<L: RawLock> Gate<L> {
    /// Runs `f` on the live configuration with the control lock held.
    pub(crate) fn with_live<R>(&self, f: impl FnOnce(&Live) -> R) -> R {
        let st = self.control.lock();
        // SAFETY: the control lock is held while `live` is used.
        let r = f(unsafe { self.live.get() });
        // SAFETY: acquired just above.
        unsafe { self.control.unlock(st) };
        r
    }

    /// Runs `f` on the configuration in force and the manual bans (under
    /// the control spin lock, which a change holds only for its pointer
    /// swap: keep `f` short and allocation-free).
    pub fn with_config<R>(&self, f: impl FnOnce(&Config, &[ManualBan]) -> R) -> R {
        self.with_live(|l| f(&l.config, &l.ban_list))
    }

    /// [`Self::with_config`] with the configuration's generation: a number
    /// that grows by one with every change installed (limits, lists or
    /// manual bans; wrapping). Two reads that see the same generation saw
    /// the same configuration, so a list copied in several reads (the
    /// control API's pages) is one that was in force when they all agree.
    pub fn with_config_generation<R>(&self, f: impl FnOnce(&Config, &[ManualBan], u64) -> R) -> R {
        self.with_live(|l| f(&l.config, &l.ban_list, l.generation))
    }

    /// Waits until no decision can still use a replaced live object: takes
    /// and releases each shard lock once.
    fn grace_period(&self) {
        for s in &self.shards {
            let st = s.lock.lock();
            // SAFETY: acquired just above.
            unsafe { s.lock.unlock(st) };
        }
    }

    /// Builds and installs a new live object from the current one:
    /// `f` edits a copy of the configuration and the ban list. Returns the
    /// replaced object (the caller frees it; no lock is held by then).
    ///
    /// One change runs at a time ([`ChangeError::Busy`] otherwise). The
    /// copy, `f`, validation and the build run with no lock held; the
    /// control lock is held only to swap the pointer; the grace period and
    /// the global bucket's clamp run after it is released.
    fn change(
        &self,
        f: impl FnOnce(&mut Config, &mut Vec<ManualBan>) -> Result<(), ChangeError>,
    ) -> Result<Box<Live>, ChangeError> {
        let mut guard = self.live.begin_change().ok_or(ChangeError::Busy)?;
        let cur = guard.current();
        let mut cfg = try_clone_config(&cur.config).ok_or(ChangeError::OutOfMemory)?;
        let mut bans = Vec::new();
        bans.try_reserve_exact(MAX_MANUAL_BANS)
            .map_err(|_| ChangeError::OutOfMemory)?;
        bans.extend_from_slice(&cur.ban_list);
        f(&mut cfg, &mut bans)?;
        check_fixed(&cur.config, &cfg)?;
        let mut new = try_box(Live::build(cfg, bans)?).ok_or(ChangeError::OutOfMemory)?;
        new.generation = cur.generation.wrapping_add(1);
        // Pends promised under the configuration in force (or held from an
        // earlier one) may have reserved up to `old_term` ahead; they are
        // still delivered, so their debt is kept until they have all come
        // due, even if this change lowers the pend term (review 13c).
        let seen = || {
            self.shards
                .iter()
                .map(|s| s.clock.load(Ordering::Relaxed))
                .max()
                .unwrap_or(0)
        };
        let hold_active = self.pend_hold.load(Ordering::Relaxed) > seen();
        let old_term = if hold_active {
            cur.p.pend_term().max(cur.p.held_term)
        } else {
            cur.p.pend_term()
        };
        // The longest the configuration in force lets a key wait: the hold
        // never raises the new ceiling above it (see `BucketParams::hold`).
        let old_wait = cur.p.key.wait_ticks(hold_active);
        let holding = old_term > new.p.pend_term();
        if holding {
            new.p.held_term = old_term;
            new.p.key = new.p.key.hold(old_term, old_wait);
            // Before the swap (released by it): a decision that sees the
            // new object holds until the end is known.
            self.pend_hold.store(Ticks::MAX, Ordering::Relaxed);
        }
        if cur.p.global.is_none() && new.p.global.is_some() {
            // Switched on: start full (no decision reads it while off, and
            // only this change writes it outside a decision).
            self.global.0.reset();
        }
        // The global bucket changes units: held (no decision takes from it,
        // old parameters or new) from before the swap until no decision can
        // still hold the old parameters, then converted. The key buckets'
        // entries are converted by the decisions that touch them (see
        // `bucket`).
        let rescale = match (&cur.p.global, &new.p.global) {
            (Some(a), Some(b)) if a.iv.shift != b.iv.shift => Some((a.iv.shift, b.iv)),
            _ => None,
        };
        let st = self.control.lock();
        let old = if let Some((from, iv)) = rescale {
            // The whole window in which the global bucket refuses (held,
            // swapped, grace period, converted) runs under the control lock:
            // a spin lock in the driver, so at DISPATCH_LEVEL and never
            // preempted; it lasts one lock and unlock of each shard (the
            // `control_hold` bench reports it), not as long as a control
            // thread might be descheduled (issue 9, second session).
            let tat = self.global.0.hold();
            let old = guard.replace(new);
            self.grace_period();
            self.global.0.release(iv.rescale(tat, from));
            // SAFETY: acquired above.
            unsafe { self.control.unlock(st) };
            old
        } else {
            let old = guard.replace(new);
            // SAFETY: acquired just above.
            unsafe { self.control.unlock(st) };
            self.grace_period();
            old
        };
        // The latest time any shard has seen (a bounded pass over the
        // shards, no lock): no decision uses the old object any more, so
        // every pend it promised is due by `seen + old_term`.
        let seen = seen();
        if holding {
            self.pend_hold
                .store(seen.saturating_add(old_term), Ordering::Relaxed);
        }
        // Units first (above), then the clamp.
        if let (Some(_), Some(g)) = (&old.p.global, &guard.current().p.global) {
            // The global bucket's debt beyond what the new limits allow:
            // see `BucketParams::clamp`.
            self.global.0.clamp(g, g.units(seen));
        }
        drop(guard);
        Ok(old)
    }

    /// Changes the configuration live: `f` edits a copy of the one in force;
    /// the result is validated whole and swapped in atomically (every
    /// decision sees the whole old or the whole new configuration); table
    /// state is kept, every bucket's `tat` converted to the new rate's own
    /// units (table entries lazily, by the decision that touches each; the
    /// global bucket here, during which no decision takes from it: see
    /// `bucket`). Every valid rate and burst can be set live. Returns the
    /// replaced configuration.
    ///
    /// Errors: [`ChangeError::Config`] for a bad value,
    /// [`ChangeError::NeedsRestart`] for `capacity`, `shards`, the prefix
    /// lengths or `max_pending`, [`ChangeError::OutOfMemory`],
    /// [`ChangeError::Busy`] while another change runs (`f` is not called).
    /// `f` runs with no lock held.
    pub fn reconfigure(&self, f: impl FnOnce(&mut Config)) -> Result<Config, ChangeError> {
        let old = self.change(|c, _| {
            f(c);
            Ok(())
        })?;
        Ok(take_config(old))
    }

    /// [`Self::reconfigure`] with an edit that can fail: an `Err` from `f`
    /// is returned as is and nothing changes (e.g. `f` could not reserve
    /// memory for a list: [`ChangeError::OutOfMemory`]).
    pub fn try_reconfigure(
        &self,
        f: impl FnOnce(&mut Config) -> Result<(), ChangeError>,
    ) -> Result<Config, ChangeError> {
        let old = self.change(|c, _| f(c))?;
        Ok(take_config(old))
    }

    /// Bans `cidr` manually until `until` ([`Ticks::MAX`]: until lifted).
    /// Bans that ran out by `now` are dropped first. A ban of the same
    /// prefix replaces the earlier end.
    ///
    /// Errors: [`ChangeError::TooManyBans`], [`ChangeError::OutOfMemory`],
    /// [`ChangeError::Busy`] while another change runs.
    pub fn ban(&self, cidr: Cidr, until: Ticks, now: Ticks) -> Result<BanOutcome, ChangeError> {
        let mut out = BanOutcome {
            replaced: false,
            count: 0,
        };
        let old = self.change(|_, bans| {
            bans.retain(|b| b.until > now);
            let r = cidr_range(&cidr);
            if let Some(b) = bans.iter_mut().find(|b| cidr_range(&b.cidr) == r) {
                b.until = until;
                out.replaced = true;
            } else {
                if bans.len() >= MAX_MANUAL_BANS {
                    return Err(ChangeError::TooManyBans);
                }
                bans.push(ManualBan { cidr, until });
            }
            out.count = bans.len();
            Ok(())
        })?;
        drop(old);
        Ok(out)
    }

    /// Removes the manual bans that lie inside `cidr` (and those that ran
    /// out by `now`); returns how many in-force bans were removed. Automatic
    /// bans are lifted by [`Gate::lift_auto_bans`].
    ///
    /// Errors: [`ChangeError::OutOfMemory`], [`ChangeError::Busy`] while
    /// another change runs.
    pub fn unban(&self, cidr: Cidr, now: Ticks) -> Result<usize, ChangeError> {
        let target = cidr_range(&cidr);
        let mut removed = 0usize;
        let old = self.change(|_, bans| {
            bans.retain(|b| {
                let inside = target.covers(&cidr_range(&b.cidr));
                if inside && b.until > now {
                    removed = removed.saturating_add(1);
                }
                !inside && b.until > now
            });
            Ok(())
        })?;
        drop(old);
        Ok(removed)
    }

    /// The state of `remote`'s key at `now` (no side effect) and its list
    /// and manual-ban membership.
    pub fn query(&self, remote: IpAddr, now: Ticks) -> (KeyState, Membership) {
        let key = self.key_of(remote);
        let h = hash_key(&self.seed, &key);
        let starts = self.starts(h);
        let fresh = KeyState {
            key,
            tracked: false,
            tokens_milli: 0,
            next_token: now,
            debt: 0,
            rejects: 0,
            auto_ban_until: None,
            last_seen: None,
        };
        let Some(shard) = self.shards.get(self.shard_index(h)) else {
            return (fresh, self.membership(remote, now));
        };
        let st = self.locked(shard, |slots| {
            // SAFETY: the shard lock is held while `live` is used.
            let live = unsafe { self.live.get() };
            match table::find(slots, starts, &key).and_then(|i| slots.get(i)) {
                Some(e) => self.state_of(live, e, key, now),
                None => KeyState {
                    tokens_milli: {
                        let u = live.p.key.units(now);
                        live.p.key.tokens_milli(u, u)
                    },
                    ..fresh
                },
            }
        });
        (st, self.membership(remote, now))
    }

    fn membership(&self, remote: IpAddr, now: Ticks) -> Membership {
        self.with_live(|l| Membership {
            allowed: l.allow.contains(remote),
            denied: l.deny.contains(remote),
            manual_ban_until: l.bans.banned_until(remote, now),
        })
    }

    fn state_of(&self, live: &Live, e: &Entry, key: Key, now: Ticks) -> KeyState {
        let p = &live.p;
        let now = now.max(e.last);
        // While banned, the span is the ban time left after `last` (see `ban`).
        let auto_ban_until = if e.meta & BANNED != 0 && p.ban.threshold != 0 {
            let until = e.last.saturating_add(e.span());
            (until > now).then_some(until)
        } else {
            None
        };
        let iv = p.key.iv;
        let nu = p.key.units(now);
        // In the units in force (as the key's next decision converts it),
        // then as the next decision sees it (see `BucketParams::clamp`).
        let held = e.last < self.pend_hold.load(Ordering::Relaxed);
        let tat = p
            .key
            .clamp(iv.rescale(e.tat, e.units()), p.key.units(e.last), held);
        let debt = iv.ceil_ticks(tat.saturating_sub(nu));
        KeyState {
            key,
            tracked: true,
            tokens_milli: p.key.tokens_milli(tat, nu),
            next_token: iv.ceil_ticks(tat.saturating_sub(p.key.limit)).max(now),
            debt,
            rejects: if p.ban.active(e, now) { e.rejects } else { 0 },
            auto_ban_until,
            last_seen: Some(e.last),
        }
    }

    fn key_of_entry(&self, e: &Entry) -> Key {
        let addr = if e.meta & V6 != 0 {
            IpAddr::from(e.key)
        } else {
            let [a, b, c, d, ..] = e.key;
            IpAddr::from([a, b, c, d])
        };
        self.key_of(addr)
    }

    /// Slots in the whole table (the scan cursor runs over `0..slots`).
    pub fn slots(&self) -> u64 {
        self.capacity() as u64
    }

    /// Visits the tracked keys in slots `cursor..` of one shard, at most
    /// `budget` slots, holding the shard lock for at most [`SCAN_CHUNK`]
    /// slots at a time; `f` runs under the lock (keep it short, no
    /// allocation). Returns the cursor to continue with, `None` at the end.
    pub fn scan(
        &self,
        cursor: u64,
        budget: usize,
        now: Ticks,
        mut f: impl FnMut(&KeyState),
    ) -> Option<u64> {
        self.scan_slots(cursor, budget, |g, live, e| {
            f(&g.state_of(live, e, g.key_of_entry(e), now));
        })
    }

    fn scan_slots(
        &self,
        cursor: u64,
        budget: usize,
        mut f: impl FnMut(&Self, &Live, &mut Entry),
    ) -> Option<u64> {
        let per_shard = self.slot_mask_len();
        if per_shard == 0 {
            return None;
        }
        let cursor = usize::try_from(cursor).ok()?;
        let shard_i = cursor.checked_div(per_shard)?;
        let shard = self.shards.get(shard_i)?;
        let mut at = cursor.checked_rem(per_shard)?;
        let end = at.saturating_add(budget.max(1)).min(per_shard);
        while at < end {
            let stop = at.saturating_add(SCAN_CHUNK).min(end);
            self.locked(shard, |slots| {
                // SAFETY: the shard lock is held while `live` is used.
                let live = unsafe { self.live.get() };
                for e in slots.get_mut(at..stop).unwrap_or(&mut []) {
                    if e.occupied() {
                        f(self, live, e);
                    }
                }
            });
            at = stop;
        }
        let next = shard_i.saturating_mul(per_shard).saturating_add(at);
        (next < self.capacity()).then_some(next as u64)
    }

    fn slot_mask_len(&self) -> usize {
        self.capacity().checked_div(self.shards.len()).unwrap_or(0)
    }

    /// Lifts the automatic bans of keys inside `cidr` (and clears their
    /// rejection counts), scanning like [`Gate::scan`]; returns how many
    /// were lifted and the cursor to continue with. A `cidr` no wider than
    /// a key is one lookup, with no scan (`None` cursor).
    pub fn lift_auto_bans(&self, cidr: Cidr, cursor: u64, budget: usize) -> (usize, Option<u64>) {
        let target = cidr_range(&cidr);
        let key_len = match cidr.addr() {
            IpAddr::V4(_) => self.v4_prefix_len(),
            IpAddr::V6(_) => self.v6_prefix_len(),
        };
        // Bans off: a ban still recorded is not in force (see `ban`), so
        // lifting it lifts nothing.
        let enforced = self.with_live(|l| l.p.ban.threshold != 0);
        let lift = |e: &mut Entry| {
            let was = enforced && e.meta & BANNED != 0;
            e.meta &= !BANNED;
            e.rejects = 0;
            e.set_span(0);
            was
        };
        if cidr.prefix_len() >= key_len {
            let key = self.key_of(cidr.addr());
            let h = hash_key(&self.seed, &key);
            let starts = self.starts(h);
            let Some(shard) = self.shards.get(self.shard_index(h)) else {
                return (0, None);
            };
            let n = self.locked(shard, |slots| {
                match table::find(slots, starts, &key).and_then(|i| slots.get_mut(i)) {
                    Some(e) => usize::from(lift(e)),
                    None => 0,
                }
            });
            return (n, None);
        }
        let mut n = 0usize;
        let next = self.scan_slots(cursor, budget, |g, _, e| {
            let k = g.key_of_entry(e);
            let r = cidr_range(&Cidr::new(k.network(), k.prefix_len()).unwrap_or(cidr));
            if target.covers(&r) && lift(e) {
                n = n.saturating_add(1);
            }
        });
        (n, next)
    }

    fn v4_prefix_len(&self) -> u8 {
        self.key_of(IpAddr::from([0u8; 4])).prefix_len()
    }

    fn v6_prefix_len(&self) -> u8 {
        self.key_of(IpAddr::from([0u8; 16])).prefix_len()
    }

    /// Zeroes every decision and event counter (each shard under its lock,
    /// one at a time). Pends outstanding are state, not counters: kept.
    pub fn reset_counters(&self) {
        for s in &self.shards {
            let st = s.lock.lock();
            let c = &s.counters;
            for a in c
                .keyed
                .iter()
                .chain(&c.observed)
                .chain(&c.events)
                .chain(&c.listed)
                .chain(&c.listed_observed)
            {
                a.store(0, Ordering::Relaxed);
            }
            // SAFETY: acquired just above.
            unsafe { s.lock.unlock(st) };
        }
        for a in &self.pend_events.0 {
            a.store(0, Ordering::Relaxed);
        }
    }

    /// Decisions a manual ban decided since start (or the last reset):
    /// those counted under [`crate::Reason::ManualBan`], plus, in observe
    /// mode, those it would have rejected.
    pub fn manual_ban_hits(&self) -> u64 {
        let i = crate::Reason::ManualBan as usize;
        let at =
            |a: &[core::sync::atomic::AtomicU64]| a.get(i).map_or(0, |c| c.load(Ordering::Relaxed));
        self.shards
            .iter()
            .map(|s| at(&s.counters.listed).saturating_add(at(&s.counters.listed_observed)))
            .fold(0u64, |a, b| a.saturating_add(b))
    }
}

fn take_config(live: Box<Live>) -> Config {
    let Live { config, .. } = *live;
    config
}

/// Refuses changes to fields that cannot change live.
fn check_fixed(old: &Config, new: &Config) -> Result<(), ChangeError> {
    let fixed = [
        (
            field::CAPACITY,
            u64::from(old.capacity),
            u64::from(new.capacity),
        ),
        (field::SHARDS, u64::from(old.shards), u64::from(new.shards)),
        (
            field::IPV4_PREFIX,
            u64::from(old.ipv4_prefix),
            u64::from(new.ipv4_prefix),
        ),
        (
            field::IPV6_PREFIX,
            u64::from(old.ipv6_prefix),
            u64::from(new.ipv6_prefix),
        ),
        (
            field::MAX_PENDING,
            u64::from(old.max_pending),
            u64::from(new.max_pending),
        ),
    ];
    for (field, a, b) in fixed {
        if a != b {
            return Err(ChangeError::NeedsRestart { field, value: b });
        }
    }
    if old.nat64_prefixes != new.nat64_prefixes {
        return Err(ChangeError::NeedsRestart {
            field: field::NAT64_PREFIXES,
            value: new.nat64_prefixes.len() as u64,
        });
    }
    Ok(())
}
