//! Build script of the Windows image root (the `gate` bin, which becomes
//! gate.sys). It does nothing for host builds; for a Windows MSVC target it
//! compiles the image's resources and sets the link flags.
//!
//! Resources (`res/`), compiled with binutils-mingw-w64's windmc and windres
//! (Debian package binutils-mingw-w64-x86-64; `$GATE_WINDMC` and
//! `$GATE_WINDRES` override the paths) into one `.res` that lld-link links:
//! - the message table of the System event log entries (`res/gate.mc`,
//!   `windmc -c`: customer codes), which the Event Log service reads from
//!   gate.sys once install.cmd registers it under
//!   `EventLog\System\<service>`;
//! - the version resource (`res/version.rc.in` filled from Cargo.toml:
//!   file and product version, product name, company, description), which
//!   Explorer, sigcheck and inventory tools read.
//!
//! Link flags that make a WDK-like kernel image with lld-link (Debian's
//! lld-link-22, or rust-lld on Windows):
//! - `/DRIVER /SUBSYSTEM:NATIVE,10.0 /ENTRY:DriverEntry`: a native kernel
//!   driver whose entry point is DriverEntry;
//! - `/NODEFAULTLIB`: no C runtime or user-mode libraries;
//! - `/RELEASE`: write the PE checksum (the kernel loader checks it);
//! - `/INTEGRITYCHECK`: FORCE_INTEGRITY, so the signature is enforced;
//! - `/SECTION:<name>,P..`: IMAGE_SCN_MEM_NOT_PAGED on code and data. In
//!   lld the letters replace the section's permission bits, so R/W/E are
//!   restated; `P` means NOT_PAGED in lld (MSVC link.exe reads it
//!   differently, see README);
//! - `/SECTION:.rsrc,RD`: resources read-only and discardable, as link.exe
//!   makes them for a driver: only user-mode tools read them, from the
//!   file.
//!
//! NX compatibility and dynamic base are lld-link's defaults for x64.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)] // host build script: std allocation is fine

use std::path::{Path, PathBuf};
use std::process::Command;

const LINK_ARGS: &[&str] = &[
    "/DRIVER",
    "/SUBSYSTEM:NATIVE,10.0",
    "/ENTRY:DriverEntry",
    "/NODEFAULTLIB",
    "/RELEASE",
    "/INTEGRITYCHECK",
    "/NXCOMPAT",
    "/SECTION:.text,PRE",
    "/SECTION:.rdata,PR",
    "/SECTION:.data,PRW",
    "/SECTION:.pdata,PR",
    "/SECTION:.rsrc,RD",
];

/// The strings of the version resource besides the version numbers.
const COMPANY: &str = "The gate project";
const PRODUCT: &str = "gate anti-DoS TCP front gate";
const DESCRIPTION: &str = "gate kernel driver: anti-DoS TCP front gate (Winsock Kernel)";
const COPYRIGHT: &str = "Licensed under MIT OR Apache-2.0";
/// VFT_DRV and VFT2_DRV_NETWORK (verrsrc.h).
const FILETYPE: &str = "0x3";
const FILESUBTYPE: &str = "0x6";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=res/gate.mc");
    println!("cargo:rerun-if-changed=res/version.rc.in");
    println!("cargo:rerun-if-env-changed=GATE_WINDMC");
    println!("cargo:rerun-if-env-changed=GATE_WINDRES");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "windows" && env == "msvc" {
        let res = compile_resources();
        for arg in LINK_ARGS {
            println!("cargo:rustc-link-arg-bin=gate={arg}");
        }
        println!("cargo:rustc-link-arg-bin=gate={}", res.display());
    }
}

fn tool(var: &str, default: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(default),
    }
}

fn run(what: &str, cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {what} ({e}): install Debian's binutils-mingw-w64-x86-64 \
             (`cargo xtask driver` does as root) or set GATE_WINDMC/GATE_WINDRES"
        )
    });
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The version resource text for this crate.
fn version_rc(template: &str) -> String {
    let v = |k: &str| std::env::var(k).unwrap_or_else(|_| "0".into());
    let debug = std::env::var("PROFILE")
        .map(|p| p == "debug")
        .unwrap_or(false);
    template
        .replace("@MAJOR@", &v("CARGO_PKG_VERSION_MAJOR"))
        .replace("@MINOR@", &v("CARGO_PKG_VERSION_MINOR"))
        .replace("@PATCH@", &v("CARGO_PKG_VERSION_PATCH"))
        .replace("@VERSION@", &v("CARGO_PKG_VERSION"))
        // VS_FF_DEBUG for debug builds.
        .replace("@FILEFLAGS@", if debug { "0x1" } else { "0x0" })
        .replace("@FILETYPE@", FILETYPE)
        .replace("@FILESUBTYPE@", FILESUBTYPE)
        .replace("@COMPANY@", COMPANY)
        .replace("@DESCRIPTION@", DESCRIPTION)
        .replace("@INTERNAL@", "gate")
        .replace("@COPYRIGHT@", COPYRIGHT)
        .replace("@FILENAME@", "gate.sys")
        .replace("@PRODUCT@", PRODUCT)
}

/// The resource script without comments and `#pragma` lines: with no C
/// preprocessor, windres's own parser sees the text as written.
fn strip_comments(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        rest = match rest[start..].find("*/") {
            Some(end) => &rest[start + end + 2..],
            None => "",
        };
    }
    out.push_str(rest);
    out.lines()
        .filter(|l| {
            let t = l.trim_start();
            !t.starts_with("//") && !t.starts_with("#pragma")
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Compiles `res/` into `$OUT_DIR/gate.res`.
fn compile_resources() -> PathBuf {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("dir"));
    let res_dir = manifest_dir.join("res");
    let windmc = tool("GATE_WINDMC", "/usr/bin/x86_64-w64-mingw32-windmc");
    let windres = tool("GATE_WINDRES", "/usr/bin/x86_64-w64-mingw32-windres");
    // windmc writes gate.rc (which names MSG00409.bin) and gate.h.
    run(
        "windmc",
        Command::new(&windmc)
            .arg("-c")
            .arg("-r")
            .arg(&out)
            .arg("-h")
            .arg(&out)
            .arg(res_dir.join("gate.mc")),
    );
    let messages = std::fs::read_to_string(out.join("gate.rc")).expect("windmc's gate.rc");
    let template =
        std::fs::read_to_string(res_dir.join("version.rc.in")).expect("res/version.rc.in");
    let all = out.join("gate-all.rc");
    let text = format!("{messages}\n{}", version_rc(&template));
    std::fs::write(&all, strip_comments(&text)).expect("writing rc");
    let res = out.join("gate.res");
    // No C preprocessor needed (`cat`): the script has no #include/#define.
    // Run in OUT_DIR, where windmc's gate.rc finds MSG00409.bin.
    run(
        "windres",
        Command::new(&windres)
            .arg("--preprocessor=cat")
            .arg("-J")
            .arg("rc")
            .arg("-O")
            .arg("res")
            .arg("-i")
            .arg(&all)
            .arg("-o")
            .arg(&res)
            .current_dir(&out),
    );
    assert!(
        Path::new(&res).exists(),
        "windres wrote no {}",
        res.display()
    );
    res
}
