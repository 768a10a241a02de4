//! `gate-load peers`: the same scenario against peers that do the gate's job,
//! side by side, each started by the harness in a fresh namespace pair
//! (see [`crate::topology`]): a plain listener (the baseline), an nftables
//! per-source meter (`reject with tcp reset` over the limit, before the
//! handshake) and HAProxy (stick-table `conn_rate(1s)` with
//! `tcp-request connection reject`, after the handshake, so its runs use a
//! confirm window). With `--gate-sim PATH`, also gate-sim: the driver's
//! own code on gate-usersim deciding each SYN through NFQUEUE, with the
//! scenario's limits as its registry values. Reports accuracy (observed / model accepted per group)
//! and the highest new-connection rate each sustains, as ratios.
//!
//! With `--relay`, the relay comparison instead: the same payload run (see
//! [`crate::payload`]) straight to the backend and through HAProxy in TCP
//! (relay) mode, side by side: what relaying costs in handshake, time to
//! first byte, transfer time and MB/s.

use crate::engine::{self, RunOptions};
use crate::listener::Background;
use crate::model;
use crate::payload::ServeMode;
use crate::report::PayloadMode;
use crate::report::Report;
use crate::scenario::{GateConfig, PayloadSpec, Scenario};
use crate::topology::{in_netns, sh, Guard, Topology, SERVER_ADDR};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Scenario with a `[gate]` section; its sources must lie in
    /// 10.77.128.0/17 (the harness's client namespace), its target is ignored.
    #[arg(long, short, required_unless_present = "relay")]
    pub scenario: Option<PathBuf>,
    /// Run the relay comparison instead: a payload run straight to the
    /// backend and through HAProxy in TCP mode (no limits), side by side.
    #[arg(long, conflicts_with = "scenario")]
    pub relay: bool,
    /// Relay comparison: payload mode (rr, echo or bulk).
    #[arg(long, default_value = "echo", requires = "relay")]
    pub relay_payload: String,
    /// Relay comparison: connections per second (for bulk: streams in all).
    #[arg(long, default_value_t = 200.0, requires = "relay")]
    pub relay_rate: f64,
    /// Relay comparison: seconds of connections.
    #[arg(long, default_value_t = 3.0, requires = "relay")]
    pub relay_duration_s: f64,
    /// Relay comparison: bytes each connection sends (k, M, G; default as
    /// `run --payload`).
    #[arg(long, value_parser = crate::oneliner::parse_bytes_arg, requires = "relay")]
    pub request_bytes: Option<u64>,
    /// Relay comparison, rr: bytes of each response.
    #[arg(long, value_parser = crate::oneliner::parse_bytes_arg, requires = "relay")]
    pub response_bytes: Option<u64>,
    /// Relay comparison: write the percentile spectrum of the transfer
    /// times (direct and relayed overlaid) here (.svg or .png).
    #[arg(long, requires = "relay")]
    pub relay_spectrum: Option<PathBuf>,
    /// Offered rates (connections/s) of the sustained-rate ramp.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "2000,5000,10000,15000,20000,30000"
    )]
    pub steps: Vec<u32>,
    /// Seconds per ramp step.
    #[arg(long, default_value_t = 1.0)]
    pub step_s: f64,
    /// A step counts as sustained only if the 99th percentile latency (from
    /// intended start, so a falling-behind peer shows) stays under this.
    #[arg(long, default_value_t = 20.0)]
    pub max_p99_ms: f64,
    /// Leave HAProxy out.
    #[arg(long)]
    pub skip_haproxy: bool,
    /// Also compare gate-sim (the driver's code behind NFQUEUE, reject =
    /// reset), run from this binary (`cargo build --release -p gate-sim`).
    #[arg(long, value_name = "PATH")]
    pub gate_sim: Option<PathBuf>,
    /// Write the results table (Markdown) here too.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
}

/// Which peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Plain,
    NftMeter,
    Haproxy,
    /// gate-sim: the driver's code on gate-usersim behind NFQUEUE.
    GateSim,
    /// Relay comparison: the backend itself.
    Direct,
    /// Relay comparison: HAProxy `mode tcp` relaying to the backend.
    HaproxyRelay,
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::Plain => "plain listener",
            Peer::NftMeter => "nftables meter",
            Peer::Haproxy => "HAProxy stick-table",
            Peer::GateSim => "gate-sim (driver code)",
            Peer::Direct => "direct to backend",
            Peer::HaproxyRelay => "HAProxy TCP relay",
        }
    }
}

