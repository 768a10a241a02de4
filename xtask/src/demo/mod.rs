//! `cargo xtask demo`: the product end to end on real traffic.
//!
//! As root: builds gate-sim, gatectl and gate-load (release); makes three
//! network namespaces ([`topology`]: clients, the gate, the backend);
//! starts nginx (Debian's) serving a generated site with the PROXY
//! protocol on its listener; starts gate-sim ([`gatesim`]: the driver's own
//! code on gate-usersim, deciding real SYNs through NFQUEUE, relaying
//! accepted connections to nginx with a PROXY v1 header); runs gate-load's
//! mixed scenario from the client namespace ([`scenario`]: fair clients, a
//! greedy one, allow- and deny-listed sources, a botnet that gets banned, a
//! raw spoofed-source SYN flood against the global limit) while fetching
//! real pages through the relay and verifying every byte ([`pages`]);
//! changes the per-key rate and lifts one ban with gatectl during the run
//! ([`control`]); then prints and writes everything ([`summary`]) into one
//! folder whose path it prints last. Exit status 1 when a group leaves the
//! model's interval, a byte is wrong, the PROXY address did not reach the
//! backend, or the driver leaked or broke a rule.
//!
//! Without root (no namespaces) it says so and runs the in-process gate-core
//! demo ([`inprocess`]) instead.
//!
//! `--wine` ([`wine`]): the same kinds of clients against the shipped
//! gate.sys under Wine (post-accept mode), relaying to the same nginx,
//! gatectl.exe for the live changes, the decision lag measured by a probe
//! ([`lag`]).

mod control;
mod gatesim;
pub mod inprocess;
pub(crate) mod interrupt;
mod lag;
mod pages;
mod scenario;
mod summary;
mod topology;
mod wine;

use crate::deps::{self, Pkg};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(clap::Args)]
pub struct Args {
    /// Run the in-process gate-core demo even as root.
    #[arg(long)]
    in_process: bool,
    /// Seed of the in-process demo (arrival jitter and the gate's hash key).
    #[arg(long, default_value_t = inprocess::DEFAULT_SEED)]
    seed: u64,
    /// Folder for the report, plots and ETW events (default:
    /// target/demo/<UTC time>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The same clients against the shipped gate.sys under Wine (post-accept
    /// mode), relaying to the same nginx, with gatectl.exe (as root).
    #[arg(long, conflicts_with = "in_process")]
    wine: bool,
}

