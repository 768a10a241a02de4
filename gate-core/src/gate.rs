//! The engine: [`Gate`] ties keys, table, buckets, lists, bans and pends
//! together and answers one [`Decision`] per SYN.
//!
//! Order of checks for one SYN, all under the key's shard lock and against
//! one snapshot of the live configuration (see `live`): deny list, manual
//! bans, allow list (all matched against the address and, for a NAT64
//! address, the IPv4 address it embeds; out of line, and looked at only
//! when the configuration has any list entry or manual ban: one flag on the
//! common path), then
//! the key's entry (found or placed in the table, or the full-table
//! policy), its ban, its bucket and the global bucket; a key out of tokens
//! whose next token is within `max_delay_ms` then asks for a pend slot
//! (`PendBudgetSpent` if none) and the global bucket (`GlobalLimit`), else
//! is rejected (`RateExceeded`).
//!
//! Observe mode decides exactly as enforcing would, with the same state
//! changes (tokens taken, pends reserved, rejections counted, bans
//! started), and then turns every reject and every pend into an accept with
//! reason `ObserveWouldReject`, keeping the reason enforcing would have
//! given in `Decision::observed`. A would-be pend holds its place in the
//! pend budget until its accept time, as if the caller had called
//! `pend_done` exactly then (see `pend`); so for any arrival sequence the
//! reasons observe mode reports are the reasons enforce mode returns when
//! its caller completes each pend at its time (a property test checks it).
//!
//! `decide` takes one shard lock for the list and manual-ban lookups and a
//! bounded probe, may take the pend lock
//! inside it, and, only when a global limit is configured, touches the
//! global bucket with a compare-and-swap; it never allocates and never
//! panics.
//!
//! Cache lines written by a decision (what limits scaling over CPUs): the
//! shard header's first line (its lock and the counters of the common
//! reasons, together so that one transfer serves both) and the key's entry.
//! Counters are per shard, bumped under the shard lock; nothing global is
//! written unless a global limit is on (then its one atomic, on lines of its
//! own, is shared by every CPU by design) or the decision pends (the pend
//! slots, also on their own lines).

use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr};
use core::sync::atomic::{AtomicU64, Ordering};

use crate::ban;
use crate::bucket::{AtomicBucket, Take};
use crate::config::{Config, ConfigError, FullTablePolicy};
use crate::hash::{hash_key, Seed};
use crate::key::{Key, Prefixes};
use crate::lists::CidrSet;
use crate::live::{Live, LiveCell, Params};
use crate::lock::{RawLock, SpinLock};
use crate::nat64::Nat64;
use crate::pend::{PendSlots, PendTicket, Refused, Reservation, StaleTicket, Taken};
use crate::table::{self, Entry, Probe};
use crate::telemetry::{
    Action, Counters, Decision, Event, Pended, Reason, EVENT_COUNT, NO_BUCKET, REASON_COUNT,
};
use crate::time::Ticks;

/// Why [`Gate::new`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// A configuration value is invalid.
    Config(ConfigError),
    /// The allocator refused the (single, up-front) allocation.
    OutOfMemory {
        /// Bytes the configuration needs in all (`Config::memory_bytes`).
        bytes: u64,
    },
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Config(e) => e.fmt(f),
            Error::OutOfMemory { bytes } => write!(f, "out of memory allocating {bytes} bytes"),
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

/// A shard's counters, written only with the shard lock held, so they are
/// bumped with a plain load and store (no locked instruction). `keyed*`
/// count decisions of the keyed part, `listed*` those decided by a list or
/// a manual ban. Readers sum both.
#[derive(Default)]
#[repr(C)]
pub(crate) struct ShardCounters {
    pub(crate) keyed: [AtomicU64; REASON_COUNT],
    pub(crate) observed: [AtomicU64; REASON_COUNT],
    pub(crate) events: [AtomicU64; EVENT_COUNT],
    pub(crate) listed: [AtomicU64; REASON_COUNT],
    pub(crate) listed_observed: [AtomicU64; REASON_COUNT],
}

