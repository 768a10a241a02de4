//! Debian packages the project's commands need: installed when running as
//! root, otherwise named exactly so the user can install them.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// One Debian package and a file whose presence proves it is installed.
#[derive(Clone, Copy, Debug)]
pub struct Pkg {
    pub name: &'static str,
    pub provides: &'static str,
}

impl Pkg {
    pub const fn new(name: &'static str, provides: &'static str) -> Self {
        Pkg { name, provides }
    }

    fn present(&self) -> bool {
        Path::new(self.provides).exists()
    }
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Makes sure every package in `pkgs` is installed. As root, missing ones are
/// installed with apt-get; otherwise the error names each missing package.
pub fn ensure(why: &str, pkgs: &[Pkg]) -> Result<()> {
    let missing: Vec<&Pkg> = pkgs.iter().filter(|p| !p.present()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|p| p.name).collect();
    if !is_root() {
        bail!(
            "{why} needs Debian packages that are missing: {} (run as root, or: sudo apt-get install --no-install-recommends {})",
            names.join(", "),
            names.join(" ")
        );
    }
    eprintln!("xtask: installing {} for {why}", names.join(" "));
    let update = Command::new("apt-get")
        .args(["update", "-qq"])
        .status()
        .context("running apt-get update")?;
    if !update.success() {
        bail!("apt-get update failed ({update})");
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&names)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get install")?;
    if !status.success() {
        bail!("apt-get install {} failed ({status})", names.join(" "));
    }
    let still: Vec<&str> = missing
        .iter()
        .filter(|p| !p.present())
        .map(|p| p.name)
        .collect();
    if !still.is_empty() {
        bail!("after apt-get install, still missing: {}", still.join(", "));
    }
    Ok(())
}
