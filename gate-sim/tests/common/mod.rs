//! Helpers shared by gate-sim's root tests (each test file uses a part).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Moves the calling thread into network namespace `name`.
pub fn enter_netns(name: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{name}")).expect("netns");
    // SAFETY: setns(2) on a namespace fd; affects only this thread.
    let r = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns {name}");
}

/// Forwards `gate`'s stdout (spawned with `Stdio::piped()`) line by line,
/// echoed to stderr, and returns the lines after gate-sim printed `ready`
/// (panics if it did not within 20 s).
pub fn lines_once_ready(gate: &mut Child) -> mpsc::Receiver<String> {
    let (tx, lines) = mpsc::channel::<String>();
    let out = gate.stdout.take().expect("stdout piped");
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
            return lines;
        }
    }
}
