//! `cargo xtask driver --wine-test`: loads the release gate.sys under Wine as
//! a kernel service (winedevice.exe runs it in user mode) and checks that
//! DriverEntry ran, the listener came up on loopback, a TCP connection is
//! accepted, connections are relayed to a backend on loopback (issue 12:
//! PROXY v2 header checked by the backend, bytes echoed and compared),
//! gatectl.exe drives the control device (status, set, ban, query, unban; a
//! change on a read-only handle is refused by the CTL_CODE access bits), no
//! winedevice crash is logged, and `sc stop` unloads the driver.
//!
//! Wine 8 lacks bcryptprimitives.dll, which Rust's std imports (ProcessPrng):
//! the test builds a tiny shim DLL next to gatectl.exe in the Wine prefix
//! (tests only; never shipped).
//!
//! Wine 8.0 facts this relies on (see shared/design/platform-facts.md):
//! `sc create ... type= kernel` + `sc start` load a .sys; `wineserver -p`
//! keeps the services alive between commands; DbgPrintEx output goes to the
//! first wine process's stderr with `WINEDEBUG=...,warn+debugstr`; Wine has
//! no conditional accept, so the driver runs its post-accept mode.

use super::Profile;
use crate::deps::{self, Pkg};
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const PKGS: &[Pkg] = &[
    Pkg::new("wine", "/usr/bin/wine-stable"),
    Pkg::new("wine64", "/usr/lib/wine/wine64"),
];

/// Debug channels: the driver's DbgPrintEx lines, loader errors, and the
/// WSK provider's stubs.
const WINEDEBUG: &str = "-all,warn+debugstr,err+module,fixme+netio,fixme+ntoskrnl";

/// Time limits of each step.
const LOAD_LIMIT: Duration = Duration::from_secs(15);
const STOP_LIMIT: Duration = Duration::from_secs(20);

/// One Wine prefix with its persistent wineserver and the debug log.
pub struct Session {
    pub prefix: PathBuf,
    pub log: PathBuf,
    server: Child,
}

