//! Scenario files (TOML): client groups with source addresses, rates and
//! durations, the gate configuration expected on the target, and the
//! tolerance `validate` applies. Parsing checks every field and names the
//! bad one.

use crate::addrs::AddrSet;
use crate::report::PayloadMode;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// Sources as written: one string or a list.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum SourcesSpec {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct GroupFile {
    name: String,
    sources: SourcesSpec,
    rate: Option<f64>,
    rate_per_source: Option<f64>,
    duration_s: f64,
    #[serde(default)]
    start_s: f64,
    #[serde(default)]
    churn: bool,
    max_connections: Option<u64>,
    kind: Option<String>,
    #[serde(default)]
    random_sources: bool,
    #[serde(default)]
    seed: u64,
}

/// What a group's attempts are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupKind {
    /// Real connect() calls (the kernel's handshake), with the payload if any.
    Connect,
    /// Raw SYNs from spoofed sources (see [`crate::synflood`]).
    SynFlood,
}

/// The gate's expected configuration: per-key and global token buckets.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    /// Tokens per second added to each key's bucket.
    pub per_key_rate: f64,
    /// Capacity of each key's bucket (a new key starts full).
    pub per_key_burst: f64,
    /// IPv4 prefix length that forms a key (32 = one key per address).
    #[serde(default = "default_v4_prefix")]
    pub ipv4_prefix: u8,
    /// IPv6 prefix length that forms a key.
    #[serde(default = "default_v6_prefix")]
    pub ipv6_prefix: u8,
    /// Global tokens per second (absent: no global cap).
    pub global_rate: Option<f64>,
    /// Global bucket capacity (defaults to `global_rate`).
    pub global_burst: Option<f64>,
}

fn default_v4_prefix() -> u8 {
    32
}
fn default_v6_prefix() -> u8 {
    64
}

/// How far observed accepted counts may stray from the model.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tolerance {
    /// Allowed relative error, e.g. 0.05 for 5 %.
    #[serde(default = "default_relative")]
    pub relative: f64,
    /// Allowed absolute error in connections, added to the relative one.
    #[serde(default = "default_absolute")]
    pub absolute: u64,
}

fn default_relative() -> f64 {
    0.05
}
fn default_absolute() -> u64 {
    3
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            relative: default_relative(),
            absolute: default_absolute(),
        }
    }
}

/// `[payload]`: data exchanged on every accepted connection.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct PayloadFile {
    mode: String,
    request_bytes: Option<u64>,
    response_bytes: Option<u64>,
    timeout_ms: Option<u64>,
}

/// The data exchange that follows each completed handshake (see
/// [`crate::payload`] for the wire format the listener answers).
#[derive(Clone, Debug, PartialEq)]
pub struct PayloadSpec {
    pub mode: PayloadMode,
    /// Bytes each connection sends (request-response: at least the 8-byte
    /// header).
    pub request_bytes: u64,
    /// Bytes each connection reads back: the response size (request-response),
    /// the request size (echo), 0 (bulk).
    pub response_bytes: u64,
    /// Longest an exchange may take after the handshake.
    pub timeout: Duration,
}

/// Largest request or response of one connection (1 GiB).
pub const MAX_PAYLOAD_BYTES: u64 = 1 << 30;

impl PayloadSpec {
    /// Checks a payload description; `what` names its source in errors
    /// (`payload` for a scenario file, the flag for the command line).
    pub fn new(
        mode: PayloadMode,
        request_bytes: Option<u64>,
        response_bytes: Option<u64>,
        timeout_ms: Option<u64>,
        names: [&str; 3],
    ) -> Result<Self> {
        let [req_name, resp_name, timeout_name] = names;
        let timeout = Duration::from_millis(timeout_ms.unwrap_or(10_000));
        if timeout.is_zero() || timeout > Duration::from_secs(3600) {
            bail!(
                "{timeout_name} = {} must be 1..=3600000",
                timeout.as_millis()
            );
        }
        let default_req = match mode {
            PayloadMode::RequestResponse => 64,
            PayloadMode::Echo => 1024,
            PayloadMode::Bulk => 100_000_000,
        };
        let request_bytes = request_bytes.unwrap_or(default_req);
        if request_bytes == 0 || request_bytes > MAX_PAYLOAD_BYTES {
            bail!("{req_name} = {request_bytes} must be 1..={MAX_PAYLOAD_BYTES}");
        }
        let response_bytes = match mode {
            PayloadMode::RequestResponse => {
                if request_bytes < crate::payload::HEADER_BYTES {
                    bail!(
                        "{req_name} = {request_bytes}: a request-response request holds an {}-byte header, so it needs at least {} bytes",
                        crate::payload::HEADER_BYTES,
                        crate::payload::HEADER_BYTES
                    );
                }
                let r = response_bytes.unwrap_or(1024);
                if r == 0 || r > MAX_PAYLOAD_BYTES {
                    bail!("{resp_name} = {r} must be 1..={MAX_PAYLOAD_BYTES}");
                }
                r
            }
            PayloadMode::Echo | PayloadMode::Bulk => {
                if let Some(r) = response_bytes {
                    bail!(
                        "{resp_name} = {r}: {} mode has no separate response size ({})",
                        mode.name(),
                        if mode == PayloadMode::Echo {
                            "the echo is the request"
                        } else {
                            "bulk only sends"
                        }
                    );
                }
                if mode == PayloadMode::Echo {
                    request_bytes
                } else {
                    0
                }
            }
        };
        Ok(PayloadSpec {
            mode,
            request_bytes,
            response_bytes,
            timeout,
        })
    }
}

