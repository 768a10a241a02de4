//! `cargo xtask ci`: every check and test, in the order a failure is
//! cheapest to find.

use crate::deps::{self, Pkg};
use anyhow::{bail, Context, Result};
use std::process::Command;

#[derive(clap::Args)]
pub struct Args {}

/// Runs a command from the workspace root, failing with its name if it fails.
pub fn run_step(name: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("xtask ci: == {name} ==");
    let status = cmd.status().with_context(|| format!("starting {name}"))?;
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Debian packages the tests need: the load tests drive nftables, iptables
/// (NFQUEUE), HAProxy and network namespaces; gate-sim's flood check and
/// gate-load's syn-flood test use hping3.
const TEST_PACKAGES: &[Pkg] = &[
    Pkg::new("nftables", "/usr/sbin/nft"),
    Pkg::new("iptables", "/usr/sbin/iptables-nft"),
    Pkg::new("haproxy", "/usr/sbin/haproxy"),
    // gate-sim's relay test puts nginx (PROXY v2) behind the gate.
    Pkg::new("nginx-light", "/usr/sbin/nginx"),
    Pkg::new("iproute2", "/usr/sbin/ip"),
    // gate-load's syn-flood test compares its offered rate with hping3's.
    Pkg::new("hping3", "/usr/sbin/hping3"),
    // gate-load's plots draw their text with this font (PNG and SVG).
    Pkg::new(
        "fonts-dejavu-core",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    ),
];

pub fn run(_args: Args) -> Result<()> {
    deps::ensure("the test command", TEST_PACKAGES)?;
    run_step("rustfmt", cargo().args(["fmt", "--all", "--", "--check"]))?;
    run_step(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    run_step("tests", cargo().args(["test", "--workspace"]))?;
    crate::leakcheck::run()?;
    if deps::is_root() {
        run_step(
            "NFQUEUE front of the simulation (real SYNs in a test namespace)",
            cargo().args([
                "test",
                "--package",
                "gate-usersim",
                "--features",
                "nfq",
                "--test",
                "nfq_front",
                "--",
                "--ignored",
            ]),
        )?;
        run_step(
            "gate-sim: real bytes client -> NFQUEUE decision -> driver relay -> real backend",
            cargo().args([
                "test",
                "--package",
                "gate-sim",
                "--test",
                "relay",
                "--",
                "--ignored",
            ]),
        )?;
        run_step(
            "gate-sim: IPv6 clients through ip6tables/NFQUEUE, decided by prefix",
            cargo().args([
                "test",
                "--package",
                "gate-sim",
                "--test",
                "ipv6",
                "--",
                "--ignored",
            ]),
        )?;
        run_step(
            "gate-sim: --events - on stdout is pure JSON lines",
            cargo().args([
                "test",
                "--package",
                "gate-sim",
                "--test",
                "events_stdout",
                "--",
                "--ignored",
            ]),
        )?;
        run_step(
            "gate-sim: a live --control socket is refused, --events written live",
            cargo().args([
                "test",
                "--package",
                "gate-sim",
                "--test",
                "control",
                "--",
                "--ignored",
            ]),
        )?;
        run_step(
            "flood check: gate-sim under hping3 --flood --rand-source (10 s, test namespaces)",
            cargo().args([
                "test",
                "--package",
                "gate-sim",
                "--test",
                "flood",
                "--",
                "--ignored",
            ]),
        )?;
    } else {
        eprintln!(
            "xtask ci: SKIPPED the NFQUEUE front test and the flood check: they need root (ip netns, iptables-nft, hping3)"
        );
    }
    run_step(
        "in-process demo (gate-core against the token-bucket model)",
        cargo().args([
            "run",
            "--quiet",
            "--package",
            "xtask",
            "--",
            "demo",
            "--in-process",
        ]),
    )?;
    if deps::is_root() {
        run_step(
            "demo (real clients, gate-sim and nginx in namespaces, against the model)",
            cargo().args(["run", "--quiet", "--package", "xtask", "--", "demo"]),
        )?;
    } else {
        eprintln!("xtask ci: SKIPPED the demo's root path: it needs root (ip netns, NFQUEUE)");
    }
    crate::driver::ci_checks()?;
    run_step(
        "the shipped gate.sys under Wine (load, listen, accept, unload)",
        cargo().args([
            "run",
            "--quiet",
            "--package",
            "xtask",
            "--",
            "driver",
            "--wine-test",
        ]),
    )?;
    if deps::is_root() {
        // ~40 s after the builds above (gate.sys, gatectl.exe, gate-load).
        run_step(
            "demo --wine (the same clients against the shipped gate.sys under Wine, nginx, gatectl.exe)",
            cargo().args([
                "run", "--quiet", "--package", "xtask", "--", "demo", "--wine",
            ]),
        )?;
    } else {
        eprintln!("xtask ci: SKIPPED demo --wine: it needs root (ip netns)");
    }
    run_step(
        "the operator's package under Wine (install.cmd, connect, uninstall.cmd, nothing left)",
        cargo().args([
            "run",
            "--quiet",
            "--package",
            "xtask",
            "--",
            "package",
            "--wine-test",
        ]),
    )?;
    eprintln!("xtask ci: all checks passed");
    Ok(())
}
