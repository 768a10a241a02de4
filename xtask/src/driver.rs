//! `cargo xtask driver`: builds gate.sys (and gate.pdb) for
//! x86_64-pc-windows-msvc with Debian's Rust and lld (no WDK), checks the
//! image, and test-signs a copy; builds gatectl.exe (the operator's CLI,
//! x86_64-pc-windows-gnu with mingw-w64) beside it.
//!
//! | module | owns |
//! |---|---|
//! | this file | the build command, output paths, the ci steps |
//! | [`image_check`] | the rules a kernel image must pass |
//! | [`kernel_imports`] | the import allowlist read from ksys/src/imports.rs |
//! | [`pdb_symbols`] | DriverEntry's RVA from the matching PDB |
//! | [`resources`] | the message table and version resource rules |
//! | [`sign`] | the throwaway certificate, signing and verification |
//! | [`wine`] | the optional Wine load/unload test |

mod image_check;
mod kernel_imports;
mod pdb_symbols;
pub mod resources;
pub mod sign;
pub mod wine;
mod wine_bench;

use crate::deps::{self, Pkg};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The Rust target of the image.
pub const TARGET: &str = "x86_64-pc-windows-msvc";

/// The Rust target of gatectl.exe (a user-mode Windows program, built with
/// Debian's mingw-w64 linker).
pub const CLI_TARGET: &str = "x86_64-pc-windows-gnu";

/// mingw-w64 for gatectl.exe (besides the driver's toolchain).
const CLI_PKGS: &[Pkg] = &[Pkg::new(
    "gcc-mingw-w64-x86-64",
    "/usr/bin/x86_64-w64-mingw32-gcc",
)];

/// Debian's toolchain: Rust with its library source (for -Zbuild-std),
/// LLD 22 (Debian's plain `lld` is LLD 14 and lacks /RELEASE) and
/// binutils-mingw-w64 (windmc, windres: the image's resources).
const BUILD_PKGS: &[Pkg] = &[
    Pkg::new("rustc-web", "/usr/bin/rustc"),
    Pkg::new("cargo-web", "/usr/bin/cargo"),
    Pkg::new(
        "rust-web-src",
        "/usr/lib/rustlib/src/rust/library/core/Cargo.toml",
    ),
    Pkg::new("lld-22", "/usr/bin/lld-link-22"),
    // windmc and windres: gate.sys's message table and version resource.
    Pkg::new(
        "binutils-mingw-w64-x86-64",
        "/usr/bin/x86_64-w64-mingw32-windres",
    ),
];

#[derive(clap::Args)]
pub struct Args {
    /// Build the release image.
    #[arg(long)]
    release: bool,
    /// Build, check, sign and verify both debug and release (what `cargo
    /// xtask ci` runs).
    #[arg(long, conflicts_with = "release")]
    ci: bool,
    /// Only run the image check on an existing image (e.g. one built on
    /// Windows); its PDB is taken from beside it unless --pdb is given.
    #[arg(long, value_name = "GATE_SYS", conflicts_with_all = ["release", "ci"])]
    check: Option<PathBuf>,
    /// The PDB of the image given to --check.
    #[arg(long, requires = "check")]
    pdb: Option<PathBuf>,
    /// Load the release gate.sys under Wine as a kernel service, check that
    /// DriverEntry ran and the listener answers, then that `sc stop`
    /// unloads it (installs wine and wine64 as root).
    #[arg(long, conflicts_with_all = ["release", "ci", "check"])]
    wine_test: bool,
    /// The relay's figures under Wine, for the record: short connections/s
    /// and one bulk stream's MB/s, direct to a loopback backend and through
    /// the release gate.sys (PROXY v2), with their ratio.
    #[arg(long, conflicts_with_all = ["release", "ci", "check", "wine_test"])]
    wine_bench: bool,
}

/// Debug or release image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    fn dir(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

/// The files one build produces.
#[derive(Clone, Debug)]
pub struct Image {
    pub sys: PathBuf,
    pub pdb: PathBuf,
    /// The test-signed copy (same file name, in `signed/`).
    pub signed: PathBuf,
    pub build_time: Duration,
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The driver build's own target directory (never the host build's):
/// `$GATE_DRIVER_TARGET_DIR`, or `target/driver` in the workspace.
pub fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("GATE_DRIVER_TARGET_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => root.join("target").join("driver"),
    }
}

