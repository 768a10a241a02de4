//! `gate-load`: command-line front end (run, listen, validate, merge, plot,
//! topology, peers, bench).

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use load_tests::{
    bench, engine, listener, model, payload, peers, plot, report, scenario, topology,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "gate-load",
    version,
    about = "Open-loop TCP connection-flood generator that validates the gate"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario against a target.
    Run(Box<RunArgs>),
    /// A plain listener: accepts and closes (or holds) connections, or serves
    /// the payload modes (echo, rr, sink).
    Listen {
        /// Address:port to listen on.
        #[arg(long, short)]
        addr: SocketAddr,
        /// What to do with each connection: close (at once or after
        /// --hold-ms), echo (every byte back), rr (request-response, see
        /// `run --payload rr`), sink (read to the end, then close: bulk).
        #[arg(long, value_enum, default_value_t = payload::ServeMode::Close)]
        mode: payload::ServeMode,
        /// Mode close: keep each accepted connection open this long (ms).
        #[arg(long, default_value_t = 0)]
        hold_ms: u64,
        /// Stop after this many seconds (default: run until killed).
        #[arg(long)]
        duration_s: Option<f64>,
    },
    /// Compare a report with the scenario's token-bucket model.
    Validate {
        /// Scenario whose `[gate]` model gives the expected accepted counts.
        #[arg(long, short)]
        scenario: PathBuf,
        /// Report (JSON) of a run of that scenario.
        #[arg(long, short)]
        report: PathBuf,
    },
    /// Merge reports from several client machines into one.
    Merge {
        /// Output report.
        #[arg(long, short)]
        output: PathBuf,
        /// Input reports.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
    },
    /// Draw a report: per group, outcomes per second (steps) with the model's
    /// expected accepted count, and accepted p50/p99 latency per second.
    Plot {
        /// The report (JSON) to draw.
        #[arg(long, short)]
        report: PathBuf,
        /// Output image; the extension picks the format: .svg or .png.
        #[arg(long, short)]
        output: PathBuf,
        /// Scenario whose `[gate]` model gives the expected accepted count per
        /// second (drawn dashed); without it no model line is drawn.
        #[arg(long, short)]
        scenario: Option<PathBuf>,
    },
    /// Draw latency by percentile (log-scaled "nines" axis, as
    /// HdrHistogram's plotter) for every group of one or more reports,
    /// overlaid.
    Spectrum {
        /// Output image (.svg or .png).
        #[arg(long, short)]
        output: PathBuf,
        /// Which latency to draw.
        #[arg(long, value_enum, default_value_t = plot::Metric::Accepted)]
        metric: plot::Metric,
        /// Reports (JSON); each curve is labelled FILE-STEM: GROUP.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
    },
    /// Create or remove a client/server namespace pair (root).
    Topology {
        #[command(subcommand)]
        action: TopoCmd,
    },
    /// Run a scenario against peers (plain listener, nftables meter, HAProxy)
    /// side by side (root).
    Peers(peers::Args),
    /// Measure the generator's sustained connection rate on one core.
    Bench(bench::Args),
}

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    gate-load run --rate 2000 --duration 10s --sources 100 127.0.0.1:8080\n  \
    gate-load run --rate 500 --duration 5s --churn --payload echo --request-bytes 4k 127.0.0.1:8080\n  \
    gate-load run --rate 1 --duration 1 --payload bulk --request-bytes 1G 127.0.0.1:8080\n  \
    ip netns exec gl-lab-c gate-load run --syn-flood -R 5000 -d 10s -n 1000 --random-sources 10.77.0.1:8080\n  \
    gate-load run --scenario load-tests/scenarios/flood.toml --validate --plot run.png")]
