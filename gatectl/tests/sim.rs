//! gatectl end to end on Linux: the real binary, over the control socket,
//! into the driver's IRP_MJ_DEVICE_CONTROL handler running on the
//! simulation. Exit codes and messages are checked, not just success.
#![cfg(target_os = "linux")]

use std::process::Command;
use std::time::Duration;

use gate_usersim::*;
use serde_json::{json, Value};

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
    assert!(
        r.stderr
            .contains("--rate 0: expected 0.001 to 10000000 connections per second"),
        "{}",
        r.stderr
    );
    let r = gatectl(sock, &["set", "--ban-threshold", "70000"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("--ban-threshold 70000: expected 0 (bans off) to 65535"),
        "{}",
        r.stderr
    );
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

/// A driver on the simulation behind a control socket, for one test.
struct Gate {
    sim: Sim,
    driver: Option<Driver>,
    server: Option<ControlServer>,
    dir: std::path::PathBuf,
    sock: String,
    local: std::net::SocketAddr,
}

impl Gate {
    fn start(tag: &str, values: &[(&str, RegValue)]) -> Gate {
        let sim = Sim::new();
        for (n, v) in values {
            sim.registry_set(PARAMS, n, v.clone());
        }
        let driver = sim
            .load_driver(gate_driver::DriverEntry, SERVICE_KEY)
            .expect("DriverEntry");
        let l = sim.wait_listener(Duration::from_secs(5)).expect("listener");
        let local = std::net::SocketAddr::new("192.0.2.1".parse().unwrap(), l.addr.port());
        let dir = std::env::temp_dir().join(format!("gatectl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let sock_path = dir.join("control.sock");
        let server = ControlServer::start(&sock_path).expect("control socket");
        Gate {
            sim,
            driver: Some(driver),
            server: Some(server),
            dir,
            sock: sock_path.to_str().unwrap().to_string(),
            local,
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        gatectl(&self.sock, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        r.stdout
    }

    fn json(&self, args: &[&str]) -> Value {
        ok_json(&self.sock, args)
    }

    fn stop(mut self) {
        self.server.take().unwrap().stop();
        self.driver.take().unwrap().unload(&self.sim).assert_clean();
        self.sim.assert_no_violations();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Review of issue 13, item 5: every failure to reach the gate printed
/// "PATH does not exist (driver not loaded?)". Each now names its cause.
#[test]
fn transport_failures_name_their_cause_and_path() {
    let dir = std::env::temp_dir().join(format!("gatectl-transport-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();

    let missing = p("missing.sock");
    let r = gatectl(&missing, &["status"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "the gate is not running: {missing} does not exist"
        )),
        "{}",
        r.stderr
    );

    let file = p("file");
    std::fs::write(&file, b"x").unwrap();
    let dirp = dir.to_str().unwrap().to_string();
    for path in [&file, &dirp] {
        let r = gatectl(path, &["status"]);
        assert_eq!(r.code, 3, "{}", r.stderr);
        assert!(
            r.stderr.contains(&format!("{path} is not a socket")),
            "{}",
            r.stderr
        );
    }

    let stale = p("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let r = gatectl(&stale, &["status"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("{stale}: connection refused (a stale socket")),
        "{}",
        r.stderr
    );

    // The gate goes away mid-request (review item 10: it was "I/O error:
    // Broken pipe", rc 6).
    let gone = p("gone.sock");
    let l = std::os::unix::net::UnixListener::bind(&gone).unwrap();
    let t = std::thread::spawn(move || {
        use std::io::Read;
        let (mut c, _) = l.accept().unwrap();
        let mut b = [0u8; 8];
        let _ = c.read(&mut b);
        // Closed without a reply.
    });
    let r = gatectl(&gone, &["status"]);
    t.join().unwrap();
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("the gate stopped (control channel {gone} closed)")),
        "{}",
        r.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Linux wording for a refused open: the socket is mode 0600 (not the
/// Windows device's SYSTEM/Administrators DACL). Needs root to run
/// gatectl as another user; as non-root it checks nothing.
#[test]
fn access_denied_uses_the_linux_wording() {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    if std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
        != 0
    {
        eprintln!("not root: access_denied_uses_the_linux_wording checks nothing");
        return;
    }
    let g = Gate::start("denied", &[]);
    // The directory must be traversable by the other user.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&g.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_gatectl"))
        .args(["--device", &g.sock, "status"])
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run gatectl as nobody");
    let err = String::from_utf8_lossy(&o.stderr);
    if err.contains("Permission denied (os error 13)") && o.status.code().is_none() {
        // The binary itself is not executable by nobody here.
        g.stop();
        return;
    }
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(
        err.contains(&format!("access denied opening {}", g.sock)) && err.contains("0600"),
        "{err}"
    );
    assert!(!err.contains("Administrators"), "{err}");
    g.stop();
}

/// Review of issue 13, item 6: `status | head -1` and `watch | head -5`
/// panicked (rc 134) when the pipe closed. gatectl now ends quietly.
#[test]
fn a_closed_stdout_pipe_ends_gatectl_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let g = Gate::start("pipe", &[]);
    // The reader is gone before gatectl writes: every print fails.
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["top"],
        &["allow", "list"],
        &["ban", "--list"],
        &["query", "192.0.2.9"],
        &["watch", "--iterations", "1"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let o = Command::new(env!("CARGO_BIN_EXE_gatectl"))
            .args(["--device", &g.sock])
            .args(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: quiet, got {err}");
    }
    // `watch --json | head -1`: the reader takes one refresh and closes.
    let mut c = Command::new(env!("CARGO_BIN_EXE_gatectl"))
        .args([
            "--device",
            &g.sock,
            "watch",
            "--json",
            "--interval",
            "100ms",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(c.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("{\"status\""), "{first}");
    // The pipe's read end is dropped: the next refresh ends gatectl.
    let t = std::time::Instant::now();
    let st = loop {
        if let Some(st) = c.try_wait().unwrap() {
            break st;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "watch did not end");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut c.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(st.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
    g.stop();
}

/// Review of issue 13, items 7 and 12: option errors name the option and
/// its range in the user's units; `watch --interval` has a lower bound;
/// `set` shows old -> new; empty lists say so; expired bans are not
/// listed; a full list is named with its capacity; `tracked_keys` is null
/// when not counted; text `watch` to a pipe has no screen escapes.
#[test]
fn operator_messages_name_options_ranges_and_results() {
    let g = Gate::start(
        "msgs",
        &[
            ("Burst", RegValue::Dword(1)),
            ("RateMilliPerSecond", RegValue::Dword(2000)),
        ],
    );
    for (args, want) in [
        (&["watch", "--interval", "0s"][..], "--interval"),
        (&["watch", "--interval", "0s"], "expected 100ms to 1h"),
        (&["watch", "--interval", "2h"], "expected 100ms to 1h"),
        (
            &["set", "--rate", "0.0001"],
            "--rate 0.0001: expected 0.001 to 10000000 connections per second",
        ),
        (
            &["set", "--rate", "20000000"],
            "--rate 20000000: expected 0.001 to 10000000",
        ),
        (&["set", "--rate", "abc"], "--rate abc: expected"),
        (
            &["set", "--max-delay", "99999h"],
            "--max-delay 99999h: expected 1ms to 1m",
        ),
        (
            &["set", "--ban-window", "2h"],
            "--ban-window 2h: expected 1ms to 1h",
        ),
        (&["set", "--burst", "0"], "--burst 0: expected 1 to 1000000"),
        (
            &["set", "--global-rate", "5", "--global-burst", "0"],
            "--global-burst 0: expected 1 to 100000000",
        ),
    ] {
        let r = g.run(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(want),
            "{args:?}: want {want:?} in {}",
            r.stderr
        );
    }

    let out = g.ok(&["set", "--burst", "4", "--rate", "3.5"]);
    assert_eq!(out.trim(), "set rate 2/s -> 3.5/s, burst 1 -> 4");

    assert_eq!(g.ok(&["allow", "list"]).trim(), "allow list is empty");
    assert_eq!(g.ok(&["deny", "list"]).trim(), "deny list is empty");
    assert_eq!(g.ok(&["ban", "--list"]).trim(), "no manual bans");

    // An expired ban is not listed (it stays in the driver's table until
    // the next ban or unban purges it).
    g.ok(&["ban", "10.7.0.0/16", "--for", "1s"]);
    assert!(g.ok(&["ban", "--list"]).contains("10.7.0.0/16"));
    g.sim.advance_ms(1500);
    assert_eq!(g.ok(&["ban", "--list"]).trim(), "no manual bans");
    assert_eq!(g.json(&["ban", "--list", "--json"]), serde_json::json!([]));

    // A full list names itself and its capacity.
    let many: Vec<String> = (0..4096u32)
        .map(|i| format!("10.{}.{}.0/24", 100 + i / 256, i % 256))
        .collect();
    let mut args = vec!["deny", "replace"];
    args.extend(many.iter().map(String::as_str));
    g.ok(&args);
    let r = g.run(&["deny", "add", "203.0.113.0/24"]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("deny: the deny list is full (at most 4096 entries"),
        "{}",
        r.stderr
    );
    g.ok(&["deny", "clear"]);

    // tracked_keys: always (review 13b item 7: a cheap sum now);
    // --count-keys is still accepted. Automatic bans in force: counted.
    g.sim.connect("10.8.0.1:4000".parse().unwrap(), g.local);
    let s = g.json(&["status", "--json"]);
    assert_eq!(
        (&s["tracked_keys"], &s["auto_bans_in_force"]),
        (&json!(1), &json!(0))
    );
    assert_eq!(
        g.json(&["status", "--json", "--count-keys"])["tracked_keys"],
        1
    );
    let text = g.ok(&["status"]);
    assert!(text.contains(", 1 keys tracked"), "{text}");
    assert!(
        text.contains("listener    up (conditional accept) port"),
        "{text}"
    );

    // Text watch into a pipe: no clear-screen escapes.
    let out = g.ok(&["watch", "--iterations", "1"]);
    assert!(!out.contains('\x1b'), "{out:?}");
    assert!(out.contains("listener"), "{out}");
    g.stop();
}

/// Review of issue 13, item 4: `top --by rejections` ranked auto-banned
/// keys last (their count went back to 0 when the ban started). They now
/// rank by the rejections that banned them plus those during the ban, and
/// show the ban time left.
#[test]
fn top_ranks_banned_keys_by_their_rejections_and_shows_ban_time_left() {
    let g = Gate::start(
        "top",
        &[
            ("Burst", RegValue::Dword(1)),
            ("RateMilliPerSecond", RegValue::Dword(1000)),
            ("BanThreshold", RegValue::Dword(3)),
            ("BanWindowMs", RegValue::Dword(10_000)),
            ("BanMs", RegValue::Dword(60_000)),
        ],
    );
    let send = |from: &str, n: u16| {
        for p in 0..n {
            g.sim
                .connect(format!("{from}:{}", 5000 + p).parse().unwrap(), g.local);
        }
    };
    send("10.3.0.1", 20); // 1 accepted, 3 rejections ban it, 16 refused while banned
    send("10.3.0.2", 3); // 1 accepted, 2 rejections: not banned
    let t = g.json(&["top", "--json", "-n", "2"]);
    assert_eq!(t[0]["key"], "10.3.0.1/32", "{t}");
    assert_eq!(t[0]["rejects"], 19, "{t}");
    assert_eq!(t[0]["auto_banned"], true);
    let left = t[0]["auto_ban_left_ms"].as_u64().unwrap();
    assert!((59_000..=60_000).contains(&left), "{t}");
    assert_eq!(t[1]["key"], "10.3.0.2/32", "{t}");
    assert_eq!(t[1]["rejects"], 2);
    assert_eq!(t[1]["auto_ban_left_ms"], Value::Null);
    let text = g.ok(&["top", "-n", "1"]);
    assert!(text.contains("auto ban left"), "{text}");
    let line = text.lines().nth(1).unwrap();
    assert!(
        line.starts_with("10.3.0.1/32") && line.contains(" 19 "),
        "{text}"
    );
    assert!(
        line.trim_end().ends_with(" 1m"),
        "ban time left shown: {text}"
    );
    // Review 13b, item 6: status counts the automatic bans in force.
    let st = g.ok(&["status"]);
    assert!(st.contains("; 1 automatic in force; 0 manual"), "{st}");
    // Review 13b, item 3: bans off lifts them (lazily: at the key's next
    // SYN, not by a scan), stops counting, and says so.
    g.ok(&["set", "--ban-threshold", "0"]);
    let st = g.ok(&["status"]);
    assert!(
        st.contains("bans        automatic bans off; 0 manual"),
        "{st}"
    );
    let q = g.json(&["query", "10.3.0.1", "--json"]);
    assert_eq!(
        (&q["auto_banned"], &q["rejects"]),
        (&json!(false), &json!(0)),
        "{q}"
    );
    g.sim.advance_ms(1000);
    send("10.3.0.1", 1);
    let st = g.json(&["status", "--json"]);
    assert_eq!(st["decisions"]["within_rate"], 3, "{st}");
    g.stop();
}

/// A fake control socket: answers every request on one connection with
/// `answer(code, input, call number)` (status, output bytes), or stays
/// silent when it returns `None`. For replies a real driver gives only
/// under a race (list pages of two generations) or a hung gate.
fn fake_gate(
    path: &std::path::Path,
    mut answer: impl FnMut(u32, &[u8], usize) -> Option<(i32, Vec<u8>)> + Send + 'static,
) -> std::thread::JoinHandle<()> {
    use gate_ioctl::{ChannelReply, ChannelRequest, Wire};
    use std::io::{Read, Write};
    let _ = std::fs::remove_file(path);
    let l = std::os::unix::net::UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let Ok((mut c, _)) = l.accept() else { return };
        let mut n = 0;
        loop {
            let mut head = [0u8; ChannelRequest::SIZE];
            if c.read_exact(&mut head).is_err() {
                return;
            }
            let req = ChannelRequest::from_bytes(&head).unwrap();
            let mut input = vec![0u8; req.in_len as usize];
            if c.read_exact(&mut input).is_err() {
                return;
            }
            let Some((status, out)) = answer(req.code, &input, n) else {
                // Hold the connection open, silent, until the client goes.
                let _ = c.read(&mut [0u8; 1]);
                return;
            };
            n += 1;
            let rep = ChannelReply {
                status,
                reserved: 0,
                information: out.len() as u64,
            };
            if c.write_all(rep.as_bytes())
                .and_then(|()| c.write_all(&out))
                .is_err()
            {
                return;
            }
        }
    })
}

/// One page of a list of `total` entries `base.i.j.0/24` at generation `gen`.
fn list_page(input: &[u8], base: u8, total: u32, gen: u32) -> Vec<u8> {
    use gate_ioctl::{
        list_kind, ListEntry, ListGetReply, ListGetRequest, Wire, WireAddr, FOREVER, LIST_PAGE,
        VERSION,
    };
    let req = ListGetRequest::from_bytes(input).unwrap();
    let mut r = ListGetReply {
        version: VERSION,
        size: ListGetReply::SIZE as u32,
        total,
        count: 0,
        generation: gen,
        reserved: 0,
        entries: [ListEntry::default(); LIST_PAGE],
    };
    for (k, slot) in r.entries.iter_mut().enumerate() {
        let i = req.start + k as u32;
        if i >= total {
            break;
        }
        let a = std::net::IpAddr::from([base, (i / 256) as u8, (i % 256) as u8, 0]);
        *slot = ListEntry {
            cidr: WireAddr::prefix(a, 24),
            reserved: 0,
            left_ms: if req.list == list_kind::BANS {
                FOREVER
            } else {
                0
            },
        };
        r.count += 1;
    }
    r.as_bytes().to_vec()
}

/// Review 13b, item 2: `allow list` concatenated pages fetched by index,
/// so a change between two pages gave a list never in force (4032
/// entries of A and 64 of B). Every page now carries the configuration's
/// generation; gatectl restarts the read when it moves, and gives up with
/// exit code 7 when it keeps moving. `deny list` and `ban --list` read the
/// same way.
#[test]
fn a_list_read_across_a_change_starts_again_and_never_mixes_two_lists() {
    let dir = std::env::temp_dir().join(format!("gatectl-gen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("fake.sock");
    let s = sock.to_str().unwrap();
    // Call 0: page 0 of list A (10.x, generation 1); calls 1..: list B
    // (11.x, generation 2): the first read sees the change at page 1.
    for args in [
        &["allow", "list"][..],
        &["deny", "list"],
        &["ban", "--list"],
    ] {
        let t = fake_gate(&sock, |_, input, n| {
            Some(if n == 0 {
                (0, list_page(input, 10, 4096, 1))
            } else {
                (0, list_page(input, 11, 4096, 2))
            })
        });
        let r = gatectl(s, args);
        t.join().unwrap();
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        let lines: Vec<&str> = r.stdout.lines().filter(|l| l.contains("/24")).collect();
        assert_eq!(lines.len(), 4096, "{args:?}: {}", r.stdout);
        assert!(
            lines.iter().all(|l| l.contains("11.")),
            "{args:?}: a line of list A in the read: {:?}",
            lines.iter().find(|l| l.contains("10."))
        );
    }
    // A list that changes between every two pages: a clear failure.
    let t = fake_gate(&sock, |_, input, n| {
        Some((0, list_page(input, 10, 4096, n as u32)))
    });
    let r = gatectl(s, &["allow", "list", "--json"]);
    t.join().unwrap();
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("the list changed while it was being read, 8 times in a row"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Review 13b, item 6: a control socket that accepts and never answers
/// hung gatectl for ever. `--timeout` (default 5 s) bounds each request.
#[test]
fn a_silent_gate_times_out_with_exit_code_3() {
    let dir = std::env::temp_dir().join(format!("gatectl-mute-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("mute.sock");
    let s = sock.to_str().unwrap();
    let t = fake_gate(&sock, |_, _, _| None);
    let start = std::time::Instant::now();
    let r = gatectl(s, &["--timeout", "300ms", "status"]);
    let took = start.elapsed();
    t.join().unwrap();
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("the gate did not answer within 300ms on {s}")),
        "{}",
        r.stderr
    );
    assert!(took < Duration::from_secs(4), "took {took:?}");
    // Out of range: a usage error naming the range.
    for bad in ["0s", "11m", "soon"] {
        let r = gatectl(s, &["--timeout", bad, "status"]);
        assert_eq!(r.code, 2, "{bad}: {}", r.stderr);
        assert!(r.stderr.contains("expected 100ms to 10m"), "{}", r.stderr);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Review 13b, item 5: a Windows command line holds 32767 characters, so
/// `allow replace` of a full list (4096 IPv4 /24s: 57120 characters) could
/// not run. `--from FILE` (`-` = stdin) takes one prefix per line, with
/// comments; a bad line is named by its number.
#[test]
fn lists_come_from_a_file_or_stdin_with_line_numbered_errors() {
    use std::io::Write;
    let g = Gate::start("from", &[]);
    let file = g.dir.join("allow.txt");
    let mut text = String::from("# full allow list\n\n");
    for i in 0..4096u32 {
        text.push_str(&format!("10.{}.{}.0/24  # entry {i}\n", i / 256, i % 256));
    }
    std::fs::write(&file, &text).unwrap();
    let f = file.to_str().unwrap();
    let out = g.ok(&["allow", "replace", "--from", f]);
    assert!(out.contains("allow list: 4096 entries"), "{out}");
    let list = g.json(&["allow", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 4096);
    assert_eq!(list[4095], "10.15.255.0/24");
    // stdin, mixed with arguments, for remove.
    let mut c = Command::new(env!("CARGO_BIN_EXE_gatectl"))
        .args([
            "--device",
            &g.sock,
            "allow",
            "remove",
            "10.0.0.0/24",
            "--from",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"10.0.1.0/24\n# gone\n10.0.2.0/24\n")
        .unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("4093 entries (3 changed)"));
    // Errors name the file and line; nothing changes.
    std::fs::write(&file, "10.0.0.0/8\n\n# ok so far\n10.300.0.0/16\n").unwrap();
    let r = g.run(&["deny", "add", "--from", f]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("{f}:4: bad address or prefix '10.300.0.0/16'")),
        "{}",
        r.stderr
    );
    std::fs::write(&file, "10.0.0.0/8 10.1.0.0/16\n").unwrap();
    let r = g.run(&["deny", "add", "--from", f]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "{f}:1: '10.0.0.0/8 10.1.0.0/16': expected one address or prefix per line"
        )),
        "{}",
        r.stderr
    );
    let r = g.run(&["deny", "add", "--from", "/nonexistent/list"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("--from /nonexistent/list:"),
        "{}",
        r.stderr
    );
    assert!(g.ok(&["deny", "list"]).contains("deny list is empty"));
    // Without arguments or --from, add still needs something.
    assert_eq!(g.run(&["deny", "add"]).code, 2);
    g.stop();
}

/// Review 13c, items 2 to 4: a bare `replace` and an empty `--from` file
/// are refused (they would empty the list; `clear` does that); the 4096
/// cap counts distinct stored prefixes, not lines, and names the file; a
/// UTF-8 byte order mark is skipped; a replace reports what it changed;
/// `--global-rate off` is 0.
#[test]
fn replace_refuses_nothing_counts_distinct_prefixes_and_skips_a_bom() {
    let g = Gate::start("from13c", &[]);
    let file = g.dir.join("l.txt");
    let f = file.to_str().unwrap();
    assert!(g
        .ok(&["deny", "replace", "10.7.0.0/16", "10.8.0.0/16"])
        .contains("deny list: 2 entries (2 changed)"));
    // The same list: nothing changed.
    assert!(g
        .ok(&["deny", "replace", "10.8.0.0/16", "10.7.0.0/16"])
        .contains("deny list: 2 entries (0 changed)"));
    let r = g.run(&["deny", "replace"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("gatectl deny clear"), "{}", r.stderr);
    for empty in ["", "# nothing here\n\n", "\u{feff}"] {
        std::fs::write(&file, empty).unwrap();
        let r = g.run(&["deny", "replace", "--from", f]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr.contains(&format!(
                "{f} has no entries; use `clear` to empty the list"
            )),
            "{}",
            r.stderr
        );
    }
    assert!(g.ok(&["deny", "list"]).contains("10.7.0.0/16"));
    // An emptying change through `clear` still works, and says what it did.
    assert!(g
        .ok(&["deny", "clear"])
        .contains("deny list: 0 entries (2 changed)"));
    // BOM.
    std::fs::write(&file, "\u{feff}10.3.0.0/16\r\n10.4.0.0/16\r\n").unwrap();
    assert!(g
        .ok(&["allow", "replace", "--from", f])
        .contains("allow list: 2 entries"));
    // 4096 distinct /24s plus two lines naming one of them again.
    let mut text = String::new();
    for i in 0..4096u32 {
        text.push_str(&format!("10.{}.{}.0/24\n", i / 256, i % 256));
    }
    text.push_str("10.0.0.0/24\n10.0.0.9/24\n");
    std::fs::write(&file, &text).unwrap();
    assert!(g
        .ok(&["allow", "replace", "--from", f])
        .contains("allow list: 4096 entries"));
    // One more distinct prefix: refused, naming the file.
    let r = g.run(&["allow", "replace", "10.99.0.0/16", "--from", f]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "allow: {f}: 4097 distinct prefixes with the command line's; at most 4096"
        )),
        "{}",
        r.stderr
    );
    // `unban --auto-only` keeps manual bans.
    g.ok(&["ban", "10.66.0.0/16"]);
    assert!(g
        .ok(&["unban", "--auto-only", "0.0.0.0/0"])
        .contains("0 manual, 0 automatic bans lifted"));
    assert!(g.ok(&["ban", "--list"]).contains("10.66.0.0/16"));
    assert!(g
        .ok(&["unban", "0.0.0.0/0"])
        .contains("1 manual, 0 automatic bans lifted"));
    // `--global-rate off`, as `status` prints it.
    g.ok(&["set", "--global-rate", "5"]);
    g.ok(&["set", "--global-rate", "off"]);
    assert_eq!(
        g.json(&["status", "--json"])["config"]["global_rate_milli"],
        0
    );
    g.stop();
}

/// Review 13b, item 7: no-op changes make no audit event (per field, and
/// for lists); `unban.auto` names the key it lifted; `ban` prints the
/// prefix as stored; a raw `ban_ms` 0 is refused and gatectl names the
/// value in force, not an option the user did not type; `--json` on every
/// change command; a bare `reset` is refused.
#[test]
fn change_commands_are_consistent() {
    let g = Gate::start(
        "consistent",
        &[
            ("Ipv4PrefixLength", RegValue::Dword(24)),
            ("Burst", RegValue::Dword(1)),
            ("RateMilliPerSecond", RegValue::Dword(1000)),
            ("BanThreshold", RegValue::Dword(3)),
        ],
    );
    let audits = || -> Vec<(String, String, String)> {
        g.sim
            .events()
            .into_iter()
            .filter(|e| e.name == "ConfigChanged")
            .map(|e| {
                let s = |n: &str| match &e.field(n).unwrap().value {
                    gate_usersim::etw::Value::Str(s) => s.clone(),
                    v => format!("{v:?}"),
                };
                (s("What"), s("Old"), s("New"))
            })
            .collect()
    };
    // No-ops: one field unchanged inside a multi-field set, a clear of an
    // empty list, an add of an entry already there.
    let out = g.ok(&["set", "--rate", "5", "--ban-threshold", "3"]);
    assert!(
        out.contains("rate 1/s -> 5/s, ban threshold 3 (unchanged)"),
        "{out}"
    );
    g.ok(&["deny", "clear"]);
    g.ok(&["allow", "add", "10.0.0.0/8"]);
    g.ok(&["allow", "add", "10.0.0.0/8"]);
    let a = audits();
    let whats: Vec<&str> = a.iter().map(|(w, ..)| w.as_str()).collect();
    assert_eq!(whats, ["rate_milli", "allow"], "{a:?}");
    // unban.auto names the /24 key (outside the allowed 10/8), which is not inside the /32 target.
    for p in 0..6 {
        g.sim.connect(
            format!("203.0.113.2:{}", 5000 + p).parse().unwrap(),
            g.local,
        );
    }
    let out = g.ok(&["unban", "203.0.113.2"]);
    assert!(
        out.contains("unbanned 203.0.113.2/32: 0 manual, 1 automatic"),
        "{out}"
    );
    let (_, old, _) = audits().pop().unwrap();
    assert_eq!(
        old,
        "automatic ban of key 203.0.113.0/24 (holding 203.0.113.2/32)"
    );
    // ban prints the stored prefix.
    let out = g.ok(&["ban", "10.213.0.7/24"]);
    assert!(out.starts_with("banned 10.213.0.0/24 until unban"), "{out}");
    // --json on every change command.
    let j = g.json(&["ban", "10.9.0.1/16", "--for", "1m", "--json"]);
    assert_eq!(
        (&j["banned"], &j["for_ms"]),
        (&json!("10.9.0.0/16"), &json!(60_000))
    );
    let j = g.json(&["unban", "10.9.0.0/16", "--json"]);
    assert_eq!(j["manual_lifted"], 1);
    let j = g.json(&["deny", "add", "192.0.2.0/24", "--json"]);
    assert_eq!(
        (&j["list"], &j["entries"], &j["changed"]),
        (&json!("deny"), &json!(1), &json!(1))
    );
    let j = g.json(&["deny", "clear", "--json"]);
    assert_eq!(j["entries"], 0);
    let j = g.json(&["reset", "counters", "--json"]);
    assert_eq!(j["reset"], "counters");
    assert_eq!(g.json(&["set", "--burst", "2", "--json"])["burst"], 2);
    // A bare reset is refused, naming the choice.
    let r = g.run(&["reset"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("counters"), "{}", r.stderr);
    // ban_ms 0 by a raw SET: refused by the driver, naming the field.
    g.ok(&["set", "--ban-threshold", "0"]);
    let mut req = gate_ioctl::SetRequest {
        version: gate_ioctl::VERSION,
        flags: 0,
        mask: gate_ioctl::set_field::BAN_MS,
        reserved: 0,
        config: gate_ioctl::WireConfig::default(),
    };
    req.config.ban_ms = 0;
    let st = raw_ioctl(
        &g.sock,
        gate_ioctl::IOCTL_GATE_SET,
        gate_ioctl::Wire::as_bytes(&req),
    );
    assert_eq!(st as u32, 0xC000_000D, "STATUS_INVALID_PARAMETER");
    g.stop();
}

/// One raw IOCTL over the control socket; its NTSTATUS.
fn raw_ioctl(sock: &str, code: u32, input: &[u8]) -> i32 {
    use gate_ioctl::{ChannelReply, ChannelRequest, Wire, FILE_READ_ACCESS, FILE_WRITE_ACCESS};
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    let req = ChannelRequest {
        code,
        access: FILE_READ_ACCESS | FILE_WRITE_ACCESS,
        in_len: input.len() as u32,
        out_len: 4096,
    };
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(input).unwrap();
    let mut head = [0u8; ChannelReply::SIZE];
    s.read_exact(&mut head).unwrap();
    ChannelReply::from_bytes(&head).unwrap().status
}
