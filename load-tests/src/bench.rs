//! `gate-load bench`: the connection rate the generator sustains on one core
//! against a plain listener on loopback, and how its CPU time splits between
//! its own user-space work and the kernel (getrusage of the generator
//! thread). The generator is pinned to one CPU, the listener to another.

use crate::engine::{self, RunOptions};
use crate::listener::Background;
use crate::scenario::Scenario;
use anyhow::{bail, Result};
use std::fmt::Write as _;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Offered rates (connections/s), one run each.
    #[arg(long, value_delimiter = ',', default_value = "10000,20000,30000,40000")]
    pub rates: Vec<u32>,
    /// Seconds per rate.
    #[arg(long, default_value_t = 2.0)]
    pub duration_s: f64,
    /// CPU for the generator (the listener gets the next one).
    #[arg(long, default_value_t = 0)]
    pub cpu: usize,
}

/// One bench run's figures.
#[derive(Clone, Debug)]
pub struct BenchRow {
    pub offered: u32,
    pub attempted: u64,
    pub accepted: u64,
    /// Completed attempts per second of wall time.
    pub achieved: f64,
    pub wall_s: f64,
    pub user_s: f64,
    pub system_s: f64,
    pub max_lag_ms: f64,
    pub p99_ms: f64,
    /// The generator's CPU over the run, from /proc/stat (shares of its time).
    pub core: CoreShares,
}

/// How one CPU's time split over a run (from /proc/stat ticks).
#[derive(Clone, Copy, Debug, Default)]
pub struct CoreShares {
    pub user: f64,
    pub system: f64,
    pub softirq: f64,
    pub idle: f64,
    /// Stolen by the hypervisor.
    pub steal: f64,
}

/// The tick counters of `cpuN` in /proc/stat.
fn cpu_ticks(cpu: usize) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let name = format!("cpu{cpu}");
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    Some(
        line.split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect(),
    )
}

fn core_shares(before: &[u64], after: &[u64]) -> CoreShares {
    let d: Vec<f64> = before
        .iter()
        .zip(after)
        .map(|(a, b)| b.saturating_sub(*a) as f64)
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: f64 = d.iter().take(8).sum::<f64>().max(1.0);
    let at = |i: usize| d.get(i).copied().unwrap_or(0.0) / total;
    CoreShares {
        user: at(0) + at(1),
        system: at(2) + at(5),
        softirq: at(6),
        idle: at(3) + at(4),
        steal: at(7),
    }
}

impl BenchRow {
    /// The generator's own (user-space) share of its CPU time.
    pub fn user_share(&self) -> f64 {
        let t = self.user_s + self.system_s;
        if t > 0.0 {
            self.user_s / t
        } else {
            0.0
        }
    }
    /// Connections per second of CPU time spent for the generator: its
    /// thread's time plus the softirq time on its CPU (where loopback
    /// packets are processed). What one dedicated core would sustain.
    pub fn per_core_second(&self) -> f64 {
        let busy = self.core_share() + self.core.softirq;
        if busy > 0.0 {
            self.achieved / busy
        } else {
            0.0
        }
    }
    /// Share of one core the generator thread used.
    pub fn core_share(&self) -> f64 {
        (self.user_s + self.system_s) / self.wall_s.max(1e-9)
    }
}

/// Runs the generator at `rate` for `duration_s` against a loopback listener.
pub fn one(rate: u32, duration_s: f64, cpu: usize) -> Result<BenchRow> {
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let listener = Background::start(
        "127.0.0.1:0".parse()?,
        Duration::ZERO,
        Some((cpu + 1) % ncpu),
    )?;
    let sc = Scenario::parse(&format!(
        "name = \"bench-{rate}\"\nconnect_timeout_ms = 2000\n\
         [[group]]\nname = \"flood\"\nsources = \"127.50.0.0/16\"\nrate = {rate}\nduration_s = {duration_s}\n"
    ))?;
    let opts = RunOptions {
        target: listener.addr,
        progress: false,
        max_in_flight: 60_000,
        pin_cpu: Some(cpu % ncpu),
    };
    let ticks0 = cpu_ticks(cpu % ncpu);
    let res = engine::run(&sc, &opts)?;
    let ticks1 = cpu_ticks(cpu % ncpu);
    drop(listener);
    let core = match (ticks0, ticks1) {
        (Some(a), Some(b)) => core_shares(&a, &b),
        _ => CoreShares::default(),
    };
    let g = res
        .report
        .groups
        .first()
        .ok_or_else(|| anyhow::anyhow!("bench report has no group"))?;
    let run = res
        .report
        .runs
        .first()
        .ok_or_else(|| anyhow::anyhow!("bench report has no run"))?;
    let wall = res.wall.as_secs_f64();
    Ok(BenchRow {
        offered: rate,
        attempted: g.attempted,
        accepted: g.counts.accepted,
        achieved: g.counts.total() as f64 / wall,
        wall_s: wall,
        user_s: res.cpu.user.as_secs_f64(),
        system_s: res.cpu.system.as_secs_f64(),
        max_lag_ms: run.max_lag_us as f64 / 1000.0,
        p99_ms: g
            .latency(crate::report::Outcome::Accepted)
            .map_or(0.0, |h| h.value_at_quantile(0.99) as f64 / 1000.0),
        core,
    })
}

/// The rows as a Markdown table.
pub fn table(rows: &[BenchRow]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| offered conn/s | attempted | accepted | achieved conn/s | generator thread: core use | user-space share | kernel share | its CPU: user / system / softirq / idle / steal | conn per core-second (thread + softirq) | max start lag ms | p99 latency ms |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.0} | {:.0} % | {:.1} % | {:.1} % | {:.0} / {:.0} / {:.0} / {:.0} / {:.0} % | {:.0} | {:.1} | {:.2} |",
            r.offered,
            r.attempted,
            r.accepted,
            r.achieved,
            r.core_share() * 100.0,
            r.user_share() * 100.0,
            (1.0 - r.user_share()) * 100.0,
            r.core.user * 100.0,
            r.core.system * 100.0,
            r.core.softirq * 100.0,
            r.core.idle * 100.0,
            r.core.steal * 100.0,
            r.per_core_second(),
            r.max_lag_ms,
            r.p99_ms
        );
    }
    s
}

pub fn run(args: &Args) -> Result<bool> {
    if !args.duration_s.is_finite() || args.duration_s <= 0.0 || args.duration_s > 30.0 {
        bail!("--duration-s {} must be within (0, 30]", args.duration_s);
    }
    if let Some(bad) = args.rates.iter().find(|r| **r == 0 || **r > 200_000) {
        bail!("--rates: rate {bad} must be 1..=200000");
    }
    let mut rows = Vec::new();
    for &r in &args.rates {
        let row = one(r, args.duration_s, args.cpu)?;
        eprintln!(
            "offered {r}/s: achieved {:.0}/s, user {:.1} %",
            row.achieved,
            row.user_share() * 100.0
        );
        rows.push(row);
    }
    println!("{}", table(&rows));
    println!(
        "achieved = completed attempts / wall time (the run ends when the last attempt completes); \
         shares are the generator thread's getrusage user vs system time; \
         \"its CPU\" is /proc/stat for the generator's CPU (user includes other processes)"
    );
    Ok(true)
}
