//! `cargo xtask package`: the Windows operator's package, built on Linux.
//!
//! `target/package/gate-<version>/` and `target/package/gate-<version>.zip`
//! (the `zip` crate) hold: the test-signed release gate.sys, its gate.pdb
//! and the test certificate; gatectl.exe when one is given (`--gatectl`);
//! the ETW manifest gate.man; the WPR/WPA profiles; and, rendered from the
//! templates in `package/`: gate.inf, install.cmd, uninstall.cmd and the
//! operator's guide README.md. `<version>` is gate-driver's Cargo version.
//!
//! Rendering fills `@NAME@` placeholders (a leftover one is an error): the
//! version, the INF's DriverVer date, and install.cmd's table of registry
//! value names and types, generated from `gate_driver::config::VALUES`, so
//! the script accepts exactly the values the driver reads; the guide's
//! copy of gate-driver/CONFIG.md's value table and of its Relay section
//! (which the table links to). Every link of the rendered guide must
//! resolve within it (an `#anchor` to one of its headings, or an
//! `http(s)://` address): the guide travels alone, without CONFIG.md, so a
//! link that does not is an error of the build. `.cmd` and `.inf` files
//! get CRLF line ends (cmd.exe needs them for labels).
//!
//! `--wine-test` then runs install.cmd and uninstall.cmd under Wine's cmd
//! with the packaged gate.sys (see [`wine_test`]).

pub mod gatectl;
mod wine_test;

use crate::driver::{self, resources, Profile};
use anyhow::{bail, Context, Result};
use gate_driver::config::{RegType, VALUES};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// gatectl.exe to include (a Windows program, checked for its version
    /// resource). Without it, gatectl.exe is built from the workspace's
    /// `gatectl` crate when there is one (see [`gatectl`]); a package
    /// without gatectl.exe makes install.cmd show `sc query` instead of
    /// `gatectl status`.
    #[arg(long, value_name = "GATECTL_EXE", conflicts_with = "no_gatectl")]
    gatectl: Option<PathBuf>,
    /// Package without gatectl.exe even when the workspace has the crate.
    #[arg(long)]
    no_gatectl: bool,
    /// After packaging, install, use and uninstall the package under Wine
    /// (installs wine and wine64 as root).
    #[arg(long)]
    wine_test: bool,
}

/// Files copied into the package as they are: (source relative to the
/// workspace root, name in the package).
const COPIED: &[(&str, &str)] = &[
    ("etw-manifest/gate.man", "gate.man"),
    ("wpr-profiles/gate.wprp", "gate.wprp"),
    ("wpr-profiles/gate.wpaProfile", "gate.wpaProfile"),
];

/// Templates in `package/`: (file, CRLF line ends).
const TEMPLATES: &[(&str, bool)] = &[
    ("gate.inf", true),
    ("install.cmd", true),
    ("uninstall.cmd", true),
    ("README.md", false),
];

/// What `build` produced.
pub struct Package {
    pub dir: PathBuf,
    pub zip: PathBuf,
    pub version: String,
    pub files: Vec<(String, u64)>,
}

pub fn run(args: Args) -> Result<()> {
    let built;
    let gatectl_exe = match (&args.gatectl, args.no_gatectl) {
        (Some(p), _) => Some(p.as_path()),
        (None, true) => None,
        (None, false) => {
            built = gatectl::build()?;
            built.as_deref()
        }
    };
    let package = build(gatectl_exe)?;
    println!(
        "package: gate {} in {}",
        package.version,
        package.dir.display()
    );
    for (name, size) in &package.files {
        println!("  {name:<16} {size:>9} bytes");
    }
    println!("zip:     {}", package.zip.display());
    if args.wine_test {
        wine_test::run(&package)?;
    }
    Ok(())
}

