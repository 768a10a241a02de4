//! The gate: gate-sim (the driver's own code on gate-usersim, deciding real
//! SYNs through NFQUEUE in the gate namespace) with the demo's
//! configuration — the driver's registry values, the relay to nginx with
//! the PROXY protocol, the control socket for gatectl, ETW events as JSON
//! lines. Started and stopped (SIGINT, by its PID) here; its final report
//! (leaks, violations, queue and decision counts) is parsed from its
//! standard output.

use super::scenario::Policy;
use super::topology;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One registry value's data (gate-driver/CONFIG.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegData {
    Dword(u64),
    Sz(String),
    MultiSz(Vec<String>),
}

/// The driver's registry values for the demo's policy: the same values
/// go to gate-sim's `[Parameters]` ([`config_toml`]) and to gate.sys's
/// Parameters key under Wine. `relay`: relay to nginx with PROXY v1.
pub fn driver_values(p: &Policy, relay: bool) -> Vec<(&'static str, RegData)> {
    use RegData::*;
    let list = |v: &[&str]| MultiSz(v.iter().map(|c| c.to_string()).collect());
    let mut v = vec![
        ("ListenAddress", Sz(topology::GATE_ADDR.ip().to_string())),
        ("ListenPort", Dword(u64::from(topology::GATE_ADDR.port()))),
        ("RateMilliPerSecond", Dword((p.rate * 1000.0) as u64)),
        ("Burst", Dword(u64::from(p.burst))),
        (
            "GlobalRateMilliPerSecond",
            Dword((p.global_rate * 1000.0) as u64),
        ),
        ("GlobalBurst", Dword(u64::from(p.global_burst))),
        ("BanThreshold", Dword(u64::from(p.ban_threshold))),
        ("BanWindowMs", Dword((p.ban_window_s * 1000.0) as u64)),
        ("BanMs", Dword((p.ban_s * 1000.0) as u64)),
        ("MaxPending", Dword(0)),
        ("CountersIntervalMs", Dword(1000)),
        ("AllowList", list(&p.allow)),
        ("DenyList", list(&p.deny)),
    ];
    if relay {
        v.push(("BackendAddress", Sz(topology::backend_value())));
        v.push(("ProxyProtocol", Dword(1)));
    }
    v
}

/// The values as `reg add` takes them (type name, data; MULTI_SZ entries
/// separated by `\0`).
pub fn reg_values(p: &Policy, relay: bool) -> Vec<crate::wine::RegValue> {
    driver_values(p, relay)
        .into_iter()
        .map(|(name, d)| match d {
            RegData::Dword(n) => (name, "REG_DWORD", n.to_string()),
            RegData::Sz(s) => (name, "REG_SZ", s),
            RegData::MultiSz(v) => (name, "REG_MULTI_SZ", v.join("\\0")),
        })
        .collect()
}

