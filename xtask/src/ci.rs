//! `cargo xtask ci`: every check and test, in the order a failure is
//! cheapest to find.

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

pub fn run(_args: Args) -> Result<()> {
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
    crate::driver::ci_checks()?;
    eprintln!("xtask ci: all checks passed");
    Ok(())
}
