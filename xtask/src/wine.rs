//! A Wine prefix that runs the shipped gate.sys: its persistent
//! wineserver (optionally inside a network namespace, so that the driver's
//! sockets live there), the driver's debug log, the kernel service (install,
//! registry values, start, stop) and gatectl.exe in the prefix. Used by
//! `cargo xtask driver --wine-test`, `cargo xtask package --wine-test` and
//! `cargo xtask demo --wine`.
//!
//! Wine 8.0 facts this relies on (shared/design/platform-facts.md):
//! `sc create ... type= kernel` + `sc start` load a .sys in winedevice.exe;
//! `wineserver -p` keeps the services alive between commands; DbgPrintEx
//! output goes to the first wine process's stderr with
//! `WINEDEBUG=...,warn+debugstr`; a winedevice crash does not show in `sc
//! query` (still RUNNING) but as "Unhandled page fault" in that log. Wine's
//! wineserver creates every socket itself (the driver's WSK sockets are
//! host sockets), so running the wineserver and every wine process in a
//! namespace puts the driver's listener and its backend connections there.
//! Wine 8 lacks bcryptprimitives.dll, which Rust's std imports: gatectl.exe
//! gets a test-only shim DLL next to it in the prefix (never shipped).

use crate::deps::Pkg;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PKGS: &[Pkg] = &[
    Pkg::new("wine", "/usr/bin/wine-stable"),
    Pkg::new("wine64", "/usr/lib/wine/wine64"),
];

/// Debug channels: the driver's DbgPrintEx lines, loader errors, and the
/// WSK provider's stubs.
const WINEDEBUG: &str = "-all,warn+debugstr,err+module,fixme+netio,fixme+ntoskrnl";

/// What the log shows when winedevice.exe (the driver's host) crashed.
pub const CRASH_TEXT: &str = "Unhandled page fault";

/// The driver's service name and its Parameters key.
pub const SERVICE: &str = "gate";
pub const PARAMETERS_KEY: &str = r"HKLM\System\CurrentControlSet\Services\gate\Parameters";

/// One registry value of the driver (gate-driver/CONFIG.md): name, `reg
/// add` type (REG_SZ, REG_DWORD, REG_QWORD, REG_MULTI_SZ) and data (MULTI_SZ
/// entries separated by `\0`, as `reg add` takes them).
pub type RegValue = (&'static str, &'static str, String);

/// One Wine prefix with its persistent wineserver and the debug log.
pub struct Session {
    pub prefix: PathBuf,
    pub log: PathBuf,
    /// The network namespace every wine process runs in (None: this one).
    pub netns: Option<String>,
    server: Child,
    /// Set by [`Session::end`]; a session dropped without it (an error or
    /// an interruption on the way) is ended by `Drop`.
    ended: bool,
}

/// `program` in `netns` (`ip netns exec NS program`), or here.
fn in_netns(netns: Option<&str>, program: &str) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    }
}

/// `wine` for `prefix` in `netns`, with Wine's noise off and no display.
pub fn wine_command(prefix: &Path, netns: Option<&str>) -> Command {
    let mut c = in_netns(netns, "wine");
    c.env("WINEPREFIX", prefix)
        .env("WINEDEBUG", "-all")
        .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
        .env_remove("DISPLAY");
    c
}

impl Session {
    pub fn wine(&self) -> Command {
        wine_command(&self.prefix, self.netns.as_deref())
    }