impl Session {
    pub fn wine(&self) -> Command {
        let mut c = Command::new("wine");
        c.env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env_remove("DISPLAY");
        c
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

    pub fn state(&self) -> Result<String> {
        let (_, out) = self.run(&["sc", "query", "gate"])?;
        Ok(out
            .lines()
            .find(|l| l.contains("STATE"))
            .map(|l| l.split_whitespace().last().unwrap_or("").to_string())
            .unwrap_or_else(|| "NOT-INSTALLED".into()))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the debug log contains `text`, or `limit` passes.
    pub fn wait_log(&self, text: &str, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.log_text().contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    pub fn end(mut self) {
        let _ = Command::new("wineserver")
            .arg("-k")
            .env("WINEPREFIX", &self.prefix)
            .status();
        let _ = self.server.wait();
    }
}

pub fn start_session(prefix: &Path) -> Result<Session> {
    let log = prefix.with_extension("log");
    if !prefix.join("system.reg").exists() {
        eprintln!(
            "xtask wine-test: creating the Wine prefix {}",
            prefix.display()
        );
        let status = Command::new("wineboot")
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
        let _ = Command::new("wineserver")
            .arg("-w")
            .env("WINEPREFIX", prefix)
            .status();
    }
    let server = Command::new("wineserver")
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
        server,
    };
    // The first wine process starts services.exe and winedevice.exe, which
    // inherit its stderr: that file is the driver's debug log.
    let err = File::create(&session.log)
        .with_context(|| format!("creating {}", session.log.display()))?;
    let status = session
        .wine()
        .env("WINEDEBUG", WINEDEBUG)
        .args(["sc", "query", "gate"])
        .stdout(Stdio::null())
        .stderr(err)
        .status()
        .context("starting wine")?;
    // Exit status 1060 (no such service) is fine here.
    let _ = status;
    Ok(session)
}

pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

pub fn run() -> Result<()> {
    deps::ensure("the Wine test", PKGS)?;
    let started = Instant::now();
    let image = super::build(Profile::Release)?;
    let prefix = super::target_dir(&super::workspace_root()).join("wine-prefix");
    let session = start_session(&prefix)?;
    let result = exercise(&session, &image.sys);
    let log = session.log.clone();
    session.end();
    match result {
        Ok(()) => {
            eprintln!(
                "xtask wine-test: passed in {:.1} s (debug log {})",
                started.elapsed().as_secs_f64(),
                log.display()
            );
            Ok(())
        }
        Err(e) => Err(e.context(format!("Wine debug log: {}", log.display()))),
    }
}

fn exercise(s: &Session, sys: &Path) -> Result<()> {
    let drivers = s.prefix.join("drive_c/windows/system32/drivers");
    std::fs::copy(sys, drivers.join("gate.sys"))
        .with_context(|| format!("copying {} into {}", sys.display(), drivers.display()))?;
    let _ = s.run(&["sc", "delete", "gate"])?;
    let (ok, out) = s.run(&[
        "sc",
        "create",
        "gate",
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
    let port = free_port()?;
    let (backend, headers) = echo_backend(port)?;
    let key = r"HKLM\System\CurrentControlSet\Services\gate\Parameters";
    for (name, kind, value) in [
        ("ListenAddress", "REG_SZ", "127.0.0.1".to_string()),
        ("ListenPort", "REG_DWORD", port.to_string()),
        ("BackendAddress", "REG_SZ", backend.to_string()),
        ("ProxyProtocol", "REG_DWORD", "2".to_string()),
        ("IdleTimeoutMs", "REG_DWORD", "10000".to_string()),
        // Every test connection is let in (the default burst is 20).
        ("Burst", "REG_DWORD", "1000".to_string()),
        ("RateMilliPerSecond", "REG_DWORD", "1000000".to_string()),
    ] {
        let (ok, out) = s.run(&[
            "reg", "add", key, "/v", name, "/t", kind, "/d", &value, "/f",
        ])?;
        if !ok {
            bail!("wine reg add {name} failed: {out}");
        }
    }

    let (ok, out) = s.run(&["sc", "start", "gate"])?;
    if !ok {
        bail!(
            "wine sc start gate failed: {out}\n{}",
            tail(&s.log_text(), 30)
        );
    }
    if !s.wait_log("gate: seed from", LOAD_LIMIT) {
        bail!(
            "DriverEntry left no trace within {LOAD_LIMIT:?} (expected \"gate: seed from ...\"):\n{}",
            tail(&s.log_text(), 30)
        );
    }
    eprintln!("xtask wine-test: DriverEntry ran");
    let listening = format!("gate: listening on 127.0.0.1:{port}");
    if !s.wait_log(&listening, LOAD_LIMIT) {
        bail!(
            "the listener did not come up within {LOAD_LIMIT:?} (expected \"{listening}\"); state {}:\n{}",
            s.state()?,
            tail(&s.log_text(), 30)
        );
    }
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to the gate on {addr}"))?;
    eprintln!("xtask wine-test: listening on {addr}, a connection was accepted");
    relay_check(s, addr, &headers)?;
    control_device(s)?;

    let (ok, out) = s.run(&["sc", "stop", "gate"])?;
    if !ok {
        bail!("wine sc stop gate failed: {out}");
    }
    let start = Instant::now();
    loop {
        let state = s.state()?;
        if state == "STOPPED" {
            break;
        }
        if start.elapsed() > STOP_LIMIT {
            bail!(
                "sc stop did not unload the driver within {STOP_LIMIT:?} (state {state}):\n{}",
                tail(&s.log_text(), 30)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok() {
        bail!("{addr} still accepts connections after the driver stopped");
    }
    eprintln!("xtask wine-test: sc stop unloaded the driver");
    let _ = s.run(&["sc", "delete", "gate"])?;
    Ok(())
}

/// How long the echo backend waits for a request.
const BACKEND_PATIENCE: Duration = Duration::from_secs(3);

/// Relayed connections through the gate under Wine.
const RELAYS: usize = 40;
/// Bytes each relayed connection sends and gets back.
const RELAY_BYTES: usize = 64 * 1024;

/// A backend on loopback that checks each connection's PROXY v2 header
/// (client 127.0.0.1, destination 127.0.0.1:`gate_port`), then reads a
/// 4-byte big-endian length and that many bytes, echoes them and closes
/// (Wine's WskDisconnect is a stub, so the relay cannot pass a half-close
/// on: the backend ends the exchange). Reports each header's source port.
pub fn echo_backend(gate_port: u16) -> Result<(SocketAddr, mpsc::Receiver<Result<u16, String>>)> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding the echo backend")?;
    let addr = l.local_addr()?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = c.set_read_timeout(Some(Duration::from_secs(20)));
                let mut h = [0u8; 28];
                if let Err(e) = c.read_exact(&mut h) {
                    let _ = tx.send(Err(format!("reading the PROXY header: {e}")));
                    return;
                }
                let sig = [
                    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
                ];
                let dst_port = u16::from_be_bytes([h[26], h[27]]);
                let ok = h[..12] == sig
                    && h[12..16] == [0x21, 0x11, 0, 12]
                    && h[16..20] == [127, 0, 0, 1]
                    && h[20..24] == [127, 0, 0, 1]
                    && dst_port == gate_port;
                if !ok {
                    let _ = tx.send(Err(format!("bad PROXY v2 header {h:02x?}")));
                    return;
                }
                let _ = tx.send(Ok(u16::from_be_bytes([h[24], h[25]])));
                // The plain connection check sends nothing and its FIN
                // cannot be passed on under Wine: give up after a while so
                // that relay ends too (the backend's FIN is seen).
                let _ = c.set_read_timeout(Some(BACKEND_PATIENCE));
                let mut n = [0u8; 4];
                if c.read_exact(&mut n).is_err() {
                    let _ = c.shutdown(Shutdown::Both);
                    return;
                }
                let _ = c.set_read_timeout(Some(Duration::from_secs(20)));
                let mut data = vec![0u8; u32::from_be_bytes(n) as usize];
                if c.read_exact(&mut data).is_ok() {
                    let _ = c.write_all(&data);
                }
                let _ = c.shutdown(Shutdown::Both);
            });
        }
    });
    Ok((addr, rx))
}

/// [`RELAYS`] connections through the gate, each echoed byte-exact with a
/// valid PROXY v2 header naming its own source port; then the log must not
/// show a winedevice crash.
fn relay_check(
    s: &Session,
    addr: SocketAddr,
    headers: &mpsc::Receiver<Result<u16, String>>,
) -> Result<()> {
    let started = Instant::now();
    // The plain connection check above was relayed too.
    match headers.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => bail!("relay: {e}"),
        Err(_) => bail!(
            "relay: the backend got no connection for the first client:
{}",
            tail(&s.log_text(), 30)
        ),
    }
    for i in 0..RELAYS {
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("relay {i}: connecting to the gate"))?;
        c.set_read_timeout(Some(Duration::from_secs(20)))?;
        let me = c.local_addr()?.port();
        let data: Vec<u8> = (0..RELAY_BYTES).map(|k| (k * 31 + i) as u8).collect();
        c.write_all(&(RELAY_BYTES as u32).to_be_bytes())?;
        c.write_all(&data)?;
        // Exactly the echo, then the client closes: without WskDisconnect
        // (a Wine stub) the backend's FIN cannot be passed on, so the
        // client ends the exchange and both directions see EOF.
        let mut back = vec![0u8; RELAY_BYTES];
        c.read_exact(&mut back)
            .with_context(|| format!("relay {i}: reading the echo\n{}", tail(&s.log_text(), 20)))?;
        drop(c);
        if back != data {
            bail!(
                "relay {i}: {} bytes came back, not the {} sent:
{}",
                back.len(),
                data.len(),
                tail(&s.log_text(), 30)
            );
        }
        match headers.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(port)) if port == me => {}
            Ok(Ok(port)) => {
                bail!("relay {i}: PROXY header names source port {port}, the client was {me}")
            }
            Ok(Err(e)) => bail!("relay {i}: {e}"),
            Err(_) => bail!("relay {i}: no header report"),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "xtask wine-test: {RELAYS} connections relayed (PROXY v2, {RELAY_BYTES} bytes echoed each) in {secs:.1} s"
    );
    // Let the plain check's half-open relay end (the backend gives up).
    std::thread::sleep(BACKEND_PATIENCE + Duration::from_secs(1));
    if s.log_text().contains("Unhandled page fault") {
        bail!(
            "winedevice crashed:
{}",
            tail(&s.log_text(), 30)
        );
    }
    Ok(())
}

