//! Run results: per-group outcome counts, HdrHistograms of handshake latency
//! per outcome (serialized as V2-deflate base64 so reports from several
//! client machines merge exactly), per-second outcome buckets, the JSON form,
//! `merge`, and the readable summary.

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// What became of one connection attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The handshake completed (and, with a confirm window, the server kept
    /// the connection open).
    Accepted = 0,
    /// The target answered the SYN with an RST.
    Refused = 1,
    /// No SYN-ACK within the client's patience (dropped or held).
    TimedOut = 2,
    /// The handshake completed but the server closed or reset the connection
    /// within the confirm window (a post-accept rejection).
    Closed = 3,
    /// Any other error (the errno is counted by name).
    Other = 4,
}

pub const OUTCOMES: [Outcome; 5] = [
    Outcome::Accepted,
    Outcome::Refused,
    Outcome::TimedOut,
    Outcome::Closed,
    Outcome::Other,
];

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Refused => "refused",
            Outcome::TimedOut => "timed_out",
            Outcome::Closed => "closed",
            Outcome::Other => "other",
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Largest latency recorded (microseconds); larger values saturate.
pub const MAX_LATENCY_US: u64 = 120_000_000;

pub fn new_histogram() -> Histogram<u64> {
    // 1 us .. 120 s at 3 significant digits; the bounds are constants that
    // hdrhistogram accepts, so this cannot fail.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"))
    })
}

/// A histogram that serializes as a base64 V2-deflate string.
#[derive(Clone, Debug)]
pub struct Hist(pub Histogram<u64>);

impl Default for Hist {
    fn default() -> Self {
        Hist(new_histogram())
    }
}

impl Serialize for Hist {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.0, &mut buf)
            .map_err(|e| serde::ser::Error::custom(format!("histogram: {e:?}")))?;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(buf))
    }
}

impl<'de> Deserialize<'de> for Hist {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("histogram base64: {e}")))?;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| serde::de::Error::custom(format!("histogram data: {e:?}")))?;
        Ok(Hist(h))
    }
}

/// Outcome counts by name.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counts {
    pub accepted: u64,
    pub refused: u64,
    pub timed_out: u64,
    pub closed: u64,
    pub other: u64,
}

impl Counts {
    pub fn get(&self, o: Outcome) -> u64 {
        match o {
            Outcome::Accepted => self.accepted,
            Outcome::Refused => self.refused,
            Outcome::TimedOut => self.timed_out,
            Outcome::Closed => self.closed,
            Outcome::Other => self.other,
        }
    }
    pub fn bump(&mut self, o: Outcome) {
        let c = match o {
            Outcome::Accepted => &mut self.accepted,
            Outcome::Refused => &mut self.refused,
            Outcome::TimedOut => &mut self.timed_out,
            Outcome::Closed => &mut self.closed,
            Outcome::Other => &mut self.other,
        };
        *c = c.saturating_add(1);
    }
    pub fn total(&self) -> u64 {
        OUTCOMES.iter().map(|o| self.get(*o)).sum()
    }
    fn add(&mut self, o: &Counts) {
        self.accepted += o.accepted;
        self.refused += o.refused;
        self.timed_out += o.timed_out;
        self.closed += o.closed;
        self.other += o.other;
    }
}

/// One client group's results.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupReport {
    pub name: String,
    /// Attempts scheduled (and made).
    pub attempted: u64,
    pub counts: Counts,
    /// Errors counted under `other`, by errno name.
    pub errors: BTreeMap<String, u64>,
    /// Latency from each attempt's intended start to its outcome, in
    /// microseconds (coordinated-omission corrected), per outcome name.
    pub latency_us: BTreeMap<String, Hist>,
    /// Handshake time of accepted attempts from the actual connect() call.
    pub service_us: Hist,
    /// Per second of intended start: [accepted, refused, timed_out, closed, other].
    pub per_second: Vec<[u64; 5]>,
}

impl GroupReport {
    pub fn new(name: &str, attempted: u64, seconds: usize) -> Self {
        let latency_us = OUTCOMES
            .iter()
            .map(|o| (o.name().to_string(), Hist::default()))
            .collect();
        GroupReport {
            name: name.to_string(),
            attempted,
            counts: Counts::default(),
            errors: BTreeMap::new(),
            latency_us,
            service_us: Hist::default(),
            per_second: vec![[0; 5]; seconds],
        }
    }

    pub fn latency(&self, o: Outcome) -> Option<&Histogram<u64>> {
        self.latency_us.get(o.name()).map(|h| &h.0)
    }
}

/// One generator run (a report merged from several machines has several).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunInfo {
    pub host: String,
    pub started_unix_ms: u64,
    pub wall_s: f64,
    /// Largest delay between an attempt's intended and actual start.
    pub max_lag_us: u64,
    /// Attempts started more than 1 ms after their intended time.
    pub late_attempts: u64,
    /// CPU time of the generator thread.
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
}

/// A whole report, as written to JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub format: String,
    pub scenario: String,
    pub target: String,
    pub runs: Vec<RunInfo>,
    pub groups: Vec<GroupReport>,
}

pub const FORMAT: &str = "gate-load-report/1";

