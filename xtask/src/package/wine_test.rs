//! `cargo xtask package --wine-test`: the package's scripts, end to end,
//! under Wine's cmd with the packaged (test-signed) gate.sys, in a fresh
//! Wine prefix (`target/package/wine-prefix`):
//!
//! 0. gate.inf's DefaultInstall creates the kernel service (Type 1, Start 3,
//!    ImagePath gate.sys) and DefaultUninstall removes it, through Wine's
//!    setupapi;
//! 1. install.cmd with an unknown value name fails before changing anything
//!    (exit 2, nothing installed);
//! 2. install.cmd with a value the driver refuses
//!    (`RateMilliPerSecond=12000000000`, a REG_QWORD over the limit: the
//!    driver's message names it with the whole 64-bit value) fails at
//!    `sc start` and rolls back (exit 1, nothing installed);
//! 3. install.cmd with `ListenAddress=127.0.0.1 ListenPort=<free port>
//!    BackendAddress=<echo backend> ProxyProtocol=2`, a DWORD, a QWORD over
//!    32 bits and a two-entry MULTI_SZ succeeds: the files are in place, the service and its Parameters
//!    values and the System log source are in the registry, the driver
//!    listens and relays a connection to the backend (PROXY v2 header with
//!    the client's port, payload echoed byte-exact); `gatectl status` runs when the
//!    package has gatectl.exe;
//! 4. a second install.cmd fails (already installed) and leaves the first
//!    relaying;
//! 5. uninstall.cmd (the package folder's) succeeds; afterwards nothing is left: no service, no
//!    service key, no EventLog\System\gate key, no gate.sys in
//!    system32\drivers, no `Program Files\gate`, and the port is closed.
//!
//! The Wine session (prefix, wineserver, debug log) is [`crate::wine`].
//! Wine facts (shared/design/platform-facts.md): its wevtutil is a stub
//! that returns 0 (so manifest registration is exercised only as a step
//! that must not fail), IoAllocateErrorLogEntry returns NULL (no System log
//! entry), and the driver runs in post-accept mode on IPv4.

use super::Package;
use crate::deps;
use crate::wine::{self, Session};
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Where the package is copied inside the prefix (C:\gate-pkg).
const PKG_DIR: &str = "gate-pkg";
const SVC_KEY: &str = r"HKLM\SYSTEM\CurrentControlSet\Services\gate";
const LOG_KEY: &str = r"HKLM\SYSTEM\CurrentControlSet\Services\EventLog\System\gate";

pub fn run(package: &Package) -> Result<()> {
    deps::ensure("the package's Wine test", wine::PKGS)?;
    let started = Instant::now();
    let prefix = package
        .dir
        .parent()
        .map(|p| p.join("wine-prefix"))
        .context("package directory has no parent")?;
    let session = wine::start_session(&prefix, None)?;
    let result = exercise(&session, package);
    let log = session.log.clone();
    session.end();
    match result {
        Ok(()) => {
            eprintln!(
                "xtask package --wine-test: passed in {:.1} s (debug log {})",
                started.elapsed().as_secs_f64(),
                log.display()
            );
            Ok(())
        }
        Err(e) => Err(e.context(format!("Wine debug log: {}", log.display()))),
    }
}

