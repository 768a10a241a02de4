//! Quota and configuration: one plain struct, validated as a whole.
//!
//! [`Config`] has public fields, a [`Default`], and [`Config::validate`],
//! which returns the first bad field as a [`ConfigError`] naming the field
//! (its name is one of the [`field`] constants, so the driver can map
//! registry value names onto them) and the value. Nothing here panics.
//! Rates are integers in milli-connections per second (500 = 0.5/s);
//! durations are milliseconds. [`Config::memory_bytes`] tells the exact
//! bytes [`crate::Gate::new`] allocates for a configuration.

use alloc::vec::Vec;
use core::fmt;

use crate::lists::{Cidr, MAX_LIST_ENTRIES};
use crate::nat64::{is_valid_prefix, MAX_NAT64_PREFIXES};

/// What to do with a new key when every slot it may use holds an active key.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FullTablePolicy {
    /// Evict the least recently seen key of the probe window (default).
    EvictLru = 0,
    /// Accept without tracking (reason `TableFull`).
    FailOpen = 1,
    /// Reject (reason `TableFull`).
    FailClosed = 2,
}

impl FullTablePolicy {
    /// From the stable numeric value (for registry values).
    pub fn from_u8(v: u8) -> Option<FullTablePolicy> {
        match v {
            0 => Some(FullTablePolicy::EvictLru),
            1 => Some(FullTablePolicy::FailOpen),
            2 => Some(FullTablePolicy::FailClosed),
            _ => None,
        }
    }
}

/// Field names, as reported in [`ConfigError::field`].
pub mod field {
    /// [`super::Config::capacity`]
    pub const CAPACITY: &str = "capacity";
    /// [`super::Config::shards`]
    pub const SHARDS: &str = "shards";
    /// [`super::Config::ipv4_prefix`]
    pub const IPV4_PREFIX: &str = "ipv4_prefix";
    /// [`super::Config::ipv6_prefix`]
    pub const IPV6_PREFIX: &str = "ipv6_prefix";
    /// [`super::Config::rate_milli`]
    pub const RATE_MILLI: &str = "rate_milli";
    /// [`super::Config::burst`]
    pub const BURST: &str = "burst";
    /// [`super::Config::global_rate_milli`]
    pub const GLOBAL_RATE_MILLI: &str = "global_rate_milli";
    /// [`super::Config::global_burst`]
    pub const GLOBAL_BURST: &str = "global_burst";
    /// [`super::Config::full_table`]
    pub const FULL_TABLE: &str = "full_table";
    /// [`super::Config::observe`]
    pub const OBSERVE: &str = "observe";
    /// [`super::Config::ban_threshold`]
    pub const BAN_THRESHOLD: &str = "ban_threshold";
    /// [`super::Config::ban_window_ms`]
    pub const BAN_WINDOW_MS: &str = "ban_window_ms";
    /// [`super::Config::ban_ms`]
    pub const BAN_MS: &str = "ban_ms";
    /// [`super::Config::max_pending`]
    pub const MAX_PENDING: &str = "max_pending";
    /// [`super::Config::max_delay_ms`]
    pub const MAX_DELAY_MS: &str = "max_delay_ms";
    /// [`super::Config::allow`]
    pub const ALLOW: &str = "allow";
    /// [`super::Config::deny`]
    pub const DENY: &str = "deny";
    /// [`super::Config::nat64_prefixes`]
    pub const NAT64_PREFIXES: &str = "nat64_prefixes";
    /// Every field name.
    pub const ALL: [&str; 18] = [
        CAPACITY,
        SHARDS,
        IPV4_PREFIX,
        IPV6_PREFIX,
        RATE_MILLI,
        BURST,
        GLOBAL_RATE_MILLI,
        GLOBAL_BURST,
        FULL_TABLE,
        OBSERVE,
        BAN_THRESHOLD,
        BAN_WINDOW_MS,
        BAN_MS,
        MAX_PENDING,
        MAX_DELAY_MS,
        ALLOW,
        DENY,
        NAT64_PREFIXES,
    ];
}

