//! The driver's configuration, read from the registry: value names, types,
//! defaults and checks (the table in gate-driver/CONFIG.md mirrors
//! [`VALUES`]).
//!
//! Values live under `<RegistryPath>\Parameters` (RegistryPath is the
//! `Services\<driver>` key DriverEntry receives). A missing value takes its
//! default; a missing `Parameters` key means every default. A value of the
//! wrong type, out of range, or unparsable, and any gate-core `validate()`
//! error, refuses the start: [`Rejected`] names the value. Parsing
//! ([`parse`]) is separate from registry access ([`load`]) so the rules are
//! tested without a registry.

use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, SocketAddr};

use gate_core::{field, Cidr, Config, FullTablePolicy};
use gate_ksys::*;

use crate::kernel::ustr::WideString;
use crate::pool::{NoMemory, PoolVec};

/// Everything the driver is configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverConfig {
    /// Address to listen on; `None`: every address, IPv4 and IPv6 (dual-stack `[::]`).
    pub listen_address: Option<IpAddr>,
    /// TCP port to listen on.
    pub listen_port: u16,
    /// Period of the Counters event in ms; 0 = off.
    pub counters_interval_ms: u32,
    /// Close accepted connections abortively (RST) instead of gracefully.
    pub abortive_close: bool,
    /// Longest wait (ms) for a graceful close of a connection the worker
    /// closes itself (no relay): then it is closed abortively (RST).
    pub close_timeout_ms: u32,
    /// The decision engine's options.
    pub core: Config,
    /// The relay to the protected backend (issue 12).
    pub relay: RelayConfig,
}

// ---- relay (issue 12) ----

/// Where and how accepted connections are relayed (see [`crate::relay`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    /// The protected backend; `None`: no relay (accepted connections are
    /// closed, as before the relay existed).
    pub backend: Option<SocketAddr>,
    /// PROXY protocol header sent to the backend first: 0 off, 1 v1 text, 2 v2 binary.
    pub proxy_protocol: u8,
    /// Relays at once; at the limit a new connection is closed abortively.
    pub max_connections: u32,
    /// Buffer per direction, bytes.
    pub buffer_bytes: u32,
    /// Longest wait for the backend to accept, ms.
    pub connect_timeout_ms: u32,
    /// A relay with no byte moved either way for this long is aborted, ms; 0 = never.
    pub idle_timeout_ms: u32,
}

/// Default `MaxConnections`.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1024;
/// Default `RelayBufferBytes`.
pub const DEFAULT_RELAY_BUFFER: u32 = 16 * 1024;
/// Default `ConnectTimeoutMs`.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u32 = 5_000;
/// Default `IdleTimeoutMs`.
pub const DEFAULT_IDLE_TIMEOUT_MS: u32 = 300_000;

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            backend: None,
            proxy_protocol: 0,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            buffer_bytes: DEFAULT_RELAY_BUFFER,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
        }
    }
}

fn backend_address(v: RegValue<'_>) -> Result<Option<SocketAddr>, Rejected> {
    let n = name::BACKEND_ADDRESS;
    if v.ty != REG_SZ {
        return Err(reject(n, "wrong type: expected REG_SZ", u64::from(v.ty)));
    }
    let mut buf = [0u8; 64];
    let len = ascii(n, v.data, &mut buf)?;
    let t = text(&buf, len).trim();
    if t.is_empty() {
        return Ok(None);
    }
    let bad = |problem| reject_text(n, problem, v.data);
    let a = t
        .parse::<SocketAddr>()
        .map_err(|_| bad("not IPv4:port or [IPv6]:port"))?;
    if a.port() == 0 {
        return Err(bad("port 0: expected 1 to 65535"));
    }
    // An IPv4-mapped address ([::ffff:a.b.c.d]) is checked as the IPv4 one.
    let ip = a.ip().to_canonical();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if ip.is_unspecified() || ip.is_multicast() || broadcast {
        return Err(bad(
            "not a unicast address (0.0.0.0, [::], 255.255.255.255 and multicast are refused)",
        ));
    }
    // fe80::/10 needs a scope (interface) ID to be connected, and the
    // format has none: every connect would fail.
    if matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80) {
        return Err(bad(
            "IPv6 link-local (fe80::/10) needs a scope ID, which this format cannot give: use a global or unique-local address",
        ));
    }
    Ok(Some(a))
}

/// Refuses a backend that is the gate's own listener (the relay would
/// connect to itself, once per slot, up to MaxConnections): same port as
/// ListenPort, and the address is ListenAddress, or a loopback address
/// while ListenAddress is unset or a wildcard. Other local addresses of
/// the machine are not known to the configuration reader.
fn backend_not_self(cfg: &DriverConfig) -> Result<(), Rejected> {
    let Some(b) = cfg.relay.backend else {
        return Ok(());
    };
    if b.port() != cfg.listen_port {
        return Ok(());
    }
    let ip = b.ip().to_canonical();
    let own = match cfg.listen_address.map(|a| a.to_canonical()) {
        Some(l) if !l.is_unspecified() => l == ip,
        _ => ip.is_loopback(),
    };
    if own {
        return Err(Rejected {
            text: RejectedText::Given(ValueName::from_display(&b)),
            ..reject(
                BACKEND_LOOP,
                "the backend is the gate's own listener (port = ListenPort, address = ListenAddress, or loopback while ListenAddress is unset or a wildcard): the relay would connect to itself",
                u64::from(cfg.listen_port),
            )
        });
    }
    Ok(())
}

/// Name reported when BackendAddress is the gate's own ListenPort (and
/// address): a loop.
pub const BACKEND_LOOP: &str = "BackendAddress+ListenPort";

/// Default listening port.
pub const DEFAULT_PORT: u16 = 8080;
/// Default counters period (ms).
pub const DEFAULT_COUNTERS_MS: u32 = 10_000;
/// Default `CloseTimeoutMs`.
pub const DEFAULT_CLOSE_TIMEOUT_MS: u32 = 5_000;

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            listen_address: None,
            listen_port: DEFAULT_PORT,
            counters_interval_ms: DEFAULT_COUNTERS_MS,
            abortive_close: false,
            close_timeout_ms: DEFAULT_CLOSE_TIMEOUT_MS,
            core: Config::default(),
            relay: RelayConfig::default(),
        }
    }
}

/// A registry value the driver refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// The registry value name (one of [`VALUES`], [`TABLE_COMBINATION`],
    /// or [`UNKNOWN_VALUE`] with the name itself in `unknown`).
    pub name: &'static str,
    /// What is wrong / what is allowed.
    pub problem: &'static str,
    /// The value given (for a wrong type: the registry type number; for a
    /// list too long: its number of entries; a refused entry is named by
    /// its text, [`RejectedText::Given`]).
    pub value: u64,
    /// The text that names the refusal, if any.
    pub text: RejectedText,
}

/// Text a [`Rejected`] carries besides its number (one at most: the
/// struct stays small, it is returned by value on every refusal path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectedText {
    /// A number only (`Rejected::value`).
    None,
    /// For a value name the driver does not know: that name (ASCII, cut
    /// at 64 characters, other characters as '?').
    UnknownName(ValueName),
    /// For a string value (REG_SZ, or one REG_MULTI_SZ entry): the text as
    /// given, sanitised the same way. Reported instead of `value`.
    Given(ValueName),
}

/// A registry value name as found under Parameters (for reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueName {
    bytes: [u8; 64],
    len: u8,
}

impl ValueName {
    /// From UTF-16 units: ASCII kept, anything else '?', cut at 64.
    pub fn from_units(units: &[u16]) -> ValueName {
        Self::from_unit_iter(units.iter().copied())
    }

