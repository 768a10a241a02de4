//! `cargo xtask driver --wine-bench`: the relay's figures for the record
//! (issue 12) — short request/response connections per second and one bulk
//! stream's MB/s, directly to a backend on loopback and through the release
//! gate.sys under Wine (PROXY v2), in one run, with their ratio.
//!
//! The backend (here, in-process) reads the PROXY v2 header on the port the
//! gate relays to (none on the direct port), then an 8-byte request (bytes
//! up, bytes down, big-endian u32 each), reads the bytes up, writes the
//! bytes down and closes: under Wine the relay cannot pass a half-close on
//! (WskDisconnect is a stub), so the backend ends each exchange and the
//! client reads exactly what it asked for.

use super::Profile;
use crate::deps;
use crate::wine::{self, Session};
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Short connections per measurement, and the client threads making them.
const SHORT: usize = 600;
const THREADS: usize = 4;
/// A short exchange: request and response bytes.
const SHORT_UP: u32 = 64;
const SHORT_DOWN: u32 = 1024;
/// The bulk stream's bytes (backend -> client).
const BULK: u32 = 64 << 20;

pub fn run() -> Result<()> {
    deps::ensure("the Wine benchmark", wine::PKGS)?;
    let image = super::build(Profile::Release)?;
    let prefix = super::target_dir(&super::workspace_root()).join("wine-prefix");
    let session = wine::start_session(&prefix, None)?;
    let result = measure(&session, &image.sys);
    let log = session.log.clone();
    session.end();
    result.map_err(|e| e.context(format!("Wine debug log: {}", log.display())))
}

/// One measurement: connections/s and bulk MB/s against `addr`.
struct Figures {
    conns_per_s: f64,
    failed: u64,
    bulk_mb_per_s: f64,
}

fn measure(s: &Session, sys: &Path) -> Result<()> {
    let direct = backend(false)?;
    let relayed = backend(true)?;
    let port = wine::free_port()?;
    s.install_driver(
        sys,
        &[
            ("ListenAddress", "REG_SZ", "127.0.0.1".to_string()),
            ("ListenPort", "REG_DWORD", port.to_string()),
            ("BackendAddress", "REG_SZ", relayed.to_string()),
            ("ProxyProtocol", "REG_DWORD", "2".to_string()),
            ("MaxConnections", "REG_DWORD", "4096".to_string()),
            ("IdleTimeoutMs", "REG_DWORD", "20000".to_string()),
            // Every connection is let in.
            ("Burst", "REG_DWORD", "100000".to_string()),
            ("RateMilliPerSecond", "REG_DWORD", "100000000".to_string()),
        ],
    )?;
    let gate = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    s.start_driver(&gate.to_string(), Duration::from_secs(15))?;
    let d = figures(direct)?;
    let g = figures(gate)?;
    s.stop_driver(Duration::from_secs(30))?;
    let _ = s.run(&["sc", "delete", wine::SERVICE])?;
    if s.crashed() {
        bail!("winedevice crashed:\n{}", wine::tail(&s.log_text(), 30));
    }
    println!(
        "direct {direct}: {:.0} connections/s ({} failed), bulk {:.0} MB/s",
        d.conns_per_s, d.failed, d.bulk_mb_per_s
    );
    println!(
        "gate.sys under Wine {gate} (PROXY v2): {:.0} connections/s ({} failed), bulk {:.0} MB/s",
        g.conns_per_s, g.failed, g.bulk_mb_per_s
    );
    println!(
        "gate under Wine / direct: {:.2}x connections/s, {:.2}x MB/s ({SHORT} connections of {SHORT_UP} B up, {SHORT_DOWN} B down from {THREADS} threads; one stream of {} MiB)",
        g.conns_per_s / d.conns_per_s,
        g.bulk_mb_per_s / d.bulk_mb_per_s,
        BULK >> 20
    );
    if d.failed + g.failed > 0 {
        bail!("{} exchanges failed", d.failed + g.failed);
    }
    Ok(())
}

/// A backend on loopback per the module doc; `proxy`: each connection
/// starts with a PROXY v2 header (checked: signature, version/command).
fn backend(proxy: bool) -> Result<SocketAddr> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a backend")?;
    let addr = l.local_addr()?;
    let down = Arc::new(vec![0x5Au8; BULK as usize]);
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { return };
            let down = Arc::clone(&down);
            std::thread::spawn(move || {
                let _ = serve(c, proxy, &down);
            });
        }
    });
    Ok(addr)
}

fn serve(mut c: TcpStream, proxy: bool, down: &[u8]) -> Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(20)))?;
    c.set_nodelay(true)?;
    if proxy {
        let mut h = [0u8; 16];
        c.read_exact(&mut h)?;
        if h[..12]
            != [
                0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
            ]
            || h[12] != 0x21
        {
            bail!("bad PROXY v2 header {h:02x?}");
        }
        let mut rest = vec![0u8; usize::from(u16::from_be_bytes([h[14], h[15]]))];
        c.read_exact(&mut rest)?;
    }
    let mut req = [0u8; 8];
    c.read_exact(&mut req)?;
    let up = u32::from_be_bytes([req[0], req[1], req[2], req[3]]) as usize;
    let n = (u32::from_be_bytes([req[4], req[5], req[6], req[7]]) as usize).min(down.len());
    let mut sink = vec![0u8; up];
    c.read_exact(&mut sink)?;
    c.write_all(&down[..n])?;
    let _ = c.shutdown(Shutdown::Both);
    Ok(())
}

/// One exchange: `up` bytes up, exactly `down` bytes back.
fn exchange(addr: SocketAddr, up: u32, down: u32) -> Result<()> {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    c.set_read_timeout(Some(Duration::from_secs(30)))?;
    c.set_nodelay(true)?;
    let mut req = Vec::with_capacity(8 + up as usize);
    req.extend_from_slice(&up.to_be_bytes());
    req.extend_from_slice(&down.to_be_bytes());
    req.resize(8 + up as usize, 0xA5);
    c.write_all(&req)?;
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0usize;
    while got < down as usize {
        let n = c.read(&mut buf)?;
        if n == 0 {
            bail!("{got} of {down} bytes, then EOF");
        }
        got += n;
    }
    Ok(())
}

fn figures(addr: SocketAddr) -> Result<Figures> {
    let failed = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let failed = Arc::clone(&failed);
            std::thread::spawn(move || {
                for _ in 0..SHORT / THREADS {
                    if exchange(addr, SHORT_UP, SHORT_DOWN).is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    exchange(addr, 0, BULK).with_context(|| format!("the bulk stream from {addr}"))?;
    let bulk_secs = t1.elapsed().as_secs_f64();
    Ok(Figures {
        conns_per_s: (SHORT / THREADS * THREADS) as f64 / secs,
        failed: failed.load(Ordering::Relaxed),
        bulk_mb_per_s: f64::from(BULK) / bulk_secs / 1e6,
    })
}