/// Adds one with `fetch_add` (any thread).
#[inline]
fn add_shared(arr: &[AtomicU64], i: usize) {
    if let Some(c) = arr.get(i) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Adds one with a load and a store: only for counters whose every writer
/// holds the same lock.
#[inline]
fn add_locked(arr: &[AtomicU64], i: usize) {
    if let Some(c) = arr.get(i) {
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }
}

impl ShardCounters {
    /// Counts an event; the caller holds the shard lock.
    #[inline]
    fn event(&self, e: Event) {
        add_locked(&self.events, e as usize);
    }
}

/// One shard: a lock, its slots, its counters (own cache lines).
///
/// `repr(C)` so the first cache line holds the lock, the read-only slot
/// pointers and the first counters (`within_rate` among them): an accepted
/// SYN writes one shard line, which matters because that line moves between
/// CPUs when they decide for keys of the same shard.
#[repr(C, align(64))]
pub(crate) struct Shard<L: RawLock> {
    pub(crate) lock: L,
    /// First of this shard's `len` slots, inside the gate's one slot buffer
    /// (`Gate::table`, which never moves or changes size after `Gate::new`).
    /// Dereferenced only with `lock` held (see `Gate::locked`); also used,
    /// without the lock, as a prefetch address (never read).
    base: *mut Entry,
    pub(crate) len: usize,
    /// The latest `now` any decision of this shard has seen (ticks); a
    /// decision's `now` is raised to it (see `time`). Written only with
    /// `lock` held (a plain load and store).
    pub(crate) clock: AtomicU64,
    pub(crate) counters: ShardCounters,
    /// Slots of this shard holding a key. Written under `lock` (slots never
    /// become vacant again, so it only grows); read without it by
    /// [`Gate::tracked_keys`].
    occupied: AtomicU64,
}

// SAFETY: the slots `base..base + len` belong to this shard alone (shards
// cover disjoint ranges of `Gate::table`) and are only accessed while `lock`
// is held (see `Gate::locked`); `RawLock` guarantees mutual exclusion; the
// counters are atomics.
unsafe impl<L: RawLock> Sync for Shard<L> {}
// SAFETY: nothing in a shard is tied to a thread; `L: Send` by the trait bound.
unsafe impl<L: RawLock> Send for Shard<L> {}

/// Bytes of one shard header (with the host `SpinLock`; the same for any
/// lock of up to 40 bytes because of the 64-byte alignment).
/// `Gate::memory_bytes` reports the real figure for the lock in use.
pub(crate) const SHARD_BYTES: usize = core::mem::size_of::<Shard<SpinLock>>();
const _: () = assert!(SHARD_BYTES == 448);

/// What the keyed part decided, before observe mode and counting.
struct Outcome {
    reason: Reason,
    tokens_milli: u32,
    pend: Option<Pended>,
}

impl Outcome {
    fn bare(reason: Reason) -> Outcome {
        Outcome {
            reason,
            tokens_milli: NO_BUCKET,
            pend: None,
        }
    }
}

/// A [`Decision`] without its key (what the locked part returns).
struct Verdict {
    action: Action,
    reason: Reason,
    observed: Option<Reason>,
    tokens_milli: u32,
    pend: Option<Pended>,
}

/// Puts `T` on cache lines of its own (128 bytes: a line and the adjacent
/// line the CPU's pair prefetcher fetches with it), so that writes to it do
/// not invalidate the read-only fields next to it on other CPUs.
#[repr(C, align(128))]
pub(crate) struct OwnLines<T>(pub(crate) T);

/// The decision engine. Build once with [`Gate::new`]; share across CPUs
/// (`Gate<L>` is `Sync`); call [`Gate::decide`] for every SYN.
///
/// Layout: the fields every decision reads (parameters, seed, shard array
/// address, masks, lists) are never written after `new`, so every CPU keeps
/// its own copy of their lines. The only fields written by more than one CPU
/// (the global bucket, the pend slots and their counters) sit on lines of
/// their own; a decision writes the global bucket only when a global limit
/// is configured, and the pend state only when it pends.
pub struct Gate<L: RawLock = SpinLock> {
    /// The live configuration (limits, lists, manual bans): read once per
    /// decision under the shard lock; replaced whole by the control path
    /// (see `live`).
    pub(crate) live: LiveCell,
    /// Held by control-path reads of `live` and by a change only for its
    /// pointer swap (changes are admitted one at a time by `live`'s flag;
    /// decisions never take it).
    pub(crate) control: L,
    /// Key prefix lengths and masks: fixed at start (they place keys in
    /// the table).
    prefixes: Prefixes,
    pub(crate) seed: Seed,
    pub(crate) shards: Vec<Shard<L>>,
    shard_mask: usize,
    slot_mask: usize,
    /// NAT64 prefixes: fixed at start (they decide keys).
    nat64: Nat64,
    /// Every slot of every shard, in one allocation (shard `i` owns
    /// `[i * per_shard, (i + 1) * per_shard)`); accessed only through the
    /// shards' `base` pointers, under their locks. One large buffer rather
    /// than one per shard so the kernel's pool can back it with large pages.
    table: Vec<Entry>,
    pub(crate) global: OwnLines<AtomicBucket>,
    /// Until when (ticks, exclusive; compared with a key's last decision)
    /// pends promised under an earlier configuration may be outstanding:
    /// [`BucketParams::clamp`] keeps `key.held` before it. `Ticks::MAX`
    /// while a change that lowered the pend term is being installed; set
    /// to `seen + old term` once no decision uses the old configuration.
    pub(crate) pend_hold: AtomicU64,
    pend: OwnLines<PendSlots<L>>,
    pub(crate) pend_events: OwnLines<[AtomicU64; EVENT_COUNT]>,
}

impl<L: RawLock> Gate<L> {
    /// Validates `config` and allocates everything the gate will ever use
    /// (exactly `config.memory_bytes()` bytes). `seed` must be random per
    /// start (it keys the hash that places keys in the table).
    pub fn new(config: &Config, seed: Seed) -> Result<Gate<L>, Error> {
        config.validate()?;
        let oom = Error::OutOfMemory {
            bytes: config.memory_bytes(),
        };
        let cfg = crate::control::try_clone_config(config).ok_or(oom)?;
        let live = match Live::build(cfg, Vec::new()) {
            Ok(l) => l,
            Err(crate::live::BuildError::Config(e)) => return Err(Error::Config(e)),
            Err(crate::live::BuildError::OutOfMemory) => return Err(oom),
        };
        let live = crate::control::try_box(live).ok_or(oom)?;
        let n_shards = config.shards as usize;
        let per_shard = config.capacity.checked_div(config.shards).unwrap_or(0) as usize;
        let mut shards: Vec<Shard<L>> = Vec::new();
        shards.try_reserve_exact(n_shards).map_err(|_| oom)?;
        let mut table: Vec<Entry> = Vec::new();
        let n_slots = per_shard.checked_mul(n_shards).ok_or(oom)?;
        table.try_reserve_exact(n_slots).map_err(|_| oom)?;
        table.resize(n_slots, Entry::EMPTY);
        let table_ptr = table.as_mut_ptr();
        for i in 0..n_shards {
            shards.push(Shard {
                lock: L::new(),
                // In bounds (`i * per_shard < n_slots`); `wrapping_add` only
                // because it cannot overflow and needs no `unsafe`.
                base: table_ptr.wrapping_add(i.wrapping_mul(per_shard)),
                len: per_shard,
                clock: AtomicU64::new(0),
                counters: ShardCounters::default(),
                occupied: AtomicU64::new(0),
            });
        }
        let filler = Key::new(IpAddr::from([0, 0, 0, 0]), 32, 64);
        Ok(Gate {
            live: LiveCell::new(live),
            control: L::new(),
            prefixes: Prefixes::new(config.ipv4_prefix, config.ipv6_prefix),
            seed,
            shards,
            shard_mask: n_shards.saturating_sub(1),
            slot_mask: per_shard.saturating_sub(1),
            nat64: Nat64::build(&config.nat64_prefixes).map_err(|_| oom)?,
            table,
            global: OwnLines(AtomicBucket::new()),
            pend_hold: AtomicU64::new(0),
            pend: OwnLines(PendSlots::new(config.max_pending, filler).map_err(|_| oom)?),
            pend_events: OwnLines(Default::default()),
        })
    }

    /// The key `remote` is counted under (for an address inside a
    /// configured NAT64 prefix, the key of the IPv4 address it embeds).
    pub fn key_of(&self, remote: IpAddr) -> Key {
        self.key_with(remote, self.embedded_v4(remote))
    }

    /// The IPv4 address `remote` embeds, if it is in a configured NAT64 prefix.
    #[inline]
    fn embedded_v4(&self, remote: IpAddr) -> Option<Ipv4Addr> {
        match remote {
            IpAddr::V6(_) if !self.nat64.is_empty() => self.nat64_embedded(remote),
            _ => None,
        }
    }

    /// [`Self::embedded_v4`] for an IPv6 address with NAT64 prefixes
    /// configured (out of line: off by default).
    #[cold]
    #[inline(never)]
    fn nat64_embedded(&self, remote: IpAddr) -> Option<Ipv4Addr> {
        self.nat64.embedded(remote)
    }

    /// The key of `remote`, or of the IPv4 address it embeds.
    #[inline]
    fn key_with(&self, remote: IpAddr, v4: Option<Ipv4Addr>) -> Key {
        match v4 {
            None => self.prefixes.key(remote),
            Some(a) => self.prefixes.key(IpAddr::V4(a)),
        }
    }

    /// Whether a manual ban covers `remote` or the IPv4 address it embeds,
    /// at `now`.
    #[inline]
    fn manually_banned(live: &Live, remote: IpAddr, v4: Option<Ipv4Addr>, now: Ticks) -> bool {
        live.bans.banned_until(remote, now).is_some()
            || v4.is_some_and(|a| live.bans.banned_until(IpAddr::V4(a), now).is_some())
    }

    /// The deny list, manual bans and allow list, in that order, for a
    /// configuration that has any (out of line: the common configuration
    /// has none, and then a decision pays one test for all three). The
    /// shard lock is held.
    #[cold]
    #[inline(never)]
    fn screen(live: &Live, remote: IpAddr, v4: Option<Ipv4Addr>, now: Ticks) -> Option<Outcome> {
        if !live.deny.is_empty() && Self::listed(&live.deny, remote, v4) {
            return Some(Outcome::bare(Reason::DenyListed));
        }
        if !live.bans.is_empty() && Self::manually_banned(live, remote, v4, now) {
            return Some(Outcome::bare(Reason::ManualBan));
        }
        if !live.allow.is_empty() && Self::listed(&live.allow, remote, v4) {
            return Some(Outcome::bare(Reason::AllowListed));
        }
        None
    }

    /// Whether a list holds `remote` or the IPv4 address it embeds.
    #[inline]
    fn listed(list: &CidrSet, remote: IpAddr, v4: Option<Ipv4Addr>) -> bool {
        list.contains(remote) || v4.is_some_and(|a| list.contains(IpAddr::V4(a)))
    }

    /// Decides for one SYN from `remote` to `local` at `now` (ticks of 100 ns,
    /// the caller's monotonic clock). `local` is not used by the policy yet
    /// (one listener per gate); it is part of the signature so per-address
    /// policy can come without changing callers.
    pub fn decide(&self, remote: IpAddr, local: IpAddr, now: Ticks) -> Decision {
        let _ = local;
        let v4 = self.embedded_v4(remote);
        let key = self.key_with(remote, v4);
        let h = hash_key(&self.seed, &key);
        let shard_i = self.shard_index(h);
        let Some(shard) = self.shards.get(shard_i) else {
            // Unreachable: `shard_mask` is `shards.len() - 1`. Fail closed.
            return Decision {
                action: Action::Reject,
                reason: Reason::TableFull,
                observed: None,
                tokens_milli: NO_BUCKET,
                key,
                pend: None,
            };
        };
        self.prefetch(shard_i, h);
        let v = self.locked(shard, |slots| {
            // SAFETY: the shard lock is held while `live` is used.
            let live = unsafe { self.live.get() };
            let c = &shard.counters;
            if live.screened {
                if let Some(out) = Self::screen(live, remote, v4, now) {
                    return Self::finish(&live.p, c, false, out);
                }
            }
            // Per-shard monotonic clock (see `time`): under the lock, a plain
            // load and store on the lock's own line.
            let now = now.max(shard.clock.load(Ordering::Relaxed));
            shard.clock.store(now, Ordering::Relaxed);
            let out = self.decide_keyed(&live.p, slots, c, &shard.occupied, key, h, now);
            Self::finish(&live.p, c, true, out)
        });
        // Built here, after the lock, straight into the caller's place.
        Decision {
            action: v.action,
            reason: v.reason,
            observed: v.observed,
            tokens_milli: v.tokens_milli,
            key,
            pend: v.pend,
        }
    }

    /// The shard of a key hash (bits 32 and up; see [`Self::starts`] for
    /// the windows).
    #[inline]
    pub(crate) fn shard_index(&self, h: u64) -> usize {
        ((h >> 32) as usize) & self.shard_mask
    }

    fn action_of(p: &Params, r: Reason) -> Action {
        match r {
            Reason::WithinRate | Reason::AllowListed | Reason::ObserveWouldReject => Action::Accept,
            Reason::PendDelayed => Action::Pend,
            Reason::TableFull => match p.policy {
                FullTablePolicy::FailOpen => Action::Accept,
                _ => Action::Reject,
            },
            Reason::DenyListed
            | Reason::RateExceeded
            | Reason::GlobalLimit
            | Reason::Banned
            | Reason::ManualBan
            | Reason::PendBudgetSpent => Action::Reject,
        }
    }

    /// Applies observe mode, counts (the shard lock is held; `keyed`: the
    /// keyed part decided, else a list or a manual ban): the decision
    /// without its key.
    #[inline]
    fn finish(p: &Params, c: &ShardCounters, keyed: bool, out: Outcome) -> Verdict {
        let action = Self::action_of(p, out.reason);
        let (action, reason, observed) = if p.observe && action != Action::Accept {
            (Action::Accept, Reason::ObserveWouldReject, Some(out.reason))
        } else {
            (action, out.reason, None)
        };
        if keyed {
            add_locked(&c.keyed, reason.index());
            if let Some(o) = observed {
                add_locked(&c.observed, o.index());
            }
        } else {
            add_locked(&c.listed, reason.index());
            if let Some(o) = observed {
                add_locked(&c.listed_observed, o.index());
            }
        }
        Verdict {
            action,
            reason,
            observed,
            tokens_milli: out.tokens_milli,
            pend: out.pend,
        }
    }

    /// Runs `f` on the shard's slots with its lock held.
    #[inline]
    pub(crate) fn locked<R>(&self, shard: &Shard<L>, f: impl FnOnce(&mut [Entry]) -> R) -> R {
        let st = shard.lock.lock();
        // SAFETY: `base..base + len` lies inside `self.table`, which is
        // allocated, initialized and never resized or moved while `self`
        // lives; the range belongs to this shard alone and we hold the
        // shard's lock, which guards every access to it, so this is the only
        // reference to it; it does not escape `f`.
        let slots = unsafe { core::slice::from_raw_parts_mut(shard.base, shard.len) };
        let r = f(slots);
        // SAFETY: we hold the lock, acquired just above with state `st`.
        unsafe { shard.lock.unlock(st) };
        r
    }

    /// The keyed part, under the shard lock; `now` is already clamped to the
    /// shard's clock.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn decide_keyed(
        &self,
        p: &Params,
        slots: &mut [Entry],
        counters: &ShardCounters,
        occupied: &AtomicU64,
        key: Key,
        h: u64,
        now: Ticks,
    ) -> Outcome {
        let starts = self.starts(h);
        let now_u = p.key.units(now);
        let idle = |e: &Entry| Self::is_full(p, e, now, now_u) && !p.ban.active(e, now);
        // The slot for the key, and whether it must be (re)initialised for it.
        let (i, fresh) = match table::probe(slots, starts, &key, idle) {
            Probe::Hit(i) => (i, false),
            Probe::Vacant(i) => {
                add_locked(core::slice::from_ref(occupied), 0);
                (i, true)
            }
            Probe::Idle(i) => {
                counters.event(Event::EvictedIdle);
                (i, true)
            }
            Probe::Full(i) => {
                counters.event(Event::TableFull);
                match p.policy {
                    FullTablePolicy::EvictLru => {
                        counters.event(Event::EvictedLru);
                        (i, true)
                    }
                    FullTablePolicy::FailOpen | FullTablePolicy::FailClosed => {
                        return Outcome::bare(Reason::TableFull)
                    }
                }
            }
        };
        let Some(e) = slots.get_mut(i) else {
            return Outcome::bare(Reason::TableFull);
        };
        if fresh {
            *e = Entry::new(&key, now, now_u, p.key.iv.shift);
        } else if e.units() != p.key.iv.shift {
            // Kept from before a live change of the key bucket's units.
            Self::rescale(e, p);
        }
        // `now >= e.last`: every `last` of this shard was set from a `now`
        // clamped to the shard's clock, which never goes back. (Were it not
        // so, every use below saturates and an older `now` is only stricter.)
        let prior_last = e.last;
        e.last = now;
        if ban::advance(e, &p.ban, now, prior_last) {
            ban::record_banned(e);
            return Outcome {
                reason: Reason::Banned,
                tokens_milli: p.key.tokens_milli(e.tat, now_u),
                pend: None,
            };
        }
        // Debt left by limits since changed live, beyond what these allow
        // at the key's last decision (a no-op for a key only ever decided
        // under these limits; see `BucketParams::clamp`).
        // (`pend_hold` is read only when these parameters hold anything,
        // i.e. `held != ceil`; it is set before the swap that installs `p`,
        // and `p` was read with acquire, so one relaxed load suffices.)
        let held = p.key.held != p.key.ceil && prior_last < self.pend_hold.load(Ordering::Relaxed);
        e.tat = p.key.clamp(e.tat, p.key.units(prior_last), held);
        let global = || match &p.global {
            None => Ok(None),
            Some(g) => match self.global.0.try_take(g, now) {
                Some(set) => Ok(Some(Taken {
                    set,
                    was: set.saturating_sub(g.t),
                    units: g.iv.shift,
                })),
                None => Err(()),
            },
        };
        match p.key.take(e.tat, now_u) {
            Take::Ok(next) => {
                // The global token, if a global limit is on (the closure
                // above is the pend path's).
                let taken = match &p.global {
                    None => true,
                    Some(g) => self.global.0.try_take(g, now).is_some(),
                };
                if !taken {
                    return Outcome {
                        reason: Reason::GlobalLimit,
                        tokens_milli: p.key.tokens_milli(e.tat, now_u),
                        pend: None,
                    };
                }
                e.tat = next;
                Outcome {
                    reason: Reason::WithinRate,
                    tokens_milli: p.key.tokens_milli(next, now_u),
                    pend: None,
                }
            }
            Take::NotUntil { at, tat_if_taken } => {
                let tokens = p.key.tokens_milli(e.tat, now_u);
                let refused = |e: &mut Entry, reason| {
                    if reason != Reason::GlobalLimit && ban::record_reject(e, &p.ban) {
                        counters.event(Event::BanStarted);
                    }
                    Outcome {
                        reason,
                        tokens_milli: tokens,
                        pend: None,
                    }
                };
                if !p.pend_on || at.saturating_sub(now) > p.max_delay {
                    return refused(e, Reason::RateExceeded);
                }
                // The same budget and global checks, in the same order, in
                // both modes; observe mode holds no ticket.
                let pend = if p.observe {
                    self.pend.0.observe(at, now, global).map(|()| None)
                } else {
                    let res = Reservation {
                        key,
                        at,
                        key_tat: Taken {
                            set: tat_if_taken,
                            was: tat_if_taken.saturating_sub(p.key.t),
                            units: p.key.iv.shift,
                        },
                        global_tat: None,
                    };
                    self.pend.0.take(res, global).map(Some)
                };
                match pend {
                    Err(Refused::Budget) => refused(e, Reason::PendBudgetSpent),
                    Err(Refused::Global) => refused(e, Reason::GlobalLimit),
                    Ok(ticket) => {
                        e.tat = tat_if_taken;
                        Outcome {
                            reason: Reason::PendDelayed,
                            tokens_milli: 0,
                            pend: ticket.map(|ticket| Pended { at, ticket }),
                        }
                    }
                }
            }
        }
    }

    /// Whether the entry's bucket is full at `now` (`now_u` in the key
    /// bucket's units), whatever units the entry is kept in.
    #[inline]
    fn is_full(p: &Params, e: &Entry, now: Ticks, now_u: u64) -> bool {
        if e.units() == p.key.iv.shift {
            p.key.is_full(e.tat, now_u)
        } else {
            Self::is_full_rescaled(p, e, now)
        }
    }

    #[cold]
    #[inline(never)]
    fn is_full_rescaled(p: &Params, e: &Entry, now: Ticks) -> bool {
        p.key
            .is_full(p.key.iv.rescale(e.tat, e.units()), p.key.units(now))
    }

    /// Converts an entry kept from before a live change of the key
    /// bucket's units (out of line: after such a change, once per entry).
    #[cold]
    #[inline(never)]
    fn rescale(e: &mut Entry, p: &Params) {
        e.rescale(p.key.iv.shift);
    }

    /// A pended connection was accepted: frees its pend slot.
    pub fn pend_done(&self, ticket: PendTicket) -> Result<(), StaleTicket> {
        match self.pend.0.release(ticket) {
            Ok(_) => {
                self.pend_event(Event::PendDone);
                Ok(())
            }
            Err(e) => {
                self.pend_event(Event::StaleTicket);
                Err(e)
            }
        }
    }

    /// A pended connection was given up: frees its slot and gives the
    /// reserved token back, to the key and to the global bucket, but only
    /// what no later decision depends on (Go `x/time/rate`'s rule for a
    /// cancelled reservation), so an abort never mints a token:
    ///
    /// * nothing goes back if the pend's time has passed, as far as the gate
    ///   has seen (gate-core reads no clock: a decision for the key stamped
    ///   at or after the pend's `at`), or if the key is no longer tracked;
    /// * the key's token goes back only if its bucket has not moved on
    ///   since the reservation (its `tat` is still the one the pend set: no
    ///   accept or pend of the key came after it, in any order of aborts);
    /// * the global token likewise, if no take of the global bucket (by any
    ///   key) came after it.
    ///
    /// Giving back restores the bucket exactly as if the pend had never
    /// been made. `Err(StaleTicket)` if the ticket is not outstanding.
    pub fn pend_abort(&self, ticket: PendTicket) -> Result<(), StaleTicket> {
        let res = match self.pend.0.release(ticket) {
            Ok(r) => r,
            Err(e) => {
                self.pend_event(Event::StaleTicket);
                return Err(e);
            }
        };
        self.pend_event(Event::PendAborted);
        let h = hash_key(&self.seed, &res.key);
        let shard_i = self.shard_index(h);
        let Some(shard) = self.shards.get(shard_i) else {
            return Ok(());
        };
        let starts = self.starts(h);
        self.locked(shard, |slots| {
            // SAFETY: the shard lock is held while `live` is used.
            let p = &unsafe { self.live.get() }.p;
            let Some(e) = table::find(slots, starts, &res.key).and_then(|i| slots.get_mut(i))
            else {
                return;
            };
            if e.last >= res.at {
                return;
            }
            // Only in the units of the take (a live change of units since,
            // converted or not, gives nothing back: never a token more).
            let k = res.key_tat;
            if e.units() == k.units && e.tat == k.set {
                e.tat = k.was;
            }
            // Under the shard lock, so no change of the global bucket's
            // units (which waits for every shard lock) runs meanwhile.
            if let (Some(g), Some(gt)) = (&p.global, res.global_tat) {
                if g.iv.shift == gt.units {
                    self.global.0.give_back(gt.set, gt.was);
                }
            }
        });
        Ok(())
    }

    /// Asks the CPU to start loading both windows of a key (two independent
    /// random memory reads, overlapped with each other and with the lock).
    /// A window is `WINDOW * 40` = 320 bytes starting anywhere in a line, so
    /// it covers 5 or 6 lines: every one of them is prefetched (a line left
    /// out is a dependent miss later, inside the lock).
    ///
    /// The address comes from `self.table` (never written after `new`), not
    /// from the shard: reading the shard's line here, before its lock, would
    /// fetch it shared and then again exclusive for the lock, two transfers
    /// instead of one when another CPU used the shard last.
    #[inline(always)]
    fn prefetch(&self, shard_i: usize, h: u64) {
        #[cfg(target_arch = "x86_64")]
        for start in self.starts(h) {
            let per_shard = self.slot_mask.wrapping_add(1);
            let first = self
                .table
                .as_ptr()
                .wrapping_add(shard_i.wrapping_mul(per_shard))
                .wrapping_add(start) as *const i8;
            let skew = (first as usize) & 63;
            let line0 = first.wrapping_sub(skew);
            let end = skew.wrapping_add(table::WINDOW * table::ENTRY_BYTES);
            let mut off = 0usize;
            while off < end {
                // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 CPU
                // has (it is in the target's baseline); it is a hint that
                // never faults and never reads memory in the language sense,
                // so any address is fine (a window wrapping at the shard's
                // end only wastes a prefetch).
                unsafe {
                    core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                        line0.wrapping_add(off),
                    )
                };
                off = off.wrapping_add(64);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (shard_i, h);
    }

    /// The two window starts of a hash: bits 0..22 and 42..64 (the shard
    /// uses bits 32..42), so they are independent for any shard size.
    #[inline]
    pub(crate) fn starts(&self, h: u64) -> [usize; 2] {
        [
            (h as usize) & self.slot_mask,
            ((h >> 42) as usize) & self.slot_mask,
        ]
    }

    fn pend_event(&self, e: Event) {
        add_shared(&self.pend_events.0, e as usize);
    }

    /// Sums every counter.
    pub fn counters(&self) -> Counters {
        let mut c = Counters::default();
        let sum = |dst: &mut [u64], src: &[AtomicU64]| {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = d.saturating_add(s.load(Ordering::Relaxed));
            }
        };
        for s in &self.shards {
            sum(&mut c.by_reason, &s.counters.keyed);
            sum(&mut c.by_reason, &s.counters.listed);
            sum(&mut c.observed, &s.counters.observed);
            sum(&mut c.observed, &s.counters.listed_observed);
            sum(&mut c.events, &s.counters.events);
        }
        sum(&mut c.events, &self.pend_events.0);
        c.pends_outstanding = self.pend.0.outstanding();
        c
    }

    /// Whether `remote`'s key is in the table (no side effect; for tools,
    /// tests and benchmarks).
    pub fn is_tracked(&self, remote: IpAddr) -> bool {
        let key = self.key_of(remote);
        let h = hash_key(&self.seed, &key);
        let shard_i = self.shard_index(h);
        let starts = self.starts(h);
        match self.shards.get(shard_i) {
            Some(shard) => self.locked(shard, |slots| table::find(slots, starts, &key).is_some()),
            None => false,
        }
    }

    /// Slots holding a key: the sum of per-shard occupancy counters, kept
    /// as keys are placed (O(shards), no lock taken, no slot read).
    pub fn tracked_keys(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.occupied.load(Ordering::Relaxed) as usize)
            .fold(0usize, |a, b| a.saturating_add(b))
    }

    /// Slots holding a key, counted by scanning every shard under its lock
    /// (the reference for [`Gate::tracked_keys`] in tests; never on a
    /// decision or telemetry path).
    pub fn tracked_keys_scan(&self) -> usize {
        self.shards
            .iter()
            .map(|s| self.locked(s, |slots| slots.iter().filter(|e| e.occupied()).count()))
            .fold(0usize, |a, b| a.saturating_add(b))
    }

    /// Slots in the table (the configured capacity).
    pub fn capacity(&self) -> usize {
        self.shards
            .len()
            .saturating_mul(self.slot_mask.saturating_add(1))
    }

    /// Bytes this gate allocated (table, pend slots, lists, NAT64 prefixes): equals
    /// `Config::memory_bytes()` of its configuration.
    pub fn memory_bytes(&self) -> u64 {
        let shards = self
            .shards
            .capacity()
            .saturating_mul(core::mem::size_of::<Shard<L>>());
        let slots = self.table.capacity().saturating_mul(table::ENTRY_BYTES);
        let total = shards
            .saturating_add(slots)
            .saturating_add(self.pend.0.heap_bytes())
            .saturating_add(self.with_live(|l| l.heap_bytes()))
            .saturating_add(self.nat64.heap_bytes());
        total as u64
    }
}