    /// From UTF-16 units: ASCII kept, anything else '?', cut at 64.
    pub fn from_unit_iter(units: impl Iterator<Item = u16>) -> ValueName {
        let mut v = ValueName {
            bytes: [0; 64],
            len: 0,
        };
        for (slot, u) in v.bytes.iter_mut().zip(units) {
            *slot = u8::try_from(u)
                .ok()
                .filter(|b| b.is_ascii_graphic() || *b == b' ')
                .unwrap_or(b'?');
            v.len = v.len.saturating_add(1);
        }
        v
    }

    /// From a value's display text (ASCII kept, anything else '?', cut at 64).
    pub fn from_display(v: &dyn fmt::Display) -> ValueName {
        let mut n = ValueName {
            bytes: [0; 64],
            len: 0,
        };
        // Cut, not failed, when longer: the writer never returns an error.
        let _ = fmt::write(&mut n, format_args!("{v}"));
        n
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.bytes.get(..usize::from(self.len)).unwrap_or(&[])).unwrap_or("?")
    }
}

impl fmt::Write for ValueName {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            let b = u8::try_from(c)
                .ok()
                .filter(|b| b.is_ascii_graphic() || *b == b' ')
                .unwrap_or(b'?');
            if let Some(slot) = self.bytes.get_mut(usize::from(self.len)) {
                *slot = b;
                self.len = self.len.saturating_add(1);
            }
        }
        Ok(())
    }
}

/// [`Rejected::name`] of a value name the driver does not know.
pub const UNKNOWN_VALUE: &str = "(unknown value)";

impl Rejected {
    /// The name to report: the unknown name itself, or the known one.
    pub fn value_name(&self) -> &str {
        match &self.text {
            RejectedText::UnknownName(n) => n.as_str(),
            _ => self.name,
        }
    }

    /// The text of a refused string value, as given (sanitised).
    pub fn given(&self) -> Option<&ValueName> {
        match &self.text {
            RejectedText::Given(g) => Some(g),
            _ => None,
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(g) = self.given() {
            return write!(
                f,
                "registry value {} rejected (\"{}\"): {}",
                self.value_name(),
                g.as_str(),
                self.problem
            );
        }
        write!(
            f,
            "registry value {} rejected ({}): {}",
            self.value_name(),
            self.value,
            self.problem
        )
    }
}

/// Why the configuration could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// A value was refused (the start is refused: STATUS_INVALID_PARAMETER).
    Rejected(Rejected),
    /// An allocation failed (STATUS_INSUFFICIENT_RESOURCES).
    NoMemory(NoMemory),
}

impl From<Rejected> for LoadError {
    fn from(r: Rejected) -> Self {
        LoadError::Rejected(r)
    }
}

impl From<NoMemory> for LoadError {
    fn from(m: NoMemory) -> Self {
        LoadError::NoMemory(m)
    }
}

impl LoadError {
    /// The refused value, if that is the reason.
    pub fn rejected(&self) -> Option<&Rejected> {
        match self {
            LoadError::Rejected(r) => Some(r),
            LoadError::NoMemory(_) => None,
        }
    }
}

/// A registry value as read: type and data.
#[derive(Clone, Copy, Debug)]
pub struct RegValue<'a> {
    /// REG_DWORD, REG_SZ, ...
    pub ty: u32,
    /// The raw data bytes.
    pub data: &'a [u8],
}

/// The registry type(s) a value may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegType {
    /// REG_DWORD.
    Dword,
    /// REG_DWORD or REG_QWORD.
    DwordOrQword,
    /// REG_SZ.
    Sz,
    /// REG_MULTI_SZ.
    MultiSz,
}

/// One documented registry value.
#[derive(Clone, Copy, Debug)]
pub struct ValueSpec {
    /// Registry value name.
    pub name: &'static str,
    /// Allowed type.
    pub ty: RegType,
    /// gate-core's field name, for values passed to gate-core.
    pub core_field: Option<&'static str>,
}

const fn spec(name: &'static str, ty: RegType, core_field: Option<&'static str>) -> ValueSpec {
    ValueSpec {
        name,
        ty,
        core_field,
    }
}

/// Registry value names.
pub mod name {
    /// REG_SZ: IPv4 or IPv6 address to listen on; empty/absent = all (dual-stack).
    pub const LISTEN_ADDRESS: &str = "ListenAddress";
    /// REG_DWORD 1..=65535.
    pub const LISTEN_PORT: &str = "ListenPort";
    /// REG_DWORD 0 (off) or 1000..=3600000.
    pub const COUNTERS_INTERVAL_MS: &str = "CountersIntervalMs";
    /// REG_DWORD 0/1.
    pub const ABORTIVE_CLOSE: &str = "AbortiveClose";
    /// REG_DWORD 100..=600000.
    pub const CLOSE_TIMEOUT_MS: &str = "CloseTimeoutMs";
    /// gate-core `capacity`.
    pub const TABLE_CAPACITY: &str = "TableCapacity";
    /// gate-core `shards`.
    pub const TABLE_SHARDS: &str = "TableShards";
    /// gate-core `ipv4_prefix`.
    pub const IPV4_PREFIX: &str = "Ipv4PrefixLength";
    /// gate-core `ipv6_prefix`.
    pub const IPV6_PREFIX: &str = "Ipv6PrefixLength";
    /// gate-core `rate_milli`.
    pub const RATE_MILLI: &str = "RateMilliPerSecond";
    /// gate-core `burst`.
    pub const BURST: &str = "Burst";
    /// gate-core `global_rate_milli`.
    pub const GLOBAL_RATE_MILLI: &str = "GlobalRateMilliPerSecond";
    /// gate-core `global_burst`.
    pub const GLOBAL_BURST: &str = "GlobalBurst";
    /// gate-core `full_table`.
    pub const FULL_TABLE: &str = "FullTablePolicy";
    /// gate-core `observe`.
    pub const OBSERVE: &str = "ObserveMode";
    /// gate-core `ban_threshold`.
    pub const BAN_THRESHOLD: &str = "BanThreshold";
    /// gate-core `ban_window_ms`.
    pub const BAN_WINDOW_MS: &str = "BanWindowMs";
    /// gate-core `ban_ms`.
    pub const BAN_MS: &str = "BanMs";
    /// gate-core `max_pending`.
    pub const MAX_PENDING: &str = "MaxPending";
    /// gate-core `max_delay_ms`.
    pub const MAX_DELAY_MS: &str = "MaxPendDelayMs";
    /// gate-core `allow`.
    pub const ALLOW: &str = "AllowList";
    /// gate-core `deny`.
    pub const DENY: &str = "DenyList";
    /// gate-core `nat64_prefixes`.
    pub const NAT64_PREFIXES: &str = "Nat64Prefixes";
    /// REG_SZ `IPv4:port` or `[IPv6]:port`; empty/absent = no relay.
    pub const BACKEND_ADDRESS: &str = "BackendAddress";
    /// REG_DWORD 0 (off), 1 (PROXY v1), 2 (PROXY v2).
    pub const PROXY_PROTOCOL: &str = "ProxyProtocol";
    /// REG_DWORD 1..=100000.
    pub const MAX_CONNECTIONS: &str = "MaxConnections";
    /// REG_DWORD 1024..=1048576.
    pub const RELAY_BUFFER_BYTES: &str = "RelayBufferBytes";
    /// REG_DWORD 100..=600000.
    pub const CONNECT_TIMEOUT_MS: &str = "ConnectTimeoutMs";
    /// REG_DWORD 0 (off) or 1000..=86400000.
    pub const IDLE_TIMEOUT_MS: &str = "IdleTimeoutMs";
}

