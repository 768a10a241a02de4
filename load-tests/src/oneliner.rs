//! One-line runs without a scenario file (`gate-load run --rate R --duration
//! D --sources N TARGET`, like `wrk2 -R 2000 -d 10s`): the flags become a
//! one-group [`Scenario`], checked by the same rules as a file, with errors
//! naming the flag.

use crate::scenario::{PayloadSpec, Scenario};
use crate::topology;
use anyhow::{bail, Context, Result};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// First source address of one-liners against loopback (127.64.0.1 up).
pub const LOOPBACK_SOURCES: Ipv4Addr = Ipv4Addr::new(127, 64, 0, 1);
/// Last loopback source address one-liners use.
pub const LOOPBACK_SOURCES_END: Ipv4Addr = Ipv4Addr::new(127, 127, 255, 254);
/// First source address inside a `gate-load topology` client namespace.
pub const TOPOLOGY_SOURCES: Ipv4Addr = Ipv4Addr::new(10, 77, 128, 1);

/// A one-line run, as given on the command line.
#[derive(Clone, Debug)]
pub struct OneLiner {
    pub target: SocketAddr,
    /// Connection attempts per second (all sources together).
    pub rate: f64,
    pub duration: Duration,
    /// How many source addresses to use (default: 1, or with `churn` one per
    /// attempt).
    pub sources: Option<u64>,
    /// Explicit source addresses (CIDR, range or address items).
    pub source_range: Option<Vec<String>>,
    /// A fresh source address per attempt.
    pub churn: bool,
    pub connect_timeout_ms: u64,
    pub close: String,
    pub confirm_ms: u64,
    pub payload: Option<PayloadSpec>,
    /// Raw spoofed SYNs instead of connect() (see [`crate::synflood`]).
    pub syn_flood: bool,
    /// Sources drawn at random (a fixed sequence) instead of in turn.
    pub random_sources: bool,
    pub name: String,
}

/// Parses a duration: `10s`, `500ms`, `2m`, `1m30s` (humantime), or a bare
/// number of seconds (`2.5`).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<f64>() {
        if !secs.is_finite() || secs <= 0.0 {
            bail!("duration {s:?} must be positive");
        }
        return Ok(Duration::from_secs_f64(secs));
    }
    humantime::parse_duration(t)
        .map_err(|e| anyhow::anyhow!("duration {s:?}: {e} (e.g. 10s, 500ms, 2m, or seconds)"))
}

/// Parses a byte count: a number with an optional suffix, `k`/`K`/`KiB`
/// (1024), `M`/`MiB`, `G`/`GiB`, or decimal `kB`/`MB`/`GB` (1000).
pub fn parse_bytes(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        anyhow::anyhow!(
            "byte count {s:?} must be a whole number with an optional unit (k, M, G, kB, MB, GB)"
        )
    })?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "k" | "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "kB" | "KB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        u => bail!(
            "byte count {s:?}: unknown unit {u:?} (k, M, G = 1024-based; kB, MB, GB = 1000-based)"
        ),
    };
    n.checked_mul(mult)
        .with_context(|| format!("byte count {s:?} is too large"))
}

/// [`parse_bytes`] for clap's `value_parser`.
pub fn parse_bytes_arg(s: &str) -> std::result::Result<u64, String> {
    parse_bytes(s).map_err(|e| e.to_string())
}

impl OneLiner {
    /// The source items (CIDR/range strings) for `count` addresses.
    fn source_items(&self, count: u64) -> Result<Vec<String>> {
        if let Some(r) = &self.source_range {
            return Ok(r.clone());
        }
        let first = match self.target.ip() {
            IpAddr::V4(a) if a.is_loopback() => {
                let room =
                    u64::from(u32::from(LOOPBACK_SOURCES_END) - u32::from(LOOPBACK_SOURCES)) + 1;
                if count > room {
                    bail!("--sources {count}: loopback one-liners have {room} source addresses ({LOOPBACK_SOURCES}-{LOOPBACK_SOURCES_END}); give --source-range");
                }
                LOOPBACK_SOURCES
            }
            IpAddr::V6(a) if a.is_loopback() => {
                if count > 1 {
                    bail!("--sources {count}: an IPv6 loopback target has one source, ::1; give --source-range with local IPv6 addresses");
                }
                return Ok(vec!["::1".into()]);
            }
            IpAddr::V4(_) if topology::in_own_namespace().is_some() => {
                if count > u64::from(topology::MAX_ADDRESSES) {
                    bail!(
                        "--sources {count}: a topology client namespace holds at most {} addresses",
                        topology::MAX_ADDRESSES
                    );
                }
                TOPOLOGY_SOURCES
            }
            _ => bail!(
                "--sources: for target {} give --source-range with addresses local to this machine \
                 (defaults exist only for loopback and gate-load topology namespaces)",
                self.target
            ),
        };
        let last = Ipv4Addr::from(u32::from(first) + u32::try_from(count - 1).unwrap_or(u32::MAX));
        Ok(vec![if count == 1 {
            first.to_string()
        } else {
            format!("{first}-{last}")
        }])
    }

