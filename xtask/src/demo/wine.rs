//! `cargo xtask demo --wine`: the same clients against the shipped gate.sys
//! under Wine, relaying to the same nginx, with gatectl.exe for the live
//! changes.
//!
//! The same three namespaces as the root demo (topology `demow`: clients
//! gl-demow-c, gate gl-demow-s, backend gl-demow-b). The Wine prefix's
//! wineserver and every wine process run in the gate namespace: Wine's
//! wineserver creates the driver's sockets itself, so gate.sys listens on
//! 10.77.0.1:8080 there and connects to nginx from 10.78.0.1, exactly where
//! gate-sim does in the root demo.
//!
//! What differs, and why (shared/design/platform-facts.md, Wine section):
//! - Wine has no conditional accept (WskControlSocket is a stub), so the
//!   driver runs its post-accept mode: the host's stack completes every
//!   handshake, the driver decides at WskAccept and closes a refused
//!   connection at once. The clients therefore use gate-load's confirm
//!   window: accepted = still open [`POST_ACCEPT_CONFIRM_MS`] after the
//!   handshake, refused = closed or reset by the gate within it.
//! - The raw spoofed SYN flood is left out: its SYNs never complete a
//!   handshake, so a post-accept gate never sees them (the host's SYN
//!   backlog and syncookies face them, not the driver). It is reported as
//!   not applicable, not run.
//! - WskDisconnect is a stub, so the relay cannot pass a FIN on: the page
//!   clients read the headers and `Content-Length` bytes and close, and
//!   nginx ends connections that sent no request after 2 s
//!   (`client_header_timeout`) rather than its default 60 s, or every
//!   load client's relay would stay open that long.
//! - Fewer clients ([`scenario::POST_ACCEPT_CHANGES`]: 8 fair clients
//!   instead of 20, a botnet of 2 instead of 39, the allow-listed source at
//!   8/s): Wine's user-mode WSK decides about 100 connections a second on
//!   this shared machine, and a gate that falls behind decides late, which
//!   the model cannot replay.
//! - Wine's ntoskrnl has no EtwRegister: the driver runs with ETW off (its
//!   debug log says so). The decisions by reason and the relay's bytes come
//!   from the driver's own counters (`gatectl.exe status --json`), and its
//!   debug output (DbgPrintEx) is written to the folder.
//! - No leak tracker: "clean" means no winedevice crash in the log ("Unhandled
//!   page fault"), no relay left open after the run, and `sc stop` unloading
//!   the driver and closing its port.
//!
//! [`POST_ACCEPT_CONFIRM_MS`]: super::scenario::POST_ACCEPT_CONFIRM_MS

use super::control::{self, Gatectl};
use super::scenario::{self, PAGES_GROUP};
use super::{gatesim, lag, pages, summary, topology, Traffic};
use crate::wine::{self, Session};
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What `--wine` needs built.
pub struct Builds {
    pub gate_sys: PathBuf,
    pub gatectl_exe: PathBuf,
    pub gate_load: PathBuf,
}

/// Limits of the driver's start and stop under Wine.
const START_LIMIT: Duration = Duration::from_secs(20);
const STOP_LIMIT: Duration = Duration::from_secs(20);
/// How long relays get to close after the load before the final read.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// nginx's `client_header_timeout` under Wine. gate-load's clients send
/// nothing and close; Wine's WskDisconnect is a stub, so the relay cannot
/// pass their FIN on, and nginx would wait its default 60 s for a request
/// while the relay waits for nginx (a relay ends when both directions did).
/// nginx ends those connections itself after this, and so the relays.
const NGINX_HEADER_TIMEOUT_S: u32 = 2;

/// The decision-lag probe's source (on the deny list, 10.77.131.0/24, so
/// it takes no token) and period.
const LAG_PROBE_SOURCE: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 77, 131, 2);
const LAG_PROBE_EVERY_S: f64 = 0.25;

/// The driver's accept reasons (gate_core::Reason names): the rest refuse.
const ACCEPT_REASONS: [&str; 4] = [
    "within_rate",
    "allow_listed",
    "observe_would_reject",
    "pend_delayed",
];

/// The gate under Wine: the session and gatectl.exe's Windows path.
struct WineGate {
    session: Session,
    exe: String,
}

impl WineGate {
    fn gatectl(&self) -> Gatectl {
        let (prefix, ns, exe) = (
            self.session.prefix.clone(),
            self.session.netns.clone(),
            self.exe.clone(),
        );
        Gatectl::from_command(
            format!("wine {}", self.exe),
            Box::new(move || {
                let mut c = wine::wine_command(&prefix, ns.as_deref());
                c.arg(&exe);
                c
            }),
        )
    }
}

