//! The live control step: while the load runs, gatectl (the operator's
//! CLI, over gate-sim's control socket: the driver's own IOCTL handler)
//! lifts one bot's ban and raises the per-key rate, each at its time,
//! querying the key before and after; at the end it reads the driver's
//! status (counters by reason) and top talkers.

use super::scenario::Live;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// gatectl bound to one control socket.
pub struct Gatectl {
    pub bin: PathBuf,
    pub socket: PathBuf,
}

/// One gatectl call as the demo made it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Step {
    /// Seconds from the start of the load.
    pub at_s: f64,
    pub command: String,
    pub ok: bool,
    pub output: String,
    /// The output parsed as JSON, for `--json` calls.
    pub json: Option<serde_json::Value>,
}

impl Gatectl {
    /// Runs `gatectl --device SOCKET ARGS...`.
    pub fn call(&self, t0: Instant, args: &[&str]) -> Step {
        let at_s = t0.elapsed().as_secs_f64();
        let out = Command::new(&self.bin)
            .arg("--device")
            .arg(&self.socket)
            .args(args)
            .output();
        let command = format!("gatectl {}", args.join(" "));
        match out {
            Err(e) => Step {
                at_s,
                command,
                ok: false,
                output: format!("cannot run {}: {e}", self.bin.display()),
                json: None,
            },
            Ok(o) => {
                let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
                let err = String::from_utf8_lossy(&o.stderr);
                if !err.trim().is_empty() {
                    text.push_str(err.trim_end());
                }
                let json = args
                    .contains(&"--json")
                    .then(|| serde_json::from_slice(&o.stdout).ok())
                    .flatten();
                Step {
                    at_s,
                    command,
                    ok: o.status.success(),
                    output: text.trim_end().to_string(),
                    json,
                }
            }
        }
    }

    /// Waits until the control socket answers `status` (gate-sim starts it
    /// before "ready", so this is quick).
    pub fn wait_ready(&self, t0: Instant) -> Result<()> {
        let t = Instant::now();
        loop {
            let s = self.call(t0, &["status", "--json"]);
            if s.ok {
                return Ok(());
            }
            if t.elapsed() > Duration::from_secs(5) {
                bail!("gatectl status failed: {}", s.output);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn sleep_until(t0: Instant, at_s: f64) {
    let due = t0 + Duration::from_secs_f64(at_s);
    if let Some(w) = due.checked_duration_since(Instant::now()) {
        std::thread::sleep(w);
    }
}

/// The live changes, in time order, from `t0` (the load's start). Returns
/// every call made; a failed change is an error after all steps ran.
pub fn run_live(ctl: &Gatectl, live: &Live, greedy: &str, t0: Instant) -> Result<Vec<Step>> {
    let bot = live.unban.to_string();
    let rate = format!("{}", live.new_rate);
    let mut steps = Vec::new();
    sleep_until(t0, live.unban_at_s - 0.2);
    steps.push(ctl.call(t0, &["query", &bot, "--json"]));
    sleep_until(t0, live.unban_at_s);
    steps.push(ctl.call(t0, &["unban", &bot]));
    steps.push(ctl.call(t0, &["query", &bot, "--json"]));
    sleep_until(t0, live.set_rate_at_s - 0.2);
    steps.push(ctl.call(t0, &["query", greedy, "--json"]));
    sleep_until(t0, live.set_rate_at_s);
    steps.push(ctl.call(t0, &["set", "--rate", &rate]));
    steps.push(ctl.call(t0, &["query", greedy, "--json"]));
    let failed: Vec<&str> = steps
        .iter()
        .filter(|s| !s.ok)
        .map(|s| s.command.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "gatectl failed: {}\n{}",
            failed.join("; "),
            steps
                .iter()
                .filter(|s| !s.ok)
                .map(|s| s.output.clone())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    Ok(steps)
}

/// The driver's status and top talkers at the end of the run.
pub fn final_reads(ctl: &Gatectl, t0: Instant) -> Vec<Step> {
    vec![
        ctl.call(t0, &["status", "--json"]),
        ctl.call(t0, &["top", "-n", "5", "--json"]),
        ctl.call(t0, &["status"]),
    ]
}

/// Locates a built binary of the workspace.
pub fn binary(target_dir: &Path, name: &str) -> Result<PathBuf> {
    let p = target_dir.join("release").join(name);
    if !p.exists() {
        return Err(anyhow::anyhow!("{} was not built", p.display()))
            .context("building the demo's binaries");
    }
    Ok(p)
}