/// Parses a payload mode name.
pub fn parse_payload_mode(what: &str, s: &str) -> Result<PayloadMode> {
    match s {
        "request-response" | "rr" => Ok(PayloadMode::RequestResponse),
        "echo" => Ok(PayloadMode::Echo),
        "bulk" => Ok(PayloadMode::Bulk),
        o => bail!("{what} = {o:?} must be \"request-response\" (or \"rr\"), \"echo\" or \"bulk\""),
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: String,
    target: Option<String>,
    connect_timeout_ms: Option<u64>,
    close: Option<String>,
    confirm_ms: Option<u64>,
    gate: Option<GateConfig>,
    payload: Option<PayloadFile>,
    #[serde(default)]
    tolerance: Tolerance,
    #[serde(default)]
    group: Vec<GroupFile>,
}

/// How an accepted connection is closed by the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseMode {
    /// SO_LINGER 0: an RST, no TIME_WAIT on the client.
    Rst,
    /// An orderly FIN close (leaves TIME_WAIT on the client).
    Fin,
}

/// One client group, checked and resolved.
#[derive(Clone, Debug)]
pub struct Group {
    pub name: String,
    pub sources: AddrSet,
    /// Total attempts per second for the group.
    pub rate: f64,
    pub start: Duration,
    pub duration: Duration,
    pub churn: bool,
    /// Number of attempts the group makes.
    pub count: u64,
    pub kind: GroupKind,
    /// Each attempt's source is drawn at random from `sources` (a fixed
    /// sequence given by `seed`, so the model sees the same addresses).
    pub random: bool,
    pub seed: u64,
}

/// SplitMix64: a well-mixed 64-bit hash of `x` (Steele, Lea, Flood 2014).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Group {
    /// Intended start of attempt `i`, from the run's start.
    pub fn intended_ns(&self, i: u64) -> u64 {
        let start = u64::try_from(self.start.as_nanos()).unwrap_or(u64::MAX);
        // Computed in f64: exact to well under a microsecond for any
        // realistic run, and monotonic in `i`.
        start.saturating_add((i as f64 * 1e9 / self.rate) as u64)
    }

    /// Source address of attempt `i`: the sources in turn, or with
    /// `random_sources` one drawn by a hash of `(seed, i)`.
    pub fn source(&self, i: u64) -> IpAddr {
        if self.random {
            let n = self.sources.len().max(1);
            self.sources.nth(splitmix64(i ^ splitmix64(self.seed)) % n)
        } else {
            self.sources.nth(i)
        }
    }
}

/// A checked scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub target: Option<SocketAddr>,
    pub connect_timeout: Duration,
    pub close: CloseMode,
    /// After a completed handshake, wait this long for the server to close
    /// (a post-accept rejection, as HAProxy does); zero: don't wait.
    pub confirm: Duration,
    pub gate: Option<GateConfig>,
    /// Data exchanged on each accepted connection (none: close at once).
    pub payload: Option<PayloadSpec>,
    pub tolerance: Tolerance,
    pub groups: Vec<Group>,
}

/// Longest run a scenario may ask for: runs are bounded.
pub const MAX_GROUP_SECONDS: f64 = 3600.0;
/// Most attempts one group may make.
pub const MAX_GROUP_CONNECTIONS: u64 = 100_000_000;

