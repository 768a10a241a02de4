//! Scale figures for issue 10, part 3 (a benchmark, not a timed test):
//!
//! 1. the timer DPC with 65536 pends due at once: how many DPC runs there
//!    were and how long the longest took (a run completes at most
//!    `MAX_PER_DPC`; the backlog beyond it goes to the listener worker at
//!    PASSIVE_LEVEL), and how long the worker took to issue the rest;
//! 2. WskAbortEvent's lookup with a full pending table (65536 pended) next
//!    to an empty one, for IDs never pended (the SYN-then-RST case), and
//!    whole aborts of pended requests through the simulated WSK;
//! 3. the Counters tick at 2^22 keys in one shard: what it costs now (no
//!    shard lock taken) next to the whole-shard scan under the lock it used
//!    to make (`tracked_keys_scan`, kept as the reference);
//! 4. DriverUnload with 65536 requests pended (O(n): each rejected once).
//!
//! The driver runs on gate-usersim (host threads, virtual clock), so
//! absolute times include the simulation's own work inside the imports;
//! compare figures within one run. The DPC's time is also reported without
//! the simulated WskInspectComplete calls (`hold::Timing::in_provider`):
//! its own work (lock holds, heap pops, IRP set-up) apart from the
//! simulation's. `GATE_BENCH_PENDS` (default 65536) and
//! `GATE_BENCH_KEYS_LOG2` (default 22) scale it down; `GATE_BENCH_PARTS`
//! (default `abort,dpc,counters`) picks the parts.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)] // bench code

use gate_driver::entry::with_running;
use gate_driver::pending::{MAX_PER_DPC, WORKER_SLICE};
use gate_ksys::WSK_INSPECT_ID;
use gate_usersim::hold::{self, Routine};
use gate_usersim::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

const SERVICE_KEY: &str = r"\Registry\Machine\System\CurrentControlSet\Services\gate";
const PARAMS: &str = r"\Registry\Machine\System\CurrentControlSet\Services\gate\Parameters";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn src(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8))
}

/// Loads the driver and pends `n` requests (distinct keys: each spends its
/// burst, then pends for 1 s). Returns the driver and the pended requests.
fn fill(sim: &Sim, n: u32) -> (Driver, Vec<Request>, SocketAddr) {
    gate_usersim::etw::set_routines_available(false);
    for (k, v) in [
        ("RateMilliPerSecond", 1000),
        ("Burst", 1),
        ("MaxPending", n.max(1)),
        ("MaxPendDelayMs", 60_000),
        ("Ipv4PrefixLength", 32),
        ("TableCapacity", 1 << 20),
    ] {
        sim.registry_set(PARAMS, k, RegValue::Dword(v));
    }
    let driver = sim
        .load_driver(gate_driver::DriverEntry, SERVICE_KEY)
        .expect("DriverEntry");
    let l = sim.wait_listener(Duration::from_secs(5)).expect("listener");
    let local = SocketAddr::new("192.0.2.1".parse().unwrap(), l.addr.port());
    let mut pended = Vec::with_capacity(n as usize);
    for i in 0..n {
        sim.connect(SocketAddr::new(src(i), 1000), local);
        let r = sim.connect(SocketAddr::new(src(i), 1001), local);
        assert_eq!(r.verdict(), Some(Verdict::Pend), "request {i}");
        pended.push(r);
    }
    (driver, pended, local)
}

fn per_op(d: Duration, n: u64) -> f64 {
    d.as_nanos() as f64 / n.max(1) as f64
}

fn abort_lookup_ns(count: u32) -> f64 {
    let t = Instant::now();
    for i in 0..count {
        let id = WSK_INSPECT_ID {
            Key: 0x5EED_0000 + i as usize,
            SerialNumber: i,
        };
        let out = with_running(|d| d.pending.abort(&id)).expect("running");
        assert_eq!(out, gate_driver::pending::AbortOutcome::NotFound);
    }
    per_op(t.elapsed(), u64::from(count))
}

