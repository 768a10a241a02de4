//! The request and reply structs, their byte views and their checks.
//!
//! Every struct is `#[repr(C)]`, integers only, no implicit padding
//! (asserted below), so [`Wire::from_bytes`] can copy any byte string of
//! the exact size into one and [`Wire::as_bytes`] can view one as bytes.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A struct that travels as bytes.
///
/// # Safety
/// Implementors are `#[repr(C)]`, consist of integers and arrays of
/// integers only (every bit pattern is a valid value) and have no padding.
pub unsafe trait Wire: Copy + Sized {
    /// Size in bytes.
    const SIZE: usize = core::mem::size_of::<Self>();

    /// All-zero value.
    fn zeroed() -> Self {
        // SAFETY: integers only (trait contract): zero is valid.
        unsafe { core::mem::zeroed() }
    }

    /// Copies exactly `Self::SIZE` bytes into a value; `None` for any other
    /// length.
    fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != Self::SIZE {
            return None;
        }
        // SAFETY: `b` has exactly SIZE bytes; every bit pattern is valid
        // (trait contract); read_unaligned needs no alignment.
        Some(unsafe { core::ptr::read_unaligned(b.as_ptr().cast::<Self>()) })
    }

    /// Copies the first `Self::SIZE` bytes (for a header followed by more).
    fn from_prefix(b: &[u8]) -> Option<Self> {
        Self::from_bytes(b.get(..Self::SIZE)?)
    }

    /// The value's bytes.
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: no padding (trait contract), so every byte is initialized;
        // the slice borrows `self`.
        unsafe { core::slice::from_raw_parts((self as *const Self).cast::<u8>(), Self::SIZE) }
    }
}

macro_rules! wire {
    ($($t:ty = $size:expr),* $(,)?) => {
        $(
            // SAFETY: see each struct: repr(C), integers only; the size
            // assertion below equals the sum of the fields (no padding).
            unsafe impl Wire for $t {}
            const _: () = assert!(core::mem::size_of::<$t>() == $size);
        )*
    };
}

/// Address family value for IPv4 in [`WireAddr::family`].
pub const AF_INET: u16 = 2;
/// Address family value for IPv6 in [`WireAddr::family`] (Windows' value).
pub const AF_INET6: u16 = 23;

/// An address with a prefix length: `family` [`AF_INET`] or [`AF_INET6`],
/// `prefix_len` 0..=32 or 0..=128, `addr` in network order (IPv4 in the
/// first 4 bytes, the rest zero). 20 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireAddr {
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// Prefix length in bits.
    pub prefix_len: u16,
    /// Address bytes, network order.
    pub addr: [u8; 16],
}

/// Why a request's field is refused: the field's name, the value given, and
/// what was expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// Field name as in the struct (e.g. `"prefix_len"`, `"rate_milli"`).
    pub field: &'static str,
    /// The value given (integers; addresses give their prefix length or family).
    pub value: u64,
    /// What is accepted.
    pub expected: &'static str,
}

impl core::fmt::Display for Invalid {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} = {}: expected {}",
            self.field, self.value, self.expected
        )
    }
}

impl WireAddr {
    /// A full-length address (/32 or /128).
    pub fn host(a: IpAddr) -> WireAddr {
        let len = if a.is_ipv4() { 32 } else { 128 };
        WireAddr::prefix(a, len)
    }

    /// An address with a prefix length (not checked; see [`Self::decode`]).
    pub fn prefix(a: IpAddr, prefix_len: u8) -> WireAddr {
        let mut addr = [0u8; 16];
        let family = match a {
            IpAddr::V4(v4) => {
                for (d, s) in addr.iter_mut().zip(v4.octets()) {
                    *d = s;
                }
                AF_INET
            }
            IpAddr::V6(v6) => {
                addr = v6.octets();
                AF_INET6
            }
        };
        WireAddr {
            family,
            prefix_len: u16::from(prefix_len),
            addr,
        }
    }