/// Builds, checks and signs the release gate.sys and lays out the package.
pub fn build(gatectl: Option<&Path>) -> Result<Package> {
    let root = driver::workspace_root();
    let version = driver::driver_version()?;
    let cert = driver::sign::test_cert(&driver::cert_dir())?;
    let image = driver::build_check_sign(Profile::Release, &cert)?;
    let out = root.join("target").join("package");
    let name = format!("gate-{version}");
    let dir = out.join(&name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let copy = |from: &Path, to: &str| -> Result<()> {
        std::fs::copy(from, dir.join(to))
            .with_context(|| format!("copying {} into the package", from.display()))?;
        Ok(())
    };
    copy(&image.signed, "gate.sys")?;
    copy(&image.pdb, "gate.pdb")?;
    copy(&cert.cert_der, "gate-test.cer")?;
    for (from, to) in COPIED {
        copy(&root.join(from), to)?;
    }
    if let Some(exe) = gatectl {
        let ctl_version = gatectl::version(&root).unwrap_or_else(|| version.clone());
        check_gatectl(exe, &ctl_version)?;
        copy(exe, "gatectl.exe")?;
    }
    let vars = variables(&root, &version, gatectl.is_some())?;
    for (file, crlf) in TEMPLATES {
        let path = root.join("package").join(file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let rendered = render(&text, &vars).with_context(|| format!("rendering {file}"))?;
        if *file == "README.md" {
            check_links(&rendered).context("the operator's guide (package/README.md)")?;
        }
        let rendered = if *crlf {
            crlf_lines(&rendered)
        } else {
            rendered
        };
        std::fs::write(dir.join(file), rendered)
            .with_context(|| format!("writing {file} into the package"))?;
    }
    let zip = out.join(format!("{name}.zip"));
    write_zip(&dir, &name, &zip)?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        files.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.metadata()?.len(),
        ));
    }
    files.sort();
    Ok(Package {
        dir,
        zip,
        version,
        files,
    })
}

/// gatectl.exe must be a PE32+ program whose version resource names it and
/// carries its crate's version (the driver's when built elsewhere).
fn check_gatectl(exe: &Path, version: &str) -> Result<()> {
    let bytes = std::fs::read(exe).with_context(|| format!("reading {}", exe.display()))?;
    let expected = resources::ExpectedResources {
        version,
        file_name: "gatectl.exe",
        file_type: 1,
        message_ids: &[],
    };
    match resources::check_image::<object::pe::ImageNtHeaders64>(&bytes, &expected) {
        Ok(_) => Ok(()),
        Err(p) => bail!("{} is not packaged: {}", exe.display(), p.join("; ")),
    }
}

/// The `@NAME@` values of the templates.
fn variables(root: &Path, version: &str, have_gatectl: bool) -> Result<Vec<(String, String)>> {
    let numbers: Vec<&str> = version.split('.').collect();
    let version4 = match numbers.as_slice() {
        [a, b, c] => format!("{a}.{b}.{c}.0"),
        _ => bail!("version {version:?} is not major.minor.patch"),
    };
    let config_md = root.join("gate-driver/CONFIG.md");
    let config = std::fs::read_to_string(&config_md)
        .with_context(|| format!("reading {}", config_md.display()))?;
    Ok(vec![
        ("VERSION".into(), version.into()),
        ("VERSION4".into(), version4),
        ("DRIVERVER".into(), driver_ver_date()),
        ("VALUE_TYPES".into(), value_types_cmd()),
        ("CONFIG_TABLE".into(), config_table(&config)?),
        ("CONFIG_RELAY".into(), config_section(&config, "Relay")?),
        (
            "GATECTL_NOTE".into(),
            if have_gatectl {
                "gatectl.exe is in this package.".into()
            } else {
                "This package was built without gatectl.exe: `install.cmd` shows `sc query gate` instead of `gatectl status`.".into()
            },
        ),
    ])
}

/// Today as the INF DriverVer date (mm/dd/yyyy, UTC), from `date`.
fn driver_ver_date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%m/%d/%Y"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| s.len() == 10)
        .unwrap_or_else(|| "01/01/2026".into())
}

/// The registry type install.cmd writes a value with (`reg add /t`).
fn reg_type(t: RegType) -> &'static str {
    match t {
        RegType::Dword => "REG_DWORD",
        // REG_QWORD holds the whole range.
        RegType::DwordOrQword => "REG_QWORD",
        RegType::Sz => "REG_SZ",
        RegType::MultiSz => "REG_MULTI_SZ",
    }
}

/// install.cmd's table: `T_<Name>` (the `reg add` type) and `N_<Name>`
/// (the name as the driver spells it; cmd's variable names ignore case,
/// so `listenport=1` finds ListenPort) per value, and NAMES for messages.
pub fn value_types_cmd() -> String {
    let mut lines: Vec<String> = VALUES
        .iter()
        .flat_map(|v| {
            [
                format!("set \"T_{}={}\"", v.name, reg_type(v.ty)),
                format!("set \"N_{0}={0}\"", v.name),
            ]
        })
        .collect();
    let names: Vec<&str> = VALUES.iter().map(|v| v.name).collect();
    lines.push(format!("set \"NAMES={}\"", names.join(" ")));
    lines.join("\n")
}

