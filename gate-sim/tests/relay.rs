//! Real bytes end to end through gate-sim (root; `cargo test -p gate-sim
//! --test relay -- --ignored`, run by `cargo xtask ci` as root): in a
//! namespace the test makes, a real client connects to the gate's port;
//! its SYN is decided through NFQUEUE, the accepted connection reaches the
//! driver after the real handshake with the real socket behind it, and the
//! driver's relay connects (WskConnect: a real connection) to a real echo
//! backend. The client gets its bytes back, the backend saw them, and
//! gate-sim exits clean.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn enter_netns(name: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{name}")).expect("netns");
    // SAFETY: setns(2) on a namespace fd; affects only this thread.
    let r = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns {name}");
}

struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
#[ignore = "needs root and iptables-nft; run by cargo xtask ci as root"]
fn client_bytes_are_relayed_to_a_real_backend_and_back() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let ns = Ns(format!("gsr{}", std::process::id()));
    let _ = Command::new("ip").args(["netns", "del", &ns.0]).status();
    assert!(Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap()
        .success());
    assert!(Command::new("ip")
        .args(["-n", &ns.0, "link", "set", "lo", "up"])
        .status()
        .unwrap()
        .success());
    // The echo backend, inside the namespace.
    let (btx, brx) = mpsc::channel();
    let bns = ns.0.clone();
    let backend = std::thread::spawn(move || {
        enter_netns(&bns);
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        btx.send(l.local_addr().unwrap().port()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 256];
        loop {
            let n = s.read(&mut b).unwrap_or(0);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&b[..n]);
            s.write_all(&b[..n]).unwrap();
        }
        got
    });
    let bport = brx.recv().unwrap();
    let mut gate = Command::new(env!("CARGO_BIN_EXE_gate-sim"))
        .args([
            "--netns",
            &ns.0,
            "--queues",
            "0:0",
            "--stats-interval-ms",
            "0",
        ])
        .args([
            "--ListenPort",
            "18090",
            "--BackendAddress",
            &format!("127.0.0.1:{bport}"),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning gate-sim");
    let (tx, lines) = mpsc::channel::<String>();
    let out = gate.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            eprintln!("gate-sim: {l}");
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let t = Instant::now();
    loop {
        let l = lines
            .recv_timeout(Duration::from_secs(20).saturating_sub(t.elapsed()))
            .expect("gate-sim did not get ready");
        if l == "ready" {
            break;
        }
    }
    let cns = ns.0.clone();
    let echoed = std::thread::spawn(move || {
        enter_netns(&cns);
        let mut c =
            TcpStream::connect_timeout(&"127.0.0.1:18090".parse().unwrap(), Duration::from_secs(3))
                .expect("accepted and relayed");
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"real bytes through the gate").unwrap();
        let mut got = vec![0u8; 27];
        c.read_exact(&mut got).unwrap();
        got
    })
    .join()
    .unwrap();
    assert_eq!(echoed, b"real bytes through the gate");
    let pid = libc::pid_t::try_from(gate.id()).unwrap();
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let st = gate.wait().unwrap();
    let report: Vec<String> = lines.iter().collect();
    assert!(st.success(), "gate-sim exit {st}:\n{}", report.join("\n"));
    let real = report
        .iter()
        .find(|l| l.starts_with("real: "))
        .expect("real: line");
    assert!(
        real.contains("handshakes=1") && real.contains("connects=1"),
        "{real}"
    );
    assert!(
        report.iter().any(|l| l.trim() == "RelayOpened 1"),
        "{report:?}"
    );
    assert_eq!(backend.join().unwrap(), b"real bytes through the gate");
}