struct RunArgs {
    /// Scenario file (TOML) for mixes of groups; without it, the one-line
    /// flags (--rate, --duration, ...) describe one group.
    #[arg(long, short, required_unless_present = "rate")]
    scenario: Option<PathBuf>,
    /// Target address:port (one-liners may give it as TARGET instead;
    /// overrides the scenario's `target`).
    #[arg(long, short)]
    target: Option<SocketAddr>,
    /// Target address:port (the same as --target).
    #[arg(value_name = "TARGET", conflicts_with = "target")]
    target_pos: Option<SocketAddr>,
    /// One-liner: connection attempts per second, all sources together.
    #[arg(long, short = 'R', conflicts_with = "scenario", requires = "duration")]
    rate: Option<f64>,
    /// One-liner: how long to start attempts: 10s, 500ms, 2m, or seconds.
    #[arg(long, short = 'd', value_parser = parse_duration_arg, conflicts_with = "scenario")]
    duration: Option<Duration>,
    /// One-liner: number of source addresses, used round robin (default 1;
    /// with --churn one per attempt). From 127.64.0.1 up against loopback,
    /// from 10.77.128.1 up inside a `gate-load topology` client namespace.
    #[arg(long, short = 'n', conflicts_with = "scenario")]
    sources: Option<u64>,
    /// One-liner: the source addresses instead (CIDR, a-b range or address,
    /// comma-separated); they must be local to this machine.
    #[arg(long, value_delimiter = ',', conflicts_with = "scenario")]
    source_range: Option<Vec<String>>,
    /// One-liner: a fresh source address for every attempt (a spoofed
    /// flood's shape; needs rate x duration addresses).
    #[arg(long, conflicts_with = "scenario")]
    churn: bool,
    /// One-liner: send raw SYNs from spoofed sources instead of connecting
    /// (root; only inside a `gate-load topology` namespace): SYN-ACKs count
    /// as accepted, RSTs as refused, silence as timed out.
    #[arg(long, conflicts_with_all = ["scenario", "payload"])]
    syn_flood: bool,
    /// One-liner: draw each attempt's source at random from the sources
    /// (a fixed sequence) instead of in turn.
    #[arg(long, conflicts_with_all = ["scenario", "churn"])]
    random_sources: bool,
    /// One-liner: the client's patience for the SYN-ACK, in ms.
    #[arg(long, default_value_t = 1000, conflicts_with = "scenario")]
    connect_timeout_ms: u64,
    /// One-liner: how accepted connections are closed: rst (SO_LINGER 0, no
    /// TIME_WAIT) or fin.
    #[arg(long, default_value = "rst", conflicts_with = "scenario")]
    close: String,
    /// One-liner: after the handshake, wait this long for a post-accept
    /// close (counted as closed); 0 = don't.
    #[arg(long, default_value_t = 0, conflicts_with = "scenario")]
    confirm_ms: u64,
    /// One-liner: exchange data on every accepted connection:
    /// request-response (rr), echo (byte-verified), or bulk (one stream, MB/s).
    /// The target must answer it: `gate-load listen --mode rr|echo|sink`.
    #[arg(long, value_name = "MODE", conflicts_with = "scenario")]
    payload: Option<String>,
    /// Payload: bytes each connection sends (k, M, G = 1024-based; kB, MB,
    /// GB = 1000-based). Default: rr 64, echo 1k, bulk 100M.
    #[arg(long, value_parser = parse_bytes_arg, requires = "payload")]
    request_bytes: Option<u64>,
    /// Payload rr: bytes of each response (default 1k).
    #[arg(long, value_parser = parse_bytes_arg, requires = "payload")]
    response_bytes: Option<u64>,
    /// Payload: longest an exchange may take after the handshake, in ms
    /// (default 10000).
    #[arg(long, requires = "payload")]
    payload_timeout_ms: Option<u64>,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the run plot here (.svg or .png): outcomes per second with the
    /// model's expected accepted count, and latency per second.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Write the latency-by-percentile plot of every group here (.svg or .png).
    #[arg(long)]
    spectrum: Option<PathBuf>,
    /// Also validate against the scenario's `[gate]` model (exit 1 on FAIL).
    #[arg(long, requires = "scenario")]
    validate: bool,
    /// Allow a target outside loopback and gate-load's own namespaces.
    #[arg(long)]
    allow_any_target: bool,
    /// Most attempts in flight at once.
    #[arg(long, default_value_t = 60_000)]
    max_in_flight: usize,
    /// Pin the generator to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
    /// No progress bar even on a terminal.
    #[arg(long)]
    quiet: bool,
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    load_tests::oneliner::parse_duration(s).map_err(|e| e.to_string())
}