/// Runs `cmd /c C:\gate-pkg\<script> args`: (exit code, stdout).
fn script(s: &Session, name: &str, args: &[&str]) -> Result<(i32, String)> {
    let path = format!(r"C:\{PKG_DIR}\{name}");
    let out = s
        .wine()
        .arg("cmd")
        .arg("/c")
        .arg(&path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting wine cmd /c {path}"))?;
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let code = out.status.code().unwrap_or(-1);
    eprintln!(
        "xtask package --wine-test: {name} {} -> exit {code}\n{}",
        args.join(" "),
        indent(&text)
    );
    Ok((code, text))
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn reg_exists(s: &Session, key: &str) -> Result<bool> {
    Ok(s.run(&["reg", "query", key])?.0)
}

/// Everything install.cmd creates, as (what, present?).
fn installed_parts(s: &Session) -> Result<Vec<(String, bool)>> {
    let c = s.prefix.join("drive_c");
    Ok(vec![
        ("service key".into(), reg_exists(s, SVC_KEY)?),
        ("System log source key".into(), reg_exists(s, LOG_KEY)?),
        (
            r"system32\drivers\gate.sys".into(),
            c.join("windows/system32/drivers/gate.sys").exists(),
        ),
        (
            r"Program Files\gate".into(),
            c.join("Program Files/gate").exists(),
        ),
    ])
}

fn assert_nothing_installed(s: &Session, after: &str) -> Result<()> {
    let left: Vec<String> = installed_parts(s)?
        .into_iter()
        .filter(|(_, present)| *present)
        .map(|(what, _)| what)
        .collect();
    if !left.is_empty() {
        bail!("after {after}, still present: {}", left.join(", "));
    }
    Ok(())
}

fn copy_package(package: &Package, to: &Path) -> Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to).with_context(|| format!("removing {}", to.display()))?;
    }
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(&package.dir)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))
            .with_context(|| format!("copying {}", entry.path().display()))?;
    }
    Ok(())
}