/// The bcryptprimitives.dll shim for Wine 8 (Rust std calls ProcessPrng).
const PRNG_SHIM: &str = r#"#include <windows.h>
#include <ntsecapi.h>
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, n)) return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
"#;

/// Puts gatectl.exe (and the test-only shim) into the prefix; returns its
/// Windows path.
fn install_gatectl(s: &Session) -> Result<String> {
    let exe = super::build_gatectl(Profile::Release)?;
    let dir = s.prefix.join("drive_c/gate-test");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::copy(&exe, dir.join("gatectl.exe"))
        .with_context(|| format!("copying {}", exe.display()))?;
    let src = dir.join("bcryptprimitives_shim.c");
    std::fs::write(&src, PRNG_SHIM)?;
    let status = Command::new("x86_64-w64-mingw32-gcc")
        .args(["-shared", "-O2", "-o"])
        .arg(dir.join("bcryptprimitives.dll"))
        .arg(&src)
        .arg("-ladvapi32")
        .status()
        .context("starting x86_64-w64-mingw32-gcc")?;
    if !status.success() {
        bail!("building the bcryptprimitives.dll shim failed ({status})");
    }
    Ok(r"C:\gate-test\gatectl.exe".to_string())
}

/// Runs gatectl.exe under Wine: (exit code, stdout, stderr).
fn gatectl(s: &Session, exe: &str, args: &[&str]) -> Result<(i32, String, String)> {
    let out = s
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

fn gatectl_json(s: &Session, exe: &str, args: &[&str]) -> Result<serde_json::Value> {
    let (code, out, err) = gatectl(s, exe, args)?;
    if code != 0 {
        bail!(
            "gatectl {} exited {code}: {}",
            args.join(" "),
            tail(&err, 10)
        );
    }
    serde_json::from_str(&out)
        .with_context(|| format!("gatectl {}: not JSON: {out}", args.join(" ")))
}

/// gatectl.exe against the shipped gate.sys through \\.\TcpFrontGate.
fn control_device(s: &Session) -> Result<()> {
    let exe = install_gatectl(s)?;
    let st = gatectl_json(s, &exe, &["status", "--json"])?;
    if st["listener"] != "up" || st["mode"] != "post_accept" {
        bail!(
            "gatectl status: listener {} mode {} (expected up, post_accept)",
            st["listener"],
            st["mode"]
        );
    }
    let accepted = st["accepted_connections"].as_u64().unwrap_or(0);
    if accepted < 1 {
        bail!("gatectl status counts {accepted} accepted connections, expected the test's one");
    }
    // --persist: the driver opens (or creates) Parameters with ZwCreateKey
    // and writes REG_DWORD Burst there.
    let (code, out, err) = gatectl(s, &exe, &["set", "--burst", "7", "--persist"])?;
    if code != 0 || !out.contains("burst 1000 -> 7 (persisted)") {
        bail!(
            "gatectl set --burst 7 --persist exited {code}: {out} {}",
            tail(&err, 10)
        );
    }
    let key = r"HKLM\System\CurrentControlSet\Services\gate\Parameters";
    let (ok, reg) = s.run(&["reg", "query", key, "/v", "Burst"])?;
    if !ok || !reg.to_ascii_lowercase().contains("0x7") {
        bail!("after set --burst 7 --persist, Parameters\\Burst reads: {reg}");
    }
    // A change on a read-only handle: the I/O manager refuses (CTL_CODE access bits).
    let (code, _, err) = gatectl(s, &exe, &["--read-only", "set", "--burst", "9"])?;
    if code != 4 {
        bail!(
            "gatectl --read-only set exited {code}, expected 4 (access denied): {}",
            tail(&err, 10)
        );
    }
    let burst = gatectl_json(s, &exe, &["status", "--json"])?["config"]["burst"].clone();
    if burst != 7 {
        bail!("burst is {burst} after set 7 and a refused set 9");
    }
    let (code, _, err) = gatectl(s, &exe, &["ban", "10.9.0.0/16", "--for", "10m"])?;
    if code != 0 {
        bail!("gatectl ban exited {code}: {}", tail(&err, 10));
    }
    let q = gatectl_json(s, &exe, &["query", "10.9.1.1", "--json"])?;
    if q["manual_banned"] != true {
        bail!("gatectl query after ban: {q}");
    }
    let (code, out, err) = gatectl(s, &exe, &["unban", "10.9.0.0/16"])?;
    if code != 0 || !out.contains("1 manual") {
        bail!("gatectl unban exited {code}: {out} {}", tail(&err, 10));
    }
    let q = gatectl_json(s, &exe, &["query", "10.9.1.1", "--json"])?;
    if q["manual_banned"] != false {
        bail!("gatectl query after unban: {q}");
    }
    let q = gatectl_json(s, &exe, &["query", "127.0.0.1", "--json"])?;
    if q["tracked"] != true {
        bail!("gatectl query 127.0.0.1: the test's connection is not tracked: {q}");
    }
    eprintln!("xtask wine-test: gatectl.exe status, set --persist (registry written), ban, query, unban passed; a change on a read-only handle was refused");
    Ok(())
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