    /// The scenario these flags describe.
    pub fn scenario(&self) -> Result<Scenario> {
        if !self.rate.is_finite() || self.rate <= 0.0 {
            bail!(
                "--rate {} must be a positive number of connections per second",
                self.rate
            );
        }
        let secs = self.duration.as_secs_f64();
        if secs <= 0.0 || secs > crate::scenario::MAX_GROUP_SECONDS {
            bail!(
                "--duration {secs} s must be within 0..={} s",
                crate::scenario::MAX_GROUP_SECONDS
            );
        }
        let attempts = (self.rate * secs).floor() as u64;
        if attempts == 0 {
            bail!(
                "--rate {} for --duration {secs} s makes no attempt",
                self.rate
            );
        }
        let count = match (self.sources, self.churn) {
            (Some(0), _) => bail!("--sources 0: give at least one source address"),
            (Some(n), true) if n < attempts => {
                bail!("--sources {n} with --churn: a fresh address per attempt needs {attempts}")
            }
            (Some(n), _) => n,
            (None, true) => attempts,
            (None, false) => 1,
        };
        let items = self.source_items(count)?;
        let mut group = toml::Table::new();
        group.insert("name".into(), self.name.clone().into());
        group.insert(
            "sources".into(),
            toml::Value::Array(items.into_iter().map(toml::Value::from).collect()),
        );
        group.insert("rate".into(), self.rate.into());
        group.insert("duration_s".into(), secs.into());
        group.insert("churn".into(), self.churn.into());
        group.insert("random_sources".into(), self.random_sources.into());
        if self.syn_flood {
            group.insert("kind".into(), "syn-flood".into());
        }
        let mut top = toml::Table::new();
        top.insert("name".into(), self.name.clone().into());
        top.insert("target".into(), self.target.to_string().into());
        top.insert(
            "connect_timeout_ms".into(),
            i64::try_from(self.connect_timeout_ms)
                .unwrap_or(i64::MAX)
                .into(),
        );
        top.insert("close".into(), self.close.clone().into());
        top.insert(
            "confirm_ms".into(),
            i64::try_from(self.confirm_ms).unwrap_or(i64::MAX).into(),
        );
        top.insert(
            "group".into(),
            toml::Value::Array(vec![toml::Value::Table(group)]),
        );
        let text = toml::to_string(&top).context("one-liner scenario")?;
        let mut sc = Scenario::parse(&text).context("the run's flags")?;
        // With explicit sources and no --sources, each source is used in turn.
        if let (Some(n), Some(_)) = (self.sources, &self.source_range) {
            if let Some(g) = sc.groups.first() {
                if g.sources.len() < n {
                    bail!(
                        "--sources {n}: --source-range holds only {} addresses",
                        g.sources.len()
                    );
                }
            }
        }
        if self.payload.is_some() && self.confirm_ms != 0 {
            bail!(
                "--confirm-ms {} and --payload exclude each other",
                self.confirm_ms
            );
        }
        sc.payload = self.payload.clone();
        Ok(sc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(target: &str) -> OneLiner {
        OneLiner {
            target: target.parse().unwrap(),
            rate: 100.0,
            duration: Duration::from_secs(2),
            sources: Some(10),
            source_range: None,
            churn: false,
            connect_timeout_ms: 1000,
            close: "rst".into(),
            confirm_ms: 0,
            payload: None,
            syn_flood: false,
            random_sources: false,
            name: "run".into(),
        }
    }

    #[test]
    fn flags_become_a_one_group_scenario() {
        let sc = one("127.0.0.1:8080").scenario().unwrap();
        let g = &sc.groups[0];
        assert_eq!(g.count, 200);
        assert_eq!(g.sources.len(), 10);
        assert_eq!(g.source(0), "127.64.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(g.source(9), "127.64.0.10".parse::<IpAddr>().unwrap());
        assert_eq!(g.source(10), g.source(0));
        let mut c = one("127.0.0.1:8080");
        c.sources = None;
        c.churn = true;
        assert_eq!(c.scenario().unwrap().groups[0].sources.len(), 200);
    }

    #[test]
    fn bad_flags_are_named() {
        let mut c = one("127.0.0.1:1");
        c.rate = 0.0;
        assert!(c.scenario().unwrap_err().to_string().contains("--rate 0"));
        let mut c = one("127.0.0.1:1");
        c.sources = Some(5);
        c.churn = true;
        let e = c.scenario().unwrap_err().to_string();
        assert!(e.contains("--sources 5") && e.contains("200"), "{e}");
        let e = one("[::1]:1").scenario().unwrap_err().to_string();
        assert!(e.contains("--sources 10") && e.contains("::1"), "{e}");
        let e = format!("{:#}", {
            let mut c = one("127.0.0.1:1");
            c.close = "slam".into();
            c.scenario().unwrap_err()
        });
        assert!(e.contains("slam"), "{e}");
    }

    #[test]
    fn durations_and_byte_counts() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2.5").unwrap(), Duration::from_millis(2500));
        assert!(parse_duration("-1").unwrap_err().to_string().contains("-1"));
        assert!(parse_duration("ten")
            .unwrap_err()
            .to_string()
            .contains("ten"));
        assert_eq!(parse_bytes("64k").unwrap(), 65536);
        assert_eq!(parse_bytes("1MB").unwrap(), 1_000_000);
        assert_eq!(parse_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert!(parse_bytes("1X")
            .unwrap_err()
            .to_string()
            .contains("\"1X\""));
    }
}
