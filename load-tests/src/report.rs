//! Run results: per-group outcome counts, HdrHistograms of latency per
//! outcome (serialized as V2-deflate base64 so reports from several client
//! machines merge exactly), the same percentiles as plain numbers (for `jq`),
//! per-second outcome buckets and latency, payload results, the JSON form,
//! `merge`, and the text tables ([`Report::summary`]).

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use comfy_table::{presets, CellAlignment, Table};
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

/// A histogram of 1 us .. [`MAX_LATENCY_US`] at 3 significant digits (0.1 %).
pub fn new_histogram() -> Histogram<u64> {
    histogram_with_digits(3)
}

/// Significant digits of the per-second latency histograms: 1 digit keeps
/// each at ~3 KB (an hour-long run of six groups holds ~65 MB of them); its
/// percentiles are within 1/16 (6.25 %) of the true value.
pub const PER_SECOND_DIGITS: u8 = 1;

/// A per-second latency histogram ([`PER_SECOND_DIGITS`] significant digits).
pub fn new_per_second_histogram() -> Histogram<u64> {
    histogram_with_digits(PER_SECOND_DIGITS)
}

fn histogram_with_digits(digits: u8) -> Histogram<u64> {
    // The bounds and 1..=3 digits are constants hdrhistogram accepts, so this
    // cannot fail.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, digits).unwrap_or_else(|_| {
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

/// Percentiles of one histogram as plain numbers (microseconds), so that
/// `jq '.groups[0].stats.accepted.p99_us'` reads a percentile. Derived from
/// the histograms when a report is saved; the histograms stay the source of
/// truth for merging.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LatencyStats {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p99_9_us: u64,
    pub max_us: u64,
}

impl LatencyStats {
    /// The percentiles of `h` (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return LatencyStats::default();
        }
        LatencyStats {
            count: h.len(),
            mean_us: (h.mean() * 10.0).round() / 10.0,
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p99_9_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// Latency of one second of intended start, as plain numbers.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SecondStats {
    /// Accepted attempts whose intended start fell in this second.
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Which payload exchange followed the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadMode {
    /// Send a request of N bytes, read a response of M bytes
    /// (`gate-load listen --mode rr` answers; see [`crate::payload`]).
    RequestResponse,
    /// Send N bytes, read them back and compare byte for byte (any echo
    /// server: `gate-load listen --mode echo`).
    Echo,
    /// Send N bytes as one stream, half-close, wait for the server's close
    /// (`gate-load listen --mode sink`); reports MB/s.
    Bulk,
}

impl PayloadMode {
    pub fn name(self) -> &'static str {
        match self {
            PayloadMode::RequestResponse => "request-response",
            PayloadMode::Echo => "echo",
            PayloadMode::Bulk => "bulk",
        }
    }
}

/// What became of the payload exchanges of one group's accepted connections.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PayloadReport {
    pub mode: PayloadMode,
    /// Bytes each connection sends.
    pub request_bytes: u64,
    /// Bytes each connection expects back (0 for bulk).
    pub response_bytes: u64,
    /// Exchanges that completed (and, for echo, matched byte for byte).
    pub completed: u64,
    /// Failed exchanges by cause: `reset`, `closed_early`, `timed_out`,
    /// `mismatch` (echo bytes differ), or an errno name.
    pub failed: BTreeMap<String, u64>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// From the completed handshake to the first response byte.
    pub ttfb_us: Hist,
    /// From the completed handshake to the exchange's end (the last response
    /// byte; for bulk, the server's close after it read everything).
    pub transfer_us: Hist,
    /// Sum over completed exchanges of their transfer time (seconds).
    pub transfer_s_sum: f64,
    /// Bytes moved (sent + received) by completed exchanges per second of
    /// their transfer time, in MB/s (10^6 bytes); for one stream at a time
    /// (bulk) this is the stream's throughput. Derived.
    #[serde(default)]
    pub mb_per_s: f64,
}