fn nft_rate(what: &str, r: f64) -> Result<String> {
    if r.fract() == 0.0 && r >= 1.0 {
        return Ok(format!("{}/second", r as u64));
    }
    let per_min = r * 60.0;
    if per_min.fract() == 0.0 && per_min >= 1.0 {
        return Ok(format!("{}/minute", per_min as u64));
    }
    bail!("{what} = {r}: nftables needs a whole number per second or per minute")
}

fn nft_burst(what: &str, b: f64) -> Result<u64> {
    if b.fract() != 0.0 || b < 1.0 {
        bail!("{what} = {b}: nftables needs a whole number of packets");
    }
    Ok(b as u64)
}

/// nftables rules that implement `gate` on TCP port `port` (IPv4 and IPv6):
/// a per-key meter (addresses cut to the prefix length), then an optional
/// global limit; SYNs over either are answered with an RST.
///
/// Difference from the model: a SYN that passes its key's meter but fails
/// the global limit has already spent its key's token.
pub fn nft_meter_rules(port: u16, gate: &GateConfig) -> Result<String> {
    let rate = nft_rate("gate.per_key_rate", gate.per_key_rate)?;
    let burst = nft_burst("gate.per_key_burst", gate.per_key_burst)?;
    let v4 = if gate.ipv4_prefix >= 32 {
        "ip saddr".to_string()
    } else {
        let m = if gate.ipv4_prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(gate.ipv4_prefix))
        };
        format!("ip saddr and {}", std::net::Ipv4Addr::from(m))
    };
    let v6 = if gate.ipv6_prefix >= 128 {
        "ip6 saddr".to_string()
    } else {
        let m = if gate.ipv6_prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(gate.ipv6_prefix))
        };
        format!("ip6 saddr and {}", std::net::Ipv6Addr::from(m))
    };
    let syn = format!("tcp dport {port} tcp flags & (syn|ack) == syn");
    let mut s = String::new();
    let _ = writeln!(s, "table inet gatepeer {{");
    let _ = writeln!(s, "  chain input {{");
    let _ = writeln!(s, "    type filter hook input priority 0; policy accept;");
    let _ = writeln!(
        s,
        "    meta nfproto ipv4 {syn} meter gl4 size 1000000 {{ {v4} limit rate over {rate} burst {burst} packets }} reject with tcp reset"
    );
    let _ = writeln!(
        s,
        "    meta nfproto ipv6 {syn} meter gl6 size 1000000 {{ {v6} limit rate over {rate} burst {burst} packets }} reject with tcp reset"
    );
    if let Some(g) = gate.global_rate {
        let grate = nft_rate("gate.global_rate", g)?;
        let gburst = nft_burst("gate.global_burst", gate.global_burst.unwrap_or(g))?;
        let _ = writeln!(
            s,
            "    {syn} limit rate over {grate} burst {gburst} packets reject with tcp reset"
        );
    }
    let _ = writeln!(s, "  }}\n}}");
    Ok(s)
}

/// HAProxy configuration for `gate`: frontend on `bind`, per-source
/// connection rate over 1 s above `per_key_rate` rejected after accept,
/// accepted connections relayed to `backend`.
///
/// HAProxy counts connections in a sliding one-second window; it has no
/// burst, so the model's burst is not honoured.
pub fn haproxy_config(bind: SocketAddr, backend: SocketAddr, gate: &GateConfig) -> String {
    let limit = gate.per_key_rate.round().max(1.0) as u64;
    format!(
        "global\n  maxconn 9000\n\
         defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
         frontend gatepeer\n  bind {bind}\n  maxconn 9000\n\
         \x20 stick-table type ipv6 size 2m expire 60s store conn_rate(1s)\n\
         \x20 tcp-request connection track-sc0 src\n\
         \x20 tcp-request connection reject if {{ sc0_conn_rate gt {limit} }}\n\
         \x20 default_backend sink\n\
         backend sink\n  server s1 {backend} maxconn 9000\n"
    )
}