impl Report {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading report {}", path.display()))?;
        let r: Report = serde_json::from_str(&text)
            .with_context(|| format!("report {} is not a gate-load report", path.display()))?;
        if r.format != FORMAT {
            bail!(
                "report {}: format = {:?}, expected {FORMAT:?}",
                path.display(),
                r.format
            );
        }
        Ok(r)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    pub fn group(&self, name: &str) -> Option<&GroupReport> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// Merges reports of the same scenario from several client runs: counts
    /// and histograms add up, per-second buckets align on wall-clock seconds.
    pub fn merge(reports: &[Report]) -> Result<Report> {
        let Some(first) = reports.first() else {
            bail!("merge needs at least one report");
        };
        for r in reports {
            if r.scenario != first.scenario {
                bail!(
                    "cannot merge scenario {:?} with scenario {:?}",
                    r.scenario,
                    first.scenario
                );
            }
        }
        let t0 = reports
            .iter()
            .flat_map(|r| r.runs.iter().map(|x| x.started_unix_ms))
            .min()
            .unwrap_or(0);
        let mut out = Report {
            format: FORMAT.to_string(),
            scenario: first.scenario.clone(),
            target: first.target.clone(),
            runs: Vec::new(),
            groups: Vec::new(),
        };
        for r in reports {
            let start = r.runs.iter().map(|x| x.started_unix_ms).min().unwrap_or(t0);
            let shift = usize::try_from((start - t0) / 1000).unwrap_or(0);
            out.runs.extend(r.runs.iter().cloned());
            for g in &r.groups {
                let idx = match out.groups.iter().position(|o| o.name == g.name) {
                    Some(i) => i,
                    None => {
                        out.groups.push(GroupReport::new(&g.name, 0, 0));
                        out.groups.len() - 1
                    }
                };
                let Some(m) = out.groups.get_mut(idx) else {
                    continue;
                };
                m.attempted += g.attempted;
                m.counts.add(&g.counts);
                for (k, v) in &g.errors {
                    *m.errors.entry(k.clone()).or_insert(0) += v;
                }
                for (k, h) in &g.latency_us {
                    let e = m.latency_us.entry(k.clone()).or_default();
                    e.0.add(&h.0)
                        .map_err(|e| anyhow::anyhow!("histogram {k} of group {}: {e:?}", g.name))?;
                }
                m.service_us
                    .0
                    .add(&g.service_us.0)
                    .map_err(|e| anyhow::anyhow!("service histogram of {}: {e:?}", g.name))?;
                if m.per_second.len() < g.per_second.len() + shift {
                    m.per_second.resize(g.per_second.len() + shift, [0; 5]);
                }
                for (i, b) in g.per_second.iter().enumerate() {
                    if let Some(dst) = m.per_second.get_mut(i + shift) {
                        for (d, s) in dst.iter_mut().zip(b.iter()) {
                            *d += s;
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// A readable summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "scenario {:?} against {} ({} run{})",
            self.scenario,
            self.target,
            self.runs.len(),
            if self.runs.len() == 1 { "" } else { "s" }
        );
        for r in &self.runs {
            let _ = writeln!(
                s,
                "  run on {}: {:.2} s, generator cpu user {:.2} s system {:.2} s, max start lag {:.1} ms, {} attempts late >1 ms",
                r.host,
                r.wall_s,
                r.cpu_user_s,
                r.cpu_system_s,
                r.max_lag_us as f64 / 1000.0,
                r.late_attempts
            );
        }
        let _ = writeln!(
            s,
            "  {:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}   latency from intended start (ms) p50/p99/max",
            "group", "attempted", "accepted", "refused", "timed_out", "closed", "other"
        );
        for g in &self.groups {
            let c = &g.counts;
            let _ = write!(
                s,
                "  {:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  ",
                g.name, g.attempted, c.accepted, c.refused, c.timed_out, c.closed, c.other
            );
            for o in OUTCOMES {
                if let Some(h) = g.latency(o).filter(|h| !h.is_empty()) {
                    let _ = write!(
                        s,
                        " {}: {:.3}/{:.3}/{:.3}",
                        o.name(),
                        h.value_at_quantile(0.5) as f64 / 1000.0,
                        h.value_at_quantile(0.99) as f64 / 1000.0,
                        h.max() as f64 / 1000.0
                    );
                }
            }
            let _ = writeln!(s);
            if !g.errors.is_empty() {
                let _ = writeln!(s, "  {:<16} other errors: {:?}", "", g.errors);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(start_ms: u64, acc: u64) -> Report {
        let mut g = GroupReport::new("g", acc, 2);
        for i in 0..acc {
            g.counts.bump(Outcome::Accepted);
            g.latency_us
                .get_mut("accepted")
                .unwrap()
                .0
                .record(100 + i)
                .unwrap();
            g.per_second[0][0] += 1;
        }
        Report {
            format: FORMAT.into(),
            scenario: "s".into(),
            target: "127.0.0.1:1".into(),
            runs: vec![RunInfo {
                host: "h".into(),
                started_unix_ms: start_ms,
                wall_s: 1.0,
                max_lag_us: 0,
                late_attempts: 0,
                cpu_user_s: 0.0,
                cpu_system_s: 0.0,
            }],
            groups: vec![g],
        }
    }

    #[test]
    fn json_round_trip_keeps_histograms() {
        let r = sample(0, 50);
        let text = serde_json::to_string(&r).unwrap();
        let back: Report = serde_json::from_str(&text).unwrap();
        let h = back.groups[0].latency(Outcome::Accepted).unwrap();
        assert_eq!(h.len(), 50);
        assert_eq!(
            h.max(),
            r.groups[0].latency(Outcome::Accepted).unwrap().max()
        );
    }

    #[test]
    fn merge_adds_counts_and_aligns_seconds() {
        let m = Report::merge(&[sample(10_000, 10), sample(11_000, 5)]).unwrap();
        let g = &m.groups[0];
        assert_eq!(g.counts.accepted, 15);
        assert_eq!(g.latency(Outcome::Accepted).unwrap().len(), 15);
        assert_eq!(g.per_second[0][0], 10);
        assert_eq!(g.per_second[1][0], 5);
        assert_eq!(m.runs.len(), 2);
    }
}