/// Smallest table capacity (keys).
pub const MIN_CAPACITY: u32 = 1 << 10;
/// Largest table capacity (keys).
pub const MAX_CAPACITY: u32 = 1 << 22;
/// Largest number of shards.
pub const MAX_SHARDS: u32 = 1024;
/// Fewest slots per shard.
pub const MIN_SLOTS_PER_SHARD: u32 = 64;
/// Largest rate (milli-connections per second): 10 million per second, one token per tick.
pub const MAX_RATE_MILLI: u64 = 10_000_000_000;
/// Largest per-key burst.
pub const MAX_BURST: u32 = 1_000_000;
/// Largest global burst.
pub const MAX_GLOBAL_BURST: u32 = 100_000_000;
/// Longest rejection window for bans (1 hour).
pub const MAX_BAN_WINDOW_MS: u32 = 3_600_000;
/// Longest ban (1 day).
pub const MAX_BAN_MS: u32 = 86_400_000;
/// Most outstanding pends.
pub const MAX_PENDING: u32 = 65_536;
/// Longest pend delay (1 minute).
pub const MAX_DELAY_MS: u32 = 60_000;

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Keys the table can track: a power of two, 2^10..=2^22.
    pub capacity: u32,
    /// Table shards (one lock each): a power of two, 1..=1024, with at least
    /// 64 slots per shard.
    pub shards: u32,
    /// IPv4 key prefix length, 8..=32.
    pub ipv4_prefix: u8,
    /// IPv6 key prefix length, 48..=128.
    pub ipv6_prefix: u8,
    /// Per-key rate in milli-connections per second (1..=10^10; 500 = 0.5/s).
    pub rate_milli: u64,
    /// Per-key burst (bucket size), 1..=10^6.
    pub burst: u32,
    /// Global rate over all sources, milli-connections per second; 0 = no global limit.
    pub global_rate_milli: u64,
    /// Global burst, 1..=10^8 (when the global limit is on).
    pub global_burst: u32,
    /// What to do when a new key finds no free slot.
    pub full_table: FullTablePolicy,
    /// Observe mode: decide and count, but accept everything.
    pub observe: bool,
    /// Ban a key after this many rejections within `ban_window_ms`; 0 = no bans. At most 65535.
    pub ban_threshold: u32,
    /// Window for counting rejections, 1..=3_600_000 ms (when bans are on).
    pub ban_window_ms: u32,
    /// Ban length, 1..=86_400_000 ms (when bans are on).
    pub ban_ms: u32,
    /// Most outstanding pends (0 = never pend), at most 65536.
    pub max_pending: u32,
    /// Longest delay a pend may carry, 1..=60_000 ms (when pends are on),
    /// inclusive: a SYN whose next token is exactly `max_delay_ms` away
    /// (after rounding its accept time up to a whole tick) is pended, one
    /// further away is rejected (`RateExceeded`). Issue #9's inputs pend
    /// exactly this far out (see `tests/issue9.rs`).
    pub max_delay_ms: u32,
    /// Addresses that bypass every limit (at most 4096 entries).
    pub allow: Vec<Cidr>,
    /// Addresses rejected at once (at most 4096 entries). Deny wins over allow.
    pub deny: Vec<Cidr>,
    /// NAT64 prefixes (RFC 6052; at most 16, IPv6, of length 32, 40, 48,
    /// 56, 64 or 96, e.g. the well-known `64:ff9b::/96`): an address inside
    /// one is keyed as the IPv4 address it embeds, and the allow and deny
    /// lists also match that IPv4 address (see [`crate::nat64`]). Empty
    /// (the default): off.
    pub nat64_prefixes: Vec<Cidr>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            capacity: 1 << 16,
            shards: 64,
            ipv4_prefix: 32,
            ipv6_prefix: 64,
            rate_milli: 10_000,
            burst: 20,
            global_rate_milli: 0,
            global_burst: 1000,
            full_table: FullTablePolicy::EvictLru,
            observe: false,
            ban_threshold: 0,
            ban_window_ms: 10_000,
            ban_ms: 60_000,
            max_pending: 0,
            max_delay_ms: 500,
            allow: Vec::new(),
            deny: Vec::new(),
            nat64_prefixes: Vec::new(),
        }
    }
}

/// A configuration value that is not allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The field (one of [`field`]).
    pub field: &'static str,
    /// The value given (for lists: their length if too long, or the index
    /// of the bad entry).
    pub value: u64,
    /// What is allowed.
    pub expected: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} = {}: expected {}",
            self.field, self.value, self.expected
        )
    }
}

fn check(
    ok: bool,
    field: &'static str,
    value: u64,
    expected: &'static str,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError {
            field,
            value,
            expected,
        })
    }
}