/// Every registry value the driver reads.
pub const VALUES: [ValueSpec; 29] = [
    spec(name::LISTEN_ADDRESS, RegType::Sz, None),
    spec(name::LISTEN_PORT, RegType::Dword, None),
    spec(name::COUNTERS_INTERVAL_MS, RegType::Dword, None),
    spec(name::ABORTIVE_CLOSE, RegType::Dword, None),
    spec(name::CLOSE_TIMEOUT_MS, RegType::Dword, None),
    spec(name::TABLE_CAPACITY, RegType::Dword, Some(field::CAPACITY)),
    spec(name::TABLE_SHARDS, RegType::Dword, Some(field::SHARDS)),
    spec(name::IPV4_PREFIX, RegType::Dword, Some(field::IPV4_PREFIX)),
    spec(name::IPV6_PREFIX, RegType::Dword, Some(field::IPV6_PREFIX)),
    spec(
        name::RATE_MILLI,
        RegType::DwordOrQword,
        Some(field::RATE_MILLI),
    ),
    spec(name::BURST, RegType::Dword, Some(field::BURST)),
    spec(
        name::GLOBAL_RATE_MILLI,
        RegType::DwordOrQword,
        Some(field::GLOBAL_RATE_MILLI),
    ),
    spec(
        name::GLOBAL_BURST,
        RegType::Dword,
        Some(field::GLOBAL_BURST),
    ),
    spec(name::FULL_TABLE, RegType::Dword, Some(field::FULL_TABLE)),
    spec(name::OBSERVE, RegType::Dword, Some(field::OBSERVE)),
    spec(
        name::BAN_THRESHOLD,
        RegType::Dword,
        Some(field::BAN_THRESHOLD),
    ),
    spec(
        name::BAN_WINDOW_MS,
        RegType::Dword,
        Some(field::BAN_WINDOW_MS),
    ),
    spec(name::BAN_MS, RegType::Dword, Some(field::BAN_MS)),
    spec(name::MAX_PENDING, RegType::Dword, Some(field::MAX_PENDING)),
    spec(
        name::MAX_DELAY_MS,
        RegType::Dword,
        Some(field::MAX_DELAY_MS),
    ),
    spec(name::ALLOW, RegType::MultiSz, Some(field::ALLOW)),
    spec(name::DENY, RegType::MultiSz, Some(field::DENY)),
    spec(
        name::NAT64_PREFIXES,
        RegType::MultiSz,
        Some(field::NAT64_PREFIXES),
    ),
    spec(name::BACKEND_ADDRESS, RegType::Sz, None),
    spec(name::PROXY_PROTOCOL, RegType::Dword, None),
    spec(name::MAX_CONNECTIONS, RegType::Dword, None),
    spec(name::RELAY_BUFFER_BYTES, RegType::Dword, None),
    spec(name::CONNECT_TIMEOUT_MS, RegType::Dword, None),
    spec(name::IDLE_TIMEOUT_MS, RegType::Dword, None),
];

/// The registry value name for a gate-core field name (for gate-core's
/// `ConfigError`), or the field name itself if unknown.
pub fn value_name_of_field(core_field: &'static str) -> &'static str {
    VALUES
        .iter()
        .find(|v| v.core_field == Some(core_field))
        .map_or(core_field, |v| v.name)
}

fn reject(name: &'static str, problem: &'static str, value: u64) -> Rejected {
    Rejected {
        name,
        problem,
        value,
        text: RejectedText::None,
    }
}

/// A refused string value, named by its text: `data` is the UTF-16LE
/// registry data (one REG_SZ, or one REG_MULTI_SZ entry), read up to its
/// first NUL; `value` is its length in characters.
fn reject_text(name: &'static str, problem: &'static str, data: &[u8]) -> Rejected {
    let given = ValueName::from_unit_iter(units(data).take_while(|&u| u != 0));
    Rejected {
        text: RejectedText::Given(given),
        ..reject(
            name,
            problem,
            units(data).take_while(|&u| u != 0).count() as u64,
        )
    }
}

fn spec_of(n: &'static str) -> ValueSpec {
    VALUES
        .iter()
        .copied()
        .find(|v| v.name == n)
        .unwrap_or(spec(n, RegType::Dword, None))
}

/// A number from a REG_DWORD (or REG_QWORD where allowed).
fn number(n: &'static str, v: RegValue<'_>) -> Result<u64, Rejected> {
    let s = spec_of(n);
    match (v.ty, v.data) {
        (REG_DWORD, [a, b, c, d, ..]) => Ok(u64::from(u32::from_le_bytes([*a, *b, *c, *d]))),
        (REG_QWORD, [a, b, c, d, e, f, g, h, ..]) if s.ty == RegType::DwordOrQword => {
            Ok(u64::from_le_bytes([*a, *b, *c, *d, *e, *f, *g, *h]))
        }
        (REG_DWORD, _) | (REG_QWORD, _) if v.ty == REG_DWORD || s.ty == RegType::DwordOrQword => {
            Err(reject(n, "value data too short", v.data.len() as u64))
        }
        _ => Err(reject(
            n,
            if s.ty == RegType::DwordOrQword {
                "wrong type: expected REG_DWORD or REG_QWORD"
            } else {
                "wrong type: expected REG_DWORD"
            },
            u64::from(v.ty),
        )),
    }
}

fn ranged(
    n: &'static str,
    v: u64,
    lo: u64,
    hi: u64,
    problem: &'static str,
) -> Result<u64, Rejected> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(reject(n, problem, v))
    }
}

fn u32_of(n: &'static str, v: RegValue<'_>) -> Result<u32, Rejected> {
    let x = number(n, v)?;
    u32::try_from(x).map_err(|_| reject(n, "out of range", x))
}

fn u8_of(n: &'static str, v: RegValue<'_>) -> Result<u8, Rejected> {
    let x = number(n, v)?;
    u8::try_from(x).map_err(|_| reject(n, "out of range", x))
}

fn flag(n: &'static str, v: RegValue<'_>) -> Result<bool, Rejected> {
    match number(n, v)? {
        0 => Ok(false),
        1 => Ok(true),
        x => Err(reject(n, "expected 0 or 1", x)),
    }
}

/// UTF-16LE registry string data to UTF-16 units (stops at the first NUL).
fn units(data: &[u8]) -> impl Iterator<Item = u16> + '_ {
    data.chunks_exact(2).map(|c| {
        u16::from_le_bytes([
            c.first().copied().unwrap_or(0),
            c.get(1).copied().unwrap_or(0),
        ])
    })
}

/// Decodes one UTF-16LE string (`data`, up to its first NUL; ASCII
/// expected: addresses) into `out`. Refusals name the text as given.
fn ascii(n: &'static str, data: &[u8], out: &mut [u8; 64]) -> Result<usize, Rejected> {
    let mut len = 0usize;
    for u in units(data).take_while(|&u| u != 0) {
        let b = u8::try_from(u)
            .ok()
            .filter(u8::is_ascii)
            .ok_or_else(|| reject_text(n, "not ASCII text", data))?;
        let slot = out.get_mut(len).ok_or_else(|| {
            reject_text(
                n,
                "text too long (at most 64 characters; the first 64 are shown)",
                data,
            )
        })?;
        *slot = b;
        len = len.saturating_add(1);
    }
    Ok(len)
}

/// The NUL-separated strings of REG_MULTI_SZ data (empty ones skipped).
fn multi_sz(data: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    // Split on aligned UTF-16 NULs.
    let mut rest = data.get(..data.len() & !1).unwrap_or(&[]);
    core::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .chunks_exact(2)
            .position(|c| c == [0, 0])
            .map_or(rest.len(), |i| i.saturating_mul(2));
        let (entry, tail) = rest.split_at(end);
        rest = tail.get(2..).unwrap_or(&[]);
        if !entry.is_empty() {
            return Some(entry);
        }
    })
}

