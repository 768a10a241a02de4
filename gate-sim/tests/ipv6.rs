//! IPv6 through NFQUEUE and ip6tables (root; `cargo test -p gate-sim --test
//! ipv6 -- --ignored`, run by `cargo xtask ci` as root): in a namespace the
//! test makes, two IPv6 clients in different prefixes connect to the gate's
//! port over IPv6. gate-sim installs its rules with ip6tables-nft too; the
//! driver decides each SYN by its source prefix: the one in `DenyList` is
//! refused with a reset at once, the other completes its handshake and is
//! delivered. The exit report and the ETW events say the same.

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{enter_netns, is_root};

struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("ip");
    assert!(st.success(), "ip {args:?}");
}

const ALLOWED: &str = "2001:db8:1::10";
const DENIED: &str = "2001:db8:2::10";
const PORT: u16 = 18091;

/// Connects from `src` (an address of the namespace) to the allowed
/// address's gate port, inside namespace `ns`.
fn connect_from(ns: &str, src: &str) -> std::io::Result<TcpStream> {
    let (ns, src) = (ns.to_string(), src.to_string());
    std::thread::spawn(move || {
        enter_netns(&ns);
        let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None)?;
        let from: SocketAddr = format!("[{src}]:0").parse().unwrap();
        s.bind(&from.into())?;
        let to: SocketAddr = format!("[{ALLOWED}]:{PORT}").parse().unwrap();
        s.connect_timeout(&to.into(), Duration::from_secs(3))?;
        Ok(s.into())
    })
    .join()
    .unwrap()
}

#[test]
#[ignore = "needs root and ip6tables-nft; run by cargo xtask ci as root"]
fn ipv6_clients_are_decided_by_prefix() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let ns = Ns(format!("gs6-{}", std::process::id()));
    let _ = Command::new("ip").args(["netns", "del", &ns.0]).status();
    ip(&["netns", "add", &ns.0]);
    ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
    for a in [ALLOWED, DENIED] {
        ip(&[
            "-n",
            &ns.0,
            "addr",
            "add",
            &format!("{a}/64"),
            "dev",
            "lo",
            "nodad",
        ]);
    }
    let events = std::env::temp_dir().join(format!("gs6-events-{}.jsonl", std::process::id()));
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
            &PORT.to_string(),
            "--DenyList",
            "2001:db8:2::/48",
        ])
        .arg("--events")
        .arg(&events)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning gate-sim");
    let lines = common::lines_once_ready(&mut gate);
    let accepted = connect_from(&ns.0, ALLOWED);
    let t = Instant::now();
    let refused = connect_from(&ns.0, DENIED);
    let refused_after = t.elapsed();
    let pid = libc::pid_t::try_from(gate.id()).unwrap();
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let st = gate.wait().unwrap();
    let report: Vec<String> = lines.iter().collect();
    let text = std::fs::read_to_string(&events).unwrap_or_default();
    let _ = std::fs::remove_file(&events);
    assert!(st.success(), "gate-sim exit {st}:\n{}", report.join("\n"));

    let c = accepted.expect("the allowed IPv6 client completes its handshake");
    assert_eq!(
        c.peer_addr().unwrap(),
        format!("[{ALLOWED}]:{PORT}").parse().unwrap()
    );
    let e = refused.expect_err("the denied IPv6 prefix is refused");
    assert_eq!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "refused with a reset: {e}"
    );
    assert!(
        refused_after < Duration::from_secs(1),
        "at once, not after SYN retransmissions: {refused_after:?}"
    );
    let line = |p: &str| {
        report
            .iter()
            .find(|l| l.starts_with(p))
            .unwrap_or_else(|| panic!("no {p} line in {report:?}"))
            .clone()
    };
    let nfq = line("nfq: ");
    assert!(
        nfq.contains(" syns=2 ") && nfq.contains(" accepted=1 ") && nfq.contains(" rejected=1 "),
        "{nfq}"
    );
    assert!(nfq.contains(" lost=0 "), "{nfq}");
    assert!(line("real: ").contains("handshakes=1 "), "{report:?}");
    // The SYNs went through the ip6tables-nft rules (a refused SYN passes
    // twice: NF_REPEAT sends it back to the reset rule).
    assert_eq!(line("rules: "), "rules: syns_in=3", "{report:?}");
    // The driver's own events name the IPv6 sources and the reasons.
    let decided: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"ConnectionAccepted\"") || l.contains("\"ConnectionRejected\""))
        .collect();
    assert_eq!(decided.len(), 2, "{text}");
    assert!(
        decided
            .iter()
            .any(|l| l.contains("ConnectionAccepted") && l.contains(ALLOWED)),
        "{decided:?}"
    );
    assert!(
        decided
            .iter()
            .any(|l| l.contains("ConnectionRejected") && l.contains(DENIED)),
        "{decided:?}"
    );
    // Refused for the deny list (the report counts decisions by reason).
    let deny = gate_core::Reason::DenyListed.name();
    assert!(
        report
            .iter()
            .any(|l| l.trim() == format!("ConnectionRejected/{deny} 1")),
        "{report:?}"
    );
}