    /// Checks the family, the prefix length and (IPv4) the unused bytes,
    /// and returns the address and prefix length. `field` names the struct
    /// field in the error.
    pub fn decode(&self, field: &'static str) -> Result<(IpAddr, u8), Invalid> {
        match self.family {
            AF_INET => {
                if self.prefix_len > 32 {
                    return Err(Invalid {
                        field,
                        value: u64::from(self.prefix_len),
                        expected: "an IPv4 prefix length 0..=32",
                    });
                }
                let (a, rest) = self.addr.split_at(4);
                if rest.iter().any(|b| *b != 0) {
                    return Err(Invalid {
                        field,
                        value: u64::from(self.family),
                        expected: "IPv4 address bytes 4..16 zero",
                    });
                }
                let mut o = [0u8; 4];
                o.copy_from_slice(a);
                Ok((IpAddr::V4(Ipv4Addr::from(o)), self.prefix_len as u8))
            }
            AF_INET6 => {
                if self.prefix_len > 128 {
                    return Err(Invalid {
                        field,
                        value: u64::from(self.prefix_len),
                        expected: "an IPv6 prefix length 0..=128",
                    });
                }
                Ok((IpAddr::V6(Ipv6Addr::from(self.addr)), self.prefix_len as u8))
            }
            f => Err(Invalid {
                field,
                value: u64::from(f),
                expected: "address family 2 (AF_INET) or 23 (AF_INET6)",
            }),
        }
    }
}

/// Checks a request's version and flags (only `allowed` bits).
pub fn check_header(version: u32, flags: u32, allowed: u32) -> Result<(), Invalid> {
    if version != crate::VERSION {
        return Err(Invalid {
            field: "version",
            value: u64::from(version),
            expected: "version 1",
        });
    }
    if flags & !allowed != 0 {
        return Err(Invalid {
            field: "flags",
            value: u64::from(flags),
            expected: "only defined flag bits",
        });
    }
    Ok(())
}

/// Request flag: also write the change to the registry Parameters key, so
/// the next start keeps it.
pub const FLAG_PERSIST: u32 = 1;

/// [`UnbanRequest`] flag: lift automatic bans only; manual bans inside the
/// target stay (`gatectl unban --auto-only`).
pub const UNBAN_AUTO_ONLY: u32 = 1;

/// The configuration in force (part of [`StatusReply`], and the values of
/// [`SetRequest`]). 80 bytes. Meanings and ranges: gate-core's `Config`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireConfig {
    /// Per-key rate, milli-connections per second.
    pub rate_milli: u64,
    /// Global rate, milli-connections per second (0 = off).
    pub global_rate_milli: u64,
    /// Per-key burst.
    pub burst: u32,
    /// Global burst.
    pub global_burst: u32,
    /// Rejections within `ban_window_ms` that start a ban (0 = no bans).
    pub ban_threshold: u32,
    /// Ban window, ms.
    pub ban_window_ms: u32,
    /// Automatic ban length, ms.
    pub ban_ms: u32,
    /// Most outstanding pends (0 = pend off); fixed at start.
    pub max_pending: u32,
    /// Longest pend delay, ms.
    pub max_delay_ms: u32,
    /// Observe mode (0/1).
    pub observe: u32,
    /// Full-table policy: 0 evict_lru, 1 fail_open, 2 fail_closed.
    pub full_table: u32,
    /// Table capacity (keys); fixed at start.
    pub capacity: u32,
    /// Shards; fixed at start.
    pub shards: u32,
    /// IPv4 key prefix length; fixed at start.
    pub ipv4_prefix: u32,
    /// IPv6 key prefix length; fixed at start.
    pub ipv6_prefix: u32,
    /// Allow-list entries.
    pub allow_count: u32,
    /// Deny-list entries.
    pub deny_count: u32,
    /// Manual bans in force.
    pub manual_bans: u32,
}

/// Bits of [`SetRequest::mask`]: which [`WireConfig`] fields to change.
pub mod set_field {
    /// `rate_milli`
    pub const RATE_MILLI: u32 = 1 << 0;
    /// `burst`
    pub const BURST: u32 = 1 << 1;
    /// `global_rate_milli`
    pub const GLOBAL_RATE_MILLI: u32 = 1 << 2;
    /// `global_burst`
    pub const GLOBAL_BURST: u32 = 1 << 3;
    /// `observe`
    pub const OBSERVE: u32 = 1 << 4;
    /// `ban_threshold`
    pub const BAN_THRESHOLD: u32 = 1 << 5;
    /// `ban_window_ms`
    pub const BAN_WINDOW_MS: u32 = 1 << 6;
    /// `ban_ms`
    pub const BAN_MS: u32 = 1 << 7;
    /// `max_delay_ms`
    pub const MAX_DELAY_MS: u32 = 1 << 8;
    /// `full_table`
    pub const FULL_TABLE: u32 = 1 << 9;
    /// Every field that can change live.
    pub const ALL: u32 = (1 << 10) - 1;
    /// Names by bit index (for messages and the CLI), the gate-core field names.
    pub const NAMES: [&str; 10] = [
        "rate_milli",
        "burst",
        "global_rate_milli",
        "global_burst",
        "observe",
        "ban_threshold",
        "ban_window_ms",
        "ban_ms",
        "max_delay_ms",
        "full_table",
    ];
}