fn exercise(s: &Session, package: &Package) -> Result<()> {
    copy_package(package, &s.prefix.join("drive_c").join(PKG_DIR))?;
    // Wine 8 lacks bcryptprimitives.dll, which a Rust std .exe imports:
    // a test-only shim in the prefix (never in the package).
    let shim = s
        .prefix
        .join("drive_c/windows/system32/bcryptprimitives.dll");
    if package.files.iter().any(|(n, _)| n == "gatectl.exe") && !shim.exists() {
        let dll = super::gatectl::build_wine_shim(&s.prefix)?;
        std::fs::rename(&dll, &shim)
            .with_context(|| format!("moving {} to {}", dll.display(), shim.display()))?;
    }
    // A previous failed run may have left an installation behind.
    let _ = script(s, "uninstall.cmd", &[])?;
    assert_nothing_installed(s, "the clean-up before the test")?;

    // 0. The INF, through Wine's setupapi (what pnputil and
    // InstallHinfSection use): DefaultInstall creates the service,
    // DefaultUninstall removes it and the file.
    inf_install_and_uninstall(s)?;

    // 1. An unknown value: refused before anything changes.
    let (code, out) = script(s, "install.cmd", &["ListenPrt=8080"])?;
    if code != 2 || !out.contains("unknown registry value \"ListenPrt\"") {
        bail!("install.cmd ListenPrt=8080: want exit 2 naming the value, got {code}:\n{out}");
    }
    assert_nothing_installed(s, "install.cmd with an unknown value")?;

    // 2. A value the driver refuses (a REG_QWORD beyond its range, which
    // also shows the 64-bit value arrives whole): sc start fails,
    // everything rolled back.
    let (code, out) = script(
        s,
        "install.cmd",
        &["ListenAddress=127.0.0.1", "RateMilliPerSecond=12000000000"],
    )?;
    if code != 1 || !out.contains("refused to start") || !out.contains("rolled back") {
        bail!("install.cmd RateMilliPerSecond=12000000000: want exit 1, refused start and roll-back, got {code}:\n{out}");
    }
    if !s
        .log_text()
        .contains("registry value RateMilliPerSecond rejected (12000000000)")
    {
        bail!(
            "the driver did not report RateMilliPerSecond=12000000000 as refused:\n{}",
            wine::tail(&s.log_text(), 20)
        );
    }
    assert_nothing_installed(s, "the rolled-back install.cmd")?;

    // 3. A good install, relaying to an echo backend with PROXY v2.
    let port = wine::free_port()?;
    let port_arg = format!("ListenPort={port}");
    let (backend, headers) = crate::driver::wine::echo_backend(port)?;
    let backend_arg = format!("BackendAddress={backend}");
    let (code, out) = script(
        s,
        "install.cmd",
        &[
            "ListenAddress=127.0.0.1",
            &port_arg,
            &backend_arg,
            "ProxyProtocol=2",
            "Burst=50",
            "RateMilliPerSecond=5000000000",
            r"DenyList=203.0.113.0/24\0198.51.100.7",
        ],
    )?;
    if code != 0 || !out.contains("is installed and running") {
        bail!(
            "install.cmd failed ({code}):\n{out}\n{}",
            wine::tail(&s.log_text(), 30)
        );
    }
    let missing: Vec<String> = installed_parts(s)?
        .into_iter()
        .filter(|(_, present)| !*present)
        .map(|(what, _)| what)
        .collect();
    if !missing.is_empty() {
        bail!("after install.cmd, missing: {}", missing.join(", "));
    }
    let (_, params) = s.run(&["reg", "query", &format!(r"{SVC_KEY}\Parameters")])?;
    // One value of each type: REG_SZ, REG_DWORD, REG_QWORD (beyond 32
    // bits; Wine's `reg query` shows a QWORD's data as "(null)", so its
    // data is proven by step 2, where the driver reads and names it),
    // REG_MULTI_SZ with two entries.
    for want in [
        "ListenAddress",
        "127.0.0.1",
        "ListenPort",
        "Burst",
        "0x32",
        "RateMilliPerSecond",
        "REG_QWORD",
        "DenyList",
        "REG_MULTI_SZ",
        r"203.0.113.0/24\0198.51.100.7",
    ] {
        if !params.contains(want) {
            bail!("the Parameters key lacks {want}:\n{params}");
        }
    }
    let (_, source) = s.run(&["reg", "query", LOG_KEY])?;
    // Stored unexpanded (REG_EXPAND_SZ with a literal %SystemRoot%), as the
    // Event Log service expects.
    let want = r"%SystemRoot%\System32\IoLogMsg.dll;%SystemRoot%\System32\drivers\gate.sys";
    if !source.contains("REG_EXPAND_SZ") || !source.contains(want) {
        bail!("the System log source's EventMessageFile is not {want} (REG_EXPAND_SZ):\n{source}");
    }
    if !source.contains("TypesSupported") {
        bail!("the System log source lacks TypesSupported:\n{source}");
    }
    let listening = format!("gate: listening on 127.0.0.1:{port}");
    if !s.wait_log(&listening, Duration::from_secs(15)) {
        bail!(
            "no \"{listening}\" after install.cmd:\n{}",
            wine::tail(&s.log_text(), 30)
        );
    }
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    relay_echo(s, addr, &headers, 1)?;
    eprintln!(
        "xtask package --wine-test: installed; {addr} relayed a connection to {backend} (PROXY v2, echo)"
    );
    // install.cmd's last step: `gatectl status` against the running driver's
    // control device (its listener line), or `sc query` without gatectl.exe.
    let have_ctl = package.files.iter().any(|(n, _)| n == "gatectl.exe");
    let status_line = format!("port {port}, up");
    if have_ctl {
        if out.contains("skipping \"gatectl status\"") || !out.contains(&status_line) {
            bail!("install.cmd did not show `gatectl status` (want \"{status_line}\"):\n{out}");
        }
        let (ok, st) = s.run(&[r"C:\Program Files\gate\gatectl.exe", "status"])?;
        if !ok || !st.contains("listener    up") || !st.contains(&status_line) {
            bail!("gatectl status: want the listener up on port {port}, got:\n{st}");
        }
        eprintln!("xtask package --wine-test: gatectl status (in install.cmd and again) shows the listener up on port {port}");
    } else if !out.contains("skipping \"gatectl status\"") {
        bail!("install.cmd without gatectl.exe did not say it skips gatectl status:\n{out}");
    }

    // 4. A second install is refused and leaves the first alone.
    let (code, out) = script(s, "install.cmd", &[])?;
    if code != 3 || !out.contains("exists already") {
        bail!("a second install.cmd: want exit 3 (exists already), got {code}:\n{out}");
    }
    relay_echo(s, addr, &headers, 2)
        .context("the first installation stopped working after a refused second install")?;

    // 5. Uninstall from the package folder: nothing left. (The installed
    // copy in Program Files\gate re-runs itself from %TEMP% to delete its
    // own folder, which works on Windows; Wine's cmd keeps the first script
    // open, so that folder cannot be removed there.)
    let (code, out) = script(s, "uninstall.cmd", &[])?;
    if code != 0 || !out.contains("is removed") {
        bail!("uninstall.cmd failed ({code}):\n{out}");
    }
    assert_nothing_installed(s, "uninstall.cmd")?;
    if s.run(&["sc", "query", "gate"])?.0 {
        bail!("sc query gate still finds the service after uninstall.cmd");
    }
    if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok() {
        bail!("{addr} still accepts connections after uninstall.cmd");
    }
    eprintln!("xtask package --wine-test: uninstalled; nothing left");
    Ok(())
}

