//! The payload modes (request-response, echo, bulk) against gate-load's own
//! listener modes on loopback, and their failure causes against targets that
//! do not answer or corrupt the echo; and the one-line command line.

mod common;

use load_tests::listener::Background;
use load_tests::payload::ServeMode;
use load_tests::report::PayloadMode;
use load_tests::scenario::{PayloadSpec, Scenario};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_gate-load");

fn scenario(target: SocketAddr, rate: u32, payload: PayloadSpec) -> Scenario {
    let mut sc = Scenario::parse(&format!(
        "name = \"p\"\ntarget = \"{target}\"\n[[group]]\nname = \"g\"\nsources = \"127.90.0.0/24\"\nrate = {rate}\nduration_s = 1\n"
    ))
    .unwrap();
    sc.payload = Some(payload);
    sc
}

fn spec(mode: PayloadMode, req: u64, resp: Option<u64>) -> PayloadSpec {
    PayloadSpec::new(
        mode,
        Some(req),
        resp,
        Some(5000),
        ["req", "resp", "timeout"],
    )
    .unwrap()
}

#[test]
fn echo_request_response_and_bulk_complete_against_the_listener() {
    let echo = Background::start_mode(
        "127.0.0.1:0".parse().unwrap(),
        ServeMode::Echo,
        Duration::ZERO,
        None,
    )
    .unwrap();
    let r = common::run(
        &scenario(echo.addr, 200, spec(PayloadMode::Echo, 20_000, None)),
        echo.addr,
    );
    let g = &r.groups[0];
    let p = g.payload.as_ref().unwrap();
    assert_eq!(
        (g.counts.accepted, p.completed),
        (200, 200),
        "{}",
        r.summary()
    );
    assert_eq!(
        (p.bytes_sent, p.bytes_received),
        (200 * 20_000, 200 * 20_000)
    );
    assert_eq!(p.ttfb_us.0.len(), 200);
    assert_eq!(p.transfer_us.0.len(), 200);
    assert!(p.ttfb_us.0.max() <= p.transfer_us.0.max());

    let rr = Background::start_mode(
        "127.0.0.1:0".parse().unwrap(),
        ServeMode::Rr,
        Duration::ZERO,
        None,
    )
    .unwrap();
    let r = common::run(
        &scenario(
            rr.addr,
            200,
            spec(PayloadMode::RequestResponse, 100, Some(70_000)),
        ),
        rr.addr,
    );
    let p = r.groups[0].payload.as_ref().unwrap();
    assert_eq!(p.completed, 200, "{}", r.summary());
    assert_eq!((p.bytes_sent, p.bytes_received), (200 * 100, 200 * 70_000));

    let sink = Background::start_mode(
        "127.0.0.1:0".parse().unwrap(),
        ServeMode::Sink,
        Duration::ZERO,
        None,
    )
    .unwrap();
    let r = common::run(
        &scenario(sink.addr, 1, spec(PayloadMode::Bulk, 64 << 20, None)),
        sink.addr,
    );
    let mut r = r;
    r.derive_stats();
    let p = r.groups[0].payload.as_ref().unwrap();
    assert_eq!(
        (p.completed, p.bytes_sent),
        (1, 64 << 20),
        "{}",
        r.summary()
    );
    assert!(p.mb_per_s > 0.0);
    eprintln!("{}", r.summary());
}

#[test]
fn a_corrupted_echo_is_a_mismatch_and_a_closing_target_fails_every_exchange() {
    // An echo server that flips one bit at stream offset 1000.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        for c in l.incoming().take(20) {
            let mut c = c.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut off = 0usize;
            loop {
                let n = match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if (off..off + n).contains(&1000) {
                    buf[1000 - off] ^= 1;
                }
                off += n;
                if c.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    });
    let r = common::run(
        &scenario(addr, 20, spec(PayloadMode::Echo, 4000, None)),
        addr,
    );
    let p = r.groups[0].payload.as_ref().unwrap();
    assert_eq!(p.completed, 0, "{}", r.summary());
    assert_eq!(p.failed.get("mismatch"), Some(&20), "{:?}", p.failed);
    server.join().unwrap();

    // A listener that closes at once: no exchange completes, each fails as
    // closed early or reset.
    let close = Background::start("127.0.0.1:0".parse().unwrap(), Duration::ZERO, None).unwrap();
    let r = common::run(
        &scenario(
            close.addr,
            50,
            spec(PayloadMode::RequestResponse, 64, Some(64)),
        ),
        close.addr,
    );
    let g = &r.groups[0];
    let p = g.payload.as_ref().unwrap();
    assert_eq!(g.counts.accepted, 50);
    assert_eq!(p.completed, 0);
    assert_eq!(p.failed_total(), 50, "{:?}", p.failed);
    assert!(
        p.failed.keys().all(|k| k == "closed_early" || k == "reset"),
        "{:?}",
        p.failed
    );
}

#[test]
fn one_liner_runs_without_a_scenario_file() {
    let l = Background::start_mode(
        "127.0.0.1:0".parse().unwrap(),
        ServeMode::Rr,
        Duration::ZERO,
        None,
    )
    .unwrap();
    let dir = std::env::temp_dir().join(common::unique("one"));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("r.json");
    let out = Command::new(BIN)
        .args([
            "run",
            "--quiet",
            "--rate",
            "300",
            "--duration",
            "1s",
            "--sources",
            "30",
            "--payload",
            "rr",
            "--request-bytes",
            "1k",
            "--response-bytes",
            "2k",
        ])
        .arg(l.addr.to_string())
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("| ttfb ") && text.contains("request-response 1024/2048 B"),
        "{text}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let g = &v["groups"][0];
    assert_eq!(g["attempted"], 300);
    assert_eq!(g["counts"]["accepted"], 300);
    assert_eq!(g["payload"]["completed"], 300);
    assert_eq!(g["stats"]["ttfb"]["count"], 300);
    assert!(g["stats"]["transfer"]["p99_us"].as_u64().unwrap() > 0);
    // Bad one-liner flags are named.
    for (args, want) in [
        (vec!["--rate", "0", "--duration", "1"], "--rate 0"),
        (vec!["--rate", "10", "--duration", "ten"], "ten"),
        (
            vec!["--rate", "10", "--duration", "1", "--payload", "smtp"],
            "smtp",
        ),
        (
            vec![
                "--rate",
                "10",
                "--duration",
                "1",
                "--payload",
                "echo",
                "--response-bytes",
                "5",
            ],
            "--response-bytes = 5",
        ),
    ] {
        let out = Command::new(BIN)
            .arg("run")
            .args(&args)
            .arg("127.0.0.1:9")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
