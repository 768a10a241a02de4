//! gate-load against the simulated gate (root only; skipped with a message
//! otherwise): the real driver code (`gate_driver::DriverEntry` on
//! gate-usersim, run by the `gate-sim` front) decides the real SYNs of a
//! `scenarios/sim-gate.toml` run through the NFQUEUE rules gate-sim
//! installs in the server namespace of a topology the test makes, before
//! the handshake. A rejected SYN is answered with a reset (gate-sim's
//! default, as user-mode conditional accept does on Windows), so every
//! attempt meets the gate exactly once: no client retransmits a SYN, however
//! late its timers run on a loaded machine (with `--reject drop` the kernel's
//! 1 s SYN retransmission reached the gate whenever the client's 700 ms
//! give-up timer ran late, and the SYN count came out one too high).
//! Accepted per group must match the token-bucket model (`validate`),
//! rejected SYNs are refused, none times out, and gate-sim's own counts (queue
//! verdicts, ETW decision events) must agree with what the clients saw, with
//! nothing leaked and no simulation rule broken.
//!
//! gate-sim runs as a subprocess, built here with cargo into its own
//! target directory (`<target>/sim-gate`, so the build does not wait for the
//! lock of the directory `cargo test` uses); load-tests does not depend on
//! gate-driver or gate-usersim, so it cannot run the driver in-process.

mod common;

use load_tests::model;
use load_tests::scenario::Scenario;
use load_tests::topology::{in_netns, Guard, Topology, SERVER_ADDR};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SCENARIO: &str = include_str!("../scenarios/sim-gate.toml");
const PORT: u16 = 8080;
const QUEUES: &str = "7:8";
/// The registry values matching the scenario's `[gate]` (flags named like
/// the values).
const REGISTRY: [[&str; 2]; 3] = [
    ["--RateMilliPerSecond", "5000"],
    ["--Burst", "10"],
    ["--Ipv4PrefixLength", "32"],
];

/// Builds `gate-sim` and returns its path.
fn build_example() -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    // <target>/debug/deps/sim_gate-HASH -> <target>
    let exe = std::env::current_exe().expect("current_exe");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("target directory")
        .join("sim-gate");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(cargo)
        .current_dir(&workspace)
        .args([
            "build",
            "-p",
            "gate-sim",
            "--bin",
            "gate-sim",
            "--message-format=json-render-diagnostics",
            "--target-dir",
        ])
        .arg(&target)
        .stderr(Stdio::inherit())
        .output()
        .expect("running cargo build for gate-sim");
    assert!(out.status.success(), "building gate-sim failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "gate-sim")
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .expect("cargo named no gate-sim executable")
}

/// gate-sim's process; killed on drop unless it was waited for.
struct Gate {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
}

impl Gate {
    fn start(exe: &PathBuf, netns: &str) -> Gate {
        let mut cmd = Command::new(exe);
        cmd.args(["--netns", netns])
            .args(["--ListenPort", &PORT.to_string()])
            .args(["--queues", QUEUES])
            .args(["--reject", "reset"])
            .args(["--stats-interval-ms", "0"])
            .args(["--duration-s", "60"]);
        for r in REGISTRY {
            cmd.args(r);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning gate-sim");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("gate-sim: {l}");
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let g = Gate {
            child: Some(child),
            lines,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match g.lines.recv_timeout(left) {
                Ok(l) if l == "ready" => return g,
                Ok(_) => {}
                Err(e) => panic!("gate-sim did not get ready: {e}"),
            }
        }
    }

    /// Sends SIGINT, waits for the exit and returns (success, stdout lines).
    fn stop(mut self) -> (bool, Vec<String>) {
        let mut child = self.child.take().expect("child");
        let pid = libc::pid_t::try_from(child.id()).expect("pid");
        // SAFETY: kill() on our own child's pid, which we have not reaped.
        let r = unsafe { libc::kill(pid, libc::SIGINT) };
        assert_eq!(r, 0, "kill -INT {pid}");
        let t = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                break s;
            }
            if t.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("gate-sim did not exit within 20 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut lines = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            lines.push(l);
        }
        (status.success(), lines)
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `key=value` fields of gate-sim's `nfq:` line.
fn nfq_fields(lines: &[String]) -> BTreeMap<String, String> {
    let line = lines
        .iter()
        .find_map(|l| l.strip_prefix("nfq: "))
        .expect("an nfq: line");
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Count of decision line `name` ("  ConnectionAccepted 12"), 0 if absent.
fn decision_count(lines: &[String], name: &str) -> u64 {
    lines
        .iter()
        .filter_map(|l| l.trim().split_once(' '))
        .find(|(k, _)| *k == name)
        .map_or(0, |(_, v)| v.parse().expect("count"))
}

#[test]
fn simulated_gate_matches_the_model_through_nfqueue() {
    if !common::root_or_skip("simulated_gate_matches_the_model_through_nfqueue") {
        return;
    }
    let exe = build_example();
    let sc = Scenario::parse(SCENARIO).unwrap();
    let topo = Guard(Topology::up(&common::unique("sg"), 200).unwrap());
    let server = topo.0.server_ns();
    let gate = Gate::start(&exe, &server);

    let target = SocketAddr::new(SERVER_ADDR.into(), PORT);
    let sc2 = sc.clone();
    let started = Instant::now();
    let r = in_netns(&topo.0.client_ns(), move || {
        load_tests::topology::check_target(target, false)?;
        Ok(common::run(&sc2, target))
    })
    .unwrap()
    .join()
    .unwrap()
    .unwrap();
    let run_s = started.elapsed().as_secs_f64();
    let (clean, lines) = gate.stop();

    let v = model::validate(&sc, &r).unwrap();
    let table = model::verdict_table(&v);
    eprintln!("{}{table}", r.summary());
    assert!(v.iter().all(|g| g.pass), "{table}");
    assert!(
        clean,
        "gate-sim reported leaks or violations:\n{}",
        lines.join("\n")
    );

    // Rejected SYNs were reset: refused at once, nothing times out.
    let attempted: u64 = r.groups.iter().map(|g| g.attempted).sum();
    let accepted: u64 = r.groups.iter().map(|g| g.counts.accepted).sum();
    let refused: u64 = r.groups.iter().map(|g| g.counts.refused).sum();
    assert_eq!(accepted + refused, attempted, "{}", r.summary());
    let flood = r.groups.iter().find(|g| g.name == "flood").unwrap();
    assert!(flood.counts.refused > flood.attempted / 2);

    // The gate saw every attempt once and decided what the clients saw.
    let f = nfq_fields(&lines);
    let n = |k: &str| -> u64 { f[k].parse().unwrap() };
    assert_eq!(n("syns"), attempted, "{f:?}");
    assert_eq!(n("accepted"), accepted, "{f:?}");
    assert_eq!(n("rejected"), refused, "{f:?}");
    assert_eq!(n("pended") + n("duplicates") + n("lost"), 0, "{f:?}");
    assert_eq!(decision_count(&lines, "ConnectionAccepted"), accepted);
    assert_eq!(decision_count(&lines, "ConnectionRejected"), refused);
    assert_eq!(
        decision_count(&lines, "ConnectionRejected/rate_exceeded"),
        refused
    );
    eprintln!(
        "sim gate: {attempted} SYNs decided in a {run_s:.1} s run ({:.0}/s offered)",
        attempted as f64 / run_s
    );
}