fn text(buf: &[u8; 64], len: usize) -> &str {
    core::str::from_utf8(buf.get(..len).unwrap_or(&[])).unwrap_or("")
}

fn listen_address(v: RegValue<'_>) -> Result<Option<IpAddr>, Rejected> {
    let n = name::LISTEN_ADDRESS;
    if v.ty != REG_SZ {
        return Err(reject(n, "wrong type: expected REG_SZ", u64::from(v.ty)));
    }
    let mut buf = [0u8; 64];
    let len = ascii(n, v.data, &mut buf)?;
    let t = text(&buf, len).trim();
    if t.is_empty() {
        return Ok(None);
    }
    t.parse::<IpAddr>()
        .map(Some)
        .map_err(|_| reject_text(n, "not an IPv4 or IPv6 address", v.data))
}

/// What one list registry value (REG_MULTI_SZ of CIDR entries) holds at
/// most, and which parsed entries it refuses.
#[derive(Clone, Copy)]
struct ListRule {
    /// Most entries (gate-core's limit for the field).
    max: usize,
    /// What the list allows, when it has more entries.
    too_many: &'static str,
    /// For an entry that parses as CIDR but is refused: why (gate-core's
    /// own rule for the field, checked here so the refusal names the
    /// entry's text, not its index).
    refuse: fn(&Cidr) -> Option<&'static str>,
}

const ANY_CIDR: ListRule = ListRule {
    max: gate_core::MAX_LIST_ENTRIES,
    too_many: "at most 4096 entries",
    refuse: |_| None,
};

const NAT64_RULE: ListRule = ListRule {
    max: gate_core::MAX_NAT64_PREFIXES,
    too_many: "at most 16 prefixes",
    refuse: |c| {
        (!gate_core::nat64::is_valid_prefix(c)).then_some(gate_core::nat64::PREFIX_EXPECTED)
    },
};

/// The rule of the list value `n` (every REG_MULTI_SZ value of [`VALUES`]).
fn list_rule(n: &'static str) -> ListRule {
    if n == name::NAT64_PREFIXES {
        NAT64_RULE
    } else {
        ANY_CIDR
    }
}

/// A list of CIDR entries. Every refusal of one entry (not CIDR, or a CIDR
/// the field refuses) names that entry by its text; a list too long is
/// named by its number of entries, checked before anything is allocated.
fn cidr_list(n: &'static str, v: RegValue<'_>) -> Result<Vec<Cidr>, LoadError> {
    if v.ty != REG_MULTI_SZ {
        return Err(reject(n, "wrong type: expected REG_MULTI_SZ", u64::from(v.ty)).into());
    }
    let rule = list_rule(n);
    let count = multi_sz(v.data).count();
    if count > rule.max {
        return Err(reject(n, rule.too_many, count as u64).into());
    }
    let mut out = Vec::new();
    out.try_reserve_exact(count).map_err(|_| NoMemory {
        bytes: count.saturating_mul(core::mem::size_of::<Cidr>()),
    })?;
    for entry in multi_sz(v.data) {
        let mut buf = [0u8; 64];
        let len = ascii(n, entry, &mut buf)?;
        let c = Cidr::parse(text(&buf, len).trim()).map_err(|_| {
            reject_text(
                n,
                "not a CIDR entry (expected address/prefix-length)",
                entry,
            )
        })?;
        if let Some(problem) = (rule.refuse)(&c) {
            return Err(reject_text(n, problem, entry).into());
        }
        crate::pool::push_reserved(&mut out, c);
    }
    Ok(out)
}

/// Slots each table shard needs at least (gate-core's rule, see its
/// `Config::validate`).
const MIN_SLOTS_PER_SHARD: u32 = gate_core::config::MIN_SLOTS_PER_SHARD;

/// Name reported when TableCapacity and TableShards are each valid but not
/// together.
pub const TABLE_COMBINATION: &str = "TableShards+TableCapacity";

/// TableCapacity and TableShards, each valid on its own, must leave every
/// shard [`MIN_SLOTS_PER_SHARD`] slots. Refused under
/// [`TABLE_COMBINATION`], with the largest TableShards this TableCapacity
/// accepts as the value (gate-core alone would blame TableShards only,
/// e.g. for `TableCapacity 1024` with the default 64 shards). Only when
/// each value is within its own range (gate-core's `Config::validate`
/// rules, the same constants): otherwise that value is refused under its
/// own name, so the message names the real problem and its advice works
/// (`TableCapacity 512` was once blamed on the combination).
fn table_combination(c: &Config) -> Result<(), Rejected> {
    use gate_core::config::{MAX_CAPACITY, MAX_SHARDS, MIN_CAPACITY};
    let each_valid = c.capacity.is_power_of_two()
        && (MIN_CAPACITY..=MAX_CAPACITY).contains(&c.capacity)
        && c.shards.is_power_of_two()
        && c.shards <= MAX_SHARDS;
    let per_shard = c.capacity.checked_div(c.shards).unwrap_or(0);
    if each_valid && per_shard < MIN_SLOTS_PER_SHARD {
        return Err(reject(
            TABLE_COMBINATION,
            "TableShards too large for TableCapacity: each shard needs 64 slots, so TableShards may be at most TableCapacity/64 (the value), or TableCapacity at least 64*TableShards",
            u64::from((c.capacity >> 6).max(1)),
        ));
    }
    Ok(())
}