/// The value table of gate-driver/CONFIG.md (its `| Value | ...` table),
/// which the operator's guide repeats.
pub fn config_table(config_md: &str) -> Result<String> {
    let lines: Vec<&str> = config_md
        .lines()
        .skip_while(|l| !l.starts_with("| Value |"))
        .take_while(|l| l.starts_with('|'))
        .collect();
    if lines.len() < 3 {
        bail!("gate-driver/CONFIG.md has no `| Value | ...` table");
    }
    for v in VALUES.iter() {
        if !lines
            .iter()
            .any(|l| l.starts_with(&format!("| `{}` |", v.name)))
        {
            bail!(
                "gate-driver/CONFIG.md's table lacks {}, which the driver reads",
                v.name
            );
        }
    }
    Ok(lines.join("\n"))
}

/// The level-2 section `## <title>` of gate-driver/CONFIG.md, with its
/// subsections, up to the next level-2 heading (for the guide, which
/// links to it from the value table).
pub fn config_section(config_md: &str, title: &str) -> Result<String> {
    let heading = format!("## {title}");
    let mut lines = config_md.lines().skip_while(|l| *l != heading);
    let Some(first) = lines.next() else {
        bail!("gate-driver/CONFIG.md has no `{heading}` section");
    };
    let mut out = vec![first];
    out.extend(lines.take_while(|l| !l.starts_with("## ")));
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    Ok(out.join("\n"))
}

/// The lines of `md` outside fenced code blocks (```).
fn prose_lines(md: &str) -> impl Iterator<Item = &str> {
    let mut fenced = false;
    md.lines().filter(move |l| {
        if l.trim_start().starts_with("```") {
            fenced = !fenced;
            return false;
        }
        !fenced
    })
}

/// The anchors GitHub gives the headings of `md`: lower case, characters
/// other than letters, digits, `-`, `_` and spaces dropped, spaces as
/// `-`; a repeated one gets `-1`, `-2`, ...
pub fn heading_anchors(md: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in prose_lines(md) {
        let Some(title) = l.strip_prefix('#').map(|t| t.trim_start_matches('#')) else {
            continue;
        };
        if !title.starts_with(' ') {
            continue;
        }
        let base: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut anchor = base.clone();
        let mut n = 0;
        while out.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        out.push(anchor);
    }
    out
}

/// The targets of the inline links (`[text](target)`) of `md`, outside
/// code blocks.
pub fn link_targets(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    for l in prose_lines(md) {
        let mut rest = l;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    out
}

/// Every link of the guide resolves within it: `#anchor` to one of its
/// headings, or an absolute `http://` / `https://` address (the guide is
/// read without the repository: a relative path leads nowhere).
pub fn check_links(md: &str) -> Result<()> {
    let anchors = heading_anchors(md);
    let bad: Vec<String> = link_targets(md)
        .into_iter()
        .filter(|t| match t.strip_prefix('#') {
            Some(a) => !anchors.iter().any(|h| h == a),
            None => !(t.starts_with("https://") || t.starts_with("http://")),
        })
        .collect();
    if !bad.is_empty() {
        bail!(
            "links that lead nowhere in it: {} (its headings: {}); copy the section they point at, or reword them",
            bad.join(", "),
            anchors.join(", ")
        );
    }
    Ok(())
}

/// Replaces every `@NAME@`; fails on a placeholder without a value.
pub fn render(text: &str, vars: &[(String, String)]) -> Result<String> {
    let mut out = text.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("@{k}@"), v);
    }
    // Whatever still looks like @UPPER_CASE@ is a placeholder nobody filled.
    let bytes = out.as_bytes();
    let mut i = 0;
    while let Some(start) = out[i..].find('@').map(|p| p + i) {
        let rest = &out[start + 1..];
        let len = rest
            .bytes()
            .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
            .count();
        if len > 0 && bytes.get(start + 1 + len) == Some(&b'@') {
            bail!("placeholder @{}@ has no value", &rest[..len]);
        }
        i = start + 1;
    }
    Ok(out)
}