/// [`crate::IOCTL_GATE_STATUS`] input. 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusRequest {
    /// [`crate::VERSION`].
    pub version: u32,
    /// No flags defined (0).
    pub flags: u32,
}

/// Listener state in [`StatusReply::listener`].
pub mod listener_state {
    /// No listener (starting, re-creating after a failure, or stopping).
    pub const DOWN: u32 = 0;
    /// Listening.
    pub const UP: u32 = 1;
}

/// Listener mode in [`StatusReply::mode`].
pub mod listener_mode {
    /// Conditional accept: decisions before the handshake.
    pub const CONDITIONAL_ACCEPT: u32 = 0;
    /// Post-accept fallback (no conditional accept, e.g. Wine).
    pub const POST_ACCEPT: u32 = 1;
}

/// Counter slots in [`StatusReply`] arrays (gate-core has fewer reasons
/// and events today; unused slots are zero).
pub const COUNTER_SLOTS: usize = 16;

/// [`WireRelay::state`].
pub mod relay_state {
    /// No `BackendAddress` configured: accepted connections are closed.
    pub const OFF: u32 = 0;
    /// The relay runs and carries accepted connections to the backend.
    pub const RUNNING: u32 = 1;
    /// A backend is configured but the relay is not running (the listener
    /// worker has not started it yet, or it could not: no memory or no
    /// thread); accepted connections are closed.
    pub const NOT_RUNNING: u32 = 2;
}

/// The relay to the protected backend (issue 12), part of [`StatusReply`]
/// version 2. 88 bytes. Counters are totals since the relay started, all
/// zero when it does not run.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireRelay {
    /// [`relay_state`].
    pub state: u32,
    /// `MaxConnections` in force: relays at once.
    pub max_connections: u32,
    /// `BackendAddress`'s address (full-length prefix); all zero when
    /// [`relay_state::OFF`].
    pub backend: WireAddr,
    /// `BackendAddress`'s port (host order); 0 when [`relay_state::OFF`].
    pub backend_port: u32,
    /// Relays alive now (connecting, relaying or tearing down).
    pub active: u32,
    /// `ProxyProtocol` in force: 0 none, 1 v1, 2 v2.
    pub proxy_protocol: u32,
    /// Backend connections established (RelayOpened events).
    pub opened: u64,
    /// Relays that ended after being opened (RelayClosed events).
    pub closed: u64,
    /// Connections that never reached the backend (RelayFailed events),
    /// including `refused_at_limit`.
    pub failed: u64,
    /// Connections closed abortively because `MaxConnections` relays ran.
    pub refused_at_limit: u64,
    /// Bytes relayed client -> backend (without PROXY headers).
    pub bytes_to_backend: u64,
    /// Bytes relayed backend -> client.
    pub bytes_to_client: u64,
}

/// [`StatusReply::version`] of this crate's [`StatusReply`]. Version 1 was
/// the first [`STATUS_REPLY_V1_SIZE`] bytes (without `relay`).
pub const STATUS_REPLY_VERSION: u32 = 2;

/// Size of a version 1 [`StatusReply`]: the same fields at the same
/// offsets, ending before `relay`. The driver answers a caller whose output
/// buffer holds at least this but less than a version 2 reply with version
/// 1 (those bytes only), so an older tool keeps working.
pub const STATUS_REPLY_V1_SIZE: usize = 600;