fn positive(what: &str, v: f64) -> Result<f64> {
    if !v.is_finite() || v <= 0.0 {
        bail!("{what} = {v} must be a positive number");
    }
    Ok(v)
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading scenario {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("scenario {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let f: ScenarioFile = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let target = match &f.target {
            None => None,
            Some(t) => Some(
                t.parse::<SocketAddr>()
                    .map_err(|_| anyhow::anyhow!("target = {t:?} is not an address:port"))?,
            ),
        };
        let connect_timeout = Duration::from_millis(f.connect_timeout_ms.unwrap_or(1000));
        if connect_timeout.is_zero() || connect_timeout > Duration::from_secs(120) {
            bail!(
                "connect_timeout_ms = {} must be 1..=120000",
                connect_timeout.as_millis()
            );
        }
        let close = match f.close.as_deref() {
            None | Some("rst") => CloseMode::Rst,
            Some("fin") => CloseMode::Fin,
            Some(o) => bail!("close = {o:?} must be \"rst\" or \"fin\""),
        };
        let confirm = Duration::from_millis(f.confirm_ms.unwrap_or(0));
        if confirm > Duration::from_secs(60) {
            bail!("confirm_ms = {} must be at most 60000", confirm.as_millis());
        }
        if let Some(g) = &f.gate {
            positive("gate.per_key_rate", g.per_key_rate)?;
            if !g.per_key_burst.is_finite() || g.per_key_burst < 1.0 {
                bail!(
                    "gate.per_key_burst = {} must be at least 1",
                    g.per_key_burst
                );
            }
            if g.ipv4_prefix > 32 {
                bail!("gate.ipv4_prefix = {} must be 0..=32", g.ipv4_prefix);
            }
            if g.ipv6_prefix > 128 {
                bail!("gate.ipv6_prefix = {} must be 0..=128", g.ipv6_prefix);
            }
            if let Some(r) = g.global_rate {
                positive("gate.global_rate", r)?;
            }
            if let Some(b) = g.global_burst {
                if g.global_rate.is_none() {
                    bail!("gate.global_burst = {b} needs gate.global_rate");
                }
                if !b.is_finite() || b < 1.0 {
                    bail!("gate.global_burst = {b} must be at least 1");
                }
            }
        }
        let payload = match &f.payload {
            None => None,
            Some(p) => {
                let mode = parse_payload_mode("payload.mode", &p.mode)?;
                Some(PayloadSpec::new(
                    mode,
                    p.request_bytes,
                    p.response_bytes,
                    p.timeout_ms,
                    [
                        "payload.request_bytes",
                        "payload.response_bytes",
                        "payload.timeout_ms",
                    ],
                )?)
            }
        };
        if payload.is_some() && !confirm.is_zero() {
            bail!(
                "confirm_ms = {} and [payload] exclude each other: the payload exchange shows a post-accept close",
                confirm.as_millis()
            );
        }
        let t = &f.tolerance;
        if !t.relative.is_finite() || !(0.0..=1.0).contains(&t.relative) {
            bail!("tolerance.relative = {} must be within 0..=1", t.relative);
        }
        if f.group.is_empty() {
            bail!("no [[group]]: a scenario needs at least one client group");
        }
        let mut groups = Vec::new();
        for g in &f.group {
            groups.push(resolve_group(g)?);
        }
        for (i, g) in groups.iter().enumerate() {
            if groups[..i].iter().any(|o| o.name == g.name) {
                bail!("group name {:?} is used twice", g.name);
            }
        }
        Ok(Scenario {
            name: f.name,
            target,
            connect_timeout,
            close,
            confirm,
            gate: f.gate,
            payload,
            tolerance: f.tolerance,
            groups,
        })
    }

    /// Total attempts of all groups.
    pub fn total_attempts(&self) -> u64 {
        self.groups.iter().map(|g| g.count).sum()
    }

    /// When the last attempt is due, from the run's start.
    pub fn last_due(&self) -> Duration {
        self.groups
            .iter()
            .map(|g| Duration::from_nanos(g.intended_ns(g.count.saturating_sub(1))))
            .max()
            .unwrap_or_default()
    }
}