/// Builds the configuration from a value source. `get(name)` returns the
/// value, `Ok(None)` when it is absent, or `Err(status)` when it could not
/// be read (reported as a rejection of that value).
pub fn parse<D: AsRef<[u8]>>(
    mut get: impl FnMut(&'static str) -> Result<Option<(u32, D)>, LoadError>,
) -> Result<DriverConfig, LoadError> {
    let mut cfg = DriverConfig::default();
    for s in VALUES {
        let Some((ty, data)) = get(s.name)? else {
            continue;
        };
        let v = RegValue {
            ty,
            data: data.as_ref(),
        };
        let c = &mut cfg.core;
        match s.name {
            name::LISTEN_ADDRESS => cfg.listen_address = listen_address(v)?,
            name::LISTEN_PORT => {
                let p = ranged(s.name, number(s.name, v)?, 1, 65535, "expected 1 to 65535")?;
                cfg.listen_port = u16::try_from(p).unwrap_or(DEFAULT_PORT);
            }
            name::COUNTERS_INTERVAL_MS => {
                let x = number(s.name, v)?;
                if x != 0 {
                    ranged(
                        s.name,
                        x,
                        1000,
                        3_600_000,
                        "expected 0 (off) or 1000 to 3600000 ms",
                    )?;
                }
                cfg.counters_interval_ms = u32::try_from(x).unwrap_or(DEFAULT_COUNTERS_MS);
            }
            name::ABORTIVE_CLOSE => cfg.abortive_close = flag(s.name, v)?,
            name::CLOSE_TIMEOUT_MS => {
                let x = ranged(
                    s.name,
                    number(s.name, v)?,
                    100,
                    600_000,
                    "expected 100 to 600000 ms",
                )?;
                cfg.close_timeout_ms = u32::try_from(x).unwrap_or(DEFAULT_CLOSE_TIMEOUT_MS);
            }
            name::TABLE_CAPACITY => c.capacity = u32_of(s.name, v)?,
            name::TABLE_SHARDS => c.shards = u32_of(s.name, v)?,
            name::IPV4_PREFIX => c.ipv4_prefix = u8_of(s.name, v)?,
            name::IPV6_PREFIX => c.ipv6_prefix = u8_of(s.name, v)?,
            name::RATE_MILLI => c.rate_milli = number(s.name, v)?,
            name::BURST => c.burst = u32_of(s.name, v)?,
            name::GLOBAL_RATE_MILLI => c.global_rate_milli = number(s.name, v)?,
            name::GLOBAL_BURST => c.global_burst = u32_of(s.name, v)?,
            name::FULL_TABLE => {
                let x = number(s.name, v)?;
                c.full_table = u8::try_from(x)
                    .ok()
                    .and_then(FullTablePolicy::from_u8)
                    .ok_or(reject(
                        s.name,
                        "expected 0 (evict LRU), 1 (fail open) or 2 (fail closed)",
                        x,
                    ))?;
            }
            name::OBSERVE => c.observe = flag(s.name, v)?,
            name::BAN_THRESHOLD => c.ban_threshold = u32_of(s.name, v)?,
            name::BAN_WINDOW_MS => c.ban_window_ms = u32_of(s.name, v)?,
            name::BAN_MS => c.ban_ms = u32_of(s.name, v)?,
            name::MAX_PENDING => c.max_pending = u32_of(s.name, v)?,
            name::MAX_DELAY_MS => c.max_delay_ms = u32_of(s.name, v)?,
            name::ALLOW => c.allow = cidr_list(s.name, v)?,
            name::DENY => c.deny = cidr_list(s.name, v)?,
            name::NAT64_PREFIXES => c.nat64_prefixes = cidr_list(s.name, v)?,
            name::BACKEND_ADDRESS => cfg.relay.backend = backend_address(v)?,
            name::PROXY_PROTOCOL => {
                let x = ranged(
                    s.name,
                    number(s.name, v)?,
                    0,
                    2,
                    "expected 0 (off), 1 (PROXY v1) or 2 (PROXY v2)",
                )?;
                cfg.relay.proxy_protocol = u8::try_from(x).unwrap_or(0);
            }
            name::MAX_CONNECTIONS => {
                let x = ranged(
                    s.name,
                    number(s.name, v)?,
                    1,
                    100_000,
                    "expected 1 to 100000",
                )?;
                cfg.relay.max_connections = u32::try_from(x).unwrap_or(DEFAULT_MAX_CONNECTIONS);
            }
            name::RELAY_BUFFER_BYTES => {
                let x = ranged(
                    s.name,
                    number(s.name, v)?,
                    1024,
                    1_048_576,
                    "expected 1024 to 1048576 bytes",
                )?;
                cfg.relay.buffer_bytes = u32::try_from(x).unwrap_or(DEFAULT_RELAY_BUFFER);
            }
            name::CONNECT_TIMEOUT_MS => {
                let x = ranged(
                    s.name,
                    number(s.name, v)?,
                    100,
                    600_000,
                    "expected 100 to 600000 ms",
                )?;
                cfg.relay.connect_timeout_ms =
                    u32::try_from(x).unwrap_or(DEFAULT_CONNECT_TIMEOUT_MS);
            }
            name::IDLE_TIMEOUT_MS => {
                let x = number(s.name, v)?;
                if x != 0 {
                    ranged(
                        s.name,
                        x,
                        1000,
                        86_400_000,
                        "expected 0 (off) or 1000 to 86400000 ms",
                    )?;
                }
                cfg.relay.idle_timeout_ms = u32::try_from(x).unwrap_or(DEFAULT_IDLE_TIMEOUT_MS);
            }
            _ => {}
        }
    }
    table_combination(&cfg.core)?;
    backend_not_self(&cfg)?;
    cfg.core.validate().map_err(|e| Rejected {
        name: value_name_of_field(e.field),
        problem: e.expected,
        value: e.value,
        text: RejectedText::None,
    })?;
    Ok(cfg)
}

/// Reads the configuration from `<registry_path>\Parameters` (PASSIVE_LEVEL).
///
/// # Safety
/// `registry_path` is NULL or the valid UNICODE_STRING DriverEntry received.
pub unsafe fn load(
    registry_path: *const UNICODE_STRING,
    report: &mut dyn FnMut(&Rejected),
) -> Result<DriverConfig, LoadError> {
    // SAFETY: per the caller.
    let path = unsafe { WideString::from_unicode_and(registry_path, "\\Parameters") }?;
    let key = RegKey::open(&path);
    if let Some(k) = &key {
        k.check_names(report)?;
    }
    parse(|n| match &key {
        Some(k) => k.query(n),
        None => Ok(None),
    })
}

/// An open registry key (closed on drop).
struct RegKey(HANDLE);

/// Values enumerated under Parameters at most (the key is the
/// administrator's; the bound keeps the start's work finite).
const MAX_VALUES: u32 = 1024;

impl RegKey {
    /// Every value name under the key must be one the driver reads: a
    /// misspelt name (`TableCapcity`) would otherwise be ignored silently.
    /// Refused under [`UNKNOWN_VALUE`] with the name; the value is its
    /// index in the key. Every unknown name is named: each but the last is
    /// passed to `report` as it is found, the last is the error (which the
    /// caller reports), so an administrator fixes them all in one go.
    fn check_names(&self, report: &mut dyn FnMut(&Rejected)) -> Result<(), LoadError> {
        let mut last: Option<Rejected> = None;
        // KEY_VALUE_BASIC_INFORMATION: 12-byte header, then the name (at
        // most 16383 characters in the registry; longer than any known
        // name is refused anyway, so a 256-character buffer suffices).
        let mut buf = [0u64; 66];
        let len = u32::try_from(core::mem::size_of_val(&buf)).unwrap_or(0);
        for index in 0..MAX_VALUES {
            let mut needed = 0u32;
            // SAFETY: `buf` has `len` writable bytes, 8-aligned; the key
            // handle is open (PASSIVE_LEVEL).
            let st = unsafe {
                ZwEnumerateValueKey(
                    self.0,
                    index,
                    KeyValueBasicInformation,
                    buf.as_mut_ptr().cast(),
                    len,
                    &mut needed,
                )
            };
            if st == STATUS_NO_MORE_ENTRIES {
                break;
            }
            if !NT_SUCCESS(st) && st != STATUS_BUFFER_OVERFLOW {
                if let Some(prev) = last.take() {
                    report(&prev);
                }
                return Err(reject(
                    UNKNOWN_VALUE,
                    "value names could not be listed",
                    st as u32 as u64,
                )
                .into());
            }
            // SAFETY: the buffer holds the header ZwEnumerateValueKey wrote
            // (BUFFER_OVERFLOW fills it too) and is 8-aligned.
            let bytes: &[u8] =
                unsafe { core::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len as usize) };
            let name_len = bytes
                .get(8..12)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map_or(0, |b| u32::from_le_bytes(b) as usize);
            let avail = bytes.get(12..).unwrap_or(&[]);
            let name_bytes = avail.get(..name_len.min(avail.len())).unwrap_or(&[]);
            let mut units = [0u16; 64];
            let mut n = 0usize;
            for (slot, c) in units.iter_mut().zip(name_bytes.chunks_exact(2)) {
                *slot = <[u8; 2]>::try_from(c).map_or(0, u16::from_le_bytes);
                n = n.saturating_add(1);
            }
            // The key's unnamed default value ("(Default)") is no
            // misspelling: regedit, an INF's `HKR,,,` or Wine's `reg add
            // <key>` make one. It is not read, so it is not checked.
            if name_len == 0 {
                continue;
            }
            let name = units.get(..n).unwrap_or(&[]);
            let full = name_len == n.saturating_mul(2);
            let known = full
                && VALUES.iter().any(|v| {
                    v.name.len() == name.len()
                        && v.name.bytes().zip(name).all(|(a, &b)| {
                            u8::try_from(b).is_ok_and(|b| b.eq_ignore_ascii_case(&a))
                        })
                });
            if !known {
                let r = Rejected {
                    name: UNKNOWN_VALUE,
                    problem:
                        "not a value the driver reads (misspelt?): see CONFIG.md for the names",
                    value: u64::from(index),
                    text: RejectedText::UnknownName(ValueName::from_units(name)),
                };
                if let Some(prev) = last.replace(r) {
                    report(&prev);
                }
            }
        }
        match last {
            Some(r) => Err(LoadError::Rejected(r)),
            None => Ok(()),
        }
    }

    /// Opens `path` for reading; `None` if it does not exist or cannot be opened.
    fn open(path: &WideString) -> Option<RegKey> {
        let mut us = path.as_unicode();
        let mut attrs = OBJECT_ATTRIBUTES {
            Length: core::mem::size_of::<OBJECT_ATTRIBUTES>() as u32,
            RootDirectory: core::ptr::null_mut(),
            ObjectName: &mut us,
            Attributes: OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE,
            SecurityDescriptor: core::ptr::null_mut(),
            SecurityQualityOfService: core::ptr::null_mut(),
        };
        let mut h: HANDLE = core::ptr::null_mut();
        // SAFETY: attributes and name are valid for the call (PASSIVE_LEVEL).
        let st = unsafe { ZwOpenKey(&mut h, KEY_READ, &mut attrs) };
        // Lazily: a RegKey built for a failed open would close a NULL handle on drop.
        (NT_SUCCESS(st) && !h.is_null()).then(|| RegKey(h))
    }

    /// Reads one value: `Ok(None)` when absent; a value that cannot be
    /// read is refused under its name.
    fn query(&self, n: &'static str) -> Result<Option<(u32, PoolVec<u8>)>, LoadError> {
        let name = WideString::from_text(n)?;
        let mut us = name.as_unicode();
        const HEADER: usize = 12; // KEY_VALUE_PARTIAL_INFORMATION up to Data
        let unreadable = |st: NTSTATUS| reject(n, "could not be read", st as u32 as u64);
        let mut size: u32 = 256;
        for _ in 0..4 {
            // u64 elements keep the buffer 8-aligned for the header.
            let words = (size as usize).div_ceil(8);
            let mut buf: PoolVec<u64> = PoolVec::with_capacity(words)?;
            for _ in 0..words {
                let _ = buf.push(0);
            }
            let mut needed: u32 = 0;
            let len = u32::try_from(words.saturating_mul(8)).unwrap_or(u32::MAX);
            // SAFETY: `buf` has `len` writable bytes; the name is valid.
            let st = unsafe {
                ZwQueryValueKey(
                    self.0,
                    &mut us,
                    KeyValuePartialInformation,
                    buf.as_mut_ptr().cast(),
                    len,
                    &mut needed,
                )
            };
            if st == STATUS_OBJECT_NAME_NOT_FOUND {
                return Ok(None);
            }
            if st == STATUS_BUFFER_OVERFLOW || st == STATUS_BUFFER_TOO_SMALL {
                size = needed.max(size.saturating_mul(2));
                continue;
            }
            if !NT_SUCCESS(st) {
                return Err(unreadable(st).into());
            }
            // SAFETY: the buffer is 8-aligned and ZwQueryValueKey filled a
            // KEY_VALUE_PARTIAL_INFORMATION header in it.
            let bytes: &[u8] = unsafe {
                core::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), words.saturating_mul(8))
            };
            let word = |i: usize| {
                let b = bytes.get(i..i.saturating_add(4)).unwrap_or(&[0, 0, 0, 0]);
                u32::from_le_bytes([
                    b.first().copied().unwrap_or(0),
                    b.get(1).copied().unwrap_or(0),
                    b.get(2).copied().unwrap_or(0),
                    b.get(3).copied().unwrap_or(0),
                ])
            };
            let ty = word(4);
            let data_len = word(8) as usize;
            let data = bytes
                .get(HEADER..HEADER.saturating_add(data_len))
                .ok_or(unreadable(STATUS_BUFFER_OVERFLOW))?;
            let mut copy = PoolVec::with_capacity(data.len())?;
            for &b in data {
                let _ = copy.push(b);
            }
            return Ok(Some((ty, copy)));
        }
        Err(unreadable(STATUS_BUFFER_OVERFLOW).into())
    }
}