/// Builds the image with /usr/bin/cargo (Debian's Rust; RUSTC_BOOTSTRAP
/// allows -Zbuild-std) and copies gate.exe to gate.sys.
pub fn build(profile: Profile) -> Result<Image> {
    build_image(profile, false)
}

/// [`build`]; `quiet`: cargo's `--quiet` (no "Compiling ..." lines; errors
/// and warnings still shown), for callers to whom the build is a step.
pub fn build_image(profile: Profile, quiet: bool) -> Result<Image> {
    deps::ensure("building gate.sys", BUILD_PKGS)?;
    let root = workspace_root();
    let target_dir = target_dir(&root);
    let mut cmd = Command::new("/usr/bin/cargo");
    cmd.current_dir(&root)
        .args(["build", "-p", "gate-driver", "--bin", "gate"])
        .args(["--features", "image", "--target", TARGET])
        .args([
            "-Zbuild-std=core,alloc",
            "-Zbuild-std-features=compiler-builtins-mem",
        ])
        .args([
            "--config",
            "target.x86_64-pc-windows-msvc.linker=\"/usr/bin/lld-link-22\"",
        ])
        .args(["--config", "profile.dev.panic=\"abort\""])
        .args(["--config", "profile.release.panic=\"abort\""])
        // Unoptimised compiler_builtins references fma/fmaf, which no
        // kernel library provides.
        .args([
            "--config",
            "profile.dev.package.compiler_builtins.opt-level=3",
        ])
        .env("RUSTC", "/usr/bin/rustc")
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", &target_dir);
    // Settings of the calling (host) cargo must not leak into this build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTDOC",
        "CARGO_BUILD_TARGET",
        "RUSTUP_TOOLCHAIN",
        "CARGO_MAKEFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    if profile == Profile::Release {
        cmd.arg("--release");
    }
    if quiet {
        cmd.arg("--quiet");
    }
    eprintln!(
        "xtask driver: building gate.sys ({}) in {}",
        profile.dir(),
        target_dir.display()
    );
    let start = Instant::now();
    let status = cmd.status().context("starting /usr/bin/cargo")?;
    if !status.success() {
        bail!("the driver build failed ({status})");
    }
    let build_time = start.elapsed();
    let out = target_dir.join(TARGET).join(profile.dir());
    let exe = out.join("gate.exe");
    let sys = out.join("gate.sys");
    std::fs::copy(&exe, &sys)
        .with_context(|| format!("copying {} to {}", exe.display(), sys.display()))?;
    Ok(Image {
        sys,
        pdb: out.join("gate.pdb"),
        signed: out.join("signed").join("gate.sys"),
        build_time,
    })
}

/// Builds gatectl.exe for Windows x64 (std rebuilt with -Zbuild-std; the
/// mingw-w64 linker) into the driver's target directory, beside gate.sys's
/// tree: `target/driver/x86_64-pc-windows-gnu/<profile>/gatectl.exe`.
pub fn build_gatectl(profile: Profile) -> Result<PathBuf> {
    build_gatectl_exe(profile, false)
}

/// [`build_gatectl`]; `quiet` as for [`build_image`].
pub fn build_gatectl_exe(profile: Profile, quiet: bool) -> Result<PathBuf> {
    deps::ensure("building gatectl.exe", BUILD_PKGS)?;
    deps::ensure("building gatectl.exe", CLI_PKGS)?;
    let root = workspace_root();
    let target_dir = target_dir(&root);
    let mut cmd = Command::new("/usr/bin/cargo");
    cmd.current_dir(&root)
        .args(["build", "-p", "gatectl", "--target", CLI_TARGET])
        .args(["-Zbuild-std=std,panic_abort"])
        .args([
            "--config",
            "target.x86_64-pc-windows-gnu.linker=\"x86_64-w64-mingw32-gcc\"",
        ])
        .args(["--config", "profile.dev.panic=\"abort\""])
        .args(["--config", "profile.release.panic=\"abort\""])
        .env("RUSTC", "/usr/bin/rustc")
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", &target_dir);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTDOC",
        "CARGO_BUILD_TARGET",
        "RUSTUP_TOOLCHAIN",
        "CARGO_MAKEFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    if profile == Profile::Release {
        cmd.arg("--release");
    }
    if quiet {
        cmd.arg("--quiet");
    }
    eprintln!("xtask driver: building gatectl.exe ({})", profile.dir());
    let status = cmd.status().context("starting /usr/bin/cargo")?;
    if !status.success() {
        bail!("the gatectl.exe build failed ({status})");
    }
    let exe = target_dir
        .join(CLI_TARGET)
        .join(profile.dir())
        .join("gatectl.exe");
    let head = std::fs::read(&exe).with_context(|| format!("reading {}", exe.display()))?;
    if !head.starts_with(b"MZ") {
        bail!("{} is not a Windows executable", exe.display());
    }
    Ok(exe)
}

