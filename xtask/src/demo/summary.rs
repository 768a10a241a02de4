//! What the demo prints and writes: per group attempts / accepted /
//! refused / latency percentiles against the model's interval (PASS/FAIL);
//! the live changes and their effect; the relay's bytes and verification;
//! the ETW summary (events by name, decisions by reason) and the driver's
//! counters; the report JSON and the plots (PNG and SVG, load-tests' plot
//! code with this model's line).

use super::control::Step;
use super::gatesim::SimReport;
use super::pages::{Fetch, PagesSummary};
use super::scenario::{Expectation, Live, PAGES_GROUP};
use anyhow::{Context, Result};
use comfy_table::{presets, CellAlignment, Table};
use load_tests::report::{GroupReport, Hist, Outcome, Report};
use std::collections::BTreeMap;
use std::path::Path;

/// One group's verdict.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Verdict {
    pub group: String,
    pub attempts: u64,
    pub accepted: u64,
    pub refused: u64,
    pub timed_out: u64,
    pub other: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub model: u64,
    pub lo: u64,
    pub hi: u64,
    pub pass: bool,
}

/// The page fetches as one more report group (so they are in the JSON and
/// the plot like the others): accepted = connected, by intended second.
pub fn pages_group(fetches: &[Fetch], intended_s: &[f64]) -> GroupReport {
    let secs = intended_s.iter().fold(0.0f64, |a, b| a.max(*b)) as usize + 1;
    let mut g = GroupReport::new(PAGES_GROUP, fetches.len() as u64, secs);
    for (f, t) in fetches.iter().zip(intended_s) {
        let o = match f.outcome.as_str() {
            "refused" => Outcome::Refused,
            "timed_out" => Outcome::TimedOut,
            "ok" => Outcome::Accepted,
            _ => Outcome::Other,
        };
        g.counts.bump(o);
        if o == Outcome::Other {
            *g.errors.entry(f.outcome.clone()).or_insert(0) += 1;
        }
        let sec = *t as usize;
        g.ensure_second(sec);
        if let Some(row) = g.per_second.get_mut(sec) {
            row[o.index()] += 1;
        }
        let us = f.latency_us.clamp(1, load_tests::report::MAX_LATENCY_US);
        if let Some(h) = g.latency_us.get_mut(o.name()) {
            let _ = h.0.record(us);
        }
        if o == Outcome::Accepted {
            if let Some(h) = g.per_second_latency_us.get_mut(sec) {
                let _ = h.0.record(us);
            }
        }
    }
    g.service_us = Hist::default();
    g
}

/// Verdicts: each report group against its expectation (by name).
/// `post_accept`: the gate refuses by closing an established connection,
/// so gate-load's `closed` outcome is the refusal (else it is "other").
pub fn verdicts(report: &Report, model: &[Expectation], post_accept: bool) -> Vec<Verdict> {
    report
        .groups
        .iter()
        .map(|g| {
            let e = model.iter().find(|e| e.group == g.name);
            let st = g.stats.get("accepted").cloned().unwrap_or_default();
            let accepted = g.counts.get(Outcome::Accepted);
            let (m, lo, hi) = e.map_or((0, 0, 0), |e| (e.model, e.lo, e.hi));
            Verdict {
                group: g.name.clone(),
                attempts: g.attempted,
                accepted,
                refused: g.counts.get(Outcome::Refused)
                    + if post_accept {
                        g.counts.get(Outcome::Closed)
                    } else {
                        0
                    },
                timed_out: g.counts.get(Outcome::TimedOut),
                other: g.counts.get(Outcome::Other)
                    + if post_accept {
                        0
                    } else {
                        g.counts.get(Outcome::Closed)
                    },
                p50_ms: st.p50_us as f64 / 1000.0,
                p99_ms: st.p99_us as f64 / 1000.0,
                max_ms: st.max_us as f64 / 1000.0,
                model: m,
                lo,
                hi,
                pass: e.is_some() && (lo..=hi).contains(&accepted),
            }
        })
        .collect()
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    // Markdown-shaped, like gate-load's tables: aligned, pastes into docs.
    t.load_style(presets::ASCII_MARKDOWN)
        .force_no_tty()
        .set_header(header.to_vec());
    t
}

