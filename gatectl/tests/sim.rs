//! gatectl end to end on Linux: the real binary, over the control socket,
//! into the driver's IRP_MJ_DEVICE_CONTROL handler running on the
//! simulation. Exit codes and messages are checked, not just success.
#![cfg(target_os = "linux")]

use std::process::Command;
use std::time::Duration;

use gate_usersim::*;
use serde_json::Value;

const SERVICE_KEY: &str = r"\Registry\Machine\System\CurrentControlSet\Services\gate";
const PARAMS: &str = r"\Registry\Machine\System\CurrentControlSet\Services\gate\Parameters";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn gatectl(sock: &str, args: &[&str]) -> Run {
    let o = Command::new(env!("CARGO_BIN_EXE_gatectl"))
        .arg("--device")
        .arg(sock)
        .args(args)
        .output()
        .expect("run gatectl");
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn ok_json(sock: &str, args: &[&str]) -> Value {
    let r = gatectl(sock, args);
    assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", r.stdout))
}

#[test]
fn gatectl_drives_the_driver_over_the_control_socket() {
    let sim = Sim::new();
    sim.registry_set(PARAMS, "Burst", RegValue::Dword(1));
    sim.registry_set(PARAMS, "RateMilliPerSecond", RegValue::Dword(1000));
    let driver = sim
        .load_driver(gate_driver::DriverEntry, SERVICE_KEY)
        .expect("DriverEntry");
    let l = sim.wait_listener(Duration::from_secs(5)).expect("listener");
    let local = std::net::SocketAddr::new("192.0.2.1".parse().unwrap(), l.addr.port());
    let dir = std::env::temp_dir().join(format!("gatectl-test-{}", std::process::id()));
    let sock_path = dir.join("control.sock");
    let server = ControlServer::start(&sock_path).expect("control socket");
    let sock = sock_path.to_str().unwrap();

    let s = ok_json(sock, &["status", "--json", "--count-keys"]);
    assert_eq!(s["config"]["burst"], 1);
    assert_eq!(s["config"]["rate_milli"], 1000);
    // No BackendAddress: the relay is off, with the default MaxConnections.
    assert_eq!(s["relay"]["state"], "off");
    assert_eq!(s["relay"]["backend"], Value::Null);
    assert_eq!(s["relay"]["max_connections"], 1024);

    // set: live, named errors, read-only handle refused.
    let r = gatectl(sock, &["set", "--burst", "3", "--rate", "2.5"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = ok_json(sock, &["status", "--json"]);
    assert_eq!(
        (
            s["config"]["burst"].as_u64(),
            s["config"]["rate_milli"].as_u64()
        ),
        (Some(3), Some(2500))
    );
    let r = gatectl(sock, &["set", "--rate", "0"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("rate_milli = 0"), "{}", r.stderr);
    let r = gatectl(sock, &["set", "--ban-threshold", "70000"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("ban_threshold"), "{}", r.stderr);
    let r = gatectl(sock, &["--read-only", "set", "--burst", "9"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("access denied"), "{}", r.stderr);
    assert_eq!(ok_json(sock, &["status", "--json"])["config"]["burst"], 3);

    // ban / query / unban.
    let r = gatectl(sock, &["ban", "10.1.0.0/16", "--for", "10m"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        sim.connect("10.1.2.3:4000".parse().unwrap(), local)
            .verdict(),
        Some(Verdict::Reject)
    );
    let q = ok_json(sock, &["query", "10.1.2.3", "--json"]);
    assert_eq!(q["manual_banned"], true);
    assert!(q["manual_ban_left_ms"].as_u64().unwrap() > 590_000);
    let bans = ok_json(sock, &["ban", "--list", "--json"]);
    assert_eq!(bans[0]["prefix"], "10.1.0.0/16");
    let r = gatectl(sock, &["unban", "10.1.0.0/16"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("1 manual"), "{}", r.stdout);
    assert_eq!(
        ok_json(sock, &["query", "10.1.2.3", "--json"])["manual_banned"],
        false
    );
    assert_eq!(
        sim.connect("10.1.2.3:4001".parse().unwrap(), local)
            .verdict(),
        Some(Verdict::Accept)
    );

    // allow / deny.
    let r = gatectl(sock, &["deny", "add", "10.2.0.0/33"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("10.2.0.0/33"), "{}", r.stderr);
    assert_eq!(
        gatectl(sock, &["deny", "add", "10.2.0.0/16", "2001:db8::/32"]).code,
        0
    );
    let d = ok_json(sock, &["deny", "list", "--json"]);
    assert_eq!(d.as_array().unwrap().len(), 2);
    assert_eq!(
        sim.connect("10.2.0.9:4000".parse().unwrap(), local)
            .verdict(),
        Some(Verdict::Reject)
    );
    assert_eq!(gatectl(sock, &["deny", "clear"]).code, 0);

    // top, reset, watch.
    for p in 0..5 {
        sim.connect(format!("10.3.0.1:{}", 5000 + p).parse().unwrap(), local);
    }
    let t = ok_json(sock, &["top", "--by", "rate", "-n", "3", "--json"]);
    assert_eq!(t[0]["key"], "10.3.0.1/32");
    assert_eq!(gatectl(sock, &["reset", "counters"]).code, 0);
    let s = ok_json(sock, &["status", "--json"]);
    assert_eq!(s["decisions"]["within_rate"], 0);
    let w = ok_json(sock, &["watch", "--iterations", "1", "--json"]);
    assert!(w["status"]["config"].is_object() && w["top"].is_array());

    server.stop();
    // No socket: the gate is not running.
    let r = gatectl(sock, &["status"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("not running"), "{}", r.stderr);
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
    let _ = std::fs::remove_dir_all(dir);
}

/// Waits (real time, the simulation quiesced each turn) for `cond`.
fn until(sim: &Sim, what: &str, mut cond: impl FnMut() -> bool) {
    let t = std::time::Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        sim.quiesce();
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn status_shows_the_relay_figures() {
    let sim = Sim::new();
    let backend: std::net::SocketAddr = "10.9.0.1:9000".parse().unwrap();
    sim.backend_listen(backend, BackendMode::Accept);
    sim.registry_set(
        PARAMS,
        "BackendAddress",
        RegValue::Sz("10.9.0.1:9000".into()),
    );
    sim.registry_set(PARAMS, "MaxConnections", RegValue::Dword(1));
    sim.registry_set(PARAMS, "ProxyProtocol", RegValue::Dword(2));
    let driver = sim
        .load_driver(gate_driver::DriverEntry, SERVICE_KEY)
        .expect("DriverEntry");
    let l = sim.wait_listener(Duration::from_secs(5)).expect("listener");
    let local = std::net::SocketAddr::new("192.0.2.1".parse().unwrap(), l.addr.port());
    let dir = std::env::temp_dir().join(format!("gatectl-relay-{}", std::process::id()));
    let sock_path = dir.join("control.sock");
    let server = ControlServer::start(&sock_path).expect("control socket");
    let sock = sock_path.to_str().unwrap();
    until(&sim, "the relay running", || {
        gate_driver::relay::snapshot().is_some()
    });

    // One relay carries 1000 bytes up and 300 down; a second is refused
    // at MaxConnections 1.
    let c = sim
        .connect("10.5.0.1:4000".parse().unwrap(), local)
        .conn()
        .unwrap();
    until(&sim, "the backend connection", || {
        sim.backend_conns(backend).len() == 1
    });
    let b = sim.backend_conns(backend)[0];
    sim.connect("10.5.0.2:4000".parse().unwrap(), local);
    until(&sim, "the second refused", || {
        gate_driver::relay::snapshot().unwrap().refused_at_limit == 1
    });
    c.peer_send(&[1; 1000]);
    let mut down = Vec::new();
    b.peer_send(&[2; 300]);
    until(&sim, "bytes both ways", || {
        down.extend(c.take_sent());
        let s = gate_driver::relay::snapshot().unwrap();
        down.len() == 300 && s.bytes_to_backend == 1000
    });

    let s = ok_json(sock, &["status", "--json"]);
    let r = &s["relay"];
    assert_eq!(r["state"], "running", "{r}");
    assert_eq!(r["backend"], "10.9.0.1:9000");
    assert_eq!(
        (
            r["max_connections"].as_u64(),
            r["proxy_protocol"].as_u64(),
            r["active"].as_u64(),
            r["opened"].as_u64(),
            r["closed"].as_u64(),
            r["failed"].as_u64(),
            r["refused_at_limit"].as_u64(),
            r["bytes_to_backend"].as_u64(),
            r["bytes_to_client"].as_u64(),
        ),
        (
            Some(1),
            Some(2),
            Some(1),
            Some(1),
            Some(0),
            Some(1),
            Some(1),
            Some(1000),
            Some(300)
        ),
        "{r}"
    );
    let t = gatectl(sock, &["status"]);
    assert_eq!(t.code, 0, "{}", t.stderr);
    assert!(
        t.stdout
            .contains("relays      running to 10.9.0.1:9000 (PROXY v2), 1 open of 1 max"),
        "{}",
        t.stdout
    );
    assert!(
        t.stdout.contains(
            "1 opened, 0 closed, 1 failed (1 at MaxConnections); 1000 bytes to backend, 300 bytes to clients"
        ),
        "{}",
        t.stdout
    );

    server.stop();
    driver.unload(&sim).assert_clean();
    sim.assert_no_violations();
    let _ = std::fs::remove_dir_all(dir);
}