/// `\n` line ends to `\r\n` (existing `\r\n` kept).
pub fn crlf_lines(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// Zips `dir` as `<name>/...` into `zip_path`.
fn write_zip(dir: &Path, name: &str, zip_path: &Path) -> Result<()> {
    let file = std::fs::File::create(zip_path)
        .with_context(|| format!("creating {}", zip_path.display()))?;
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    entries.sort();
    for path in entries {
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
            bail!("{} has a name that is not UTF-8", path.display());
        };
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        zip.start_file(format!("{name}/{file_name}"), options)?;
        zip.write_all(&bytes)?;
    }
    zip.finish()
        .with_context(|| format!("finishing {}", zip_path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        driver::workspace_root()
    }

    #[test]
    fn every_value_the_driver_reads_is_in_install_cmd_with_its_type() {
        let t = value_types_cmd();
        for v in VALUES.iter() {
            assert!(
                t.contains(&format!("set \"T_{}={}\"", v.name, reg_type(v.ty))),
                "{} missing from {t}",
                v.name
            );
        }
        assert!(t.contains("T_ListenPort=REG_DWORD") && t.contains("T_DenyList=REG_MULTI_SZ"));
    }

    #[test]
    fn templates_render_without_leftover_placeholders() {
        let vars = variables(&root(), "0.1.0", false).unwrap();
        for (file, _) in TEMPLATES {
            let text = std::fs::read_to_string(root().join("package").join(file)).unwrap();
            let out = render(&text, &vars).unwrap();
            assert!(!out.contains("@VERSION@"), "{file}");
        }
        let err = render("a @NOPE@ b", &vars).unwrap_err().to_string();
        assert!(err.contains("@NOPE@"), "{err}");
        // An e-mail-like @ is not a placeholder.
        assert_eq!(render("x@y.z @ a@", &vars).unwrap(), "x@y.z @ a@");
    }

    #[test]
    fn config_table_is_complete_and_refuses_a_table_missing_a_value() {
        let md = std::fs::read_to_string(root().join("gate-driver/CONFIG.md")).unwrap();
        let t = config_table(&md).unwrap();
        assert!(t.starts_with("| Value |"));
        let without = md.replace("| `ListenPort` |", "| `ListenPrt` |");
        let err = config_table(&without).unwrap_err().to_string();
        assert!(err.contains("ListenPort"), "{err}");
    }

    /// Docs audit (s3), defect 7: the guide copied CONFIG.md's table with
    /// its `[Relay](#relay)` links, and had no Relay section. The guide as
    /// the package renders it (from the real templates and CONFIG.md):
    /// every link resolves within it, and it has such links (the table's
    /// Relay ones), so the check is not vacuous.
    #[test]
    fn every_link_of_the_rendered_guide_resolves_in_it() {
        let vars = variables(&root(), "0.1.0", true).unwrap();
        let text = std::fs::read_to_string(root().join("package/README.md")).unwrap();
        let guide = render(&text, &vars).unwrap();
        check_links(&guide).unwrap();
        let targets = link_targets(&guide);
        assert!(targets.iter().any(|t| t == "#relay"), "{targets:?}");
        assert!(heading_anchors(&guide).contains(&"relay".to_string()));
        // The copied section is CONFIG.md's, whole (its subsection too).
        let relay = config_section(
            &std::fs::read_to_string(root().join("gate-driver/CONFIG.md")).unwrap(),
            "Relay",
        )
        .unwrap();
        assert!(relay.starts_with("## Relay\n") && relay.contains("### Worst-case memory"));
        assert!(!relay.contains("\n## "), "{relay}");
        assert!(guide.contains(&relay));
    }

    #[test]
    fn links_that_lead_nowhere_are_refused() {
        let md = "# Title\n\n## Signing: what this (x64) is\n\n## Relay\n\n## Relay\n\n```\n## Not a heading\n[a](#not-a-heading)\n```\n";
        assert_eq!(
            heading_anchors(md),
            ["title", "signing-what-this-x64-is", "relay", "relay-1"]
        );
        for ok in [
            "#relay",
            "#relay-1",
            "#signing-what-this-x64-is",
            "https://x.org/a",
        ] {
            check_links(&format!("{md}see [it]({ok})\n")).unwrap();
        }
        for bad in [
            "#relay-2",
            "#not-a-heading",
            "../gatectl/README.md",
            "CONFIG.md#relay",
        ] {
            let err = format!(
                "{:#}",
                check_links(&format!("{md}see [it]({bad})\n")).unwrap_err()
            );
            assert!(err.contains(bad), "{err}");
        }
        assert!(config_section(md, "Nope").is_err());
    }

    #[test]
    fn crlf_is_applied_once() {
        assert_eq!(crlf_lines("a\nb\r\nc\n"), "a\r\nb\r\nc\r\n");
    }

    #[test]
    fn the_zip_holds_every_file_under_the_package_folder() {
        let dir = std::env::temp_dir().join(format!("gate-zip-test-{}", std::process::id()));
        let pkg = dir.join("gate-9.9.9");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(pkg.join("a.txt"), b"hello").unwrap();
        std::fs::write(pkg.join("b.bin"), vec![7u8; 10_000]).unwrap();
        let zip_path = dir.join("p.zip");
        write_zip(&pkg, "gate-9.9.9", &zip_path).unwrap();
        let mut z = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
        let mut names: Vec<String> = z.file_names().map(str::to_string).collect();
        names.sort();
        assert_eq!(names, ["gate-9.9.9/a.txt", "gate-9.9.9/b.bin"]);
        let mut content = String::new();
        std::io::Read::read_to_string(&mut z.by_name("gate-9.9.9/a.txt").unwrap(), &mut content)
            .unwrap();
        assert_eq!(content, "hello");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