/// [`crate::IOCTL_GATE_STATUS`] output, version [`STATUS_REPLY_VERSION`].
/// 688 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusReply {
    /// [`STATUS_REPLY_VERSION`] (1 for a [`STATUS_REPLY_V1_SIZE`]-byte reply).
    pub version: u32,
    /// Size of this struct in bytes.
    pub size: u32,
    /// [`listener_state`].
    pub listener: u32,
    /// [`listener_mode`].
    pub mode: u32,
    /// Time since DriverEntry, ms.
    pub uptime_ms: u64,
    /// Listening port (host order), 0 when unknown.
    pub port: u32,
    /// Number of used slots in `by_reason`/`observed` (gate-core's REASON_COUNT).
    pub reasons: u32,
    /// Number of used slots in `events` (gate-core's EVENT_COUNT).
    pub events_used: u32,
    /// Reserved (0).
    pub reserved: u32,
    /// The configuration in force.
    pub config: WireConfig,
    /// Decisions by reason (gate-core's `Reason` order).
    pub by_reason: [u64; COUNTER_SLOTS],
    /// Observe mode: would-be reasons.
    pub observed: [u64; COUNTER_SLOTS],
    /// gate-core events (`Event` order).
    pub events: [u64; COUNTER_SLOTS],
    /// Pends outstanding in gate-core.
    pub pends_outstanding: u64,
    /// Pending-table slots in use in the driver.
    pub pending_in_use: u64,
    /// Keys tracked in the table (a sum of per-shard counts: no lock, no
    /// scan).
    pub tracked_keys: u64,
    /// Table capacity (slots).
    pub capacity: u64,
    /// WskInspectEvent calls answered.
    pub inspects: u64,
    /// WskAbortEvent calls.
    pub aborts: u64,
    /// Connections accepted (delivered to the driver).
    pub accepted_sockets: u64,
    /// Accepted connections closed.
    pub closed_sockets: u64,
    /// Listeners created.
    pub listeners_up: u64,
    /// Listener closes for a NULL InspectID.
    pub null_inspect: u64,
    /// Manual-ban decisions (also counted under `Banned`).
    pub manual_ban_hits: u64,
    /// Configuration changes applied since start.
    pub changes: u64,
    /// The relay (version 2).
    pub relay: WireRelay,
}

/// [`StatusRequest::flags`]: accepted, no effect. (It asked for the
/// tracked keys, which the reply now always carries: a sum of per-shard
/// counts.)
pub const FLAG_COUNT_KEYS: u32 = 2;

/// [`crate::IOCTL_GATE_QUERY`] input. 28 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryRequest {
    /// [`crate::VERSION`].
    pub version: u32,
    /// No flags defined (0).
    pub flags: u32,
    /// The address to ask about (a full-length address: /32 or /128).
    pub addr: WireAddr,
}

/// [`QueryReply::state`] bits.
pub mod query_state {
    /// The key has an entry in the table.
    pub const TRACKED: u32 = 1;
    /// The address is on the allow list.
    pub const ALLOWED: u32 = 2;
    /// The address is on the deny list.
    pub const DENIED: u32 = 4;
    /// The key is under an automatic ban.
    pub const AUTO_BANNED: u32 = 8;
    /// The address is under a manual ban.
    pub const MANUAL_BANNED: u32 = 16;
}

/// "Forever" for durations and remaining times.
pub const FOREVER: u64 = u64::MAX;

/// [`crate::IOCTL_GATE_QUERY`] output. 72 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryReply {
    /// [`crate::VERSION`].
    pub version: u32,
    /// Size of this struct in bytes.
    pub size: u32,
    /// The key the address is counted under.
    pub key: WireAddr,
    /// [`query_state`] bits.
    pub state: u32,
    /// Tokens left, thousandths (a full bucket when untracked).
    pub tokens_milli: u32,
    /// Recent rejections counted toward a ban.
    pub rejects: u32,
    /// Time until the next token, ms (0 = a token is there now).
    pub next_token_ms: u64,
    /// Automatic ban time left, ms (0 = none).
    pub auto_ban_left_ms: u64,
    /// Manual ban time left, ms (0 = none, [`FOREVER`] = until unban).
    pub manual_ban_left_ms: u64,
    /// Time since the key was last seen, ms ([`FOREVER`] = untracked).
    pub last_seen_ms: u64,
}

/// Most entries in one [`TopReply`].
pub const TOP_MAX: usize = 32;
/// [`TopRequest::cursor`] value meaning "start"; [`TopReply::next_cursor`]
/// is [`CURSOR_DONE`] after the last slice.
pub const CURSOR_START: u64 = 0;
/// The scan is complete.
pub const CURSOR_DONE: u64 = u64::MAX;

