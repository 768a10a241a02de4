//! syn-flood groups (raw spoofed SYNs) in namespaces the tests make (root
//! only; skipped with a message otherwise): SYN-ACKs from a plain listener
//! count as accepted (and no connection reaches it), an nftables
//! `reject with tcp reset` rule makes them refused, a `drop` rule timed out;
//! the offered rate, counted by an nftables counter, matches the asked rate
//! and hping3's at the same interval; outside gate-load's namespaces the
//! flood is refused.

mod common;

use load_tests::listener::Background;
use load_tests::report::Report;
use load_tests::scenario::Scenario;
use load_tests::topology::{in_netns, sh, NetnsGuard};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The root tests take turns: the rate test measures time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn flood(port: u16, rate: u32, secs: f64, timeout_ms: u64) -> Scenario {
    Scenario::parse(&format!(
        r#"
name = "syn"
target = "127.0.0.1:{port}"
connect_timeout_ms = {timeout_ms}
[[group]]
name = "flood"
kind = "syn-flood"
sources = "127.50.0.0/16"
random_sources = true
rate = {rate}
duration_s = {secs}
[[group]]
name = "fair"
sources = "127.51.0.0/24"
rate = 50
duration_s = 1
"#
    ))
    .unwrap()
}

fn run_in(ns: &str, sc: Scenario, target: SocketAddr, listen: bool) -> (Report, u64) {
    in_netns(ns, move || {
        let l = if listen {
            Some(Background::start(target, Duration::ZERO, None)?)
        } else {
            None
        };
        let r = common::run(&sc, target);
        std::thread::sleep(Duration::from_millis(100));
        let n = match l {
            Some(l) => l.stop()?,
            None => 0,
        };
        Ok((r, n))
    })
    .unwrap()
    .join()
    .unwrap()
    .unwrap()
}

fn rules(port: u16, verdict: &str) -> String {
    format!(
        "table inet gltest {{\n counter syns {{}}\n chain out {{\n type filter hook output priority 0; policy accept;\n\
         tcp dport {port} tcp flags & (syn|ack) == syn counter name syns\n }}\n\
         chain input {{\n type filter hook input priority 0; policy accept;\n\
         tcp dport {port} tcp flags & (syn|ack) == syn {verdict}\n }}\n}}\n"
    )
}

fn syn_counter(ns: &str) -> u64 {
    let out = sh(&[
        "ip", "netns", "exec", ns, "nft", "list", "counter", "inet", "gltest", "syns",
    ])
    .expect("nft list counter");
    let i = out.find("packets ").expect("counter output") + "packets ".len();
    out[i..]
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .expect("packet count")
}

#[test]
fn syn_acks_rsts_and_silence_are_counted() {
    if !common::root_or_skip("syn_acks_rsts_and_silence_are_counted") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // A listener answers every SYN with a SYN-ACK; the client namespace's
    // kernel resets them (no socket), so only the fair group's 50 real
    // connections reach the listener.
    let ns = NetnsGuard::new(&common::unique("sa")).unwrap();
    common::nft(&ns.name, &rules(18111, "counter"));
    let target: SocketAddr = "127.0.0.1:18111".parse().unwrap();
    let (r, accepted) = run_in(&ns.name, flood(18111, 1000, 1.0, 500), target, true);
    let f = r.group("flood").unwrap();
    assert_eq!(f.attempted, 1000);
    assert_eq!(f.counts.accepted, 1000, "{}", r.summary());
    assert_eq!(f.service_us.0.len(), 1000, "SYN to SYN-ACK times");
    assert_eq!(r.group("fair").unwrap().counts.accepted, 50);
    assert_eq!(accepted, 50, "spoofed SYNs never become connections");
    assert_eq!(syn_counter(&ns.name), 1000 + 50);
    drop(ns);

    let ns = NetnsGuard::new(&common::unique("sr")).unwrap();
    common::nft(&ns.name, &rules(18112, "reject with tcp reset"));
    let target: SocketAddr = "127.0.0.1:18112".parse().unwrap();
    let (r, _) = run_in(&ns.name, flood(18112, 1000, 1.0, 500), target, false);
    let f = r.group("flood").unwrap();
    assert_eq!(f.counts.refused, 1000, "{}", r.summary());
    drop(ns);

    let ns = NetnsGuard::new(&common::unique("sd")).unwrap();
    common::nft(&ns.name, &rules(18113, "drop"));
    let target: SocketAddr = "127.0.0.1:18113".parse().unwrap();
    let (r, _) = run_in(&ns.name, flood(18113, 1000, 1.0, 300), target, true);
    let f = r.group("flood").unwrap();
    assert_eq!(f.counts.timed_out, 1000, "{}", r.summary());
    let h = f.latency(load_tests::report::Outcome::TimedOut).unwrap();
    assert!(
        h.min() >= 290_000,
        "silence lasts the patience: {}",
        h.min()
    );
}

/// SYNs counted by the namespace's nftables counter over 1 s of steady
/// state, while `start` runs a sender for longer.
fn steady_rate(ns: &str, start: impl FnOnce() -> Box<dyn FnOnce()>) -> f64 {
    let wait = start();
    std::thread::sleep(Duration::from_millis(700));
    let (c0, t0) = (syn_counter(ns), Instant::now());
    std::thread::sleep(Duration::from_millis(1000));
    let (c1, t1) = (syn_counter(ns), Instant::now());
    wait();
    (c1 - c0) as f64 / (t1 - t0).as_secs_f64()
}

