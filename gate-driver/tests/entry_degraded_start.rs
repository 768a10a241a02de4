//! REVIEW (session 3, s3-review): DriverEntry with the k-th allocation of
//! its thread failing (whichever allocator) either refuses the start or
//! starts; `alloc_failure.rs` checks a start that goes on only for a clean
//! unload. This checks what it started *with*: every start must run the
//! configuration in the registry (allow, deny and NAT64 lists, limits),
//! never a start that silently dropped a list it could not allocate
//! (a deny list dropped is a fail-open), and that such a start lacks only
//! the control device (gate-driver README).
//!
//! Run: `cargo test -p gate-driver --test entry_degraded_start`
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)] // test code: std allocation is fine

mod common;
use common::*;
use gate_usersim::fault;
use gate_usersim::*;

#[global_allocator]
static ALLOC: fault::PlannedAlloc = fault::PlannedAlloc;

fn setup(sim: &Sim) {
    sim.park_on_bugcheck(true);
    for (n, v) in [
        ("TableCapacity", RegValue::Dword(1024)),
        ("TableShards", RegValue::Dword(1)),
        ("MaxPending", RegValue::Dword(4)),
        ("Burst", RegValue::Dword(3)),
        (
            "AllowList",
            RegValue::MultiSz(vec!["10.1.0.0/16".into(), "2001:db8:a::/48".into()]),
        ),
        (
            "DenyList",
            RegValue::MultiSz(vec!["192.0.2.0/24".into(), "2001:db8::/32".into()]),
        ),
        (
            "Nat64Prefixes",
            RegValue::MultiSz(vec!["64:ff9b::/96".into()]),
        ),
    ] {
        sim.registry_set(PARAMS, n, v);
    }
}

fn running_config() -> gate_core::Config {
    gate_driver::entry::with_running(|d| d.gate.with_config(|c, _| c.clone())).expect("running")
}

#[test]
fn a_start_under_allocation_failure_runs_the_registry_configuration_or_refuses() {
    let (n, reference) = {
        let sim = Sim::new();
        setup(&sim);
        let (r, c) = sim.load_driver_failing(gate_driver::DriverEntry, SERVICE_KEY, 0);
        let d = r.expect("reference start");
        let cfg = running_config();
        d.unload(&sim).assert_clean();
        (c.allocations, cfg)
    };
    assert_eq!(reference.deny.len(), 2);
    assert_eq!(reference.allow.len(), 2);
    let mut bad = Vec::new();
    let mut started = 0;
    for k in 1..=n {
        let sim = Sim::new();
        setup(&sim);
        let (r, _c) = sim.load_driver_failing(gate_driver::DriverEntry, SERVICE_KEY, k);
        if let Ok(d) = r {
            started += 1;
            // The README: a start goes on only without the control device.
            if sim.open_device(gate_ioctl::USER_PATH, 1).is_ok() {
                bad.push(format!("k = {k} of {n}: started with its control device"));
            }
            let cfg = running_config();
            if cfg != reference {
                bad.push(format!(
                    "k = {k} of {n}: started with allow {:?} deny {:?} nat64 {:?} burst {} (registry: allow {:?} deny {:?} nat64 {:?} burst {})",
                    cfg.allow, cfg.deny, cfg.nat64_prefixes, cfg.burst,
                    reference.allow, reference.deny, reference.nat64_prefixes, reference.burst
                ));
            }
            let _ = d.unload(&sim);
        }
    }
    eprintln!("{n} allocations, {started} starts under a failure");
    assert!(n > 10, "{n}");
    assert!(bad.is_empty(), "{bad:#?}");
}