/// [`crate::IOCTL_GATE_TOP`] input. 24 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopRequest {
    /// [`crate::VERSION`].
    pub version: u32,
    /// No flags defined (0).
    pub flags: u32,
    /// Where to continue ([`CURSOR_START`] first, then the reply's `next_cursor`).
    pub cursor: u64,
    /// Entries wanted from this slice, 1..=[`TOP_MAX`].
    pub max: u32,
    /// Order: [`top_order`].
    pub order: u32,
}

/// [`TopRequest::order`] values.
pub mod top_order {
    /// Most recent rejections first.
    pub const REJECTIONS: u32 = 0;
    /// Highest recent rate first (the furthest ahead of its rate: bucket debt).
    pub const RATE: u32 = 1;
}

/// One key in a [`TopReply`]. 48 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TopEntry {
    /// The key.
    pub key: WireAddr,
    /// The key's rejections in its current ban window: the rate and
    /// pend-budget rejections that count toward an automatic ban, and while
    /// the key is banned, those that banned it plus every refusal during the
    /// ban (reset when the window or the ban ends; counted only while bans
    /// are on, `BanThreshold > 0`). Saturates at 65535.
    pub rejects: u32,
    /// Tokens left, thousandths.
    pub tokens_milli: u32,
    /// Automatic ban time left, ms (rounded up); 0 when the key is not
    /// under an automatic ban. (Up to version 1 of this document the field
    /// was `banned`, 1 when banned: non-zero still means banned.)
    pub auto_ban_left_ms: u32,
    /// How far the key's bucket is ahead of now (its debt), ms: 0 when it
    /// has tokens; grows with the rate it sends above its limit.
    pub debt_ms: u64,
    /// Time since last seen, ms.
    pub last_seen_ms: u64,
}

/// [`crate::IOCTL_GATE_TOP`] output. 1576 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopReply {
    /// [`crate::VERSION`].
    pub version: u32,
    /// Size of this struct in bytes.
    pub size: u32,
    /// Cursor for the next call ([`CURSOR_DONE`]: finished).
    pub next_cursor: u64,
    /// Slots scanned by this call.
    pub scanned: u32,
    /// Valid entries in `entries`.
    pub count: u32,
    /// Total slots in the table (for progress).
    pub slots_total: u64,
    /// Keys of this slice under an automatic ban in force (all of them,
    /// not only the `count` returned): summed over a walk, the automatic
    /// bans in force, each call bounded like the ranking.
    pub auto_bans: u32,
    /// Reserved (0).
    pub reserved: u32,
    /// The best `count` keys of this slice, in the requested order.
    pub entries: [TopEntry; TOP_MAX],
}

/// List selector for list requests.
pub mod list_kind {
    /// The allow list.
    pub const ALLOW: u32 = 0;
    /// The deny list.
    pub const DENY: u32 = 1;
    /// The manual bans (read only through [`crate::IOCTL_GATE_LIST_GET`]).
    pub const BANS: u32 = 2;
}

/// List operations.
pub mod list_op {
    /// Add the entries (already present ones are kept once).
    pub const ADD: u32 = 1;
    /// Remove the entries (exact prefix match; absent ones are counted as not changed).
    pub const REMOVE: u32 = 2;
    /// Replace the whole list with the entries.
    pub const REPLACE: u32 = 3;
    /// Empty the list (no entries follow).
    pub const CLEAR: u32 = 4;
}

/// Most entries in a list (gate-core's MAX_LIST_ENTRIES).
pub const MAX_LIST_ENTRIES: u32 = 4096;
/// Most manual bans in force.
pub const MAX_MANUAL_BANS: u32 = 1024;

/// [`crate::IOCTL_GATE_LIST_CHANGE`] input header, followed by exactly
/// `count` [`WireAddr`] entries (input length = 24 + 20 * count). 24 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListChangeHeader {
    /// [`crate::VERSION`].
    pub version: u32,
    /// [`FLAG_PERSIST`] or 0.
    pub flags: u32,
    /// [`list_kind::ALLOW`] or [`list_kind::DENY`].
    pub list: u32,
    /// [`list_op`].
    pub op: u32,
    /// Entries that follow, 0..=[`MAX_LIST_ENTRIES`] (0 for CLEAR).
    pub count: u32,
    /// Reserved (0).
    pub reserved: u32,
}