fn parse_bytes_arg(s: &str) -> Result<u64, String> {
    load_tests::oneliner::parse_bytes(s).map_err(|e| e.to_string())
}

impl RunArgs {
    /// The scenario: the file, or the one-line flags.
    fn scenario(&self) -> Result<scenario::Scenario> {
        if let Some(p) = &self.scenario {
            return scenario::Scenario::load(p);
        }
        let target = self
            .target
            .or(self.target_pos)
            .context("a one-line run needs a TARGET (address:port)")?;
        let (Some(rate), Some(duration)) = (self.rate, self.duration) else {
            bail!("a one-line run needs --rate and --duration (or give --scenario)");
        };
        let payload = match &self.payload {
            None => None,
            Some(m) => {
                let mode = scenario::parse_payload_mode("--payload", m)?;
                Some(scenario::PayloadSpec::new(
                    mode,
                    self.request_bytes,
                    self.response_bytes,
                    self.payload_timeout_ms,
                    [
                        "--request-bytes",
                        "--response-bytes",
                        "--payload-timeout-ms",
                    ],
                )?)
            }
        };
        load_tests::oneliner::OneLiner {
            target,
            rate,
            duration,
            sources: self.sources,
            source_range: self.source_range.clone(),
            churn: self.churn,
            connect_timeout_ms: self.connect_timeout_ms,
            close: self.close.clone(),
            confirm_ms: self.confirm_ms,
            payload,
            syn_flood: self.syn_flood,
            random_sources: self.random_sources,
            name: "run".into(),
        }
        .scenario()
    }
}

#[derive(Subcommand)]
enum TopoCmd {
    /// Create namespaces gl-NAME-c (client, N source addresses) and gl-NAME-s
    /// (server, 10.77.0.1); replaces existing ones of that name.
    Up {
        /// Topology name: 1-12 of a-z0-9 (namespaces gl-NAME-c, gl-NAME-s).
        #[arg(long, default_value = "main")]
        name: String,
        /// Source addresses the client namespace holds (1..=32766).
        #[arg(long, default_value_t = 254)]
        addresses: u32,
    },
    /// Remove the namespaces (no error if absent).
    Down {
        /// Topology name given to `up`.
        #[arg(long, default_value = "main")]
        name: String,
    },
}

fn cmd_run(a: &RunArgs) -> Result<bool> {
    let sc = a.scenario()?;
    let target = a
        .target
        .or(a.target_pos)
        .or(sc.target)
        .context("no target: give --target or `target` in the scenario")?;
    topology::check_target(target, a.allow_any_target)?;
    if a.validate && sc.gate.is_none() {
        bail!("--validate: scenario {:?} has no [gate] section", sc.name);
    }
    let opts = engine::RunOptions {
        target,
        progress: !a.quiet,
        max_in_flight: a.max_in_flight,
        pin_cpu: a.cpu,
    };
    let res = engine::run(&sc, &opts)?;
    print!("{}", res.report.summary());
    if let Some(p) = &a.json {
        res.report.save(p)?;
        println!("report written to {}", p.display());
    }
    if let Some(p) = &a.plot {
        let exp = plot::expected_from_model(&sc, &res.report);
        plot::write_run(&res.report, exp.as_ref(), p)?;
        println!("plot written to {}", p.display());
    }
    if let Some(p) = &a.spectrum {
        let rs = vec![(sc.name.clone(), res.report.clone())];
        let title = format!("{}: {}", sc.name, plot::Metric::Accepted.name());
        plot::write_spectrum(&title, &plot::curves_of(&rs, plot::Metric::Accepted), p)?;
        println!("spectrum plot written to {}", p.display());
    }
    if a.validate {
        let v = model::validate(&sc, &res.report)?;
        print!("{}", model::verdict_table(&v));
        return Ok(v.iter().all(|g| g.pass));
    }
    Ok(true)
}