    /// Runs `wine <args>`, returning stdout (stderr is Wine noise).
    pub fn run(&self, args: &[&str]) -> Result<(bool, String)> {
        let out = self
            .wine()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("starting wine {}", args.join(" ")))?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    }

    /// The driver service's state (RUNNING, STOPPED, ... or NOT-INSTALLED).
    pub fn state(&self) -> Result<String> {
        let (_, out) = self.run(&["sc", "query", SERVICE])?;
        Ok(out
            .lines()
            .find(|l| l.contains("STATE"))
            .map(|l| l.split_whitespace().last().unwrap_or("").to_string())
            .unwrap_or_else(|| "NOT-INSTALLED".into()))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the log shows a winedevice crash.
    pub fn crashed(&self) -> bool {
        self.log_text().contains(CRASH_TEXT)
    }

    /// Waits until the debug log contains `text`, or `limit` passes.
    pub fn wait_log(&self, text: &str, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.log_text().contains(text) {
                return true;
            }
            if crate::demo::interrupt::requested() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Copies `sys` into system32\drivers and (re)creates the kernel service
    /// with `values` under its Parameters key.
    pub fn install_driver(&self, sys: &Path, values: &[RegValue]) -> Result<()> {
        let drivers = self.prefix.join("drive_c/windows/system32/drivers");
        std::fs::copy(sys, drivers.join("gate.sys"))
            .with_context(|| format!("copying {} into {}", sys.display(), drivers.display()))?;
        let _ = self.run(&["sc", "delete", SERVICE])?;
        let (ok, out) = self.run(&[
            "sc",
            "create",
            SERVICE,
            "type=",
            "kernel",
            "start=",
            "demand",
            "binPath=",
            r"C:\windows\system32\drivers\gate.sys",
        ])?;
        if !ok {
            bail!("wine sc create gate failed: {out}");
        }
        for (name, kind, value) in values {
            let (ok, out) = self.run(&[
                "reg",
                "add",
                PARAMETERS_KEY,
                "/v",
                name,
                "/t",
                kind,
                "/d",
                value,
                "/f",
            ])?;
            if !ok {
                bail!("wine reg add {name} failed: {out}");
            }
        }
        Ok(())
    }

    /// `sc start gate`; waits for DriverEntry's first line and then for
    /// "gate: listening on `listen`", each within `limit`.
    pub fn start_driver(&self, listen: &str, limit: Duration) -> Result<()> {
        let (ok, out) = self.run(&["sc", "start", SERVICE])?;
        if !ok {
            bail!(
                "wine sc start gate failed: {out}\n{}",
                tail(&self.log_text(), 30)
            );
        }
        if !self.wait_log("gate: seed from", limit) {
            crate::demo::interrupt::check()?;
            bail!(
                "DriverEntry left no trace within {limit:?} (expected \"gate: seed from ...\"):\n{}",
                tail(&self.log_text(), 30)
            );
        }
        let listening = format!("gate: listening on {listen}");
        if !self.wait_log(&listening, limit) {
            crate::demo::interrupt::check()?;
            bail!(
                "the listener did not come up within {limit:?} (expected \"{listening}\"); state {}:\n{}",
                self.state()?,
                tail(&self.log_text(), 30)
            );
        }
        Ok(())
    }

    /// `sc stop gate`, then waits until the service is STOPPED (the driver
    /// unloaded) within `limit`; returns how long that took.
    pub fn stop_driver(&self, limit: Duration) -> Result<Duration> {
        let start = Instant::now();
        let (ok, out) = self.run(&["sc", "stop", SERVICE])?;
        if !ok {
            bail!("wine sc stop gate failed: {out}");
        }
        loop {
            let state = self.state()?;
            if state == "STOPPED" {
                return Ok(start.elapsed());
            }
            crate::demo::interrupt::check()?;
            if start.elapsed() > limit {
                bail!(
                    "sc stop did not unload the driver within {limit:?} (state {state}):\n{}",
                    tail(&self.log_text(), 30)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Puts `exe` (gatectl.exe) and the test-only bcryptprimitives.dll shim
    /// into C:\gate-test; returns gatectl.exe's Windows path.
    pub fn install_gatectl(&self, exe: &Path) -> Result<String> {
        let dir = self.prefix.join("drive_c/gate-test");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::copy(exe, dir.join("gatectl.exe"))
            .with_context(|| format!("copying {}", exe.display()))?;
        crate::package::gatectl::build_wine_shim(&dir)?;
        Ok(r"C:\gate-test\gatectl.exe".to_string())
    }

    /// Runs gatectl.exe (`exe`: its Windows path) under Wine: (exit code,
    /// stdout, stderr).
    pub fn gatectl(&self, exe: &str, args: &[&str]) -> Result<(i32, String, String)> {
        let out = self
            .wine()
            .arg(exe)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("starting wine gatectl {}", args.join(" ")))?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Ends every process of the prefix (`wineserver -k`) and waits for the
    /// persistent wineserver we started.
    pub fn end(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        let _ = in_netns(self.netns.as_deref(), "wineserver")
            .arg("-k")
            .env("WINEPREFIX", &self.prefix)
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.server.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Starts the persistent wineserver of `prefix` (creating the prefix the
/// first time, ~10 s) in `netns` (None: here), and the first wine process,
/// whose stderr (inherited by services.exe and winedevice.exe) is the
/// driver's debug log `<prefix>.log`.
pub fn start_session(prefix: &Path, netns: Option<&str>) -> Result<Session> {
    let log = prefix.with_extension("log");
    if !prefix.join("system.reg").exists() {
        eprintln!("xtask: creating the Wine prefix {}", prefix.display());
        let status = in_netns(netns, "wineboot")
            .arg("-i")
            .env("WINEPREFIX", prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env_remove("DISPLAY")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("starting wineboot")?;
        if !status.success() {
            bail!("wineboot -i failed ({status}) for {}", prefix.display());
        }
        let _ = in_netns(netns, "wineserver")
            .arg("-w")
            .env("WINEPREFIX", prefix)
            .status();
    }
    let server = in_netns(netns, "wineserver")
        .args(["-p", "-f"])
        .env("WINEPREFIX", prefix)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting wineserver -p")?;
    std::thread::sleep(Duration::from_millis(300));
    let session = Session {
        prefix: prefix.to_path_buf(),
        log,
        netns: netns.map(str::to_string),
        server,
        ended: false,
    };
    let err = File::create(&session.log)
        .with_context(|| format!("creating {}", session.log.display()))?;
    // Exit status 1060 (no such service) is fine here.
    let _ = session
        .wine()
        .env("WINEDEBUG", WINEDEBUG)
        .args(["sc", "query", SERVICE])
        .stdout(Stdio::null())
        .stderr(err)
        .status()
        .context("starting wine")?;
    Ok(session)
}

pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// The driver's own lines in the debug log ("gate: ..."), without Wine's
/// prefixes (thread id, channel, DbgPrintEx component and level).
pub fn driver_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.find("gate: ").map(|i| l[i..].to_string()))
        .collect()
}

/// The last `n` lines of `text`, without Wine's "wine32 is missing" notice.
pub fn tail(text: &str, n: usize) -> String {
    const NOISE: [&str; 4] = [
        "wine32 is missing",
        "multiarch needs",
        "dpkg --add-architecture",
        "apt-get install wine32",
    ];
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !NOISE.iter().any(|n| l.contains(n)))
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_lines_drop_wine_prefixes() {
        let log = "0198:warn:debugstr:vDbgPrintExWithPrefix 0000004d:00000008: gate: listening on 10.77.0.1:8080 (post_accept)\n\
                   01d8:fixme:netio:wsk_disconnect socket 0000 stub.\n";
        assert_eq!(
            driver_lines(log),
            vec!["gate: listening on 10.77.0.1:8080 (post_accept)".to_string()]
        );
        assert_eq!(tail("a\nwine32 is missing\nb\nc", 2), "b\nc");
    }
}