fn resolve_group(g: &GroupFile) -> Result<Group> {
    let ctx = |field: &str| format!("group {:?}: {field}", g.name);
    if g.name.is_empty() {
        bail!("group name must not be empty");
    }
    let items: Vec<String> = match &g.sources {
        SourcesSpec::One(s) => vec![s.clone()],
        SourcesSpec::Many(v) => v.clone(),
    };
    let sources = AddrSet::parse(&items).with_context(|| ctx("sources"))?;
    let n = sources.len();
    let rate = match (g.rate, g.rate_per_source) {
        (Some(r), None) => positive(&ctx("rate"), r)?,
        (None, Some(r)) => {
            if g.churn {
                bail!(
                    "{}: churn needs a total `rate`, not rate_per_source",
                    ctx("churn")
                );
            }
            positive(&ctx("rate_per_source"), r)? * n as f64
        }
        (Some(_), Some(_)) => bail!(
            "{}: give either rate or rate_per_source, not both",
            ctx("rate")
        ),
        (None, None) => bail!("{}: give rate or rate_per_source", ctx("rate")),
    };
    let duration_s = positive(&ctx("duration_s"), g.duration_s)?;
    if duration_s > MAX_GROUP_SECONDS {
        bail!(
            "{} = {duration_s} must be at most {MAX_GROUP_SECONDS}",
            ctx("duration_s")
        );
    }
    if !g.start_s.is_finite() || !(0.0..=MAX_GROUP_SECONDS).contains(&g.start_s) {
        bail!(
            "{} = {} must be within 0..={MAX_GROUP_SECONDS}",
            ctx("start_s"),
            g.start_s
        );
    }
    let mut count = (duration_s * rate).floor() as u64;
    if let Some(m) = g.max_connections {
        count = count.min(m);
    }
    if count == 0 {
        bail!(
            "{}: rate {rate}/s for {duration_s} s makes no attempt",
            ctx("duration_s")
        );
    }
    if count > MAX_GROUP_CONNECTIONS {
        bail!(
            "{}: {count} attempts exceed the bound of {MAX_GROUP_CONNECTIONS}",
            ctx("rate")
        );
    }
    if g.churn && count > n {
        bail!(
            "{}: churn needs a fresh address per attempt: {count} attempts but sources hold {n} addresses",
            ctx("sources")
        );
    }
    let kind = match g.kind.as_deref() {
        None | Some("connect") => GroupKind::Connect,
        Some("syn-flood") => GroupKind::SynFlood,
        Some(o) => bail!(
            "{} = {o:?} must be \"connect\" or \"syn-flood\"",
            ctx("kind")
        ),
    };
    if kind == GroupKind::SynFlood && sources.has_family(true) {
        bail!("{}: a syn-flood group sends IPv4 SYNs only", ctx("sources"));
    }
    if g.random_sources && g.churn {
        bail!(
            "{}: random_sources and churn exclude each other",
            ctx("random_sources")
        );
    }
    Ok(Group {
        kind,
        random: g.random_sources,
        seed: g.seed,
        name: g.name.clone(),
        sources,
        rate,
        start: Duration::from_secs_f64(g.start_s),
        duration: Duration::from_secs_f64(duration_s),
        churn: g.churn,
        count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
name = "t"
target = "127.0.0.1:9"
[gate]
per_key_rate = 10
per_key_burst = 5
[[group]]
name = "a"
sources = "127.1.0.0/29"
rate_per_source = 10
duration_s = 2
"#;

    #[test]
    fn parses_and_resolves() {
        let s = Scenario::parse(OK).unwrap();
        assert_eq!(s.groups[0].sources.len(), 6);
        assert_eq!(s.groups[0].count, 120);
        assert_eq!(s.groups[0].intended_ns(60), 1_000_000_000);
        assert_eq!(s.gate.unwrap().ipv4_prefix, 32);
    }

    #[test]
    fn bad_fields_are_named() {
        let e = format!(
            "{:#}",
            Scenario::parse(&OK.replace("rate_per_source = 10", "rate_per_source = -1"))
                .unwrap_err()
        );
        assert!(e.contains("rate_per_source = -1"), "{e}");
        let e = format!(
            "{:#}",
            Scenario::parse(&OK.replace("duration_s = 2", "duraton_s = 2")).unwrap_err()
        );
        assert!(e.contains("duraton_s"), "{e}");
        let e = format!(
            "{:#}",
            Scenario::parse(&OK.replace("127.0.0.1:9", "nowhere")).unwrap_err()
        );
        assert!(e.contains("nowhere"), "{e}");
        let e = format!(
            "{:#}",
            Scenario::parse(&OK.replace("127.1.0.0/29", "127.1.0.0/33")).unwrap_err()
        );
        assert!(e.contains("127.1.0.0/33"), "{e}");
        let churn = OK.replace("rate_per_source = 10", "rate = 100\nchurn = true");
        let e = format!("{:#}", Scenario::parse(&churn).unwrap_err());
        assert!(e.contains("churn") && e.contains("200 attempts"), "{e}");
    }
}
