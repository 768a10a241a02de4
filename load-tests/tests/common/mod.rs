//! Helpers shared by the integration tests: root check, unique names, nft.

#![allow(dead_code)]

use load_tests::engine::{self, RunOptions};
use load_tests::report::Report;
use load_tests::scenario::Scenario;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

/// True when root; otherwise prints why the test is skipped.
pub fn root_or_skip(test: &str) -> bool {
    if load_tests::sys::is_root() {
        return true;
    }
    eprintln!(
        "{test}: SKIPPED: needs root (creates network namespaces and nftables rules); CI runs as root"
    );
    false
}

/// A short name unique to this process and call (fits interface names).
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("t{}{tag}{n}", std::process::id() % 100_000)
}

/// Runs a scenario on the current thread and returns the report.
pub fn run(sc: &Scenario, target: SocketAddr) -> Report {
    let opts = RunOptions {
        target,
        progress: false,
        max_in_flight: 20_000,
        pin_cpu: None,
    };
    engine::run(sc, &opts).expect("run").report
}

/// Loads an nftables ruleset inside namespace `ns`.
pub fn nft(ns: &str, rules: &str) {
    let path = std::env::temp_dir().join(format!("{ns}.nft"));
    std::fs::write(&path, rules).expect("write nft rules");
    let p = path.to_string_lossy().into_owned();
    load_tests::topology::sh(&["ip", "netns", "exec", ns, "nft", "-f", &p]).expect("nft -f");
    let _ = std::fs::remove_file(path);
}