impl Drop for RegKey {
    fn drop(&mut self) {
        // SAFETY: the handle is ours, opened by ZwOpenKey.
        unsafe { ZwClose(self.0) };
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)]
mod tests {
    use super::*;

    fn dword(v: u32) -> Option<(u32, Vec<u8>)> {
        Some((REG_DWORD, v.to_le_bytes().to_vec()))
    }

    fn sz(s: &str, ty: u32) -> Option<(u32, Vec<u8>)> {
        let mut d: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
        d.extend([0, 0]);
        Some((ty, d))
    }

    fn with(n: &'static str, v: Option<(u32, Vec<u8>)>) -> Result<DriverConfig, Rejected> {
        parse(|q| Ok(if q == n { v.clone() } else { None })).map_err(|e| match e {
            LoadError::Rejected(r) => r,
            LoadError::NoMemory(m) => panic!("no memory: {m:?}"),
        })
    }

    #[test]
    fn absent_values_give_defaults() {
        assert_eq!(
            parse(|_| Ok(None::<(u32, Vec<u8>)>)),
            Ok(DriverConfig::default())
        );
    }

    #[test]
    fn good_values_are_taken() {
        let c = with(name::LISTEN_PORT, dword(443)).unwrap();
        assert_eq!(c.listen_port, 443);
        let c = with(name::LISTEN_ADDRESS, sz("127.0.0.1", REG_SZ)).unwrap();
        assert_eq!(c.listen_address, Some("127.0.0.1".parse().unwrap()));
        let mut multi: Vec<u8> = Vec::new();
        for s in ["10.0.0.0/8", "2001:db8::/32"] {
            multi.extend(s.encode_utf16().flat_map(u16::to_le_bytes));
            multi.extend([0, 0]);
        }
        multi.extend([0, 0]);
        let c = with(name::DENY, Some((REG_MULTI_SZ, multi))).unwrap();
        assert_eq!(c.core.deny.len(), 2);
        let c = with(
            name::RATE_MILLI,
            Some((REG_QWORD, 5_000_000_000u64.to_le_bytes().to_vec())),
        )
        .unwrap();
        assert_eq!(c.core.rate_milli, 5_000_000_000);
    }

    #[test]
    fn relay_values_are_taken() {
        let c = with(name::BACKEND_ADDRESS, sz(" 10.0.0.2:8081 ", REG_SZ)).unwrap();
        assert_eq!(c.relay.backend, Some("10.0.0.2:8081".parse().unwrap()));
        let c = with(name::BACKEND_ADDRESS, sz("[2001:db8::5]:443", REG_SZ)).unwrap();
        assert_eq!(c.relay.backend, Some("[2001:db8::5]:443".parse().unwrap()));
        let c = with(name::BACKEND_ADDRESS, sz("", REG_SZ)).unwrap();
        assert_eq!(c.relay.backend, None);
        // A v4-mapped unicast backend is kept as given.
        let c = with(name::BACKEND_ADDRESS, sz("[::ffff:127.0.0.1]:80", REG_SZ)).unwrap();
        assert_eq!(
            c.relay.backend,
            Some("[::ffff:127.0.0.1]:80".parse().unwrap())
        );
        assert_eq!(
            with(name::PROXY_PROTOCOL, dword(2))
                .unwrap()
                .relay
                .proxy_protocol,
            2
        );
        assert_eq!(
            with(name::MAX_CONNECTIONS, dword(1))
                .unwrap()
                .relay
                .max_connections,
            1
        );
        assert_eq!(
            with(name::RELAY_BUFFER_BYTES, dword(1024))
                .unwrap()
                .relay
                .buffer_bytes,
            1024
        );
        assert_eq!(
            with(name::CONNECT_TIMEOUT_MS, dword(100))
                .unwrap()
                .relay
                .connect_timeout_ms,
            100
        );
        assert_eq!(
            with(name::IDLE_TIMEOUT_MS, dword(0))
                .unwrap()
                .relay
                .idle_timeout_ms,
            0
        );
        let r = with(name::PROXY_PROTOCOL, dword(3)).unwrap_err();
        assert_eq!((r.name, r.value), (name::PROXY_PROTOCOL, 3));
    }