impl PayloadReport {
    pub fn new(mode: PayloadMode, request_bytes: u64, response_bytes: u64) -> Self {
        PayloadReport {
            mode,
            request_bytes,
            response_bytes,
            completed: 0,
            failed: BTreeMap::new(),
            bytes_sent: 0,
            bytes_received: 0,
            ttfb_us: Hist::default(),
            transfer_us: Hist::default(),
            transfer_s_sum: 0.0,
            mb_per_s: 0.0,
        }
    }

    /// Failed exchanges of every cause.
    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }

    fn add(&mut self, o: &PayloadReport) -> Result<()> {
        self.completed += o.completed;
        for (k, v) in &o.failed {
            *self.failed.entry(k.clone()).or_insert(0) += v;
        }
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        self.transfer_s_sum += o.transfer_s_sum;
        self.ttfb_us
            .0
            .add(&o.ttfb_us.0)
            .map_err(|e| anyhow::anyhow!("ttfb histogram: {e:?}"))?;
        self.transfer_us
            .0
            .add(&o.transfer_us.0)
            .map_err(|e| anyhow::anyhow!("transfer histogram: {e:?}"))?;
        Ok(())
    }

    fn derive(&mut self) {
        let per_conn = self.request_bytes
            + if self.mode == PayloadMode::Bulk {
                0
            } else {
                self.response_bytes
            };
        self.mb_per_s = if self.transfer_s_sum > 0.0 {
            (self.completed * per_conn) as f64 / self.transfer_s_sum / 1e6
        } else {
            0.0
        };
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
    /// Per second of intended start: latency of the accepted attempts from
    /// intended start ([`PER_SECOND_DIGITS`] significant digits).
    #[serde(default)]
    pub per_second_latency_us: Vec<Hist>,
    /// Payload results, when the run exchanged data after the handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<PayloadReport>,
    /// Derived on save: percentiles per outcome name, plus `handshake`
    /// (from `service_us`) and, with a payload, `ttfb` and `transfer`.
    #[serde(default)]
    pub stats: BTreeMap<String, LatencyStats>,
    /// Derived on save: accepted latency per second of intended start.
    #[serde(default)]
    pub per_second_stats: Vec<SecondStats>,
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
            per_second_latency_us: (0..seconds)
                .map(|_| Hist(new_per_second_histogram()))
                .collect(),
            payload: None,
            stats: BTreeMap::new(),
            per_second_stats: Vec::new(),
        }
    }

    pub fn latency(&self, o: Outcome) -> Option<&Histogram<u64>> {
        self.latency_us.get(o.name()).map(|h| &h.0)
    }

    /// Makes room for second `sec` in the per-second tables.
    pub fn ensure_second(&mut self, sec: usize) {
        if self.per_second.len() <= sec {
            self.per_second.resize(sec + 1, [0; 5]);
        }
        while self.per_second_latency_us.len() <= sec {
            self.per_second_latency_us
                .push(Hist(new_per_second_histogram()));
        }
    }

    /// Fills `stats` and `per_second_stats` from the histograms.
    pub fn derive_stats(&mut self) {
        let mut st = BTreeMap::new();
        for o in OUTCOMES {
            if let Some(h) = self.latency(o) {
                st.insert(o.name().to_string(), LatencyStats::of(h));
            }
        }
        st.insert("handshake".into(), LatencyStats::of(&self.service_us.0));
        if let Some(p) = self.payload.as_mut() {
            p.derive();
            st.insert("ttfb".into(), LatencyStats::of(&p.ttfb_us.0));
            st.insert("transfer".into(), LatencyStats::of(&p.transfer_us.0));
        }
        self.stats = st;
        self.per_second_stats = self
            .per_second_latency_us
            .iter()
            .map(|h| {
                let s = LatencyStats::of(&h.0);
                SecondStats {
                    count: s.count,
                    p50_us: s.p50_us,
                    p99_us: s.p99_us,
                    max_us: s.max_us,
                }
            })
            .collect();
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

/// The format this version writes. Version 2 added `stats`,
/// `per_second_latency_us`, `per_second_stats` and `payload`.
pub const FORMAT: &str = "gate-load-report/2";
/// Older formats `load` still reads (the missing fields stay empty).
pub const READS_FORMATS: [&str; 2] = ["gate-load-report/1", FORMAT];

impl Report {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading report {}", path.display()))?;
        let mut r: Report = serde_json::from_str(&text)
            .with_context(|| format!("report {} is not a gate-load report", path.display()))?;
        if !READS_FORMATS.contains(&r.format.as_str()) {
            bail!(
                "report {}: format = {:?}, expected one of {READS_FORMATS:?}",
                path.display(),
                r.format
            );
        }
        r.format = FORMAT.to_string();
        r.derive_stats();
        Ok(r)
    }

    /// Writes the JSON form (with the derived `stats` refreshed).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = self.to_json()?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// The JSON form (pretty), with the derived numbers refreshed.
    pub fn to_json(&self) -> Result<String> {
        let mut r = self.clone();
        r.derive_stats();
        Ok(serde_json::to_string_pretty(&r)?)
    }

    /// Fills every group's derived numbers from its histograms.
    pub fn derive_stats(&mut self) {
        for g in &mut self.groups {
            g.derive_stats();
        }
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
                if let Some(p) = &g.payload {
                    match m.payload.as_mut() {
                        None => m.payload = Some(p.clone()),
                        Some(mp) => {
                            if (mp.mode, mp.request_bytes, mp.response_bytes)
                                != (p.mode, p.request_bytes, p.response_bytes)
                            {
                                bail!(
                                    "group {:?}: cannot merge payload {} {}/{} bytes with {} {}/{} bytes",
                                    g.name,
                                    mp.mode.name(),
                                    mp.request_bytes,
                                    mp.response_bytes,
                                    p.mode.name(),
                                    p.request_bytes,
                                    p.response_bytes
                                );
                            }
                            mp.add(p)
                                .with_context(|| format!("payload of group {:?}", g.name))?;
                        }
                    }
                }
                let need = g.per_second.len().max(g.per_second_latency_us.len()) + shift;
                if need > 0 {
                    m.ensure_second(need - 1);
                }
                for (i, h) in g.per_second_latency_us.iter().enumerate() {
                    if let Some(dst) = m.per_second_latency_us.get_mut(i + shift) {
                        dst.0.add(&h.0).map_err(|e| {
                            anyhow::anyhow!("per-second histogram of {}: {e:?}", g.name)
                        })?;
                    }
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
        out.derive_stats();
        Ok(out)
    }

    /// The text report: the runs, then aligned tables of outcome counts,
    /// latency percentiles (milliseconds) per group and outcome, and payload
    /// results.
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
        let _ = writeln!(s, "{}", self.counts_table());
        let _ = writeln!(
            s,
            "latency (ms): outcomes from each attempt's intended start; handshake from the connect() call; ttfb and transfer from the completed handshake"
        );
        let _ = writeln!(s, "{}", self.latency_table());
        if self.groups.iter().any(|g| g.payload.is_some()) {
            let _ = writeln!(s, "{}", self.payload_table());
        }
        for g in &self.groups {
            if !g.errors.is_empty() {
                let _ = writeln!(s, "group {}: other errors: {:?}", g.name, g.errors);
            }
        }
        s
    }

    /// Outcome counts per group (an aligned table).
    pub fn counts_table(&self) -> Table {
        let mut t = new_table(&[
            "group",
            "attempted",
            "accepted",
            "refused",
            "timed out",
            "closed",
            "other",
            "accepted %",
        ]);
        for g in &self.groups {
            let c = &g.counts;
            let pct = if g.attempted == 0 {
                0.0
            } else {
                100.0 * c.accepted as f64 / g.attempted as f64
            };
            t.add_row(vec![
                g.name.clone(),
                g.attempted.to_string(),
                c.accepted.to_string(),
                c.refused.to_string(),
                c.timed_out.to_string(),
                c.closed.to_string(),
                c.other.to_string(),
                format!("{pct:.1}"),
            ]);
        }
        right_align_from(&mut t, 1);
        t
    }

    /// Latency percentiles per group and outcome (and handshake, ttfb,
    /// transfer), in milliseconds; empty histograms are left out.
    pub fn latency_table(&self) -> Table {
        let mut t = new_table(&[
            "group", "latency", "count", "p50", "p90", "p99", "p99.9", "max",
        ]);
        for g in &self.groups {
            let mut rows: Vec<(&str, &Histogram<u64>)> = Vec::new();
            for o in OUTCOMES {
                if let Some(h) = g.latency(o) {
                    rows.push((o.name(), h));
                }
            }
            rows.push(("handshake", &g.service_us.0));
            if let Some(p) = &g.payload {
                rows.push(("ttfb", &p.ttfb_us.0));
                rows.push(("transfer", &p.transfer_us.0));
            }
            for (name, h) in rows {
                if h.is_empty() {
                    continue;
                }
                let st = LatencyStats::of(h);
                t.add_row(vec![
                    g.name.clone(),
                    name.to_string(),
                    st.count.to_string(),
                    ms(st.p50_us),
                    ms(st.p90_us),
                    ms(st.p99_us),
                    ms(st.p99_9_us),
                    ms(st.max_us),
                ]);
            }
        }
        right_align_from(&mut t, 2);
        t
    }

    /// Payload results per group (groups without a payload are left out).
    pub fn payload_table(&self) -> Table {
        let mut t = new_table(&[
            "group",
            "payload",
            "completed",
            "failed",
            "MB sent",
            "MB received",
            "MB/s per connection",
        ]);
        for g in &self.groups {
            let Some(p) = &g.payload else { continue };
            let mut q = p.clone();
            q.derive();
            let failed = if q.failed.is_empty() {
                "0".to_string()
            } else {
                q.failed
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            t.add_row(vec![
                g.name.clone(),
                format!(
                    "{} {}/{} B",
                    q.mode.name(),
                    q.request_bytes,
                    q.response_bytes
                ),
                q.completed.to_string(),
                failed,
                format!("{:.3}", q.bytes_sent as f64 / 1e6),
                format!("{:.3}", q.bytes_received as f64 / 1e6),
                format!("{:.1}", q.mb_per_s),
            ]);
        }
        right_align_from(&mut t, 2);
        t
    }
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

fn new_table(header: &[&str]) -> Table {
    let mut t = Table::new();
    // Markdown-shaped: aligned in a terminal, pastes into a README as is.
    t.load_style(presets::ASCII_MARKDOWN)
        .force_no_tty()
        .set_header(header.to_vec());
    t
}

fn right_align_from(t: &mut Table, first: usize) {
    for c in t.column_iter_mut().skip(first) {
        c.set_cell_alignment(CellAlignment::Right);
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
            g.per_second_latency_us[0].0.record(100 + i).unwrap();
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

    #[test]
    fn json_holds_percentiles_as_plain_numbers() {
        // 1..=1000 us: p50 500, p90 900, p99 990, p99.9 999, max 1000.
        let mut r = sample(0, 0);
        let g = &mut r.groups[0];
        for v in 1..=1000u64 {
            g.counts.bump(Outcome::Accepted);
            g.latency_us
                .get_mut("accepted")
                .unwrap()
                .0
                .record(v)
                .unwrap();
            g.per_second_latency_us[1].0.record(v).unwrap();
        }
        g.service_us.0.record(42).unwrap();
        let v: serde_json::Value = serde_json::from_str(&r.to_json().unwrap()).unwrap();
        let st = &v["groups"][0]["stats"]["accepted"];
        assert_eq!(st["count"], 1000);
        assert_eq!(st["p50_us"], 500);
        assert_eq!(st["p90_us"], 900);
        assert_eq!(st["p99_us"], 990);
        assert_eq!(st["p99_9_us"], 999);
        assert_eq!(st["max_us"], 1000);
        assert_eq!(v["groups"][0]["stats"]["handshake"]["p50_us"], 42);
        assert_eq!(v["groups"][0]["stats"]["refused"]["count"], 0);
        // Per second: nothing in second 0, the 1000 values in second 1 at
        // one significant digit (within 1/16).
        let ps = &v["groups"][0]["per_second_stats"];
        assert_eq!(ps[0]["count"], 0);
        assert_eq!(ps[1]["count"], 1000);
        let p99 = ps[1]["p99_us"].as_u64().unwrap();
        assert!((990 - 990 / 16..=990 + 990 / 16).contains(&p99), "{p99}");
    }

    #[test]
    fn text_report_aligns_columns() {
        let mut r = sample(0, 30);
        r.groups
            .push(GroupReport::new("a-much-longer-group-name", 0, 2));
        let t = r.summary();
        let lines: Vec<&str> = t.lines().filter(|l| l.starts_with('|')).collect();
        assert!(lines.len() >= 6, "{t}");
        // Every row of the first table has its column bars at the same places.
        let bars = |l: &str| -> Vec<usize> {
            l.char_indices()
                .filter(|(_, c)| *c == '|')
                .map(|(i, _)| i)
                .collect()
        };
        assert_eq!(bars(lines[0]), bars(lines[2]), "{t}");
        assert_eq!(bars(lines[0]), bars(lines[3]), "{t}");
        // Empty histograms (refused, handshake here) get no latency row.
        assert!(t.contains("| p99.9 |") && t.contains("| accepted |"), "{t}");
        assert!(
            !t.contains("| g     | refused") && !t.contains("| g     | handshake"),
            "{t}"
        );
    }

    #[test]
    fn merge_adds_per_second_latency_and_payload() {
        let mut a = sample(10_000, 10);
        let mut b = sample(11_000, 5);
        for r in [&mut a, &mut b] {
            let mut p = PayloadReport::new(PayloadMode::Echo, 100, 100);
            p.completed = 3;
            p.transfer_s_sum = 0.001;
            p.transfer_us.0.record(300).unwrap();
            r.groups[0].payload = Some(p);
        }
        let m = Report::merge(&[a.clone(), b]).unwrap();
        let g = &m.groups[0];
        assert_eq!(g.per_second_latency_us[0].0.len(), 10);
        assert_eq!(g.per_second_latency_us[1].0.len(), 5);
        let p = g.payload.as_ref().unwrap();
        assert_eq!(p.completed, 6);
        assert_eq!(p.transfer_us.0.len(), 2);
        // 6 x 200 bytes in 2 ms = 0.6 MB/s.
        assert!((p.mb_per_s - 0.6).abs() < 1e-9, "{}", p.mb_per_s);
        let mut c = a.clone();
        c.groups[0].payload.as_mut().unwrap().request_bytes = 7;
        let e = Report::merge(&[a, c]).unwrap_err().to_string();
        assert!(
            e.contains("echo 100/100") && e.contains("echo 7/100"),
            "{e}"
        );
    }

    proptest::proptest! {
        /// The plain numbers in the JSON are the histogram's own
        /// percentiles, whatever was recorded.
        #[test]
        fn stats_in_json_are_the_histogram_percentiles(
            v in proptest::collection::vec(1u64..100_000_000, 1..500)
        ) {
            let mut r = sample(0, 0);
            let g = &mut r.groups[0];
            for x in &v {
                g.latency_us.get_mut("closed").unwrap().0.record(*x).unwrap();
            }
            let h = g.latency(Outcome::Closed).unwrap().clone();
            let j: serde_json::Value = serde_json::from_str(&r.to_json().unwrap()).unwrap();
            let st = &j["groups"][0]["stats"]["closed"];
            proptest::prop_assert_eq!(st["count"].as_u64(), Some(v.len() as u64));
            for (key, q) in [("p50_us", 0.5), ("p90_us", 0.9), ("p99_us", 0.99), ("p99_9_us", 0.999)] {
                proptest::prop_assert_eq!(st[key].as_u64(), Some(h.value_at_quantile(q)));
            }
            proptest::prop_assert_eq!(st["max_us"].as_u64(), Some(h.max()));
            let lo = *v.iter().min().unwrap();
            let hi = *v.iter().max().unwrap();
            let p50 = st["p50_us"].as_u64().unwrap();
            // Within the samples' range, to HdrHistogram's 3 digits.
            proptest::prop_assert!(p50 + p50 / 500 >= lo && p50 <= hi + hi / 500);
        }
    }
}
