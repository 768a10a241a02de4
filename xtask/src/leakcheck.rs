//! The driver's randomized simulation test under valgrind memcheck: the
//! driver's real code, thousands of interleaved inspect/abort/complete/
//! close/unload events on several threads, checked by a real leak checker
//! (no definite or indirect leak, no invalid access) besides the test's own
//! invariants and the simulation's pool/IRP/socket accounting.

use crate::ci::run_step;
use crate::deps::{self, Pkg};
use anyhow::{bail, Context, Result};
use std::process::Command;

const PKGS: &[Pkg] = &[Pkg::new("valgrind", "/usr/bin/valgrind")];

/// Builds the test binary and returns its path (from cargo's JSON output).
fn test_binary(cargo: &str, package: &str, test: &str) -> Result<String> {
    let out = Command::new(cargo)
        .args([
            "test",
            "--package",
            package,
            "--test",
            test,
            "--no-run",
            "--message-format=json",
        ])
        .output()
        .context("building the randomized driver test")?;
    if !out.status.success() {
        bail!(
            "building {package} test {test} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_it = msg["target"]["name"] == test && msg["profile"]["test"] == true;
        if let (true, Some(exe)) = (is_it, msg["executable"].as_str()) {
            return Ok(exe.to_string());
        }
    }
    bail!("cargo did not report an executable for {package} test {test}")
}

pub fn run() -> Result<()> {
    deps::ensure("the leak check", PKGS)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let exe = test_binary(&cargo, "gate-driver", "random")?;
    run_step(
        "leak check: gate-driver's randomized test under valgrind memcheck",
        Command::new("valgrind").args([
            "--quiet",
            "--leak-check=full",
            "--show-leak-kinds=definite,indirect",
            "--errors-for-leak-kinds=definite,indirect",
            "--error-exitcode=9",
            &exe,
        ]),
    )
}