fn main() {
    let n = env("GATE_BENCH_PENDS", 65_536) as u32;
    let keys_log2 = env("GATE_BENCH_KEYS_LOG2", 22) as u32;
    println!("gate-driver scale bench: {n} pends, 2^{keys_log2} keys");
    let parts = std::env::var("GATE_BENCH_PARTS").unwrap_or_else(|_| "abort,dpc,counters".into());
    let part = |p: &str| parts.split(',').any(|x| x.trim() == p);

    // ---- 2. abort lookup, empty vs full pending table; 4. unload ----
    if part("abort") {
        let sim = Sim::new();
        let (driver, pended, _) = fill(&sim, 64);
        let small = abort_lookup_ns(20_000);
        driver.unload(&sim).assert_clean();
        drop(pended);
        drop(sim);

        let sim = Sim::new();
        let t = Instant::now();
        let (driver, pended, _) = fill(&sim, n);
        println!("  filled {n} pends in {:.1} s", t.elapsed().as_secs_f64());
        let full = abort_lookup_ns(20_000);
        println!(
            "abort lookup (never pended): {small:.0} ns with 64 pended, {full:.0} ns with {n} pended (ratio {:.2})",
            full / small
        );
        let k = 1000.min(pended.len());
        let t = Instant::now();
        for r in &pended[..k] {
            r.abort().expect("abort");
        }
        println!(
            "abort of a pended request through simulated WSK: {:.1} us each ({k} of {n})",
            per_op(t.elapsed(), k as u64) / 1000.0
        );
        let t = Instant::now();
        let report = driver.unload(&sim);
        println!(
            "DriverUnload with {} pended (each rejected): {:.1} ms ({:.2} us per pend)",
            n as usize - k,
            t.elapsed().as_secs_f64() * 1e3,
            per_op(t.elapsed(), (n as usize - k) as u64) / 1000.0
        );
        report.assert_clean();
        sim.assert_no_violations();
    }

    // ---- 1. the timer DPC with every pend due at once ----
    if part("dpc") {
        let sim = Sim::new();
        let (driver, _pended, _) = fill(&sim, n);
        let done0 = with_running(|d| d.stats.snapshot().completions).expect("running");
        let before = hold::timings();
        // Exactly to the deadline, then the clock stands still: the DPC
        // completes its share, the worker the backlog (real time), and no
        // BACKLOG_RECHECK_MS re-check fires.
        let t = Instant::now();
        sim.advance_ms(1000);
        let dpc_done = t.elapsed();
        let issued = || with_running(|d| d.stats.snapshot().completions).expect("running") - done0;
        while issued() < u64::from(n) {
            assert!(
                t.elapsed() < Duration::from_secs(600),
                "backlog not drained"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        let drained = t.elapsed();
        sim.quiesce();
        let after = hold::timings();
        let (mut runs, mut longest, mut total, mut over) =
            (0u64, Duration::ZERO, Duration::ZERO, 0u64);
        let (mut provider, mut longest_own, mut own_over) = (Duration::ZERO, Duration::ZERO, 0u64);
        let (mut hist, mut own_hist) = ([0u64; hold::HIST_BUCKETS], [0u64; hold::HIST_BUCKETS]);
        for (key, t) in &after {
            if key.0 != Routine::Dpc {
                continue;
            }
            let b = before.get(key).copied().unwrap_or_default();
            runs += t.runs - b.runs;
            longest = longest.max(t.longest);
            total += t.total - b.total;
            over += t.over_100us - b.over_100us;
            provider += t.in_provider - b.in_provider;
            longest_own = longest_own.max(t.longest_own);
            own_over += t.own_over_100us - b.own_over_100us;
            for i in 0..hold::HIST_BUCKETS {
                hist[i] += t.hist[i] - b.hist[i];
                own_hist[i] += t.own_hist[i] - b.own_hist[i];
            }
        }
        let done = issued();
        println!(
            "timer DPC, {n} pends due at once: {runs} runs (at most {MAX_PER_DPC} completions each), mean {:.1} us, {over} runs >= 100 us, longest {:.1} us (host time incl. the simulated WSK); {done} WskInspectComplete issued",
            per_op(total, runs) / 1000.0,
            longest.as_secs_f64() * 1e6
        );
        println!(
            "  the listener worker completed the other {} at PASSIVE_LEVEL ({WORKER_SLICE} per pass): all issued {:.1} ms after the clock reached the deadline ({:.2} us per completion; the advance of the clock, timer DPC included, returned after {:.2} ms)",
            done.saturating_sub(runs * MAX_PER_DPC as u64),
            drained.as_secs_f64() * 1e3,
            per_op(drained, done) / 1000.0,
            dpc_done.as_secs_f64() * 1e3
        );
        let own = total.saturating_sub(provider);
        println!(
            "  of which in simulated WskInspectComplete: mean {:.1} us per run ({:.2} us per call, {:.0}% of the DPC time); the DPC's own work: mean {:.1} us per run, longest {:.1} us, {own_over} runs >= 100 us",
            per_op(provider, runs) / 1000.0,
            per_op(provider, done.min(runs * MAX_PER_DPC as u64)) / 1000.0,
            100.0 * provider.as_secs_f64() / total.as_secs_f64().max(1e-12),
            per_op(own, runs) / 1000.0,
            longest_own.as_secs_f64() * 1e6
        );
        let q = |h: &[u64; hold::HIST_BUCKETS], x: f64| hold::hist_quantile_us(h, x);
        println!(
            "  per run, to within a factor 2 (log2 buckets): whole run p50 < {} us, p90 < {} us, p99 < {} us; own work p50 < {} us, p90 < {} us, p99 < {} us",
            q(&hist, 0.5),
            q(&hist, 0.9),
            q(&hist, 0.99),
            q(&own_hist, 0.5),
            q(&own_hist, 0.9),
            q(&own_hist, 0.99)
        );
        driver.unload(&sim).assert_clean();
        sim.assert_no_violations();
    }

    // ---- 3. the counters tick at 2^keys_log2 keys, one shard ----
    if part("counters") {
        let cap = 1u32 << keys_log2;
        let cfg = gate_core::Config {
            capacity: cap,
            shards: 1,
            ..gate_core::Config::default()
        };
        let g: gate_core::Gate = gate_core::Gate::new(&cfg, [3, 4]).expect("gate");
        let local = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let t = Instant::now();
        for i in 0..cap {
            g.decide(
                IpAddr::V4(Ipv4Addr::from(0x0A00_0000 | i)),
                local,
                1_000_000,
            );
        }
        println!(
            "  filled 2^{keys_log2} keys in {:.1} s ({} tracked)",
            t.elapsed().as_secs_f64(),
            g.tracked_keys()
        );
        let t = Instant::now();
        let mut sink = 0usize;
        for _ in 0..1000 {
            let c = g.counters();
            sink = sink
                .wrapping_add(g.tracked_keys())
                .wrapping_add(c.by_reason[0] as usize);
        }
        let tick = per_op(t.elapsed(), 1000);
        let t = Instant::now();
        sink = sink.wrapping_add(g.tracked_keys_scan());
        let scan = t.elapsed();
        println!(
            "counters tick at 2^{keys_log2} keys, 1 shard: {:.2} us, no shard lock taken; the whole-shard scan it replaced held the lock {:.1} ms (ratio {:.0}) [{sink}]",
            tick / 1000.0,
            scan.as_secs_f64() * 1e3,
            scan.as_nanos() as f64 / tick
        );
    }
}