/// HAProxy configuration of a plain TCP relay (`mode tcp`, no limits): every
/// connection to `bind` is relayed to `backend`.
pub fn haproxy_relay_config(bind: SocketAddr, backend: SocketAddr) -> String {
    format!(
        "global\n  maxconn 9000\n\
         defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\
         frontend relay\n  bind {bind}\n  maxconn 9000\n  default_backend backend\n\
         backend backend\n  server s1 {backend} maxconn 9000\n"
    )
}

/// Starts HAProxy with `config` in namespace `ns` and waits until `front`
/// accepts connections.
fn start_haproxy(ns: &str, name: &str, config: &str, front: SocketAddr) -> Result<Child> {
    let path = std::env::temp_dir().join(format!("gate-load-{name}.cfg"));
    std::fs::write(&path, config)?;
    let log = std::env::temp_dir().join(format!("gate-load-{name}.haproxy.log"));
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "haproxy", "-db", "-f"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting haproxy (Debian package haproxy)")?;
    // Wait until it listens (probe from the server namespace itself).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ok = in_netns(ns, move || {
            Ok(std::net::TcpStream::connect_timeout(&front, Duration::from_millis(200)).is_ok())
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("probe panicked"))??;
        if ok {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "haproxy did not start listening on {front} within 5 s (see {})",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A peer running in a fresh topology; stops everything on drop.
struct Running {
    topo: Guard,
    target: SocketAddr,
    /// The real listener (gate-sim has its own).
    _listener: Option<Background>,
    haproxy: Option<Child>,
    gate_sim: Option<Child>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = self.haproxy.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(c) = self.gate_sim.as_mut() {
            // SIGINT: gate-sim removes its rules and unloads the driver.
            if let Ok(pid) = libc::pid_t::try_from(c.id()) {
                // SAFETY: kill(2) on our own child, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGINT) };
            }
            let _ = c.wait();
        }
    }
}

/// The gate-sim flags for the scenario's `[gate]` limits (registry values
/// of gate-driver/CONFIG.md).
pub fn gate_sim_args(port: u16, gate: &GateConfig) -> Result<Vec<String>> {
    let milli = |what: &str, r: f64| -> Result<String> {
        let m = (r * 1000.0).round();
        if !(1.0..=1e10).contains(&m) {
            bail!("{what} = {r}: gate-sim needs 0.001 to 10000000 per second");
        }
        Ok(format!("{}", m as u64))
    };
    let whole = |what: &str, b: f64| -> Result<String> {
        if b.fract() != 0.0 || b < 1.0 || b > f64::from(u32::MAX) {
            bail!("{what} = {b}: gate-sim needs a whole number of tokens");
        }
        Ok(format!("{}", b as u64))
    };
    let mut a: Vec<String> = vec![
        "--ListenPort".into(),
        port.to_string(),
        "--RateMilliPerSecond".into(),
        milli("per_key_rate", gate.per_key_rate)?,
        "--Burst".into(),
        whole("per_key_burst", gate.per_key_burst)?,
        "--Ipv4PrefixLength".into(),
        gate.ipv4_prefix.to_string(),
        "--Ipv6PrefixLength".into(),
        gate.ipv6_prefix.to_string(),
    ];
    if let Some(g) = gate.global_rate {
        a.extend([
            "--GlobalRateMilliPerSecond".into(),
            milli("global_rate", g)?,
            "--GlobalBurst".into(),
            whole("global_burst", gate.global_burst.unwrap_or(g))?,
        ]);
    }
    Ok(a)
}

