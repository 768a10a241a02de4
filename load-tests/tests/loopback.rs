//! Runs against loopback targets that need no privileges: a plain listener
//! (all accepted) and a closed port (all refused); and the command line's
//! handling of bad input, reports, merge and plots.

mod common;

use load_tests::listener::Background;
use load_tests::report::Outcome;
use load_tests::scenario::Scenario;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_gate-load");

fn two_groups(target: SocketAddr) -> Scenario {
    Scenario::parse(&format!(
        r#"
name = "loopback"
target = "{target}"
connect_timeout_ms = 1000
[[group]]
name = "sources"
sources = "127.10.0.0/24"
rate_per_source = 4
duration_s = 1
[[group]]
name = "churn"
sources = "127.20.0.0/16"
rate = 1000
duration_s = 1
churn = true
"#
    ))
    .unwrap()
}

#[test]
fn plain_listener_accepts_everything() {
    let l = Background::start("127.0.0.1:0".parse().unwrap(), Duration::ZERO, None).unwrap();
    let sc = two_groups(l.addr);
    let r = common::run(&sc, l.addr);
    for g in &r.groups {
        assert!(g.attempted >= 1000, "{}: {}", g.name, g.attempted);
        assert_eq!(g.counts.accepted, g.attempted, "{}", r.summary());
        let h = g.latency(Outcome::Accepted).unwrap();
        assert_eq!(h.len(), g.attempted);
        assert_eq!(g.per_second.iter().map(|b| b[0]).sum::<u64>(), g.attempted);
    }
    // Let the listener's last accepts land before counting.
    std::thread::sleep(Duration::from_millis(100));
    let total: u64 = r.groups.iter().map(|g| g.attempted).sum();
    assert_eq!(l.stop().unwrap(), total);
}

#[test]
fn closed_port_refuses_everything() {
    // A bound but not listening socket holds the port: SYNs get an RST.
    let hold = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    hold.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let target = hold.local_addr().unwrap().as_socket().unwrap();
    let r = common::run(&two_groups(target), target);
    for g in &r.groups {
        assert_eq!(g.counts.refused, g.attempted, "{}", r.summary());
        assert_eq!(g.counts.accepted, 0);
    }
}

#[test]
fn cli_runs_merges_validates_and_plots() {
    let l = Background::start("127.0.0.1:0".parse().unwrap(), Duration::ZERO, None).unwrap();
    let dir = std::env::temp_dir().join(common::unique("cli"));
    std::fs::create_dir_all(&dir).unwrap();
    let sc = dir.join("s.toml");
    std::fs::write(
        &sc,
        format!(
            "name = \"cli\"\ntarget = \"{}\"\n[gate]\nper_key_rate = 100\nper_key_burst = 10\n\
             [[group]]\nname = \"g\"\nsources = \"127.30.0.0/28\"\nrate_per_source = 20\nduration_s = 1\n",
            l.addr
        ),
    )
    .unwrap();
    let mut jsons = Vec::new();
    for i in 0..2 {
        let j = dir.join(format!("r{i}.json"));
        let out = Command::new(BIN)
            .args(["run", "--quiet", "--validate", "-s"])
            .arg(&sc)
            .arg("--json")
            .arg(&j)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("PASS"), "{text}");
        jsons.push(j);
    }
    let merged = dir.join("m.json");
    let out = Command::new(BIN)
        .arg("merge")
        .arg("-o")
        .arg(&merged)
        .args(&jsons)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = load_tests::report::Report::load(&merged).unwrap();
    assert_eq!(m.runs.len(), 2);
    assert_eq!(m.groups[0].counts.accepted, 2 * 14 * 20);
    assert_eq!(
        m.groups[0].latency(Outcome::Accepted).unwrap().len(),
        2 * 14 * 20
    );
    let svg = dir.join("p.svg");
    let out = Command::new(BIN)
        .arg("plot")
        .arg("-r")
        .arg(&merged)
        .arg("-o")
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.contains("accepted"));
    assert!(
        !text.contains("model: expected accepted"),
        "no scenario, no model"
    );
    // PNG with the model's line, and the percentile spectrum of two reports.
    let png = dir.join("p.png");
    let out = Command::new(BIN)
        .arg("plot")
        .arg("-r")
        .arg(&merged)
        .arg("-s")
        .arg(&sc)
        .arg("-o")
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read(&png)
        .unwrap()
        .starts_with(b"\x89PNG\r\n\x1a\n"));
    let spec = dir.join("spec.svg");
    let out = Command::new(BIN)
        .arg("spectrum")
        .arg("-o")
        .arg(&spec)
        .args(&jsons)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&spec).unwrap();
    for want in ["r0: g (n = 280)", "r1: g (n = 280)", "99.9%", "percentile"] {
        assert!(text.contains(want), "spectrum lacks {want:?}");
    }
    // A bad extension is named.
    let out = Command::new(BIN)
        .arg("plot")
        .arg("-r")
        .arg(&merged)
        .arg("-o")
        .arg(dir.join("p.gif"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("p.gif"));
    // Validating the merged report (twice the traffic) against one run's
    // model must fail.
    let out = Command::new(BIN)
        .arg("validate")
        .arg("-s")
        .arg(&sc)
        .arg("-r")
        .arg(&merged)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cli_names_bad_input() {
    let dir = std::env::temp_dir().join(common::unique("bad"));
    std::fs::create_dir_all(&dir).unwrap();
    let sc = dir.join("s.toml");
    std::fs::write(
        &sc,
        "name = \"bad\"\n[[group]]\nname = \"g\"\nsources = \"127.0.0.1\"\nrate = 0\nduration_s = 1\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["run", "--target", "127.0.0.1:9", "-s"])
        .arg(&sc)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rate = 0"), "{err}");
    // A target outside loopback is refused without --allow-any-target.
    std::fs::write(
        &sc,
        "name = \"ok\"\n[[group]]\nname = \"g\"\nsources = \"127.0.0.1\"\nrate = 1\nduration_s = 1\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["run", "--target", "192.0.2.1:80", "-s"])
        .arg(&sc)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing target 192.0.2.1:80") && err.contains("--allow-any-target"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