fn real_main() -> Result<bool> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run(a) => cmd_run(&a),
        Cmd::Listen {
            addr,
            mode,
            hold_ms,
            duration_s,
        } => {
            let sock = listener::bind(addr)?;
            let until = match duration_s {
                Some(s) if s.is_finite() && s > 0.0 => {
                    Some(Instant::now() + Duration::from_secs_f64(s))
                }
                Some(s) => bail!("--duration-s {s} must be a positive number"),
                None => None,
            };
            eprintln!("listening on {addr}");
            let stop = std::sync::atomic::AtomicBool::new(false);
            let acc = std::sync::atomic::AtomicU64::new(0);
            let n = listener::serve_mode(
                &sock,
                mode,
                Duration::from_millis(hold_ms),
                &stop,
                &acc,
                until,
            )?;
            println!("accepted {n} connections");
            Ok(true)
        }
        Cmd::Validate { scenario, report } => {
            let sc = scenario::Scenario::load(&scenario)?;
            let r = report::Report::load(&report)?;
            let v = model::validate(&sc, &r)?;
            print!("{}", model::verdict_table(&v));
            Ok(v.iter().all(|g| g.pass))
        }
        Cmd::Merge { output, reports } => {
            let rs = reports
                .iter()
                .map(|p| report::Report::load(p))
                .collect::<Result<Vec<_>>>()?;
            let m = report::Report::merge(&rs)?;
            m.save(&output)?;
            print!("{}", m.summary());
            println!("merged report written to {}", output.display());
            Ok(true)
        }
        Cmd::Plot {
            report,
            output,
            scenario,
        } => {
            let r = report::Report::load(&report)?;
            let exp = match &scenario {
                Some(p) => {
                    let sc = scenario::Scenario::load(p)?;
                    if sc.gate.is_none() {
                        bail!("--scenario {}: no [gate] section to model", p.display());
                    }
                    plot::expected_from_model(&sc, &r)
                }
                None => None,
            };
            plot::write_run(&r, exp.as_ref(), &output)?;
            println!("plot written to {}", output.display());
            Ok(true)
        }
        Cmd::Spectrum {
            output,
            metric,
            reports,
        } => {
            let rs = reports
                .iter()
                .map(|p| {
                    let label = p
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| p.display().to_string());
                    report::Report::load(p).map(|r| (label, r))
                })
                .collect::<Result<Vec<_>>>()?;
            let curves = plot::curves_of(&rs, metric);
            if curves.is_empty() {
                bail!(
                    "no group of these reports has a {} histogram",
                    metric.name()
                );
            }
            plot::write_spectrum(metric.name(), &curves, &output)?;
            println!("spectrum plot written to {}", output.display());
            Ok(true)
        }
        Cmd::Topology { action } => {
            if !load_tests::sys::is_root() {
                bail!("topology needs root (it creates network namespaces)");
            }
            match action {
                TopoCmd::Up { name, addresses } => {
                    let t = topology::Topology::up(&name, addresses)?;
                    println!(
                        "client namespace {} holds sources {}",
                        t.client_ns(),
                        t.sources_cidr()
                    );
                    println!(
                        "server namespace {} has {}",
                        t.server_ns(),
                        topology::SERVER_ADDR
                    );
                    println!(
                        "e.g. ip netns exec {} gate-load listen --addr {}:8080 &",
                        t.server_ns(),
                        topology::SERVER_ADDR
                    );
                    println!(
                        "     ip netns exec {} gate-load run --scenario S.toml --target {}:8080",
                        t.client_ns(),
                        topology::SERVER_ADDR
                    );
                }
                TopoCmd::Down { name } => {
                    topology::Topology {
                        name: name.clone(),
                        addresses: 1,
                    }
                    .down()?;
                    println!("namespaces of topology {name:?} removed");
                }
            }
            Ok(true)
        }
        Cmd::Peers(a) => peers::run(&a),
        Cmd::Bench(a) => bench::run(&a),
    }
}

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("gate-load: validation FAILED");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("gate-load: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every flag and argument of every subcommand has help text.
    #[test]
    fn every_flag_has_help() {
        fn check(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (about)", sub.get_name()));
                }
                check(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        check(&cmd, "gate-load", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }
}