fn right(t: &mut Table, from: usize) {
    let n = t.column_count();
    for i in from..n {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// The per-group table.
pub fn groups_table(v: &[Verdict]) -> String {
    let mut t = table(&[
        "group",
        "attempts",
        "accepted",
        "refused",
        "timed out",
        "other",
        "p50 ms",
        "p99 ms",
        "max ms",
        "model",
        "interval",
        "",
    ]);
    for g in v {
        t.add_row(vec![
            g.group.clone(),
            g.attempts.to_string(),
            g.accepted.to_string(),
            g.refused.to_string(),
            g.timed_out.to_string(),
            g.other.to_string(),
            format!("{:.2}", g.p50_ms),
            format!("{:.2}", g.p99_ms),
            format!("{:.2}", g.max_ms),
            g.model.to_string(),
            if g.lo == g.hi {
                g.lo.to_string()
            } else {
                format!("{}..{}", g.lo, g.hi)
            },
            (if g.pass { "PASS" } else { "FAIL" }).to_string(),
        ]);
    }
    right(&mut t, 1);
    t.to_string()
}

/// Accepted per second of one group (from the report).
pub fn accepted_per_second(report: &Report, group: &str) -> Vec<u64> {
    report
        .group(group)
        .map(|g| {
            g.per_second
                .iter()
                .map(|r| r[Outcome::Accepted.index()])
                .collect()
        })
        .unwrap_or_default()
}

fn sum(v: &[u64], from: usize, to: usize) -> u64 {
    v.iter().skip(from).take(to.saturating_sub(from)).sum()
}

/// Accepted per second for seconds `from..to` of `v`, as "5 5 | 8 8" with
/// a bar before second `at`.
fn seconds_text(v: &[u64], from: usize, to: usize, at: usize) -> String {
    (from..to)
        .map(|i| {
            let n = v.get(i).copied().unwrap_or(0).to_string();
            if i == at && i > from {
                format!("| {n}")
            } else {
                n
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The live changes and what they did, as text: the unban's and the rate
/// change's effect per second of intended start around each change,
/// measured next to the model's (`model`: the expectations, whose
/// `per_second` is by intended second).
pub fn live_text(
    steps: &[Step],
    live: &Live,
    report: &Report,
    model: &[super::scenario::Expectation],
    greedy: &str,
) -> String {
    let mut s = String::new();
    for st in steps {
        let mut out = st.output.replace('\n', " ");
        if let Some(j) = &st.json {
            let f = |k: &str| j.get(k).map_or("-".to_string(), |v| v.to_string());
            out = format!(
                "tokens_milli={} rejects={} auto_banned={} auto_ban_left_ms={}",
                f("tokens_milli"),
                f("rejects"),
                f("auto_banned"),
                f("auto_ban_left_ms")
            );
        }
        s.push_str(&format!(
            "  t={:>5.2}s  {:<40} {}\n",
            st.at_s,
            st.command,
            if st.ok { out } else { format!("FAILED: {out}") }
        ));
    }
    let modelled = |g: &str| {
        model
            .iter()
            .find(|e| e.group == g)
            .map(|e| e.per_second.clone())
            .unwrap_or_default()
    };
    let bot = accepted_per_second(report, "botnet-unbanned");
    let u = live.unban_at_s as usize;
    s.push_str(&format!(
        "  effect of the unban: {} accepted from {} in the {} s before it, {} in the 4 s after it (the other bots stay banned: {} accepted after {} s)\n",
        sum(&bot, u.saturating_sub(3), u),
        live.unban,
        3,
        sum(&bot, u, u + 4),
        sum(&accepted_per_second(report, "botnet"), u, usize::MAX),
        u
    ));
    let g = accepted_per_second(report, greedy);
    let c = live.set_rate_at_s as usize;
    let (from, to) = (c.saturating_sub(3), c + 4);
    s.push_str(&format!(
        "  effect of the rate change ({} -> {}/s at {} s): the {greedy} client (it sends {}/s) got per second, seconds {from}..{}: {} (model: {})\n",
        super::scenario::policy().rate,
        live.new_rate,
        live.set_rate_at_s,
        sent_per_second(report, greedy),
        to - 1,
        seconds_text(&g, from, to, c),
        seconds_text(&modelled(greedy), from, to, c),
    ));
    s
}

/// What one group offers per second (its attempts over its active seconds).
fn sent_per_second(report: &Report, group: &str) -> String {
    report.group(group).map_or("?".into(), |g| {
        let active = g
            .per_second
            .iter()
            .filter(|r| r.iter().sum::<u64>() > 0)
            .count()
            .max(1);
        format!("{:.0}", g.attempted as f64 / active as f64)
    })
}

/// Counts by name.
pub type Counts = BTreeMap<String, u64>;

/// ETW events by name, decision events by "name/reason", and the number of
/// lines that were not JSON, from the JSON lines.
pub fn etw_counts(path: &Path) -> Result<(Counts, Counts, u64)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the ETW events {}", path.display()))?;
    let mut names = BTreeMap::new();
    let mut reasons = BTreeMap::new();
    let mut bad = 0;
    for l in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            bad += 1;
            continue;
        };
        let name = v["name"].as_str().unwrap_or("?").to_string();
        if let Some(r) = v["fields"]["Reason"].as_u64() {
            let rn = usize::try_from(r)
                .ok()
                .and_then(|i| gate_core::Reason::ALL.get(i))
                .map_or_else(|| format!("reason {r}"), |r| r.name().to_string());
            *reasons.entry(format!("{name}/{rn}")).or_insert(0) += 1;
        }
        *names.entry(name).or_insert(0) += 1;
    }
    Ok((names, reasons, bad))
}

/// The relay as its ETW events tell it: relays opened, closed (by cause),
/// failed, and the bytes of closed relays, in total and for the page
/// clients' connections (matched by the client address).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RelaySummary {
    pub configured: bool,
    pub opened: u64,
    pub closed: u64,
    pub failed: u64,
    pub causes: BTreeMap<String, u64>,
    pub to_backend: u64,
    pub to_client: u64,
    pub pages_closed: u64,
    pub pages_to_backend: u64,
    pub pages_to_client: u64,
}

/// The relay's `Cause` values by number (gate-driver's relay::pair::Cause,
/// the manifest's RelayCauseMap).
const RELAY_CAUSES: [&str; 10] = [
    "both_ended",
    "client_error",
    "backend_error",
    "idle_timeout",
    "connect_timeout",
    "backend_refused",
    "connect_failed",
    "unload",
    "max_connections",
    "no_memory",
];

fn cause_name(v: &serde_json::Value) -> String {
    v.as_u64()
        .and_then(|n| RELAY_CAUSES.get(usize::try_from(n).ok()?))
        .map_or_else(|| format!("cause {v}"), |s| s.to_string())
}

/// Reads the relay's events (RelayConfigured, RelayOpened, RelayClosed,
/// RelayFailed) from the JSON lines; `page_clients` are the page fetchers'
/// addresses.
pub fn relay_summary(path: &Path, page_clients: &[std::net::Ipv4Addr]) -> RelaySummary {
    let mut r = RelaySummary::default();
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for l in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        let f = &v["fields"];
        let n = |k: &str| f[k].as_u64().unwrap_or(0);
        match v["name"].as_str().unwrap_or("") {
            "RelayConfigured" => r.configured = true,
            "RelayOpened" => r.opened += 1,
            "RelayFailed" => {
                r.failed += 1;
                *r.causes
                    .entry(format!("failed/{}", cause_name(&f["Cause"])))
                    .or_insert(0) += 1;
            }
            "RelayClosed" => {
                r.closed += 1;
                r.to_backend += n("BytesToBackend");
                r.to_client += n("BytesToClient");
                *r.causes
                    .entry(format!("closed/{}", cause_name(&f["Cause"])))
                    .or_insert(0) += 1;
                let client = f["ClientAddress"]
                    .as_str()
                    .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
                    .map(|a| a.ip());
                if client
                    .is_some_and(|c| page_clients.iter().any(|p| std::net::IpAddr::V4(*p) == c))
                {
                    r.pages_closed += 1;
                    r.pages_to_backend += n("BytesToBackend");
                    r.pages_to_client += n("BytesToClient");
                }
            }
            _ => {}
        }
    }
    r
}

/// Two-column table of counts.
pub fn counts_table(title: &str, m: &BTreeMap<String, u64>) -> String {
    let mut t = table(&[title, "count"]);
    for (k, n) in m {
        t.add_row(vec![k.clone(), n.to_string()]);
    }
    right(&mut t, 1);
    t.to_string()
}

/// The pages lines.
pub fn pages_text(p: &PagesSummary) -> String {
    format!(
        "  {} fetches: {} connected ({} refused, {} timed out); {} bodies verified byte for byte ({} bytes), {} wrong or short\n  \
         nginx logged {} of the verified fetches with the client's own address from the PROXY header ({} missing)\n  \
         latency (intended start to last byte) p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n",
        p.attempts,
        p.connected,
        p.refused,
        p.timed_out,
        p.verified,
        p.bytes_verified,
        p.failed,
        p.proxy_addr_matched,
        p.proxy_addr_missing,
        p.latency_ms.p50,
        p.latency_ms.p90,
        p.latency_ms.p99,
        p.latency_ms.max,
    ) + &bad_pages_text(p)
}

/// Wrong or short pages, each named (client, path, first wrong byte), at
/// most [`super::pages::BAD_LISTED`] of them.
fn bad_pages_text(p: &PagesSummary) -> String {
    let mut s = String::new();
    for b in &p.bad {
        s.push_str(&format!("  WRONG: {b}\n"));
    }
    if p.failed > p.bad.len() as u64 {
        s.push_str(&format!(
            "  ... and {} more wrong or short (all in demo-report.json, pages.fetches)\n",
            p.failed - p.bad.len() as u64
        ));
    }
    s
}

/// gate-sim's real-socket counters line.
pub fn sim_sockets_text(sim: &SimReport) -> String {
    format!(
        "  gate-sim's real sockets: bytes_in={} bytes_out={} connects={} handshakes={}\n",
        sim.real.get("bytes_in").map_or("?", String::as_str),
        sim.real.get("bytes_out").map_or("?", String::as_str),
        sim.real.get("connects").map_or("?", String::as_str),
        sim.real.get("handshakes").map_or("?", String::as_str),
    )
}

/// The failures every front shares: groups outside their interval, pages
/// with wrong bytes, no page at all, pages nginx did not log with the
/// client's own address.
pub fn common_failures(verdicts: &[Verdict], pages: &PagesSummary) -> Vec<String> {
    let mut failed: Vec<String> = verdicts
        .iter()
        .filter(|v| !v.pass)
        .map(|v| {
            format!(
                "group {} accepted {} outside {}..{}",
                v.group, v.accepted, v.lo, v.hi
            )
        })
        .collect();
    if pages.failed > 0 {
        failed.push(format!(
            "{} page(s) with wrong or missing bytes{}",
            pages.failed,
            pages
                .bad
                .first()
                .map_or(String::new(), |b| format!(", the first: {b}"))
        ));
    }
    if pages.verified == 0 {
        failed.push("no page was fetched through the relay".into());
    }
    if pages.proxy_addr_missing > 0 {
        failed.push(format!(
            "{} verified page(s) not logged by nginx with the client's address from the PROXY header",
            pages.proxy_addr_missing
        ));
    }
    failed
}

/// Writes `doc` as `demo-report.json` into `out`, lists what was written
/// (`also`: more lines after the plots), then FAIL with `failed` or PASS
/// with `pass_text`.
pub fn write_and_conclude(
    out: &Path,
    doc: &serde_json::Value,
    plots: &[std::path::PathBuf],
    also: &str,
    failed: &[String],
    pass_text: &str,
) -> Result<()> {
    let report_path = out.join("demo-report.json");
    std::fs::write(&report_path, serde_json::to_string_pretty(doc)?)?;
    println!("\nwritten: {}", report_path.display());
    for p in plots {
        println!("written: {}", p.display());
    }
    println!("written: {also}");
    if failed.is_empty() {
        println!("\nPASS: {pass_text}");
    } else {
        println!("\nFAIL:");
        for f in failed {
            println!("  {f}");
        }
    }
    Ok(())
}

/// gate-load's report with the page fetches added as one more group
/// ([`pages_group`]), statistics derived; an error if gate-load failed.
pub fn load_report(
    out: &Path,
    status: std::process::ExitStatus,
    fetches: &[Fetch],
    plan: &super::scenario::PagePlan,
) -> Result<Report> {
    if !status.success() {
        anyhow::bail!(
            "gate-load failed ({status}): see {}",
            out.join("gate-load.log").display()
        );
    }
    let mut report = Report::load(&out.join("gate-load.json"))?;
    let intended: Vec<f64> = plan.schedule().iter().map(|(t, _)| *t).collect();
    report.groups.push(pages_group(fetches, &intended));
    report.derive_stats();
    Ok(report)
}

/// Writes the run plot as PNG and SVG, with the model's expected accepted
/// count per second drawn over each group.
pub fn plots(
    report: &Report,
    model: &[Expectation],
    dir: &Path,
) -> Result<Vec<std::path::PathBuf>> {
    let expected: load_tests::plot::Expected = report
        .groups
        .iter()
        .map(|g| {
            model
                .iter()
                .find(|e| e.group == g.name)
                .map(|e| e.per_second.clone())
        })
        .collect();
    let mut out = Vec::new();
    for ext in ["png", "svg"] {
        let p = dir.join(format!("demo.{ext}"));
        load_tests::plot::write_run(report, Some(&expected), &p)
            .with_context(|| format!("writing {}", p.display()))?;
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etw_lines_are_counted_by_name_and_reason() {
        let dir = std::env::temp_dir().join(format!("xtask-demo-etw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("e.jsonl");
        std::fs::write(
            &p,
            "{\"name\":\"ConnectionAccepted\",\"fields\":{\"Reason\":0}}\n\
             {\"name\":\"ConnectionRejected\",\"fields\":{\"Reason\":2}}\n\
             {\"name\":\"RelayClosed\",\"fields\":{\"Cause\":1,\"ClientAddress\":\"10.77.133.1:4000\",\"BytesToBackend\":10,\"BytesToClient\":20}}\n\
             not json\n",
        )
        .unwrap();
        let (names, reasons, bad) = etw_counts(&p).unwrap();
        let pc = relay_summary(&p, &["10.77.133.1".parse().unwrap()]);
        assert_eq!((pc.pages_closed, pc.pages_to_client), (1, 20));
        assert_eq!(names["ConnectionAccepted"], 1);
        assert_eq!(names.len(), 3);
        assert_eq!(bad, 1);
        let r0 = gate_core::Reason::ALL[0].name();
        assert_eq!(reasons[&format!("ConnectionAccepted/{r0}")], 1);
        let b = relay_summary(&p, &[]);
        assert_eq!(
            (b.closed, b.to_backend, b.to_client, b.pages_closed),
            (1, 10, 20, 0)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