/// The version gate-driver's Cargo.toml gives (what gate.sys's version
/// resource must say).
pub fn driver_version() -> Result<String> {
    let path = workspace_root().join("gate-driver/Cargo.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    resources::cargo_version(&text)
        .with_context(|| format!("no [package] version in {}", path.display()))
}

/// The resource rules for gate.sys: version from gate-driver's Cargo.toml,
/// message ids from gate-driver/res/gate.mc.
fn check_resources(
    root: &Path,
    bytes: &[u8],
) -> std::result::Result<resources::ResourceSummary, Vec<String>> {
    let version = driver_version().map_err(|e| vec![format!("{e:#}")])?;
    let mc_path = root.join("gate-driver/res/gate.mc");
    let mc = std::fs::read_to_string(&mc_path)
        .map_err(|e| vec![format!("reading {}: {e}", mc_path.display())])?;
    let ids: Vec<u32> = resources::mc_message_ids(&mc)
        .map_err(|e| vec![format!("{}: {e}", mc_path.display())])?
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    resources::check_image::<object::pe::ImageNtHeaders64>(
        bytes,
        &resources::ExpectedResources {
            version: &version,
            file_name: "gate.sys",
            file_type: 3,
            message_ids: &ids,
        },
    )
}

/// Runs the image check on `sys`, with DriverEntry's RVA from `pdb`.
/// Fails listing every broken rule.
pub fn check(sys: &Path, pdb: &Path) -> Result<image_check::Summary> {
    let root = workspace_root();
    let imports =
        kernel_imports::KernelImports::from_file(&root.join("gate-driver/ksys/src/imports.rs"))?;
    let bytes = std::fs::read(sys).with_context(|| format!("reading {}", sys.display()))?;
    let entry_rva = pdb_symbols::symbol_rva(&bytes, pdb, "DriverEntry")
        .with_context(|| format!("finding DriverEntry for {}", sys.display()))?;
    let expected = image_check::Expected {
        entry_rva,
        imports: &imports,
    };
    let resources = check_resources(&root, &bytes);
    match (image_check::check(&bytes, &expected), resources) {
        (Ok(mut summary), Ok(r)) => {
            summary.resources = Some(r);
            Ok(summary)
        }
        (result, resources) => {
            let mut problems: Vec<String> = match result {
                Ok(_) => Vec::new(),
                Err(p) => p.iter().map(ToString::to_string).collect(),
            };
            if let Err(r) = resources {
                problems.extend(r);
            }
            let list: Vec<String> = problems.iter().map(|p| format!("  - {p}")).collect();
            bail!(
                "{} fails the kernel image check:\n{}",
                sys.display(),
                list.join("\n")
            )
        }
    }
}

fn describe(sys: &Path, s: &image_check::Summary) {
    eprintln!(
        "xtask driver: {} passes the image check: {} bytes, checksum {:#010x}",
        sys.display(),
        s.size,
        s.checksum
    );
    eprintln!("  sections: {}", s.sections.join("; "));
    let imports: Vec<String> = s.imports.iter().map(|(m, f)| format!("{m}!{f}")).collect();
    eprintln!("  imports ({}): {}", imports.len(), imports.join(" "));
    if let Some(r) = &s.resources {
        let ids: Vec<String> = r
            .messages
            .iter()
            .map(|(id, _)| format!("{id:#010x}"))
            .collect();
        eprintln!(
            "  resources: version {} ({} strings), messages {}",
            r.file_version,
            r.strings.len(),
            ids.join(" ")
        );
    }
}

/// Builds, checks, signs and verifies one profile.
pub fn build_check_sign(profile: Profile, cert: &sign::TestCert) -> Result<Image> {
    let image = build(profile)?;
    let summary = check(&image.sys, &image.pdb)?;
    describe(&image.sys, &summary);
    sign::sign_and_verify(&image.sys, &image.signed, cert)?;
    // The signed copy is still a valid image (osslsigncode updates the
    // checksum over the appended certificate table).
    check(&image.signed, &image.pdb).context("checking the signed copy")?;
    Ok(image)
}

pub fn cert_dir() -> PathBuf {
    target_dir(&workspace_root()).join("test-signing")
}

pub fn run(args: Args) -> Result<()> {
    if args.ci {
        return ci_checks();
    }
    if args.wine_test {
        return wine::run();
    }
    if args.wine_bench {
        return wine_bench::run();
    }
    if let Some(sys) = args.check {
        let pdb = args.pdb.unwrap_or_else(|| sys.with_file_name("gate.pdb"));
        let summary = check(&sys, &pdb)?;
        describe(&sys, &summary);
        return Ok(());
    }
    let profile = if args.release {
        Profile::Release
    } else {
        Profile::Debug
    };
    let cert = sign::test_cert(&cert_dir())?;
    let image = build_check_sign(profile, &cert)?;
    let cli = build_gatectl(profile)?;
    println!(
        "gate.sys:        {}\ngate.pdb:        {}\nsigned gate.sys: {}\ngatectl.exe:     {}\ntest cert:       {} (import on Windows; key {})",
        image.sys.display(),
        image.pdb.display(),
        image.signed.display(),
        cli.display(),
        cert.cert_der.display(),
        cert.key_pem.display()
    );
    eprintln!(
        "xtask driver: build took {:.1} s",
        image.build_time.as_secs_f64()
    );
    Ok(())
}

/// The driver checks the test command runs: debug and release images built,
/// checked, test-signed and verified; a tampered signed copy must fail
/// verification.
pub fn ci_checks() -> Result<()> {
    eprintln!("xtask ci: == driver image (debug, release) ==");
    let cert = sign::test_cert(&cert_dir())?;
    let mut images = Vec::new();
    for profile in [Profile::Debug, Profile::Release] {
        let image = build_check_sign(profile, &cert)?;
        eprintln!(
            "xtask ci: gate.sys {} built in {:.1} s, checked, signed and verified: {}",
            profile.dir(),
            image.build_time.as_secs_f64(),
            image.signed.display()
        );
        tampered_copy_fails(&image, &cert)?;
        images.push(image);
    }
    if let [debug, release] = images.as_slice() {
        another_images_pdb_is_refused(release, debug)?;
    }
    let cli = build_gatectl(Profile::Release)?;
    eprintln!("xtask ci: gatectl.exe built: {}", cli.display());
    Ok(())
}

/// DriverEntry's RVA must come from the image's own PDB: looking it up for
/// the release image in the debug PDB must fail.
fn another_images_pdb_is_refused(image: &Image, other: &Image) -> Result<()> {
    let bytes =
        std::fs::read(&image.sys).with_context(|| format!("reading {}", image.sys.display()))?;
    if pdb_symbols::symbol_rva(&bytes, &other.pdb, "DriverEntry").is_ok() {
        bail!(
            "{} was accepted as the PDB of {}: the PDB match check is not real",
            other.pdb.display(),
            image.sys.display()
        );
    }
    Ok(())
}

/// Flips one byte of code in a copy of the signed image: verification must
/// fail, or the verification step proves nothing.
fn tampered_copy_fails(image: &Image, cert: &sign::TestCert) -> Result<()> {
    let mut bytes = std::fs::read(&image.signed)
        .with_context(|| format!("reading {}", image.signed.display()))?;
    // 0x400 is the start of the first section (.text) with lld's file
    // alignment of 0x200 and headers under 0x400.
    let Some(b) = bytes.get_mut(0x400) else {
        bail!("{} is too small", image.signed.display());
    };
    *b ^= 0xff;
    let tampered = image.signed.with_extension("tampered.sys");
    std::fs::write(&tampered, &bytes).with_context(|| format!("writing {}", tampered.display()))?;
    let result = sign::verify(&tampered, cert);
    std::fs::remove_file(&tampered).ok();
    if result.is_ok() {
        bail!(
            "a copy of {} with a flipped code byte still verifies: the signature check is not real",
            image.signed.display()
        );
    }
    Ok(())
}