/// gate.inf's DefaultInstall.NTamd64 and DefaultUninstall.NTamd64 through
/// `rundll32 setupapi.dll,InstallHinfSection` (Wine's setupapi has no
/// DIRID 13, the driver store: it copies to `system32\unknown`; and it skips
/// the AddService event-log section, so the System log source is not
/// checked here).
fn inf_install_and_uninstall(s: &Session) -> Result<()> {
    let inf = format!(r"C:\{PKG_DIR}\gate.inf");
    let section = |name: &str| -> Result<()> {
        let (ok, out) = s.run(&[
            "rundll32",
            "setupapi.dll,InstallHinfSection",
            name,
            "128",
            &inf,
        ])?;
        if !ok {
            bail!("InstallHinfSection {name} {inf} failed: {out}");
        }
        Ok(())
    };
    section("DefaultInstall.NTamd64")?;
    let (ok, key) = s.run(&["reg", "query", SVC_KEY])?;
    if !ok {
        bail!("gate.inf's DefaultInstall created no service key");
    }
    let key = key.replace('\r', "");
    for (name, want) in [
        ("Type", "0x1"),
        ("Start", "0x3"),
        ("ErrorControl", "0x1"),
        ("DisplayName", "gate anti-DoS TCP front gate"),
    ] {
        let found = key
            .lines()
            .any(|l| l.trim_start().starts_with(name) && l.trim_end().ends_with(want));
        if !found {
            bail!("gate.inf's service has no {name} = {want}:\n{key}");
        }
    }
    if !key
        .lines()
        .any(|l| l.contains("ImagePath") && l.trim_end().ends_with("\\gate.sys"))
    {
        bail!("gate.inf's service ImagePath does not name gate.sys:\n{key}");
    }
    section("DefaultUninstall.NTamd64")?;
    if reg_exists(s, SVC_KEY)? {
        bail!("gate.inf's DefaultUninstall left the service key");
    }
    let copied = s.prefix.join("drive_c/windows/system32/unknown/gate.sys");
    if copied.exists() {
        bail!("gate.inf's DefaultUninstall left {}", copied.display());
    }
    eprintln!("xtask package --wine-test: gate.inf installs and uninstalls the service (setupapi)");
    Ok(())
}

/// One connection through the installed gate to [`crate::driver::wine::echo_backend`]:
/// a length-prefixed payload comes back byte-exact, and the backend saw a
/// PROXY v2 header naming this client's port.
fn relay_echo(
    s: &Session,
    addr: SocketAddr,
    headers: &mpsc::Receiver<std::result::Result<u16, String>>,
    round: u8,
) -> Result<()> {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to the installed gate on {addr}"))?;
    c.set_read_timeout(Some(Duration::from_secs(20)))?;
    let me = c.local_addr()?.port();
    let data: Vec<u8> = (0..4096u32).map(|k| (k as u8) ^ round).collect();
    c.write_all(&(data.len() as u32).to_be_bytes())?;
    c.write_all(&data)?;
    let mut back = vec![0u8; data.len()];
    c.read_exact(&mut back).with_context(|| {
        format!(
            "reading the echo through the gate\n{}",
            wine::tail(&s.log_text(), 20)
        )
    })?;
    drop(c);
    if back != data {
        bail!("the relayed echo differs from what was sent");
    }
    match headers.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(port)) if port == me => Ok(()),
        Ok(Ok(port)) => bail!("the PROXY header names source port {port}, the client was {me}"),
        Ok(Err(e)) => bail!("the backend: {e}"),
        Err(_) => bail!("the backend got no connection"),
    }
}