/// Debian packages the root demo needs.
const DEMO_PACKAGES: &[Pkg] = &[
    Pkg::new("iproute2", "/usr/sbin/ip"),
    Pkg::new("iptables", "/usr/sbin/iptables-nft"),
    Pkg::new("nginx-light", "/usr/sbin/nginx"),
    Pkg::new(
        "fonts-dejavu-core",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    ),
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn utc_stamp() -> String {
    let s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (s / 86_400, s % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

pub fn run(args: Args) -> Result<()> {
    if args.wine {
        return wine_main(args.out);
    }
    if args.in_process {
        return inprocess::run(args.seed);
    }
    if let Some(why) = cannot_make_namespaces() {
        println!(
            "xtask demo: {why}, so no network namespaces, no NFQUEUE and no real traffic: \
             running the in-process gate-core demo instead (synthetic arrivals on a simulated \
             clock). The real one needs root with CAP_NET_ADMIN and CAP_SYS_ADMIN: sudo cargo \
             xtask demo (in a container: --cap-add NET_ADMIN --cap-add SYS_ADMIN, or \
             --privileged)\n"
        );
        return inprocess::run(args.seed);
    }
    interrupt::install()?;
    if let Err(e) = deps::ensure("the demo", DEMO_PACKAGES).and_then(|()| build()) {
        return Err(interrupted_or(e));
    }
    finish(args.out, real_demo)
}

/// Exits 130 saying the demo was interrupted if it was; otherwise returns
/// `e` as the demo's error.
fn interrupted_or(e: anyhow::Error) -> anyhow::Error {
    if interrupt::requested() || interrupt::is_interrupted(&e) {
        println!("\nxtask demo: interrupted (Ctrl-C) before the run: nothing to clean up");
        std::process::exit(130);
    }
    e
}

/// `--wine`: builds gate.sys, gatectl.exe and gate-load, then runs
/// [`wine::run`]. Needs root (namespaces) like the root demo.
fn wine_main(out: Option<PathBuf>) -> Result<()> {
    if let Some(why) = cannot_make_namespaces() {
        bail!("cargo xtask demo --wine cannot run here: {why}. It needs root with CAP_NET_ADMIN and CAP_SYS_ADMIN: it makes network namespaces and runs Wine's wineserver inside one (sudo cargo xtask demo --wine; there is no in-process fallback for Wine)");
    }
    interrupt::install()?;
    let b = (|| -> Result<wine::Builds> {
        deps::ensure("the demo", DEMO_PACKAGES)?;
        deps::ensure("the demo under Wine", crate::wine::PKGS)?;
        let gate_sys = crate::driver::build_image(crate::driver::Profile::Release, true)?.sys;
        let gatectl_exe = crate::driver::build_gatectl_exe(crate::driver::Profile::Release, true)?;
        build()?;
        Ok(wine::Builds {
            gate_sys,
            gatectl_exe,
            gate_load: control::binary(&target_dir(), "gate-load")?,
        })
    })()
    .map_err(interrupted_or)?;
    finish(out, |o| wine::run(o, &b))
}

/// Makes the output folder, runs `demo` in it, prints how long it took and
/// the folder's path as the last line, and exits 1 on any failure.
fn finish(out: Option<PathBuf>, demo: impl FnOnce(&Path) -> Result<Vec<String>>) -> Result<()> {
    let out = out.unwrap_or_else(|| target_dir().join("demo").join(utc_stamp()));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let out = out.canonicalize()?;
    let started = Instant::now();
    let r = demo(&out);
    if interrupt::requested() || r.as_ref().is_err_and(interrupt::is_interrupted) {
        // The demo's guards have stopped its processes (by PID) and
        // removed its namespaces as its error unwound them.
        println!(
            "\nxtask demo: INTERRUPTED (Ctrl-C) {:.1} s into the run: stopped early, every process it started stopped by its PID and its network namespaces removed; a cut-short run is not analysed (no PASS/FAIL)",
            started.elapsed().as_secs_f64()
        );
        println!("{}", out.display());
        std::process::exit(130);
    }
    println!(
        "\ndemo ran in {:.1} s (after the build)",
        started.elapsed().as_secs_f64()
    );
    let code = match r {
        Ok(f) if f.is_empty() => 0,
        Ok(_) => 1,
        Err(e) => {
            println!("demo error: {e:#}");
            1
        }
    };
    // The folder is the last line, whatever happened.
    println!("{}", out.display());
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

/// Why this process cannot run the real demo (make network namespaces,
/// NFQUEUE rules and raw sockets), or `None` if it can: not root; root
/// without `CAP_NET_ADMIN` or `CAP_SYS_ADMIN` in its effective set
/// (`/proc/self/status` `CapEff`, capabilities(7): bits 12 and 21), as
/// under `setpriv --bounding-set -all` or in an unprivileged container; or
/// a network namespace that cannot be made (`unshare(CLONE_NEWNET)` on a
/// thread of its own, which then exits, fails: seccomp, a kernel without
/// network namespaces).
fn cannot_make_namespaces() -> Option<String> {
    if !deps::is_root() {
        return Some("NOT running as root".into());
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(eff) = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(str::trim)
    {
        let bits = u64::from_str_radix(eff, 16).unwrap_or(0);
        let missing: Vec<&str> = [(12, "CAP_NET_ADMIN"), (21, "CAP_SYS_ADMIN")]
            .into_iter()
            .filter(|(bit, _)| bits & (1u64 << bit) == 0)
            .map(|(_, name)| name)
            .collect();
        if !missing.is_empty() {
            return Some(format!(
                "running as root WITHOUT {} (effective capabilities {eff})",
                missing.join(" and ")
            ));
        }
    }
    let probe = std::thread::spawn(|| {
        // SAFETY: unshare(2) with CLONE_NEWNET moves only this thread into
        // a new network namespace; the thread does nothing else and exits,
        // which frees the namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    })
    .join();
    match probe {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!(
            "running as root, but this system does not let it make a network namespace (unshare(CLONE_NEWNET): {e})"
        )),
        Err(_) => Some("running as root, but the network-namespace probe failed".into()),
    }
}

/// Builds the binaries the demo runs (release: the gate decides at the
/// rates the scenario offers).
fn build() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask demo: building gate-sim, gatectl and gate-load (release)");
    let st = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "gate-sim",
            "-p",
            "gatectl",
            "-p",
            "load-tests",
            "--bin",
            "gate-sim",
            "--bin",
            "gatectl",
            "--bin",
            "gate-load",
        ])
        .status()
        .context("running cargo build")?;
    if !st.success() {
        bail!("building the demo's binaries failed ({st})");
    }
    Ok(())
}

/// Whether this gate-sim knows the relay's registry values.
fn has_relay(gate_sim: &Path) -> bool {
    Command::new(gate_sim)
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("--BackendAddress"))
        .unwrap_or(false)
}

/// What the traffic phase produced.
struct Traffic {
    /// The load's start: every time in the report is from here.
    t0: Instant,
    load_status: std::process::ExitStatus,
    fetches: Vec<pages::Fetch>,
    steps: Result<Vec<control::Step>>,
}

/// The load, the pages and the live changes, all from one start: gate-load
/// with `out/scenario.toml` from `client_ns` (report `out/gate-load.json`),
/// the page fetches from the same namespace on their own thread, and the
/// gatectl steps (each key queried `lead_s` before its change) on this
/// one, all timed from `t0` (now). Returns once gate-load exits (killed
/// after 90 s).
#[allow(clippy::too_many_arguments)]
fn run_traffic(
    t0: Instant,
    client_ns: &str,
    gate_load: &Path,
    out: &Path,
    sc: &load_tests::scenario::Scenario,
    plan: &scenario::PagePlan,
    site: &[topology::Page],
    ctl: &control::Gatectl,
    live: &scenario::Live,
    lead_s: f64,
    read_to: pages::ReadTo,
) -> Result<Traffic> {
    println!(
        "running: {} attempts from gate-load, {} page fetches, live changes at {} s and {} s ...",
        sc.total_attempts(),
        plan.schedule().len(),
        live.unban_at_s,
        live.set_rate_at_s
    );
    let load_log = std::fs::File::create(out.join("gate-load.log"))?;
    let mut load = Command::new("ip")
        .args(["netns", "exec", client_ns])
        .arg(gate_load)
        .args(["run", "--quiet", "--scenario"])
        .arg(out.join("scenario.toml"))
        .arg("--json")
        .arg(out.join("gate-load.json"))
        .stdin(Stdio::null())
        .stdout(load_log.try_clone()?)
        .stderr(load_log)
        .spawn()
        .context("starting gate-load")?;
    let pages_thread = {
        let (plan, site) = (plan.clone(), site.to_vec());
        load_tests::topology::in_netns(client_ns, move || {
            Ok(pages::run(&plan, &site, t0, read_to))
        })?
    };
    let steps = control::run_live(ctl, live, &live.greedy.to_string(), t0, lead_s);
    let load_status = loop {
        if interrupt::requested() {
            // SAFETY: kill(2) on our own child's PID (`ip netns exec`
            // execs gate-load in place).
            unsafe { libc::kill(load.id() as i32, libc::SIGKILL) };
            let _ = load.wait();
            let _ = pages_thread.join();
            return Err(interrupt::Interrupted.into());
        }
        if let Some(s) = load.try_wait()? {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(90) {
            // SAFETY: kill(2) on our own child's PID.
            unsafe { libc::kill(load.id() as i32, libc::SIGKILL) };
            let _ = load.wait();
            bail!("gate-load did not finish within 90 s (killed)");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let fetches = pages_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the page fetcher panicked"))??;
    Ok(Traffic {
        t0,
        load_status,
        fetches,
        steps,
    })
}

/// Runs the demo; returns the failures (empty: PASS).
fn real_demo(out: &Path) -> Result<Vec<String>> {
    let t = target_dir();
    let gate_sim = control::binary(&t, "gate-sim")?;
    let gatectl_bin = control::binary(&t, "gatectl")?;
    let gate_load = control::binary(&t, "gate-load")?;
    let sc = scenario::scenario()?;
    let policy = scenario::policy();
    let live = scenario::live();
    let plan = scenario::page_plan();
    let relay = has_relay(&gate_sim);
    std::fs::write(out.join("scenario.toml"), scenario::SCENARIO_TOML)?;

    println!("gate demo: the driver's code (gate-sim on gate-usersim) in front of nginx, real SYNs through NFQUEUE\n");
    let net = topology::Net::up(topology::NAME)?;
    let site = topology::site();
    let mut nginx = topology::Nginx::start(&out.join("backend"), &site, net.backend_ns(), 60)?;
    println!("{}", net.describe("", nginx.pid()));
    if !relay {
        println!("relay: this build of the driver has no relay (no BackendAddress value): pages cannot be fetched");
    }
    let sim = gatesim::GateSim::start(&gate_sim, out, &policy, &net.gate_ns(), relay)?;
    println!(
        "gate-sim: {}, relay to {} with PROXY v1{}",
        policy.describe(),
        topology::BACKEND_ADDR,
        if relay { "" } else { " (NOT IN THIS BUILD)" }
    );
    let ctl = control::Gatectl::native(gatectl_bin, sim.control.clone());
    ctl.wait_ready(Instant::now(), Duration::from_secs(5))?;

    let Traffic {
        t0,
        load_status,
        fetches,
        steps,
    } = run_traffic(
        Instant::now(),
        &net.client_ns(),
        &gate_load,
        out,
        &sc,
        &plan,
        &site,
        &ctl,
        &live,
        0.2,
        pages::ReadTo::Eof,
    )?;
    let finals = control::final_reads(&ctl, t0);
    let events = sim.events.clone();
    let sim_report = sim.stop()?;
    let nginx_left = nginx.stop();
    let access = nginx.access_lines()?;
    drop(nginx);
    drop(net);

    // Results.
    let report = summary::load_report(out, load_status, &fetches, &plan)?;
    let (early, late) = control::effect_window(steps.as_deref().ok(), &live);
    let model = scenario::model_window(&sc, &policy, &early, &late, &plan);
    let verdicts = summary::verdicts(&report, &model, false);
    let pages_sum = pages::summarize(&fetches, &access, topology::GATE_BACKEND_SIDE);
    let (etw_names, etw_reasons, etw_bad) = summary::etw_counts(&events)?;
    let relay_sum = summary::relay_summary(&events, &plan.clients);
    let plots = summary::plots(&report, &model, out)?;

    println!("\nper group (accepted = handshake completed; syn-flood: SYN-ACK seen; latency of accepted attempts from their intended start):");
    println!("{}", summary::groups_table(&verdicts));
    println!("model: the documented policy replayed at every attempt's intended time (GCRA per key and global, bans, lists, the live changes); interval = model ± (5 % + 3), bans and flood ± (10 % + 5), lists exact");
    println!("\nlive changes (gatectl over the control socket):");
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
    println!("\nrelay (pages through the gate to nginx):");
    print!("{}", summary::pages_text(&pages_sum));
    print!("{}", summary::sim_sockets_text(&sim_report));
    println!(
        "  the relay's ETW events: {} opened, {} closed, {} failed; {} bytes to the backend, {} to clients; causes {:?}",
        relay_sum.opened,
        relay_sum.closed,
        relay_sum.failed,
        relay_sum.to_backend,
        relay_sum.to_client,
        relay_sum.causes
    );
    let bytes_match = relay_sum.pages_to_client == pages_sum.received
        && relay_sum.pages_to_backend == pages_sum.sent;
    println!(
        "  page clients: {} relays closed; the relay counted {} bytes to them and {} from them, they read {} and wrote {}: {}",
        relay_sum.pages_closed,
        relay_sum.pages_to_client,
        relay_sum.pages_to_backend,
        pages_sum.received,
        pages_sum.sent,
        if bytes_match { "PASS" } else { "FAIL" }
    );
    // Every SYN the clients sent was decided once, and what the driver
    // accepted is what the clients saw accepted.
    let sent: u64 = report.groups.iter().map(|g| g.attempted).sum();
    let client_accepted: u64 = report
        .groups
        .iter()
        .filter(|g| g.name != scenario::PAGES_GROUP)
        .map(|g| g.counts.accepted)
        .sum::<u64>()
        + pages_sum.connected;
    let etw_decided = etw_names.get("ConnectionAccepted").copied().unwrap_or(0)
        + etw_names.get("ConnectionRejected").copied().unwrap_or(0);
    let etw_accepted = etw_names.get("ConnectionAccepted").copied().unwrap_or(0);
    let close = |a: u64, b: u64| a.abs_diff(b) * 200 <= a.max(b); // within 0.5 %
    let accounting_ok = close(sent, etw_decided) && close(client_accepted, etw_accepted);
    println!(
        "\naccounting: clients sent {sent} SYNs, the driver decided {etw_decided} (ETW); clients saw {client_accepted} accepted, the driver accepted {etw_accepted}: {}",
        if accounting_ok { "PASS (within 0.5 %)" } else { "FAIL" }
    );
    println!(
        "\nETW events written by the driver (JSON lines: {}):",
        events.display()
    );
    println!("{}", summary::counts_table("event", &etw_names));
    println!("{}", summary::counts_table("decision/reason", &etw_reasons));
    println!("\ndriver counters (gatectl status at the end):");
    if let Some(s) = finals.iter().find(|s| s.command == "gatectl status") {
        println!("{}", s.output);
    }
    println!(
        "\ngate-sim at exit: exit code {}, leaks: {}, violations: {}; NFQUEUE syns={} accepted={} rejected={} lost={}",
        sim_report.exit_code,
        sim_report.leaks,
        sim_report.violations,
        sim_report.nfq.get("syns").map_or("?", String::as_str),
        sim_report.nfq.get("accepted").map_or("?", String::as_str),
        sim_report.nfq.get("rejected").map_or("?", String::as_str),
        sim_report.nfq.get("lost").map_or("?", String::as_str),
    );

    let mut failed = summary::common_failures(&verdicts, &pages_sum);
    if !nginx_left.is_empty() {
        failed.push(format!(
            "nginx workers {nginx_left:?} still running after SIGQUIT and SIGKILL"
        ));
    }
    if !relay {
        failed.push("the driver has no relay in this build".into());
    }
    if relay && !bytes_match {
        failed.push(format!(
            "the relay's byte counts for the page clients ({} to them, {} from them) differ from what they read ({}) and wrote ({})",
            relay_sum.pages_to_client, relay_sum.pages_to_backend, pages_sum.received, pages_sum.sent
        ));
    }
    if !accounting_ok {
        failed.push(format!(
            "accounting: {sent} SYNs sent vs {etw_decided} decided, {client_accepted} accepted by the clients' count vs {etw_accepted} by the driver's"
        ));
    }
    if !sim_report.clean() {
        failed.push(format!(
            "the driver: exit code {}, leaks: {}, violations: {}",
            sim_report.exit_code, sim_report.leaks, sim_report.violations
        ));
    }
    if !steps_ok {
        failed.push("a live change with gatectl failed".into());
    }
    if etw_bad > 0 {
        failed.push(format!("{etw_bad} ETW line(s) were not JSON"));
    }

    let doc = serde_json::json!({
        "format": "gate-demo-report/1",
        "pass": failed.is_empty(),
        "failures": failed,
        "policy": policy,
        "live": live,
        "groups": verdicts,
        "model": model,
        "live_steps": steps.as_ref().ok(),
        "final_reads": finals,
        "pages": { "summary": pages_sum, "fetches": fetches },
        "etw": { "events": etw_names, "decisions": etw_reasons, "relay": relay_sum },
        "gate_sim": sim_report,
        "load": report,
    });
    summary::write_and_conclude(
        out,
        &doc,
        &plots,
        &format!("{} (ETW events, JSON lines)", events.display()),
        &failed,
        "every group within the model's interval, every page byte right, the client's address at the backend, the driver clean",
    )?;
    Ok(failed)
}