/// The gate-sim configuration file (its `--config` format).
/// `relay`: whether to relay to nginx (the driver's relay values).
pub fn config_toml(p: &Policy, netns: &str, events: &Path, relay: bool) -> String {
    let mut params = String::new();
    for (name, d) in driver_values(p, relay) {
        let value = match d {
            RegData::Dword(n) => n.to_string(),
            RegData::Sz(s) => format!("{s:?}"),
            RegData::MultiSz(v) => format!(
                "[{}]",
                v.iter()
                    .map(|c| format!("{c:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        params.push_str(&format!("{name} = {value}\n"));
    }
    format!(
        r#"# Written by cargo xtask demo: the driver's registry values (gate-driver/CONFIG.md).
[front]
netns = "{netns}"
reject = "reset"
handshake_timeout_ms = 3000
stats_interval_ms = 0
events = "{events}"

[Parameters]
{params}"#,
        events = events.display(),
    )
}

/// A running gate-sim.
pub struct GateSim {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every stdout line so far.
    pub out: Vec<String>,
    pub control: PathBuf,
    pub events: PathBuf,
}

/// What gate-sim reported when it stopped.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SimReport {
    pub exit_code: i32,
    /// `nfq:` and `real:` counters (key=value).
    pub nfq: BTreeMap<String, String>,
    pub real: BTreeMap<String, String>,
    /// Decision events by name and "name/reason", as gate-sim counted them.
    pub decisions: BTreeMap<String, u64>,
    pub leaks: String,
    pub violations: String,
    pub lines: Vec<String>,
}

fn kv(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl SimReport {
    /// Parses gate-sim's final report lines.
    pub fn parse(lines: &[String], exit_code: i32) -> SimReport {
        let mut r = SimReport {
            exit_code,
            lines: lines.to_vec(),
            ..SimReport::default()
        };
        let mut in_decisions = false;
        for l in lines {
            if let Some(rest) = l.strip_prefix("nfq: ") {
                r.nfq = kv(rest);
            } else if let Some(rest) = l.strip_prefix("real: ") {
                r.real = kv(rest);
            } else if l.starts_with("decisions") {
                in_decisions = true;
                continue;
            } else if let Some(rest) = l.strip_prefix("leaks: ") {
                r.leaks = rest.to_string();
            } else if let Some(rest) = l.strip_prefix("violations: ") {
                r.violations = rest.to_string();
            }
            if in_decisions {
                match l.strip_prefix("  ").and_then(|x| x.rsplit_once(' ')) {
                    Some((k, n)) => {
                        if let Ok(n) = n.parse() {
                            r.decisions.insert(k.to_string(), n);
                        }
                    }
                    None => in_decisions = false,
                }
            }
        }
        r
    }

    /// Whether the driver ran clean: exit 0, no leaks, no violations.
    pub fn clean(&self) -> bool {
        self.exit_code == 0 && self.leaks == "none" && self.violations == "none"
    }
}

impl GateSim {
    /// Starts `bin` with the configuration written to `dir/gate-sim.toml`;
    /// returns once it printed "ready" (rules installed, queues bound).
    pub fn start(bin: &Path, dir: &Path, p: &Policy, netns: &str, relay: bool) -> Result<GateSim> {
        let events = dir.join("etw-events.jsonl");
        let control = dir.join("control.sock");
        let conf = dir.join("gate-sim.toml");
        std::fs::write(&conf, config_toml(p, netns, &events, relay))?;
        let stderr = std::fs::File::create(dir.join("gate-sim.stderr"))?;
        let mut child = Command::new(bin)
            .arg("--config")
            .arg(&conf)
            .arg("--control")
            .arg(&control)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("gate-sim's stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut g = GateSim {
            child,
            lines: rx,
            out: Vec::new(),
            control,
            events,
        };
        let t = Instant::now();
        loop {
            super::interrupt::check()?;
            match g.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => {
                    let ready = l == "ready";
                    g.out.push(l);
                    if ready {
                        return Ok(g);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let code = g.child.wait().ok().and_then(|s| s.code()).unwrap_or(-1);
                    bail!(
                        "gate-sim exited ({code}) before it was ready: {}\n{}",
                        g.out.join("\n"),
                        std::fs::read_to_string(dir.join("gate-sim.stderr")).unwrap_or_default()
                    );
                }
            }
            if t.elapsed() > Duration::from_secs(20) {
                g.interrupt();
                bail!("gate-sim was not ready within 20 s: {}", g.out.join("\n"));
            }
        }
    }

    fn interrupt(&mut self) {
        // SAFETY: kill(2) on our own child's PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
    }

    /// Stops gate-sim (SIGINT by its PID; it removes its rules, unloads the
    /// driver and reports) and parses its report.
    pub fn stop(mut self) -> Result<SimReport> {
        self.interrupt();
        let t = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait()? {
                break s;
            }
            if t.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                bail!("gate-sim did not stop within 30 s of SIGINT (killed)");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let start = self.out.len();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.out.push(l);
        }
        Ok(SimReport::parse(
            self.out.get(start..).unwrap_or_default(),
            status.code().unwrap_or(-1),
        ))
    }
}

impl Drop for GateSim {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.interrupt();
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_is_read_back() {
        let lines: Vec<String> = [
            "nfq: syns=10 accepted=7 rejected=3",
            "real: handshakes=7 connects=7 bytes_in=100 bytes_out=2000",
            "memory: rss_kib=1",
            "decisions (ETW events, by name and reason):",
            "  ConnectionAccepted 7",
            "  ConnectionRejected/rate_exceeded 3",
            "leaks: none",
            "violations: none",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let r = SimReport::parse(&lines, 0);
        assert_eq!(r.nfq["syns"], "10");
        assert_eq!(r.real["bytes_out"], "2000");
        assert_eq!(r.decisions["ConnectionRejected/rate_exceeded"], 3);
        assert_eq!(r.decisions.len(), 2);
        assert!(r.clean());
        assert!(!SimReport::parse(&lines, 1).clean());
    }

    #[test]
    fn the_config_names_every_value_the_demo_relies_on() {
        let c = config_toml(
            &super::super::scenario::policy(),
            "gl-demo-s",
            Path::new("/x/e.jsonl"),
            true,
        );
        let t: toml::Table = toml::from_str(&c).unwrap();
        let p = t["Parameters"].as_table().unwrap();
        assert_eq!(p["RateMilliPerSecond"].as_integer(), Some(5000));
        assert_eq!(p["BackendAddress"].as_str(), Some("10.78.0.2:8081"));
        assert_eq!(p["DenyList"].as_array().unwrap().len(), 1);
        assert_eq!(p["ListenPort"].as_integer(), Some(8080));
        assert_eq!(p["ProxyProtocol"].as_integer(), Some(1));
        // The same values, as reg add takes them for gate.sys under Wine.
        let reg = reg_values(&super::super::scenario::policy(), true);
        assert_eq!(reg.len(), p.len());
        let get = |n: &str| reg.iter().find(|r| r.0 == n).cloned().unwrap();
        assert_eq!(
            get("RateMilliPerSecond"),
            ("RateMilliPerSecond", "REG_DWORD", "5000".into())
        );
        assert_eq!(
            get("AllowList"),
            ("AllowList", "REG_MULTI_SZ", "10.77.130.0/24".into())
        );
        assert_eq!(get("BackendAddress").2, "10.78.0.2:8081");
    }
}
