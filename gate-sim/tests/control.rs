//! gate-sim's control socket and events file, from an operator's side
//! (newcomer review of issue 13, items 3 and 8):
//! - a second gate-sim given the same `--control PATH` refuses to start
//!   (exit 2, naming the path) instead of taking over the live socket, and
//!   the first one keeps serving it and removes it at its own exit;
//! - `--events FILE` is written line by line while gate-sim runs (an
//!   operator's `tail -f` sees events live), not only at exit.
//!
//! Root (namespaces the test makes, iptables-nft): `cargo test -p gate-sim
//! --test control -- --ignored`, run by `cargo xtask ci` as root.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let ns = Netns(format!("gsc{tag}{}", std::process::id() % 100_000));
        let _ = Command::new("ip").args(["netns", "del", &ns.0]).status();
        assert!(Command::new("ip")
            .args(["netns", "add", &ns.0])
            .status()
            .unwrap()
            .success());
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A gate-sim stopped by its PID (SIGINT) if the test ends early.
struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
#[ignore = "needs root and iptables-nft; run by cargo xtask ci as root"]
fn a_second_gate_sim_refuses_a_live_control_socket_and_events_are_written_live() {
    let (na, nb) = (Netns::new("a"), Netns::new("b"));
    let dir = std::env::temp_dir().join(format!("gate-sim-control-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("control.sock");
    let events = dir.join("events.jsonl");
    let sock_s = sock.to_str().unwrap();

    let mut a = Sim(Command::new(env!("CARGO_BIN_EXE_gate-sim"))
        .args([
            "--netns",
            &na.0,
            "--duration-s",
            "60",
            "--stats-interval-ms",
            "0",
        ])
        .args(["--ListenPort", "18183", "--control", sock_s])
        .arg("--events")
        .arg(&events)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("gate-sim A"));
    let mut lines = BufReader::new(a.0.stdout.take().unwrap()).lines();
    let t = Instant::now();
    loop {
        let l = lines
            .next()
            .expect("gate-sim A exited before ready")
            .unwrap();
        if l == "ready" {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no ready");
    }

    // Events are in the file while A runs (a few lines: far below any
    // buffer size, so a buffered writer would still hold them).
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        if text.lines().any(|l| l.contains("\"ListenerUp\"")) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no ListenerUp line in --events while gate-sim runs: {text:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // B, same socket path: refused, exit 2, the path named; A unharmed.
    let b = Command::new(env!("CARGO_BIN_EXE_gate-sim"))
        .args([
            "--netns",
            &nb.0,
            "--duration-s",
            "5",
            "--stats-interval-ms",
            "0",
        ])
        .args(["--ListenPort", "18184", "--control", sock_s])
        .output()
        .expect("gate-sim B");
    let err = String::from_utf8_lossy(&b.stderr);
    assert_eq!(b.status.code(), Some(2), "{err}");
    assert!(err.contains(sock_s) && err.contains("in use"), "{err}");
    assert!(sock.exists(), "B must not remove A's socket");
    UnixStream::connect(&sock).expect("A still serves its socket");

    // A stops cleanly and removes its own socket.
    let pid = a.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let t = Instant::now();
    let st = loop {
        if let Some(st) = a.0.try_wait().unwrap() {
            break st;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "A did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(st.code(), Some(0));
    assert!(!sock.exists(), "A removes its own socket at exit");
    let _ = std::fs::remove_dir_all(&dir);
}