/// The driver's debug lines, grouped: digits and hex numbers become `#`
/// (so "relay for Some(10.77.128.10:4242) aborted ..." lines of every
/// client count as one kind), most frequent first.
pub fn debug_kinds(lines: &[String]) -> Vec<(String, u64)> {
    let mut m: BTreeMap<String, u64> = BTreeMap::new();
    for l in lines {
        let mut k = String::with_capacity(l.len());
        let mut chars = l.chars().peekable();
        let mut in_word = false;
        while let Some(c) = chars.next() {
            if c.is_ascii_digit() && !in_word {
                // A number, an address with its port, or a hex value.
                while chars
                    .peek()
                    .is_some_and(|c| c.is_ascii_hexdigit() || matches!(c, 'x' | '.' | ':'))
                {
                    chars.next();
                }
                k.push('#');
                in_word = false;
                continue;
            }
            k.push(c);
            in_word = c.is_ascii_alphanumeric() || c == '_';
        }
        *m.entry(k).or_insert(0) += 1;
    }
    let mut v: Vec<(String, u64)> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// A number in a JSON object (0 when absent).
fn n(v: &serde_json::Value, k: &str) -> u64 {
    v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0)
}

/// Runs the Wine demo into `out`; returns the failures (empty: PASS).
pub fn run(out: &Path, b: &Builds) -> Result<Vec<String>> {
    let (scenario_text, left_out) = scenario::post_accept_scenario()?;
    std::fs::write(out.join("scenario.toml"), &scenario_text)?;
    let sc = load_tests::scenario::Scenario::parse(&scenario_text)?;
    let policy = scenario::policy();
    let live = scenario::live();
    let plan = scenario::page_plan();

    println!("gate demo --wine: the shipped gate.sys under Wine (post-accept mode, IPv4) in front of nginx\n");
    let net = topology::Net::up(topology::WINE_NAME)?;
    let site = topology::site();
    let mut nginx = topology::Nginx::start(
        &out.join("backend"),
        &site,
        net.backend_ns(),
        NGINX_HEADER_TIMEOUT_S,
    )?;
    println!(
        "{}",
        net.describe(", wineserver and winedevice.exe", nginx.pid())
    );
    let prefix = super::target_dir().join("demo").join("wine-prefix");
    super::interrupt::check()?;
    let session = wine::start_session(&prefix, Some(&net.gate_ns()))?;
    super::interrupt::check()?;
    let gate = WineGate {
        exe: session.install_gatectl(&b.gatectl_exe)?,
        session,
    };
    let started = Instant::now();
    let r = (|| -> Result<()> {
        gate.session
            .install_driver(&b.gate_sys, &gatesim::reg_values(&policy, true))?;
        gate.session
            .start_driver(&topology::GATE_ADDR.to_string(), START_LIMIT)
    })();
    if let Err(e) = r {
        gate.session.end();
        return Err(e);
    }
    super::interrupt::check()?;
    let log_lines = wine::driver_lines(&gate.session.log_text());
    println!(
        "gate.sys: loaded by winedevice.exe in {:.1} s; {}",
        started.elapsed().as_secs_f64(),
        log_lines
            .iter()
            .filter(|l| l.contains("post-accept")
                || l.contains("listening on")
                || l.contains("relaying"))
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!(
        "registry: {}, relay to {} with PROXY v1",
        policy.describe(),
        topology::BACKEND_ADDR,
    );
    let ctl = gate.gatectl();
    let t = Instant::now();
    let ready = ctl.wait_ready(Instant::now(), Duration::from_secs(20));
    let call_s = t.elapsed().as_secs_f64();
    if let Err(e) = ready {
        gate.session.end();
        return Err(e.context("gatectl.exe status under Wine"));
    }
    println!(
        "gatectl.exe under Wine answers through \\\\.\\TcpFrontGate ({call_s:.2} s for the first call)"
    );
    for g in &left_out {
        println!("{g}: NOT APPLICABLE under Wine: its raw spoofed SYNs never complete a handshake, and a post-accept gate decides only after one; the group is not run");
    }
    println!(
        "post-accept clients: a connection still open {} ms after its handshake counts as accepted, one the gate closed or reset within that window as refused (\"closed\")",
        scenario::POST_ACCEPT_CONFIRM_MS
    );

    // The decision-lag probe, from a deny-listed source of its own.
    let t0 = Instant::now();
    let probe = load_tests::topology::in_netns(&net.client_ns(), move || {
        Ok(lag::run(
            LAG_PROBE_SOURCE,
            topology::GATE_ADDR,
            LAG_PROBE_EVERY_S,
            21.0,
            t0,
        ))
    });
    // Each key is queried before its change, one call's time ahead.
    let traffic = super::run_traffic(
        t0,
        &net.client_ns(),
        &b.gate_load,
        out,
        &sc,
        &plan,
        &site,
        &ctl,
        &live,
        (call_s * 1.5).max(0.2),
        pages::ReadTo::ContentLength,
    );
    let lag_samples = match probe {
        Ok(h) => h
            .join()
            .map_err(|_| anyhow::anyhow!("the lag probe panicked"))
            .and_then(|r| r),
        Err(e) => Err(e),
    };
    let Traffic {
        t0,
        load_status,
        fetches,
        steps,
    } = match traffic {
        Ok(t) => t,
        Err(e) => {
            gate.session.end();
            return Err(e.context("the load against gate.sys under Wine"));
        }
    };
    // Relays end when their clients close; give them a moment.
    let drain = Instant::now();
    let mut status = ctl.call(t0, &["status", "--json"]);
    while drain.elapsed() < DRAIN_LIMIT
        && status
            .json
            .as_ref()
            .is_some_and(|j| n(&j["relay"], "active") > 0)
    {
        super::interrupt::check()?;
        std::thread::sleep(Duration::from_millis(500));
        status = ctl.call(t0, &["status", "--json"]);
    }
    let finals = control::final_reads(&ctl, t0);
    let crashed_during_run = gate.session.crashed();
    let stop = gate.session.stop_driver(STOP_LIMIT);
    let port_closed = !topology_listening(&net.gate_ns());
    let log_text = gate.session.log_text();
    let crashed = crashed_during_run || log_text.contains(wine::CRASH_TEXT);
    let debug_lines = wine::driver_lines(&log_text);
    let _ = gate.session.run(&["sc", "delete", wine::SERVICE]);
    let log_path = gate.session.log.clone();
    gate.session.end();
    let nginx_left = nginx.stop();
    let access = nginx.access_lines()?;
    drop(nginx);
    drop(net);
    std::fs::write(out.join("driver-debug.log"), debug_lines.join("\n") + "\n")?;
    let _ = std::fs::copy(&log_path, out.join("wine.log"));

    // Results.
    let report = summary::load_report(out, load_status, &fetches, &plan)?;
    let (early, late) = control::effect_window(steps.as_deref().ok(), &live);
    let lag_samples = lag_samples.unwrap_or_else(|e| {
        println!("decision-lag probe failed: {e:#}");
        Vec::new()
    });
    let delay = |t: f64| lag::lag_at(&lag_samples, t);
    let model = scenario::model_window_delayed(&sc, &policy, &early, &late, &plan, Some(&delay));
    let verdicts = summary::verdicts(&report, &model, true);
    let pages_sum = pages::summarize(&fetches, &access, topology::GATE_BACKEND_SIDE);
    let plots = summary::plots(&report, &model, out)?;
    let st = status.json.clone().unwrap_or_default();

    println!("\nper group (accepted = handshake completed and still open after the confirm window; refused = closed or reset by the gate within it; latency of accepted attempts from their intended start to the handshake):");
    println!("{}", summary::groups_table(&verdicts));
    for g in &left_out {
        println!("{g}: not applicable (not run): spoofed SYNs never reach a post-accept gate");
    }
    let (lag50, lag99, lag_max, lag_failed) = lag::summary(&lag_samples);
    println!("model: the documented policy replayed at every attempt's intended time and again at that time plus the measured decision lag (GCRA per key and global, bans, lists, the live changes anywhere within their gatectl.exe call); interval = the union, ± (5 % + 3), bans ± (10 % + 5), lists exact");
    println!(
        "decision lag (a deny-listed probe from {LAG_PROBE_SOURCE} every {LAG_PROBE_EVERY_S} s, handshake to the gate's close): p50 {lag50:.1} ms, p99 {lag99:.1} ms, max {lag_max:.1} ms; {lag_failed} of {} probes saw no close",
        lag_samples.len()
    );
    println!("\nlive changes (gatectl.exe under Wine, through the driver's control device):");
    let steps_ok = match &steps {
        Ok(s) => {
            print!(
                "{}",
                summary::live_text(s, &live, &report, &model, "greedy")
            );
            true
        }
        Err(e) => {
            println!("  {e:#}");
            false
        }
    };

    let relay = &st["relay"];
    println!("\nrelay (pages through gate.sys to nginx):");
    print!("{}", summary::pages_text(&pages_sum));
    println!(
        "  the driver's relay counters: {} opened, {} closed, {} failed, {} refused at the limit, {} still open; {} bytes to the backend, {} to clients (ETW's per-relay events are not available under Wine)",
        n(relay, "opened"),
        n(relay, "closed"),
        n(relay, "failed"),
        n(relay, "refused_at_limit"),
        n(relay, "active"),
        n(relay, "bytes_to_backend"),
        n(relay, "bytes_to_client"),
    );
    // Only the page clients send or receive payload (gate-load's clients
    // send nothing): the relay's totals must be exactly their bytes.
    let bytes_match = n(relay, "bytes_to_client") == pages_sum.received
        && n(relay, "bytes_to_backend") == pages_sum.sent;
    println!(
        "  page clients read {} and wrote {}; the relay moved {} to clients and {} to the backend: {}",
        pages_sum.received,
        pages_sum.sent,
        n(relay, "bytes_to_client"),
        n(relay, "bytes_to_backend"),
        if bytes_match { "PASS" } else { "FAIL" }
    );

    // Accounting: every connection that completed a handshake was decided
    // once, and what the driver accepted is what the clients saw accepted.
    let decisions = &st["decisions"];
    let decided: u64 = decisions
        .as_object()
        .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum());
    let driver_accepted: u64 = ACCEPT_REASONS.iter().map(|r| n(decisions, r)).sum();
    let groups = || report.groups.iter().filter(|g| g.name != PAGES_GROUP);
    use load_tests::report::Outcome;
    // The lag probes that saw their close were decided (refused) too.
    let probes_decided = lag_samples.iter().filter(|s| s.lag_ms.is_some()).count() as u64;
    let handshakes: u64 = groups()
        .map(|g| g.counts.get(Outcome::Accepted) + g.counts.get(Outcome::Closed))
        .sum::<u64>()
        + pages_sum.connected
        + probes_decided;
    let client_accepted: u64 = groups()
        .map(|g| g.counts.get(Outcome::Accepted))
        .sum::<u64>()
        + pages_sum.connected;
    let close = |a: u64, b: u64| a.abs_diff(b) * 200 <= a.max(b); // within 0.5 %
    let accounting_ok = close(handshakes, decided) && close(client_accepted, driver_accepted);
    println!(
        "\naccounting: {handshakes} connections completed a handshake (with {probes_decided} lag probes), the driver decided {decided}; clients saw {client_accepted} accepted, the driver accepted {driver_accepted}: {}",
        if accounting_ok { "PASS (within 0.5 %)" } else { "FAIL" }
    );

    println!("\nETW: not available under Wine (its ntoskrnl has no EtwRegister; the driver says \"{}\"). The driver's counters and its debug output stand in:",
        debug_lines.iter().find(|l| l.starts_with("gate: ETW off")).map_or("(no ETW line in the log)", String::as_str));
    let by_reason: BTreeMap<String, u64> = decisions
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                .filter(|(_, v)| *v > 0)
                .collect()
        })
        .unwrap_or_default();
    println!(
        "{}",
        summary::counts_table("decision reason (driver counters)", &by_reason)
    );
    let kinds = debug_kinds(&debug_lines);
    let mut t = BTreeMap::new();
    for (k, c) in kinds.iter().take(12) {
        t.insert(k.clone(), *c);
    }
    println!(
        "{}",
        summary::counts_table("driver debug output (DbgPrintEx), by kind", &t)
    );
    println!("\ndriver counters (gatectl.exe status at the end):");
    if let Some(s) = finals.iter().find(|s| s.command == "gatectl status") {
        println!("{}", s.output);
    }
    let stop_text = match &stop {
        Ok(d) => format!("sc stop unloaded it in {:.1} s", d.as_secs_f64()),
        Err(e) => format!("sc stop FAILED: {e:#}"),
    };
    println!(
        "\ngate.sys at the end: winedevice crash: {}; relays still open: {}; {stop_text}; port {} {}",
        if crashed { "YES (\"Unhandled page fault\" in the log)" } else { "none" },
        n(relay, "active"),
        topology::GATE_ADDR,
        if port_closed { "closed" } else { "STILL OPEN" },
    );

    let mut failed = summary::common_failures(&verdicts, &pages_sum);
    if !nginx_left.is_empty() {
        failed.push(format!(
            "nginx workers {nginx_left:?} still running after SIGQUIT and SIGKILL"
        ));
    }
    if !bytes_match {
        failed.push(format!(
            "the relay's byte counts ({} to clients, {} to the backend) differ from what the page clients read ({}) and wrote ({})",
            n(relay, "bytes_to_client"), n(relay, "bytes_to_backend"), pages_sum.received, pages_sum.sent
        ));
    }
    if !accounting_ok {
        failed.push(format!(
            "accounting: {handshakes} handshakes vs {decided} decided, {client_accepted} accepted by the clients' count vs {driver_accepted} by the driver's"
        ));
    }
    if crashed {
        failed.push("winedevice crashed (\"Unhandled page fault\" in the Wine log)".into());
    }
    if n(relay, "active") > 0 {
        failed.push(format!(
            "{} relay(s) still open {} s after the load",
            n(relay, "active"),
            DRAIN_LIMIT.as_secs()
        ));
    }
    if let Err(e) = &stop {
        failed.push(format!("the driver did not unload: {e:#}"));
    }
    if !port_closed {
        failed.push(format!(
            "{} still listening after sc stop",
            topology::GATE_ADDR
        ));
    }
    if !steps_ok {
        failed.push("a live change with gatectl.exe failed".into());
    }

    let doc = serde_json::json!({
        "format": "gate-demo-report/1",
        "front": "gate.sys under Wine (post-accept mode)",
        "pass": failed.is_empty(),
        "failures": failed,
        "not_applicable": left_out.iter().map(|g| serde_json::json!({
            "group": g,
            "why": "raw spoofed SYNs never complete a handshake; a post-accept gate decides after one",
        })).collect::<Vec<_>>(),
        "confirm_ms": scenario::POST_ACCEPT_CONFIRM_MS,
        "scaled_down": scenario::POST_ACCEPT_CHANGES,
        "decision_lag": { "p50_ms": lag50, "p99_ms": lag99, "max_ms": lag_max, "failed": lag_failed, "samples": &lag_samples },
        "policy": policy,
        "live": live,
        "groups": verdicts,
        "model": model,
        "live_steps": steps.as_ref().ok(),
        "final_reads": finals,
        "pages": { "summary": pages_sum, "fetches": fetches },
        "driver": {
            "status": st,
            "crashed": crashed,
            "unload_s": stop.as_ref().ok().map(Duration::as_secs_f64),
            "port_closed": port_closed,
            "debug_output": kinds,
            "etw": "not available under Wine (no EtwRegister)",
        },
        "load": report,
    });
    summary::write_and_conclude(
        out,
        &doc,
        &plots,
        &format!(
            "{} (the driver's debug output; ETW is not available under Wine), {} (Wine's log)",
            out.join("driver-debug.log").display(),
            out.join("wine.log").display()
        ),
        &failed,
        "every group within the model's interval, every page byte right, the client's address at the backend, gate.sys did not crash, left no relay open and unloaded",
    )?;
    Ok(failed)
}

