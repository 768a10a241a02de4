//! `--events -` streams the ETW events to standard output as pure JSON
//! lines (pipe it to `jq`): the human-readable lines (the start line,
//! `ready`, the exit report) go to standard error then. Root (a namespace
//! the test makes, iptables-nft): `cargo test -p gate-sim --test
//! events_stdout -- --ignored`, run by `cargo xtask ci` as root.

use std::process::Command;

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
#[ignore = "needs root and iptables-nft; run by cargo xtask ci as root"]
fn events_on_stdout_are_pure_json_lines() {
    let ns = Netns(format!("gsev{}", std::process::id() % 100_000));
    let _ = Command::new("ip").args(["netns", "del", &ns.0]).status();
    assert!(Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap()
        .success());
    let out = Command::new(env!("CARGO_BIN_EXE_gate-sim"))
        .args(["--netns", &ns.0, "--events", "-", "--duration-s", "1"])
        .args(["--stats-interval-ms", "0", "--ListenPort", "18181"])
        .output()
        .expect("running gate-sim");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let names: Vec<String> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not a JSON line on stdout: {l:?}: {e}"));
            v["name"].as_str().expect("an event name").to_string()
        })
        .collect();
    for n in ["ConfigLoaded", "ListenerUp", "DriverUnloading"] {
        assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
    }
    for l in ["ready", "leaks: none", "violations: none"] {
        assert!(stderr.lines().any(|x| x == l), "{l:?} on stderr: {stderr}");
    }
}
