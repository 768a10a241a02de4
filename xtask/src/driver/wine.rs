//! `cargo xtask driver --wine-test`: loads the release gate.sys under Wine as
//! a kernel service (winedevice.exe runs it in user mode) and checks that
//! DriverEntry ran, the listener came up on loopback, a TCP connection is
//! accepted, connections are relayed to a backend on loopback (issue 12:
//! PROXY v2 header checked by the backend, bytes echoed and compared),
//! gatectl.exe drives the control device (status, set, ban, query, unban; a
//! change on a read-only handle is refused by the CTL_CODE access bits), no
//! winedevice crash is logged, and `sc stop` unloads the driver. The Wine
//! session itself (prefix, wineserver, service, gatectl.exe) is
//! [`crate::wine`]; Wine has no conditional accept, so the driver runs its
//! post-accept mode.

use super::Profile;
use crate::deps;
use crate::wine::{start_session, tail, Session, PKGS};
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Time limits of each step.
const LOAD_LIMIT: Duration = Duration::from_secs(15);
const STOP_LIMIT: Duration = Duration::from_secs(20);

pub fn run() -> Result<()> {
    deps::ensure("the Wine test", PKGS)?;
    let started = Instant::now();
    let image = super::build(Profile::Release)?;
    let prefix = super::target_dir(&super::workspace_root()).join("wine-prefix");
    let session = start_session(&prefix, None)?;
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
    let port = crate::wine::free_port()?;
    let (backend, headers) = echo_backend(port)?;
    s.install_driver(
        sys,
        &[
            ("ListenAddress", "REG_SZ", "127.0.0.1".to_string()),
            ("ListenPort", "REG_DWORD", port.to_string()),
            ("BackendAddress", "REG_SZ", backend.to_string()),
            ("ProxyProtocol", "REG_DWORD", "2".to_string()),
            ("IdleTimeoutMs", "REG_DWORD", "10000".to_string()),
            // Every test connection is let in (the default burst is 20).
            ("Burst", "REG_DWORD", "1000".to_string()),
            ("RateMilliPerSecond", "REG_DWORD", "1000000".to_string()),
        ],
    )?;
    s.start_driver(&format!("127.0.0.1:{port}"), LOAD_LIMIT)?;
    eprintln!("xtask wine-test: DriverEntry ran");
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to the gate on {addr}"))?;
    eprintln!("xtask wine-test: listening on {addr}, a connection was accepted");
    relay_check(s, addr, &headers)?;
    control_device(s)?;

    s.stop_driver(STOP_LIMIT)?;
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
    if s.crashed() {
        bail!(
            "winedevice crashed:
{}",
            tail(&s.log_text(), 30)
        );
    }
    Ok(())
}

fn gatectl_json(s: &Session, exe: &str, args: &[&str]) -> Result<serde_json::Value> {
    let (code, out, err) = s.gatectl(exe, args)?;
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
    let exe = s.install_gatectl(&super::build_gatectl(Profile::Release)?)?;
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
    // The driver's clock runs at wall-clock speed (Wine's
    // KeQueryInterruptTime returns milliseconds; the driver must not use it).
    let wall = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let st2 = gatectl_json(s, &exe, &["status", "--json"])?;
    let wall_ms = wall.elapsed().as_millis() as u64;
    let up = |v: &serde_json::Value| v["uptime_ms"].as_u64().unwrap_or(0);
    let driver_ms = up(&st2).saturating_sub(up(&st));
    // gatectl.exe's own start under Wine lies between the reads: allow it.
    if driver_ms < 1500 || driver_ms > wall_ms + 500 {
        bail!(
            "the driver's uptime advanced {driver_ms} ms in {wall_ms} ms of wall time: its clock is wrong under Wine"
        );
    }
    // --persist: the driver opens (or creates) Parameters with ZwCreateKey
    // and writes REG_DWORD Burst there.
    let (code, out, err) = s.gatectl(&exe, &["set", "--burst", "7", "--persist"])?;
    if code != 0 || !out.contains("burst 1000 -> 7 (persisted)") {
        bail!(
            "gatectl set --burst 7 --persist exited {code}: {out} {}",
            tail(&err, 10)
        );
    }
    let (ok, reg) = s.run(&["reg", "query", crate::wine::PARAMETERS_KEY, "/v", "Burst"])?;
    if !ok || !reg.to_ascii_lowercase().contains("0x7") {
        bail!("after set --burst 7 --persist, Parameters\\Burst reads: {reg}");
    }
    // A change on a read-only handle: the I/O manager refuses (CTL_CODE access bits).
    let (code, _, err) = s.gatectl(&exe, &["--read-only", "set", "--burst", "9"])?;
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
    let (code, _, err) = s.gatectl(&exe, &["ban", "10.9.0.0/16", "--for", "10m"])?;
    if code != 0 {
        bail!("gatectl ban exited {code}: {}", tail(&err, 10));
    }
    let q = gatectl_json(s, &exe, &["query", "10.9.1.1", "--json"])?;
    if q["manual_banned"] != true {
        bail!("gatectl query after ban: {q}");
    }
    let (code, out, err) = s.gatectl(&exe, &["unban", "10.9.0.0/16"])?;
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
    eprintln!("xtask wine-test: gatectl.exe status (uptime advances at wall-clock speed), set --persist (registry written), ban, query, unban passed; a change on a read-only handle was refused");
    Ok(())
}