impl Config {
    /// Checks every field; the first bad one is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let c = self;
        check(
            c.capacity.is_power_of_two() && (MIN_CAPACITY..=MAX_CAPACITY).contains(&c.capacity),
            field::CAPACITY,
            c.capacity.into(),
            "a power of two from 1024 to 4194304",
        )?;
        check(
            c.shards.is_power_of_two() && c.shards <= MAX_SHARDS,
            field::SHARDS,
            c.shards.into(),
            "a power of two from 1 to 1024",
        )?;
        check(
            c.capacity.checked_div(c.shards).unwrap_or(0) >= MIN_SLOTS_PER_SHARD,
            field::SHARDS,
            c.shards.into(),
            "at most capacity/64 shards",
        )?;
        check(
            (8..=32).contains(&c.ipv4_prefix),
            field::IPV4_PREFIX,
            c.ipv4_prefix.into(),
            "8 to 32",
        )?;
        check(
            (48..=128).contains(&c.ipv6_prefix),
            field::IPV6_PREFIX,
            c.ipv6_prefix.into(),
            "48 to 128",
        )?;
        check(
            (1..=MAX_RATE_MILLI).contains(&c.rate_milli),
            field::RATE_MILLI,
            c.rate_milli,
            "1 to 10000000000 milli-connections per second",
        )?;
        check(
            (1..=MAX_BURST).contains(&c.burst),
            field::BURST,
            c.burst.into(),
            "1 to 1000000",
        )?;
        check(
            c.global_rate_milli <= MAX_RATE_MILLI,
            field::GLOBAL_RATE_MILLI,
            c.global_rate_milli,
            "0 (off) to 10000000000 milli-connections per second",
        )?;
        if c.global_rate_milli > 0 {
            check(
                (1..=MAX_GLOBAL_BURST).contains(&c.global_burst),
                field::GLOBAL_BURST,
                c.global_burst.into(),
                "1 to 100000000",
            )?;
        }
        check(
            c.ban_threshold <= u32::from(u16::MAX),
            field::BAN_THRESHOLD,
            c.ban_threshold.into(),
            "0 (off) to 65535",
        )?;
        if c.ban_threshold > 0 {
            check(
                (1..=MAX_BAN_WINDOW_MS).contains(&c.ban_window_ms),
                field::BAN_WINDOW_MS,
                c.ban_window_ms.into(),
                "1 to 3600000 ms",
            )?;
            check(
                (1..=MAX_BAN_MS).contains(&c.ban_ms),
                field::BAN_MS,
                c.ban_ms.into(),
                "1 to 86400000 ms",
            )?;
        }
        check(
            c.max_pending <= MAX_PENDING,
            field::MAX_PENDING,
            c.max_pending.into(),
            "0 (off) to 65536",
        )?;
        if c.max_pending > 0 {
            check(
                (1..=MAX_DELAY_MS).contains(&c.max_delay_ms),
                field::MAX_DELAY_MS,
                c.max_delay_ms.into(),
                "1 to 60000 ms",
            )?;
        }
        check(
            c.allow.len() <= MAX_LIST_ENTRIES,
            field::ALLOW,
            c.allow.len() as u64,
            "at most 4096 entries",
        )?;
        check(
            c.deny.len() <= MAX_LIST_ENTRIES,
            field::DENY,
            c.deny.len() as u64,
            "at most 4096 entries",
        )?;
        check(
            c.nat64_prefixes.len() <= MAX_NAT64_PREFIXES,
            field::NAT64_PREFIXES,
            c.nat64_prefixes.len() as u64,
            "at most 16 prefixes",
        )?;
        if let Some(i) = c.nat64_prefixes.iter().position(|p| !is_valid_prefix(p)) {
            return Err(ConfigError {
                field: field::NAT64_PREFIXES,
                value: i as u64,
                expected: crate::nat64::PREFIX_EXPECTED,
            });
        }
        Ok(())
    }

    /// Bytes the table of a [`crate::Gate`] built from this configuration
    /// takes: slots plus shard headers. The total `Gate::new` allocates is
    /// [`Config::memory_bytes`].
    pub fn table_bytes(&self) -> u64 {
        let slots = u64::from(self.capacity).saturating_mul(crate::table::ENTRY_BYTES as u64);
        let shards = u64::from(self.shards).saturating_mul(crate::gate::SHARD_BYTES as u64);
        slots.saturating_add(shards)
    }

    /// Every byte `Gate::new` allocates for this configuration (table, pend
    /// slots, lists, NAT64 prefixes), exactly; computed, not measured (a test checks it
    /// against a counting allocator).
    pub fn memory_bytes(&self) -> u64 {
        let pend = u64::from(self.max_pending).saturating_mul(crate::pend::PEND_SLOT_BYTES as u64);
        let lists = list_bytes(&self.allow)
            .saturating_add(list_bytes(&self.deny))
            .saturating_add(
                (self.nat64_prefixes.len() as u64)
                    .saturating_mul(crate::nat64::PREFIX_BYTES as u64),
            );
        // The live configuration object and its own copy of the lists.
        let cidr = core::mem::size_of::<Cidr>() as u64;
        let live = (core::mem::size_of::<crate::live::Live>() as u64).saturating_add(
            (self.allow.len() as u64)
                .saturating_add(self.deny.len() as u64)
                .saturating_mul(cidr),
        );
        let lists = lists.saturating_add(live);
        self.table_bytes()
            .saturating_add(pend)
            .saturating_add(lists)
    }
}