/// [`crate::IOCTL_GATE_LIST_CHANGE`] output. 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListChangeReply {
    /// [`crate::VERSION`].
    pub version: u32,
    /// Size of this struct in bytes.
    pub size: u32,
    /// Entries in the list now.
    pub len: u32,
    /// Entries added or removed.
    pub changed: u32,
}

/// Entries in one [`ListGetReply`].
pub const LIST_PAGE: usize = 64;

/// [`crate::IOCTL_GATE_LIST_GET`] input. 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListGetRequest {
    /// [`crate::VERSION`].
    pub version: u32,
    /// No flags defined (0).
    pub flags: u32,
    /// [`list_kind`].
    pub list: u32,
    /// First entry wanted (0-based).
    pub start: u32,
}

/// One list entry in a [`ListGetReply`]. 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListEntry {
    /// The prefix.
    pub cidr: WireAddr,
    /// Reserved (0).
    pub reserved: u32,
    /// Manual bans: time left, ms ([`FOREVER`] = until unban); lists: 0.
    pub left_ms: u64,
}

/// [`crate::IOCTL_GATE_LIST_GET`] output. 2072 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListGetReply {
    /// [`crate::VERSION`].
    pub version: u32,
    /// Size of this struct in bytes.
    pub size: u32,
    /// Entries in the list.
    pub total: u32,
    /// Valid entries in `entries` (from `start`).
    pub count: u32,
    /// The configuration's generation when this page was copied (low 32
    /// bits of a count of changes installed: limits, lists, manual bans).
    /// A reader of several pages restarts when it differs between pages:
    /// the pages then come from different lists.
    pub generation: u32,
    /// Reserved (0).
    pub reserved: u32,
    /// The page.
    pub entries: [ListEntry; LIST_PAGE],
}

/// Longest manual ban that is not [`FOREVER`]: 365 days, ms.
pub const MAX_MANUAL_BAN_MS: u64 = 365 * 86_400_000;

/// [`crate::IOCTL_GATE_BAN`] input. 40 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BanRequest {
    /// [`crate::VERSION`].
    pub version: u32,
    /// No flags defined (0).
    pub flags: u32,
    /// Address or prefix to ban.
    pub target: WireAddr,
    /// Reserved (0).
    pub reserved: u32,
    /// Length, ms: 1..=[`MAX_MANUAL_BAN_MS`], or [`FOREVER`] (until unban).
    pub duration_ms: u64,
}

/// [`crate::IOCTL_GATE_BAN`] output. 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BanReply {
    /// [`crate::VERSION`].
    pub version: u32,
    /// Size of this struct in bytes.
    pub size: u32,
    /// Manual bans in force now.
    pub manual_bans: u32,
    /// 1 when the prefix was already banned (its end time was replaced).
    pub replaced: u32,
}

/// [`crate::IOCTL_GATE_UNBAN`] input. 40 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnbanRequest {
    /// [`crate::VERSION`].
    pub version: u32,
    /// [`UNBAN_AUTO_ONLY`] or 0 (any other bit is refused, as by every
    /// request: a driver without the flag refuses it).
    pub flags: u32,
    /// Address or prefix: manual bans inside it are removed (unless
    /// [`UNBAN_AUTO_ONLY`]), automatic bans of keys inside it lifted.
    pub target: WireAddr,
    /// Reserved (0).
    pub reserved: u32,
    /// Table scan cursor for a prefix wider than a key ([`CURSOR_START`] first).
    pub cursor: u64,
}

/// [`crate::IOCTL_GATE_UNBAN`] output. 24 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnbanReply {
    /// [`crate::VERSION`].
    pub version: u32,
    /// Size of this struct in bytes.
    pub size: u32,
    /// Manual bans removed (first call only).
    pub manual_lifted: u32,
    /// Automatic bans lifted by this call.
    pub auto_lifted: u32,
    /// Continue with this cursor ([`CURSOR_DONE`]: finished).
    pub next_cursor: u64,
}

/// [`ResetRequest::what`] bits.
pub mod reset_what {
    /// Decision and event counters (gate-core and driver).
    pub const COUNTERS: u32 = 1;
}

