//! gatectl.exe for the package: the workspace's `gatectl` crate built for
//! x86_64-pc-windows-gnu with Debian's Rust (`-Zbuild-std=std,panic_abort`)
//! and the mingw-w64 linker, with a version resource: gate-driver's
//! `res/version.rc.in` filled for gatectl (VFT_APP), compiled by windres to
//! a COFF object and linked with `-C link-arg` (`cargo rustc`, so the crate
//! needs no build script). Does nothing when the workspace has no
//! `gatectl` crate.

use crate::deps::{self, Pkg};
use crate::driver;
use crate::driver::resources::cargo_version;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Rust target of gatectl.exe.
pub const TARGET: &str = "x86_64-pc-windows-gnu";

const PKGS: &[Pkg] = &[
    Pkg::new("rustc-web", "/usr/bin/rustc"),
    Pkg::new("cargo-web", "/usr/bin/cargo"),
    Pkg::new(
        "rust-web-src",
        "/usr/lib/rustlib/src/rust/library/std/Cargo.toml",
    ),
    Pkg::new("gcc-mingw-w64-x86-64", "/usr/bin/x86_64-w64-mingw32-gcc"),
    Pkg::new(
        "binutils-mingw-w64-x86-64",
        "/usr/bin/x86_64-w64-mingw32-windres",
    ),
];

/// gatectl's Cargo version, when the workspace has the crate.
pub fn version(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root.join("gatectl/Cargo.toml")).ok()?;
    cargo_version(&text)
}

/// The version resource script for gatectl.exe.
pub fn version_rc(template: &str, version: &str) -> Result<String> {
    let parts: Vec<&str> = version.split('.').collect();
    let [major, minor, patch] = parts.as_slice() else {
        bail!("gatectl version {version:?} is not major.minor.patch");
    };
    let vars: Vec<(String, String)> = [
        ("MAJOR", *major),
        ("MINOR", *minor),
        ("PATCH", *patch),
        ("VERSION", version),
        ("FILEFLAGS", "0x0"),
        // VFT_APP, no subtype.
        ("FILETYPE", "0x1"),
        ("FILESUBTYPE", "0x0"),
        ("COMPANY", "The gate project"),
        (
            "DESCRIPTION",
            "gatectl: the gate's operator command line (status, top, query, set, allow, deny, ban)",
        ),
        ("INTERNAL", "gatectl"),
        ("COPYRIGHT", "Licensed under MIT OR Apache-2.0"),
        ("FILENAME", "gatectl.exe"),
        ("PRODUCT", "gate anti-DoS TCP front gate"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let text = super::render(template, &vars)?;
    // windres runs without a preprocessor: drop the comment lines.
    Ok(text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(|l| format!("{l}\n"))
        .collect())
}

/// Builds gatectl.exe (release) and returns its path, or None when the
/// workspace has no gatectl crate.
pub fn build() -> Result<Option<PathBuf>> {
    let root = driver::workspace_root();
    let Some(version) = version(&root) else {
        eprintln!(
            "xtask package: no gatectl crate in this workspace; packaging without gatectl.exe"
        );
        return Ok(None);
    };
    deps::ensure("building gatectl.exe", PKGS)?;
    let target_dir = root.join("target").join("gatectl");
    std::fs::create_dir_all(&target_dir)
        .with_context(|| format!("creating {}", target_dir.display()))?;
    let template_path = root.join("gate-driver/res/version.rc.in");
    let template = std::fs::read_to_string(&template_path)
        .with_context(|| format!("reading {}", template_path.display()))?;
    let rc = target_dir.join("gatectl-version.rc");
    std::fs::write(&rc, version_rc(&template, &version)?)
        .with_context(|| format!("writing {}", rc.display()))?;
    let obj = target_dir.join("gatectl-version.o");
    let out = Command::new("/usr/bin/x86_64-w64-mingw32-windres")
        .args(["--preprocessor=cat", "-J", "rc", "-O", "coff", "-i"])
        .arg(&rc)
        .arg("-o")
        .arg(&obj)
        .output()
        .context("starting windres")?;
    if !out.status.success() {
        bail!(
            "windres failed for {}:\n{}",
            rc.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!(
        "xtask package: building gatectl.exe {version} for {TARGET} in {}",
        target_dir.display()
    );
    let mut cmd = Command::new("/usr/bin/cargo");
    cmd.current_dir(&root)
        .args(["rustc", "-p", "gatectl", "--bin", "gatectl", "--release"])
        .args(["--target", TARGET, "-Zbuild-std=std,panic_abort"])
        .args([
            "--config",
            "target.x86_64-pc-windows-gnu.linker=\"x86_64-w64-mingw32-gcc\"",
        ])
        .args(["--config", "profile.release.panic=\"abort\""])
        .args(["--config", "profile.release.strip=\"debuginfo\""])
        .arg("--")
        .arg("-C")
        .arg(format!("link-arg={}", obj.display()))
        .env("RUSTC", "/usr/bin/rustc")
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", &target_dir);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "RUSTUP_TOOLCHAIN",
        "CARGO_MAKEFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().context("starting /usr/bin/cargo")?;
    if !status.success() {
        bail!("the gatectl.exe build failed ({status})");
    }
    let exe = target_dir.join(TARGET).join("release").join("gatectl.exe");
    if !exe.exists() {
        bail!("the gatectl build left no {}", exe.display());
    }
    Ok(Some(exe))
}

/// Builds the test-only bcryptprimitives.dll shim (see
/// `bcryptprimitives_shim.c`) into `out_dir`.
pub fn build_wine_shim(out_dir: &Path) -> Result<PathBuf> {
    deps::ensure("the Wine shim for gatectl.exe", PKGS)?;
    let src = driver::workspace_root().join("xtask/src/package/bcryptprimitives_shim.c");
    let dll = out_dir.join("bcryptprimitives.dll");
    let out = Command::new("/usr/bin/x86_64-w64-mingw32-gcc")
        .args(["-shared", "-O2", "-o"])
        .arg(&dll)
        .arg(&src)
        .arg("-ladvapi32")
        .output()
        .context("starting x86_64-w64-mingw32-gcc")?;
    if !out.status.success() {
        bail!(
            "building {} failed:\n{}",
            dll.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(dll)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_script_is_filled_for_gatectl() {
        let t =
            std::fs::read_to_string(driver::workspace_root().join("gate-driver/res/version.rc.in"))
                .unwrap();
        let rc = version_rc(&t, "1.2.3").unwrap();
        assert!(rc.contains("FILEVERSION 1,2,3,0"), "{rc}");
        assert!(
            rc.contains("VALUE \"OriginalFilename\", \"gatectl.exe\""),
            "{rc}"
        );
        assert!(rc.contains("FILETYPE 0x1"), "{rc}");
        assert!(!rc.contains('@') && !rc.contains("//"), "{rc}");
        assert!(version_rc(&t, "1.2").is_err());
    }
}
