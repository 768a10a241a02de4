//! The live control step: while the load runs, gatectl (the operator's
//! CLI: over gate-sim's control socket to the driver's own IOCTL handler,
//! or gatectl.exe under Wine through the shipped gate.sys's control device)
//! lifts one bot's ban and raises the per-key rate, each at its time,
//! querying the key before and after; at the end it reads the driver's
//! status (counters by reason) and top talkers.

use super::scenario::Live;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// gatectl bound to one driver: `command()` is the program with the
/// arguments that reach the driver, to which each call's are appended.
pub struct Gatectl {
    command: Box<dyn Fn() -> Command + Send + Sync>,
    /// What is run, for messages.
    pub program: String,
}

/// One gatectl call as the demo made it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Step {
    /// Seconds from the start of the load.
    pub at_s: f64,
    pub command: String,
    /// Seconds from the start of the load when the call returned (a
    /// change took effect between `at_s` and `done_s`).
    pub done_s: f64,
    pub ok: bool,
    pub output: String,
    /// The output parsed as JSON, for `--json` calls.
    pub json: Option<serde_json::Value>,
}

impl Gatectl {
    /// The Linux gatectl over gate-sim's control socket:
    /// `gatectl --device SOCKET ARGS...`.
    pub fn native(bin: PathBuf, socket: PathBuf) -> Gatectl {
        Gatectl {
            program: bin.display().to_string(),
            command: Box::new(move || {
                let mut c = Command::new(&bin);
                c.arg("--device").arg(&socket);
                c
            }),
        }
    }

    /// Any other way of reaching the driver (gatectl.exe under Wine).
    pub fn from_command(
        program: String,
        command: Box<dyn Fn() -> Command + Send + Sync>,
    ) -> Gatectl {
        Gatectl { command, program }
    }

    /// Runs gatectl with `args`.
    pub fn call(&self, t0: Instant, args: &[&str]) -> Step {
        let at_s = t0.elapsed().as_secs_f64();
        let out = (self.command)().args(args).stdin(Stdio::null()).output();
        let done_s = t0.elapsed().as_secs_f64();
        let command = format!("gatectl {}", args.join(" "));
        match out {
            Err(e) => Step {
                at_s,
                command,
                done_s,
                ok: false,
                output: format!("cannot run {}: {e}", self.program),
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
                    done_s,
                    ok: o.status.success(),
                    output: text.trim_end().to_string(),
                    json,
                }
            }
        }
    }

    /// Waits until the driver answers `status` within `limit` (gate-sim
    /// starts its control socket before "ready", so this is quick).
    pub fn wait_ready(&self, t0: Instant, limit: Duration) -> Result<()> {
        let t = Instant::now();
        loop {
            let s = self.call(t0, &["status", "--json"]);
            if s.ok {
                return Ok(());
            }
            super::interrupt::check()?;
            if t.elapsed() > limit {
                bail!("gatectl status failed: {}", s.output);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Sleeps until `at_s` after `t0`; an error once the demo is interrupted.
fn sleep_until(t0: Instant, at_s: f64) -> Result<()> {
    super::interrupt::sleep_until(t0 + Duration::from_secs_f64(at_s.max(0.0)))
}

/// The live changes, in time order, from `t0` (the load's start), each
/// key queried `lead_s` before its change and right after it. Returns
/// every call made; a failed change is an error after all steps ran.
pub fn run_live(
    ctl: &Gatectl,
    live: &Live,
    greedy: &str,
    t0: Instant,
    lead_s: f64,
) -> Result<Vec<Step>> {
    let bot = live.unban.to_string();
    let rate = format!("{}", live.new_rate);
    let mut steps = Vec::new();
    sleep_until(t0, live.unban_at_s - lead_s)?;
    steps.push(ctl.call(t0, &["query", &bot, "--json"]));
    sleep_until(t0, live.unban_at_s)?;
    steps.push(ctl.call(t0, &["unban", &bot]));
    steps.push(ctl.call(t0, &["query", &bot, "--json"]));
    sleep_until(t0, live.set_rate_at_s - lead_s)?;
    steps.push(ctl.call(t0, &["query", greedy, "--json"]));
    sleep_until(t0, live.set_rate_at_s)?;
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

/// The earliest and the latest times the live changes can have taken
/// effect: each change's call started at `at_s` and returned at `done_s`
/// (`live` as planned when a call, or every call, is missing).
pub fn effect_window(steps: Option<&[Step]>, live: &Live) -> (Live, Live) {
    let steps = steps.unwrap_or_default();
    let call = |prefix: &str| steps.iter().find(|s| s.command.starts_with(prefix));
    let (mut early, mut late) = (live.clone(), live.clone());
    if let Some(s) = call("gatectl unban") {
        (early.unban_at_s, late.unban_at_s) = (s.at_s, s.done_s);
    }
    if let Some(s) = call("gatectl set --rate") {
        (early.set_rate_at_s, late.set_rate_at_s) = (s.at_s, s.done_s);
    }
    (early, late)
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