/// [`crate::IOCTL_GATE_RESET`] input. 12 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResetRequest {
    /// [`crate::VERSION`].
    pub version: u32,
    /// No flags defined (0).
    pub flags: u32,
    /// [`reset_what`] bits (non-zero).
    pub what: u32,
}

/// [`crate::IOCTL_GATE_RESET`] output. 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResetReply {
    /// [`crate::VERSION`].
    pub version: u32,
    /// Size of this struct in bytes.
    pub size: u32,
}

/// [`crate::IOCTL_GATE_SET`] input. 96 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetRequest {
    /// [`crate::VERSION`].
    pub version: u32,
    /// [`FLAG_PERSIST`] or 0.
    pub flags: u32,
    /// [`set_field`] bits: the fields of `config` to apply (non-zero).
    pub mask: u32,
    /// Reserved (0).
    pub reserved: u32,
    /// New values (fields outside `mask` are ignored).
    pub config: WireConfig,
}

/// [`crate::IOCTL_GATE_SET`] output: the configuration now in force. 88 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetReply {
    /// [`crate::VERSION`].
    pub version: u32,
    /// Size of this struct in bytes.
    pub size: u32,
    /// The configuration now in force.
    pub config: WireConfig,
}

/// Linux control channel: one request frame (then `in_len` input bytes).
/// 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelRequest {
    /// The IOCTL code.
    pub code: u32,
    /// Access the caller's "handle" has (`FILE_READ_ACCESS`|`FILE_WRITE_ACCESS`).
    pub access: u32,
    /// Input bytes that follow (at most [`CHANNEL_MAX`]).
    pub in_len: u32,
    /// Output buffer length the caller offers (at most [`CHANNEL_MAX`]).
    pub out_len: u32,
}

/// Linux control channel: one reply frame (then `information` output bytes).
/// 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelReply {
    /// The IRP's final NTSTATUS.
    pub status: i32,
    /// Reserved (0).
    pub reserved: u32,
    /// IoStatus.Information: bytes of output that follow.
    pub information: u64,
}

/// Largest input or output of one channel request (a full list change).
pub const CHANNEL_MAX: u32 = 24 + 20 * MAX_LIST_ENTRIES;

/// Request types with the common `version`/`flags` header.
pub trait Request: Wire {
    /// The code this request goes with.
    const CODE: u32;
    /// The reply type.
    type Reply: Wire;
}

macro_rules! request {
    ($($req:ty => $rep:ty, $code:expr;)*) => {
        $(impl Request for $req {
            const CODE: u32 = $code;
            type Reply = $rep;
        })*
    };
}

request! {
    StatusRequest => StatusReply, crate::IOCTL_GATE_STATUS;
    QueryRequest => QueryReply, crate::IOCTL_GATE_QUERY;
    TopRequest => TopReply, crate::IOCTL_GATE_TOP;
    ListGetRequest => ListGetReply, crate::IOCTL_GATE_LIST_GET;
    SetRequest => SetReply, crate::IOCTL_GATE_SET;
    BanRequest => BanReply, crate::IOCTL_GATE_BAN;
    UnbanRequest => UnbanReply, crate::IOCTL_GATE_UNBAN;
    ResetRequest => ResetReply, crate::IOCTL_GATE_RESET;
}

wire! {
    WireAddr = 20,
    WireConfig = 80,
    StatusRequest = 8,
    WireRelay = 88,
    StatusReply = 688,
    QueryRequest = 28,
    QueryReply = 72,
    TopRequest = 24,
    TopEntry = 48,
    TopReply = 40 + 48 * TOP_MAX,
    ListChangeHeader = 24,
    ListChangeReply = 16,
    ListGetRequest = 16,
    ListEntry = 32,
    ListGetReply = 24 + 32 * LIST_PAGE,
    BanRequest = 40,
    BanReply = 16,
    UnbanRequest = 40,
    UnbanReply = 24,
    ResetRequest = 12,
    ResetReply = 8,
    SetRequest = 96,
    SetReply = 88,
    ChannelRequest = 16,
    ChannelReply = 16,
}

/// A reply header filled in (`version`, `size`) for type `T`.
pub fn reply_size<T: Wire>() -> u32 {
    u32::try_from(T::SIZE).unwrap_or(u32::MAX)
}