/// Whether anything listens on the gate's address in `netns`.
fn topology_listening(netns: &str) -> bool {
    load_tests::topology::sh(&["ip", "netns", "exec", netns, "ss", "-Htln"])
        .map(|o| o.contains(&topology::GATE_ADDR.to_string()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_lines_group_by_kind_without_numbers() {
        let lines: Vec<String> = [
            "gate: relay for Some(10.77.128.10:4242) aborted: client_error after 1000 ms (0 bytes up, 0 down)",
            "gate: relay for Some(10.77.129.1:5151) aborted: client_error after 999 ms (0 bytes up, 0 down)",
            "gate: listening on 10.77.0.1:8080 (post_accept)",
            "gate: Rate changed: 5000 -> 10000 (pid 0x1c)",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let k = debug_kinds(&lines);
        assert_eq!(k[0].1, 2, "{k:?}");
        assert_eq!(
            k[0].0,
            "gate: relay for Some(#) aborted: client_error after # ms (# bytes up, # down)"
        );
        assert_eq!(k.len(), 3, "{k:?}");
        assert!(
            k.iter()
                .any(|(s, _)| s == "gate: listening on # (post_accept)"),
            "{k:?}"
        );
    }

    #[test]
    fn the_post_accept_scenario_leaves_out_the_flood_only() {
        let (text, left_out) = scenario::post_accept_scenario().unwrap();
        assert_eq!(left_out, vec!["syn-flood".to_string()]);
        let sc = load_tests::scenario::Scenario::parse(&text).unwrap();
        let full = scenario::scenario().unwrap();
        assert_eq!(sc.groups.len() + 1, full.groups.len());
        assert_eq!(
            sc.confirm,
            Duration::from_millis(scenario::POST_ACCEPT_CONFIRM_MS as u64)
        );
        assert!(sc
            .groups
            .iter()
            .all(|g| g.kind != load_tests::scenario::GroupKind::SynFlood));
    }
}