    #[test]
    fn bad_values_name_themselves() {
        type Case = (&'static str, Option<(u32, Vec<u8>)>);
        let cases: Vec<Case> = alloc::vec![
            (name::LISTEN_PORT, dword(0)),
            (name::LISTEN_PORT, sz("80", REG_SZ)),
            (name::LISTEN_ADDRESS, sz("not-an-ip", REG_SZ)),
            (name::TABLE_CAPACITY, dword(1000)),
            (name::FULL_TABLE, dword(7)),
            (name::ALLOW, sz("10.0.0.0/99", REG_MULTI_SZ)),
            (name::COUNTERS_INTERVAL_MS, dword(5)),
            (name::BACKEND_ADDRESS, sz("10.0.0.1", REG_SZ)),
            (name::BACKEND_ADDRESS, sz("10.0.0.1:0", REG_SZ)),
            (name::BACKEND_ADDRESS, sz("0.0.0.0:80", REG_SZ)),
            (name::BACKEND_ADDRESS, sz("[::]:80", REG_SZ)),
            (name::BACKEND_ADDRESS, sz("::1:80", REG_SZ)),
            (name::BACKEND_ADDRESS, sz("224.0.0.1:80", REG_SZ)),
            (name::BACKEND_ADDRESS, sz("255.255.255.255:80", REG_SZ)),
            (name::BACKEND_ADDRESS, sz("[::ffff:224.0.0.1]:80", REG_SZ)),
            (name::BACKEND_ADDRESS, sz("[::ffff:0.0.0.0]:80", REG_SZ)),
            (name::BACKEND_ADDRESS, sz("[ff02::1]:80", REG_SZ)),
            (name::BACKEND_ADDRESS, dword(80)),
            (name::PROXY_PROTOCOL, dword(3)),
            (name::MAX_CONNECTIONS, dword(0)),
            (name::MAX_CONNECTIONS, dword(100_001)),
            (name::RELAY_BUFFER_BYTES, dword(1023)),
            (name::RELAY_BUFFER_BYTES, dword(1_048_577)),
            (name::CONNECT_TIMEOUT_MS, dword(99)),
            (name::CONNECT_TIMEOUT_MS, dword(600_001)),
            (name::IDLE_TIMEOUT_MS, dword(999)),
            (name::IDLE_TIMEOUT_MS, dword(86_400_001)),
        ];
        for (n, v) in cases {
            assert_eq!(with(n, v).unwrap_err().name, n);
        }
    }

    /// Issue 12 review: a refused string value was named by its length
    /// ("rejected (7)"). Every REG_SZ / REG_MULTI_SZ value, for every kind
    /// of refusal of its text, names the text as given.
    #[test]
    fn refused_strings_are_named_by_their_text() {
        let r = with(name::BACKEND_ADDRESS, sz("1.2.3.4", REG_SZ)).unwrap_err();
        assert_eq!(r.given().unwrap().as_str(), "1.2.3.4");
        assert_eq!(
            alloc::format!("{r}"),
            "registry value BackendAddress rejected (\"1.2.3.4\"): not IPv4:port or [IPv6]:port"
        );
        let long: alloc::string::String = "9".repeat(70);
        let bad: [(&str, &str); 5] = [
            ("garbage", "garbage"),
            ("10.0.0.1/99", "10.0.0.1/99"),
            (" x y ", " x y "),
            ("caf\u{e9}:80", "caf?:80"),
            (&long, &long[..64]),
        ];
        let strings = VALUES
            .iter()
            .filter(|v| matches!(v.ty, RegType::Sz | RegType::MultiSz));
        let mut checked = 0;
        for v in strings {
            let ty = if v.ty == RegType::Sz {
                REG_SZ
            } else {
                REG_MULTI_SZ
            };
            for (given, shown) in bad {
                let r = with(v.name, sz(given, ty)).unwrap_err();
                assert_eq!(r.name, v.name);
                let g = r.given().unwrap_or_else(|| panic!("{}: {r}", v.name));
                assert_eq!(g.as_str(), shown, "{}", v.name);
                assert!(alloc::format!("{r}").contains(shown), "{r}");
                checked += 1;
            }
            // A second, bad entry of a list is named, not the good first one.
            if ty == REG_MULTI_SZ {
                let mut multi: Vec<u8> = Vec::new();
                let good = if v.name == name::NAT64_PREFIXES {
                    "64:ff9b::/96"
                } else {
                    "10.0.0.0/8"
                };
                for s in [good, "nope"] {
                    multi.extend(s.encode_utf16().flat_map(u16::to_le_bytes));
                    multi.extend([0, 0]);
                }
                multi.extend([0, 0]);
                let r = with(v.name, Some((REG_MULTI_SZ, multi))).unwrap_err();
                assert_eq!(r.given().unwrap().as_str(), "nope");
            }
        }
        assert!(
            checked >= 5 * 4,
            "LISTEN_ADDRESS, BACKEND_ADDRESS, Allow, Deny at least"
        );
        // Numbers stay numbers.
        assert_eq!(with(name::LISTEN_PORT, dword(0)).unwrap_err().given(), None);
    }

    fn multi(entries: &[&str]) -> Option<(u32, Vec<u8>)> {
        let mut d: Vec<u8> = Vec::new();
        for s in entries {
            d.extend(s.encode_utf16().flat_map(u16::to_le_bytes));
            d.extend([0, 0]);
        }
        d.extend([0, 0]);
        Some((REG_MULTI_SZ, d))
    }

    /// Docs audit (s3), defect 3: a NAT64 prefix that parses but is
    /// refused (a length RFC 6052 does not allow, an IPv4 prefix) was
    /// named by its index: `rejected (0)`, `rejected (1)`.
    #[test]
    fn refused_nat64_prefixes_are_named_by_their_text() {
        let r = with(name::NAT64_PREFIXES, multi(&["64:ff9b::/95"])).unwrap_err();
        assert_eq!(
            alloc::format!("{r}"),
            alloc::format!(
                "registry value Nat64Prefixes rejected (\"64:ff9b::/95\"): {}",
                gate_core::nat64::PREFIX_EXPECTED
            )
        );
        let r = with(name::NAT64_PREFIXES, multi(&["64:ff9b::/96", "10.0.0.0/8"])).unwrap_err();
        assert_eq!(r.given().unwrap().as_str(), "10.0.0.0/8");
        // As given: spaces kept (the entry is trimmed only to be parsed).
        let r = with(name::NAT64_PREFIXES, multi(&[" 2001:db8::/33 "])).unwrap_err();
        assert_eq!(r.given().unwrap().as_str(), " 2001:db8::/33 ");
        assert!(with(
            name::NAT64_PREFIXES,
            multi(&["64:ff9b::/96", "2001:db8::/32"])
        )
        .is_ok());
    }

    /// Every list value (every REG_MULTI_SZ of [`VALUES`]), over CIDR
    /// entries of every family and prefix length: a list within its
    /// length limit is either taken whole, or refused naming one of its
    /// entries by its text, never by an index. A list one entry too long
    /// is refused by its number of entries (a count, not text); one at
    /// the limit is taken.
    #[test]
    fn every_list_refusal_names_an_entry_or_the_count() {
        let mut entries: Vec<alloc::string::String> = Vec::new();
        for len in 0..=32 {
            entries.push(alloc::format!("10.1.2.3/{len}"));
            entries.push(alloc::format!("::ffff:10.1.2.3/{}", 96 + len));
        }
        for len in 0..=128 {
            entries.push(alloc::format!("64:ff9b::/{len}"));
            entries.push(alloc::format!("2001:db8:1:2::/{len}"));
        }
        for bad in ["10.0.0.0/33", "::/129", "nope", "10.0.0.1", "", " "] {
            entries.push(bad.into());
        }
        let lists: Vec<&ValueSpec> = VALUES.iter().filter(|v| v.ty == RegType::MultiSz).collect();
        assert_eq!(lists.len(), 3, "AllowList, DenyList, Nat64Prefixes");
        let (mut taken, mut refused) = (0, 0);
        for v in &lists {
            for e in &entries {
                // Alone and after a good entry of the same list.
                let good = if v.name == name::NAT64_PREFIXES {
                    "64:ff9b::/96"
                } else {
                    "192.0.2.0/24"
                };
                for list in [alloc::vec![e.as_str()], alloc::vec![good, e.as_str()]] {
                    match with(v.name, multi(&list)) {
                        Ok(_) => taken += 1,
                        Err(r) => {
                            let g = r.given().unwrap_or_else(|| panic!("{list:?}: {r}"));
                            assert_eq!((r.name, g.as_str()), (v.name, e.as_str()), "{r}");
                            refused += 1;
                        }
                    }
                }
            }
            let rule = list_rule(v.name);
            let many: Vec<alloc::string::String> = (0..=rule.max)
                .map(|i| alloc::format!("2001:db8:{:x}::/96", i))
                .collect();
            let all: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
            let r = with(v.name, multi(&all)).unwrap_err();
            assert_eq!(
                (r.name, r.value, r.given()),
                (v.name, all.len() as u64, None)
            );
            assert_eq!(r.problem, rule.too_many);
            assert!(with(v.name, multi(&all[..rule.max])).is_ok(), "{}", v.name);
        }
        // Both outcomes were exercised (the sample is not all good or all bad).
        assert!(
            taken > 100 && refused > 100,
            "{taken} taken, {refused} refused"
        );
    }

    #[test]
    fn link_local_and_self_backends_are_refused() {
        for b in ["[fe80::1]:9000", "[febf::1]:9000", "[FE80::abcd]:80"] {
            let r = with(name::BACKEND_ADDRESS, sz(b, REG_SZ)).unwrap_err();
            assert!(r.problem.contains("link-local"), "{r}");
            assert_eq!(r.given().unwrap().as_str(), b);
        }
        // fec0:: is outside fe80::/10.
        assert!(with(name::BACKEND_ADDRESS, sz("[fec0::1]:9000", REG_SZ)).is_ok());
        let both = |listen: Option<&str>, port: u32, backend: &str| {
            parse(|q| {
                Ok(match q {
                    name::LISTEN_PORT => dword(port),
                    name::LISTEN_ADDRESS => listen.and_then(|l| sz(l, REG_SZ)),
                    name::BACKEND_ADDRESS => sz(backend, REG_SZ),
                    _ => None,
                })
            })
        };
        // Loops: loopback on the wildcard listener's port, or the listen
        // address itself.
        for (listen, backend) in [
            (None, "127.0.0.1:8080"),
            (None, "127.9.9.9:8080"),
            (None, "[::1]:8080"),
            (None, "[::ffff:127.0.0.1]:8080"),
            (Some("0.0.0.0"), "127.0.0.1:8080"),
            (Some("::"), "[::1]:8080"),
            (Some("10.1.2.3"), "10.1.2.3:8080"),
        ] {
            let Err(LoadError::Rejected(r)) = both(listen, 8080, backend) else {
                panic!("{listen:?} {backend}: accepted");
            };
            assert_eq!(r.name, BACKEND_LOOP);
            assert_eq!(r.value, 8080);
            assert_eq!(r.given().unwrap().as_str(), backend);
            let shown = alloc::format!("{r}");
            assert!(
                shown.contains("ListenPort") && shown.contains(backend),
                "{shown}"
            );
        }
        // Not loops: another port, or a loopback backend while the gate
        // listens on one other address only.
        for (listen, backend) in [
            (None, "127.0.0.1:8081"),
            (Some("10.1.2.3"), "127.0.0.1:8080"),
            (Some("127.0.0.1"), "127.0.0.2:8080"),
            (None, "10.1.2.3:8080"),
        ] {
            assert!(both(listen, 8080, backend).is_ok(), "{listen:?} {backend}");
        }
    }

    #[test]
    fn capacity_and_shards_that_do_not_fit_together_say_so() {
        // TableCapacity 1024 alone: the default 64 shards leave 16 slots each.
        let r = with(name::TABLE_CAPACITY, dword(1024)).unwrap_err();
        assert_eq!(r.name, TABLE_COMBINATION);
        assert_eq!(r.value, 16, "the largest TableShards accepted");
        assert!(r.problem.contains("at most TableCapacity/64"), "{r}");
        // With 16 shards it is accepted.
        let ok = parse(|q| {
            Ok(match q {
                name::TABLE_CAPACITY => dword(1024),
                name::TABLE_SHARDS => dword(16),
                _ => None,
            })
        });
        assert!(ok.is_ok());
    }

    fn with2(a: (&str, u32), b: (&str, u32)) -> Result<DriverConfig, Rejected> {
        parse(|q| {
            Ok(if q == a.0 {
                dword(a.1)
            } else if q == b.0 {
                dword(b.1)
            } else {
                None
            })
        })
        .map_err(|e| match e {
            LoadError::Rejected(r) => r,
            LoadError::NoMemory(m) => panic!("no memory: {m:?}"),
        })
    }

    /// Review item 5: a value outside its own range is refused under its
    /// own name, not blamed on the combination (whose advice would then
    /// fail): TableCapacity 512 (with the default TableShards, or with the
    /// TableShards the combination would have advised), 256 with 4 shards,
    /// and TableCapacity 2^23 or TableShards 2048 with a partner that
    /// would not fit. Every power of two below 1024 is covered.
    #[test]
    fn a_value_out_of_its_own_range_is_refused_under_its_own_name_first() {
        for k in 0..10 {
            let cap = 1u32 << k;
            let r = with(name::TABLE_CAPACITY, dword(cap)).unwrap_err();
            assert_eq!(r.name, name::TABLE_CAPACITY, "{cap}: {r}");
            assert_eq!(r.value, u64::from(cap));
            assert!(r.problem.contains("from 1024"), "{r}");
            for shards in [1, 4, 8, 64] {
                let r =
                    with2((name::TABLE_CAPACITY, cap), (name::TABLE_SHARDS, shards)).unwrap_err();
                assert_eq!(r.name, name::TABLE_CAPACITY, "{cap}/{shards}: {r}");
            }
        }
        // Following the message's advice works: 1024, then the
        // combination's own advice (16 shards).
        let r = with(name::TABLE_CAPACITY, dword(1024)).unwrap_err();
        assert_eq!(r.name, TABLE_COMBINATION);
        assert!(with2((name::TABLE_CAPACITY, 1024), (name::TABLE_SHARDS, 16)).is_ok());
        // A shard count out of its range is named too, whatever the capacity.
        let r = with2((name::TABLE_CAPACITY, 1024), (name::TABLE_SHARDS, 2048)).unwrap_err();
        assert_eq!(r.name, name::TABLE_SHARDS, "{r}");
        let r = with2((name::TABLE_CAPACITY, 1 << 23), (name::TABLE_SHARDS, 1024)).unwrap_err();
        assert_eq!(r.name, name::TABLE_CAPACITY, "{r}");
    }
}