/// Starts gate-sim in namespace `ns` and waits for its `ready` line.
fn start_gate_sim(bin: &std::path::Path, ns: &str, args: &[String]) -> Result<Child> {
    use std::io::BufRead;
    let mut child = Command::new(bin)
        .args(["--netns", ns, "--stats-interval-ms", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting gate-sim {}", bin.display()))?;
    let out = child.stdout.take().context("gate-sim stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if l == "ready" {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(20)).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        bail!("gate-sim did not get ready within 20 s");
    }
    Ok(child)
}

fn start(peer: Peer, gate: &GateConfig, name: &str, args: &Args) -> Result<Running> {
    let topo = Guard(Topology::up(name, crate::topology::MAX_ADDRESSES)?);
    let sns = topo.0.server_ns();
    let port = 8080u16;
    let front = SocketAddr::new(SERVER_ADDR.into(), port);
    let (listen_at, hold) = match peer {
        Peer::Haproxy => (
            "127.0.0.1:9080".parse::<SocketAddr>()?,
            Duration::from_secs(1),
        ),
        _ => (front, Duration::ZERO),
    };
    let listener = if peer == Peer::GateSim {
        None
    } else {
        Some(
            in_netns(&sns, move || Background::start(listen_at, hold, None))?
                .join()
                .map_err(|_| anyhow::anyhow!("listener start panicked"))??,
        )
    };
    let mut haproxy = None;
    let mut gate_sim = None;
    match peer {
        Peer::Plain => {}
        Peer::GateSim => {
            let bin = args
                .gate_sim
                .as_deref()
                .context("gate-sim needs --gate-sim PATH")?;
            gate_sim = Some(start_gate_sim(bin, &sns, &gate_sim_args(port, gate)?)?);
        }
        Peer::NftMeter => {
            let rules = nft_meter_rules(port, gate)?;
            let path = std::env::temp_dir().join(format!("gate-load-{name}.nft"));
            std::fs::write(&path, rules)?;
            let p = path.to_string_lossy().into_owned();
            sh(&["ip", "netns", "exec", &sns, "nft", "-f", &p])?;
            let _ = std::fs::remove_file(&path);
        }
        Peer::Haproxy => {
            haproxy = Some(start_haproxy(
                &sns,
                name,
                &haproxy_config(front, listen_at, gate),
                front,
            )?);
        }
        Peer::Direct | Peer::HaproxyRelay => bail!("{} is a relay peer", peer.name()),
    }
    Ok(Running {
        topo,
        target: front,
        _listener: listener,
        haproxy,
        gate_sim,
    })
}

fn run_in_client(r: &Running, sc: &Scenario) -> Result<Report> {
    let sc = sc.clone();
    let target = r.target;
    let cns = r.topo.0.client_ns();
    in_netns(&cns, move || {
        let opts = RunOptions {
            target,
            progress: false,
            max_in_flight: 60_000,
            pin_cpu: None,
        };
        Ok(engine::run(&sc, &opts)?.report)
    })?
    .join()
    .map_err(|_| anyhow::anyhow!("generator thread panicked"))?
}

fn ramp_scenario(rate: u32, step_s: f64, confirm_ms: u64) -> Result<Scenario> {
    Scenario::parse(&format!(
        "name = \"ramp-{rate}\"\nconnect_timeout_ms = 1000\nconfirm_ms = {confirm_ms}\n\
         [[group]]\nname = \"flood\"\nsources = \"10.77.128.0/17\"\nrate = {rate}\n\
         duration_s = {step_s}\nchurn = true\n"
    ))
}

/// One peer's figures.
pub struct PeerResult {
    pub peer: Peer,
    /// Per group: (name, expected, observed).
    pub accuracy: Vec<(String, u64, u64)>,
    /// Per ramp step: (offered rate, accepted share, p99 latency ms).
    pub ramp: Vec<(u32, f64, f64)>,
    pub sustained: u32,
}

/// Share of attempts that must be accepted for a step to count as sustained.
pub const SUSTAINED_SHARE: f64 = 0.99;

fn measure(peer: Peer, sc: &Scenario, gate: &GateConfig, args: &Args) -> Result<PeerResult> {
    let tag = format!("pr{}{}", std::process::id() % 10_000, peer as u8);
    let confirm = if peer == Peer::Haproxy { 200 } else { 0 };
    let mut sc = sc.clone();
    sc.confirm = Duration::from_millis(confirm);
    let running = start(peer, gate, &tag, args)?;
    let report = run_in_client(&running, &sc)?;
    drop(running);
    eprint!("{}: {}", peer.name(), report.summary());
    let exp = model::expected_accepted(&sc, gate);
    let accuracy = sc
        .groups
        .iter()
        .zip(exp)
        .map(|(g, e)| {
            let o = report.group(&g.name).map_or(0, |r| r.counts.accepted);
            (g.name.clone(), e, o)
        })
        .collect();
    let mut ramp = Vec::new();
    let mut sustained = 0;
    for &rate in &args.steps {
        // A fresh peer per step: no meter or stick-table state carries over.
        let running = start(peer, gate, &tag, args)?;
        let r = run_in_client(&running, &ramp_scenario(rate, args.step_s, confirm)?)?;
        drop(running);
        let g = r.groups.first().context("ramp report has no group")?;
        let share = g.counts.accepted as f64 / g.attempted.max(1) as f64;
        let p99 = g
            .latency(crate::report::Outcome::Accepted)
            .map_or(0.0, |h| h.value_at_quantile(0.99) as f64 / 1000.0);
        eprintln!(
            "{}: offered {rate}/s: accepted {:.1} %, p99 {p99:.2} ms, timed out {}, other {}",
            peer.name(),
            share * 100.0,
            g.counts.timed_out,
            g.counts.other
        );
        ramp.push((rate, share, p99));
        if share >= SUSTAINED_SHARE && p99 <= args.max_p99_ms {
            sustained = rate;
        } else {
            break;
        }
    }
    Ok(PeerResult {
        peer,
        accuracy,
        ramp,
        sustained,
    })
}

/// The results as a Markdown table.
pub fn table(results: &[PeerResult]) -> String {
    let base = results
        .iter()
        .find(|r| r.peer == Peer::Plain)
        .map_or(1, |r| r.sustained.max(1));
    let mut s = String::new();
    let groups: Vec<&str> = results
        .first()
        .map(|r| r.accuracy.iter().map(|a| a.0.as_str()).collect())
        .unwrap_or_default();
    let _ = write!(s, "| peer |");
    for g in &groups {
        let _ = write!(s, " {g}: observed/model |");
    }
    let _ = writeln!(s, " sustained new conn/s | vs plain listener |");
    let _ = write!(s, "|---|");
    for _ in &groups {
        let _ = write!(s, "---|");
    }
    let _ = writeln!(s, "---|---|");
    for r in results {
        let _ = write!(s, "| {} |", r.peer.name());
        for (_, e, o) in &r.accuracy {
            let ratio = if *e == 0 { 0.0 } else { *o as f64 / *e as f64 };
            let _ = write!(s, " {o}/{e} = {ratio:.3} |");
        }
        let _ = writeln!(
            s,
            " >= {} | {:.2} |",
            r.sustained,
            r.sustained as f64 / base as f64
        );
    }
    s
}

pub fn run(args: &Args) -> Result<bool> {
    if !crate::sys::is_root() {
        bail!("peers needs root (namespaces, nftables, HAProxy)");
    }
    if !args.step_s.is_finite() || args.step_s <= 0.0 || args.step_s > 10.0 {
        bail!("--step-s {} must be within (0, 10]", args.step_s);
    }
    if let Some(bad) = args.steps.iter().find(|r| **r == 0 || **r > 32_000) {
        bail!("--steps: rate {bad} must be 1..=32000 (one fresh address per attempt)");
    }
    if args.relay {
        return run_relay(args);
    }
    let path = args
        .scenario
        .as_ref()
        .context("give --scenario (or --relay)")?;
    let sc = Scenario::load(path)?;
    let gate = sc
        .gate
        .clone()
        .with_context(|| format!("scenario {:?} has no [gate] section", sc.name))?;
    let mut peers = vec![Peer::Plain, Peer::NftMeter];
    if !args.skip_haproxy {
        peers.push(Peer::Haproxy);
    }
    if args.gate_sim.is_some() {
        peers.push(Peer::GateSim);
    }
    let mut results = Vec::new();
    for p in peers {
        results.push(measure(p, &sc, &gate, args)?);
    }
    let t = table(&results);
    println!("{t}");
    println!(
        "sustained = highest offered rate (of {:?}, {} s each, a fresh address per attempt) with >= {:.0} % accepted and p99 latency <= {} ms",
        args.steps,
        args.step_s,
        SUSTAINED_SHARE * 100.0,
        args.max_p99_ms
    );
    if let Some(p) = &args.markdown {
        std::fs::write(p, &t).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(true)
}

/// The relay comparison's payload run: `rate` connections per second for
/// `secs` from the topology's client block, each exchanging `payload`.
pub fn relay_scenario(rate: f64, secs: f64, payload: PayloadSpec) -> Result<Scenario> {
    let mut sc = Scenario::parse(&format!(
        "name = \"relay\"\nconnect_timeout_ms = 1000\n\
         [[group]]\nname = \"{}\"\nsources = \"10.77.128.1-10.77.131.254\"\nrate = {rate}\n\
         duration_s = {secs}\n",
        payload.mode.name()
    ))
    .context("relay scenario")?;
    sc.payload = Some(payload);
    Ok(sc)
}

/// Runs `sc` against `peer` (Direct or HaproxyRelay) in a fresh topology,
/// with a backend answering `mode`.
pub fn relay_run(peer: Peer, sc: &Scenario, mode: ServeMode, name: &str) -> Result<Report> {
    let topo = Guard(Topology::up(name, 1020)?);
    let sns = topo.0.server_ns();
    let front = SocketAddr::new(SERVER_ADDR.into(), 8080);
    let backend_at = match peer {
        Peer::Direct => front,
        Peer::HaproxyRelay => "127.0.0.1:9080".parse::<SocketAddr>()?,
        _ => bail!("{} is not a relay peer", peer.name()),
    };
    let backend = in_netns(&sns, move || {
        Background::start_mode(backend_at, mode, Duration::ZERO, None)
    })?
    .join()
    .map_err(|_| anyhow::anyhow!("backend start panicked"))??;
    let haproxy = match peer {
        Peer::HaproxyRelay => Some(start_haproxy(
            &sns,
            name,
            &haproxy_relay_config(front, backend_at),
            front,
        )?),
        _ => None,
    };
    let running = Running {
        topo,
        target: front,
        _listener: Some(backend),
        haproxy,
        gate_sim: None,
    };
    run_in_client(&running, sc)
}

/// One row of the relay table.
fn relay_row(t: &mut comfy_table::Table, peer: Peer, r: &Report, base_mb_s: Option<f64>) {
    let mut r = r.clone();
    r.derive_stats();
    let Some(g) = r.groups.first() else { return };
    let Some(p) = &g.payload else { return };
    let mb_s = p.mb_per_s;
    let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| {
        if h.is_empty() {
            "-".to_string()
        } else {
            format!("{:.3}", h.value_at_quantile(q) as f64 / 1000.0)
        }
    };
    t.add_row(vec![
        peer.name().to_string(),
        format!("{}/{}", p.completed, g.attempted),
        p.failed_total().to_string(),
        format!(
            "{} / {}",
            ms(&g.service_us.0, 0.5),
            ms(&g.service_us.0, 0.99)
        ),
        format!("{} / {}", ms(&p.ttfb_us.0, 0.5), ms(&p.ttfb_us.0, 0.99)),
        format!(
            "{} / {}",
            ms(&p.transfer_us.0, 0.5),
            ms(&p.transfer_us.0, 0.99)
        ),
        format!("{mb_s:.1}"),
        match base_mb_s {
            Some(b) if b > 0.0 => format!("{:.2}", mb_s / b),
            _ => "1.00".to_string(),
        },
    ]);
}

/// The relay comparison: direct to the backend, then through HAProxy.
fn run_relay(args: &Args) -> Result<bool> {
    let mode = crate::scenario::parse_payload_mode("--relay-payload", &args.relay_payload)?;
    let payload = PayloadSpec::new(
        mode,
        args.request_bytes,
        args.response_bytes,
        None,
        ["--request-bytes", "--response-bytes", "timeout"],
    )?;
    let serve = match mode {
        PayloadMode::RequestResponse => ServeMode::Rr,
        PayloadMode::Echo => ServeMode::Echo,
        PayloadMode::Bulk => ServeMode::Sink,
    };
    let sc = relay_scenario(args.relay_rate, args.relay_duration_s, payload)?;
    let tag = format!("rl{}", std::process::id() % 10_000);
    let mut reports = Vec::new();
    for peer in [Peer::Direct, Peer::HaproxyRelay] {
        let r = relay_run(peer, &sc, serve, &tag)?;
        eprint!("{}: {}", peer.name(), r.summary());
        reports.push((peer, r));
    }
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::ASCII_MARKDOWN)
        .force_no_tty()
        .set_header(vec![
            "peer",
            "completed",
            "failed",
            "handshake p50 / p99 ms",
            "ttfb p50 / p99 ms",
            "transfer p50 / p99 ms",
            "MB/s per connection",
            "vs direct",
        ]);
    let mut base = None;
    for (peer, r) in &reports {
        relay_row(&mut t, *peer, r, base);
        if base.is_none() {
            let mut d = r.clone();
            d.derive_stats();
            base = d
                .groups
                .first()
                .and_then(|g| g.payload.as_ref())
                .map(|p| p.mb_per_s);
        }
    }
    println!("{t}");
    println!(
        "payload {} {}/{} bytes, {} conn/s for {} s from 1020 addresses; times from the completed handshake",
        mode.name(),
        sc.payload.as_ref().map_or(0, |p| p.request_bytes),
        sc.payload.as_ref().map_or(0, |p| p.response_bytes),
        args.relay_rate,
        args.relay_duration_s
    );
    if let Some(p) = &args.markdown {
        std::fs::write(p, t.to_string()).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.relay_spectrum {
        let named: Vec<(String, Report)> = reports
            .iter()
            .map(|(peer, r)| (peer.name().to_string(), r.clone()))
            .collect();
        let curves = crate::plot::curves_of(&named, crate::plot::Metric::Transfer);
        crate::plot::write_spectrum("transfer time: direct vs HAProxy TCP relay", &curves, p)?;
        println!("spectrum plot written to {}", p.display());
    }
    let all_done = reports.iter().all(|(_, r)| {
        r.groups
            .iter()
            .all(|g| g.payload.as_ref().is_some_and(|p| p.failed_total() == 0))
    });
    Ok(all_done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(prefix: u8) -> GateConfig {
        GateConfig {
            per_key_rate: 10.0,
            per_key_burst: 20.0,
            ipv4_prefix: prefix,
            ipv6_prefix: 64,
            global_rate: Some(1000.0),
            global_burst: None,
        }
    }

    #[test]
    fn haproxy_config_tracks_sources_and_rejects_over_rate() {
        let c = haproxy_config(
            "10.77.0.1:8080".parse().unwrap(),
            "127.0.0.1:9080".parse().unwrap(),
            &gate(32),
        );
        assert!(c.contains("bind 10.77.0.1:8080"), "{c}");
        assert!(c.contains("store conn_rate(1s)"), "{c}");
        assert!(c.contains("tcp-request connection track-sc0 src"), "{c}");
        assert!(c.contains("reject if { sc0_conn_rate gt 10 }"), "{c}");
        assert!(c.contains("server s1 127.0.0.1:9080"), "{c}");
        // When HAProxy is installed, it must accept the configuration.
        let path = std::env::temp_dir().join(format!("gl-haproxy-{}.cfg", std::process::id()));
        std::fs::write(&path, &c).unwrap();
        if let Ok(out) = std::process::Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
        {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn gate_sim_flags_follow_the_gate() {
        let a = gate_sim_args(8080, &gate(24)).unwrap().join(" ");
        assert_eq!(
            a,
            "--ListenPort 8080 --RateMilliPerSecond 10000 --Burst 20 --Ipv4PrefixLength 24 \
             --Ipv6PrefixLength 64 --GlobalRateMilliPerSecond 1000000 --GlobalBurst 1000"
        );
        let mut g = gate(32);
        g.global_rate = None;
        g.per_key_rate = 0.5;
        let a = gate_sim_args(8080, &g).unwrap().join(" ");
        assert!(
            a.contains("--RateMilliPerSecond 500 ") && !a.contains("Global"),
            "{a}"
        );
        g.per_key_burst = 2.5;
        let e = gate_sim_args(8080, &g).unwrap_err().to_string();
        assert!(e.contains("per_key_burst") && e.contains("2.5"), "{e}");
    }

    #[test]
    fn nft_rules_follow_the_gate() {
        let r = nft_meter_rules(8080, &gate(24)).unwrap();
        assert!(
            r.contains("ip saddr and 255.255.255.0 limit rate over 10/second burst 20 packets"),
            "{r}"
        );
        assert!(
            r.contains("ip6 saddr and ffff:ffff:ffff:ffff:: limit"),
            "{r}"
        );
        assert!(
            r.contains("limit rate over 1000/second burst 1000 packets"),
            "{r}"
        );
        let mut g = gate(32);
        g.per_key_rate = 0.5;
        assert!(nft_meter_rules(1, &g).unwrap().contains("30/minute"));
        g.per_key_rate = 0.3333;
        let e = nft_meter_rules(1, &g).unwrap_err().to_string();
        assert!(e.contains("gate.per_key_rate = 0.3333"), "{e}");
    }
}