#[test]
fn offered_syn_rate_matches_the_asked_rate_and_hping3() {
    if !common::root_or_skip("offered_syn_rate_matches_the_asked_rate_and_hping3") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        std::path::Path::new("/usr/sbin/hping3").exists(),
        "hping3 is missing: apt-get install hping3 (cargo xtask ci installs it)"
    );
    let ns = NetnsGuard::new(&common::unique("hp")).unwrap();
    common::nft(&ns.name, &rules(18114, "drop"));
    let target: SocketAddr = "127.0.0.1:18114".parse().unwrap();
    // gate-load at 1000 SYN/s for 3 s.
    let name = ns.name.clone();
    let ours = steady_rate(&ns.name, move || {
        let h = in_netns(&name, move || {
            let mut sc = flood(18114, 1000, 3.0, 200);
            sc.groups.truncate(1);
            Ok(common::run(&sc, target))
        })
        .unwrap();
        Box::new(move || {
            let r = h.join().unwrap().unwrap();
            assert_eq!(r.groups[0].counts.timed_out, 3000, "{}", r.summary());
        })
    });
    let total_ours = syn_counter(&ns.name);
    assert_eq!(
        total_ours, 3000,
        "every SYN the report counts left the host"
    );
    // hping3 at the same interval (1000 us) for ~3 s.
    let name = ns.name.clone();
    let theirs = steady_rate(&ns.name, move || {
        let mut child = Command::new("ip")
            .args([
                "netns", "exec", &name, "hping3", "-q", "-S", "-p", "18114", "-i", "u1000",
            ])
            .args(["-c", "3000", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting hping3");
        Box::new(move || {
            // hping3 waits a second after its last SYN; bound it anyway.
            let t = Instant::now();
            while child.try_wait().unwrap().is_none() {
                if t.elapsed() > Duration::from_secs(15) {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("hping3 did not finish");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    });
    eprintln!("steady offered SYN rate: gate-load {ours:.0}/s (asked 1000/s), hping3 -i u1000 {theirs:.0}/s");
    // Open loop: a stall at the window's edge is made up later, so a busy
    // machine moves the 1 s count by a few percent; 10 % is the bound.
    assert!(
        (900.0..=1100.0).contains(&ours),
        "gate-load offered {ours:.0}/s"
    );
    assert!(theirs > 100.0, "hping3 sent {theirs:.0}/s: did it run?");
    assert!(
        ours >= 0.9 * theirs.min(1000.0),
        "gate-load {ours:.0}/s vs hping3 {theirs:.0}/s"
    );
}

#[test]
fn flood_is_refused_outside_gate_load_namespaces() {
    // This test process runs in the host namespace (no `gl-` name).
    if load_tests::topology::in_own_namespace().is_some() {
        return;
    }
    let sc = flood(18115, 10, 1.0, 200);
    let opts = load_tests::engine::RunOptions {
        target: "127.0.0.1:18115".parse().unwrap(),
        progress: false,
        max_in_flight: 100,
        pin_cpu: None,
    };
    let e = match load_tests::engine::run(&sc, &opts) {
        Ok(_) => panic!("a syn-flood ran outside gate-load's namespaces"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("refusing to send spoofed SYNs"), "{e}");
}

/// Every SYN of a source is a new connection to the target (a distinct
/// source port, as hping3's counting port), also when many attempts are in
/// flight at once and slots are reused: source ports used to come from the
/// slot's generation, so slots of one generation gave one source the same
/// 4-tuple (gate-sim then took 51 of 6000 random-source SYNs as
/// retransmissions of a half-open connection, never decided, yet counted
/// accepted). An nftables set in the namespace collects the distinct
/// (source, port) pairs of the SYNs.
#[test]
fn every_syn_is_a_distinct_connection() {
    if !common::root_or_skip("every_syn_is_a_distinct_connection") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let ns = NetnsGuard::new(&common::unique("su")).unwrap();
    let port = 18115;
    common::nft(
        &ns.name,
        &format!(
            "table inet gltest {{\n set seen {{ type ipv4_addr . inet_service; flags dynamic; size 65536; }}\n\
             chain input {{\n type filter hook input priority 0; policy accept;\n\
             tcp dport {port} tcp flags & (syn|ack) == syn add @seen {{ ip saddr . tcp sport }} drop\n }}\n}}\n"
        ),
    );
    // One source, all SYNs dropped: ~300 attempts in flight at once, so
    // slots are reused many times over.
    let sc = Scenario::parse(&format!(
        r#"
name = "syn"
target = "127.0.0.1:{port}"
connect_timeout_ms = 300
[[group]]
name = "flood"
kind = "syn-flood"
sources = "127.50.0.1"
rate = 1000
duration_s = 1
"#
    ))
    .unwrap();
    let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (r, _) = run_in(&ns.name, sc, target, false);
    assert_eq!(r.group("flood").unwrap().counts.timed_out, 1000);
    let out = sh(&[
        "ip", "netns", "exec", &ns.name, "nft", "-j", "list", "set", "inet", "gltest", "seen",
    ])
    .expect("nft list set");
    let v: serde_json::Value = serde_json::from_str(&out).expect("nft -j output");
    let elems = v["nftables"]
        .as_array()
        .and_then(|a| a.iter().find_map(|x| x["set"]["elem"].as_array()))
        .map_or(0, Vec::len);
    assert_eq!(elems, 1000, "distinct (source, port) pairs of 1000 SYNs");
}