fn list_bytes(l: &[Cidr]) -> u64 {
    let n4 = l.iter().filter(|c| c.addr().is_ipv4()).count() as u64;
    let n6 = (l.len() as u64).saturating_sub(n4);
    n4.saturating_mul(8).saturating_add(n6.saturating_mul(32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn each_bad_value_names_its_field_and_value() {
        type Case = (fn(&mut Config), &'static str, u64);
        let cases: [Case; 17] = [
            (|c| c.capacity = 1000, field::CAPACITY, 1000),
            (|c| c.capacity = 1 << 23, field::CAPACITY, 1 << 23),
            (|c| c.shards = 3, field::SHARDS, 3),
            (|c| c.shards = 2048, field::SHARDS, 2048),
            (|c| c.ipv4_prefix = 7, field::IPV4_PREFIX, 7),
            (|c| c.ipv6_prefix = 129, field::IPV6_PREFIX, 129),
            (|c| c.rate_milli = 0, field::RATE_MILLI, 0),
            (|c| c.burst = 0, field::BURST, 0),
            (
                |c| {
                    c.global_rate_milli = 1000;
                    c.global_burst = 0
                },
                field::GLOBAL_BURST,
                0,
            ),
            (|c| c.ban_threshold = 70_000, field::BAN_THRESHOLD, 70_000),
            (
                |c| {
                    c.ban_threshold = 3;
                    c.ban_ms = 0
                },
                field::BAN_MS,
                0,
            ),
            (|c| c.max_pending = 70_000, field::MAX_PENDING, 70_000),
            (
                |c| {
                    c.max_pending = 8;
                    c.max_delay_ms = 0
                },
                field::MAX_DELAY_MS,
                0,
            ),
            (
                |c| c.deny = alloc::vec![Cidr::parse("10.0.0.0/8").unwrap(); 5000],
                field::DENY,
                5000,
            ),
            (
                |c| c.nat64_prefixes = alloc::vec![Cidr::parse("64:ff9b::/96").unwrap(); 17],
                field::NAT64_PREFIXES,
                17,
            ),
            (
                |c| {
                    c.nat64_prefixes = alloc::vec![
                        Cidr::parse("64:ff9b::/96").unwrap(),
                        Cidr::parse("2001:db8::/33").unwrap(),
                    ]
                },
                field::NAT64_PREFIXES,
                1,
            ),
            (
                |c| c.nat64_prefixes = alloc::vec![Cidr::parse("192.0.2.0/24").unwrap()],
                field::NAT64_PREFIXES,
                0,
            ),
        ];
        for (set, name, value) in cases {
            let mut c = Config::default();
            set(&mut c);
            let e = c.validate().unwrap_err();
            assert_eq!((e.field, e.value), (name, value), "{e}");
            let text = alloc::format!("{e}");
            assert!(
                text.contains(name) && text.contains(&alloc::format!("{value}")),
                "{text}"
            );
        }
    }

    #[test]
    fn shards_must_leave_64_slots() {
        let c = Config {
            capacity: 1024,
            shards: 32,
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().field, field::SHARDS);
    }

    #[test]
    fn policy_from_u8() {
        for p in [
            FullTablePolicy::EvictLru,
            FullTablePolicy::FailOpen,
            FullTablePolicy::FailClosed,
        ] {
            assert_eq!(FullTablePolicy::from_u8(p as u8), Some(p));
        }
        assert_eq!(FullTablePolicy::from_u8(3), None);
    }
}
