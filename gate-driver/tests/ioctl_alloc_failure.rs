//! Every allocation an IOCTL makes can fail, and fails that one request
//! only (issue 10, part 2: "an IOCTL or relay path fails that one
//! request").
//!
//! The control device's handlers run on the caller's thread (the simulated
//! I/O manager calls IRP_MJ_DEVICE_CONTROL on the thread of
//! `DeviceIoControl`, as Windows does for a METHOD_BUFFERED request), and
//! allocate through two allocators: the kernel pool (PoolBox/PoolVec,
//! WideString: ExAllocatePool2) and the global allocator (the driver's and
//! gate-core's `Vec::try_reserve*` and `try_box`; in the image the global
//! allocator is the pool too). This binary's `#[global_allocator]` asks
//! gate-usersim's per-thread plan ([`gate_usersim::fault`]) before each
//! allocation, and the simulation's pool, IRP and MDL imports ask the same
//! plan, so one sequence counts every allocation driver code makes on the
//! thread, whichever allocator; the simulation's own allocations (inside
//! its imports, or in the harness) never count.
//!
//! For every IOCTL code, with inputs that make it allocate as much as it
//! can (full lists, `--persist`, every live field, the 4096-entry cap), a
//! reference run counts the request's allocations; then, on a fresh start
//! each time, the request runs with its k-th allocation failing, for every
//! k. Each must: complete with STATUS_INSUFFICIENT_RESOURCES and one ETW
//! ControlRejected naming the memory it lacked; leave the configuration,
//! lists, manual and automatic bans, generation, change count, counters
//! and registry exactly as they were, with no ConfigChanged; let the same
//! request, repeated with nothing injected, give the reference's answer
//! and state; and unload with no leak, no violation and no bug check.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)] // test code: std allocation is fine

mod common;
use common::*;
use gate_ioctl::status::STATUS_INSUFFICIENT_RESOURCES;
use gate_ioctl::Request;
use gate_ioctl::*;
use gate_usersim::etw::{CapturedEvent, Value};
use gate_usersim::fault;
use gate_usersim::*;

#[global_allocator]
static ALLOC: fault::PlannedAlloc = fault::PlannedAlloc;

const RW: u32 = FILE_READ_ACCESS | FILE_WRITE_ACCESS;
/// Deny-list entries at start for the cap case (the cap is 4096).
const NEAR_CAP: usize = 4090;
/// A source that is banned automatically before each request.
const AUTO_BANNED: &str = "10.7.0.1";

fn cidr(s: &str) -> WireAddr {
    let c = gate_core::Cidr::parse(s).unwrap();
    WireAddr::prefix(c.addr(), c.prefix_len())
}

fn list_change(list: u32, op: u32, flags: u32, entries: &[String]) -> Vec<u8> {
    let head = ListChangeHeader {
        version: VERSION,
        flags,
        list,
        op,
        count: entries.len() as u32,
        reserved: 0,
    };
    let mut b = head.as_bytes().to_vec();
    for e in entries {
        b.extend_from_slice(cidr(e).as_bytes());
    }
    b
}

/// `n` distinct /24s of 100.0.0.0/8 from the `first`-th.
fn nets(first: usize, n: usize) -> Vec<String> {
    (first..first + n)
        .map(|i| format!("100.{}.{}.0/24", (i >> 8) & 255, i & 255))
        .collect()
}

/// A registry value's type and bytes.
type RegData = (u32, Vec<u8>);

/// What a request may leave changed. Compared before and after a request
/// that failed: equal means nothing was half-done.
#[derive(Debug, PartialEq)]
struct State {
    config: gate_core::Config,
    bans: Vec<gate_core::ManualBan>,
    generation: u64,
    /// The driver's change count (status reply).
    changes: u64,
    /// gate-core's counters (a reset clears them).
    counters: gate_core::Counters,
    /// The automatically banned key as a query sees it (an unban lifts it).
    auto_banned: (u32, u32, u64),
    /// Every value `--persist` can write.
    registry: Vec<(String, Option<RegData>)>,
    config_changed_events: usize,
}

fn persisted_names() -> Vec<String> {
    let mut v: Vec<String> = set_field::NAMES
        .iter()
        .map(|f| gate_driver::config::value_name_of_field(f).to_string())
        .collect();
    v.push("AllowList".into());
    v.push("DenyList".into());
    v
}

fn call<R: Request>(h: &DeviceHandle, req: &R) -> R::Reply {
    let r = h.ioctl(R::CODE, req.as_bytes(), R::Reply::SIZE);
    assert_eq!(r.status, 0, "{:#x}", r.status);
    R::Reply::from_bytes(&r.output).unwrap()
}

fn state(sim: &Sim, h: &DeviceHandle) -> State {
    let (config, bans, generation) = gate_driver::entry::with_running(|d| {
        d.gate
            .with_config_generation(|c, b, g| (c.clone(), b.to_vec(), g))
    })
    .expect("running");
    let s = call(
        h,
        &StatusRequest {
            version: VERSION,
            flags: 0,
        },
    );
    let q = call(
        h,
        &QueryRequest {
            version: VERSION,
            flags: 0,
            addr: WireAddr::host(AUTO_BANNED.parse().unwrap()),
        },
    );
    State {
        config,
        bans,
        generation,
        changes: s.changes,
        counters: gate_driver::entry::snapshot().unwrap().gate,
        auto_banned: (q.state, q.rejects, q.auto_ban_left_ms),
        registry: persisted_names()
            .into_iter()
            .map(|n| {
                let v = gate_usersim::registry::get_raw(PARAMS, &n);
                (n, v)
            })
            .collect(),
        config_changed_events: count(&sim.events(), "ConfigChanged"),
    }
}

/// One request and the start it runs on.
struct Case {
    name: &'static str,
    code: u32,
    input: Vec<u8>,
    out_len: usize,
    /// Deny-list entries at start ([`NEAR_CAP`] for the cap case).
    deny_at_start: usize,
    /// Status with nothing injected.
    expect: i32,
}

fn case<R: Request>(name: &'static str, req: R) -> Case {
    Case {
        name,
        code: R::CODE,
        input: req.as_bytes().to_vec(),
        out_len: R::Reply::SIZE,
        deny_at_start: 8,
        expect: 0,
    }
}

fn list_case(name: &'static str, list: u32, op: u32, flags: u32, entries: &[String]) -> Case {
    Case {
        name,
        code: IOCTL_GATE_LIST_CHANGE,
        input: list_change(list, op, flags, entries),
        out_len: ListChangeReply::SIZE,
        deny_at_start: 8,
        expect: 0,
    }
}

fn cases() -> Vec<Case> {
    let mut all_fields = WireConfig {
        rate_milli: 5000,
        burst: 9,
        global_rate_milli: 100_000,
        global_burst: 50,
        observe: 1,
        ban_threshold: 5,
        ban_window_ms: 20_000,
        ban_ms: 120_000,
        max_delay_ms: 900,
        full_table: 1,
        ..WireConfig::default()
    };
    let set = |flags: u32, config: WireConfig| SetRequest {
        version: VERSION,
        flags,
        mask: set_field::ALL,
        reserved: 0,
        config,
    };
    let present = nets(0, 8); // the deny list at start
    let mut v = vec![
        case(
            "status",
            StatusRequest {
                version: VERSION,
                flags: FLAG_COUNT_KEYS,
            },
        ),
        case(
            "query",
            QueryRequest {
                version: VERSION,
                flags: 0,
                addr: WireAddr::host(AUTO_BANNED.parse().unwrap()),
            },
        ),
        case(
            "top",
            TopRequest {
                version: VERSION,
                flags: 0,
                cursor: CURSOR_START,
                max: TOP_MAX as u32,
                order: top_order::REJECTIONS,
            },
        ),
    ];
    for (name, list) in [
        ("list get allow", list_kind::ALLOW),
        ("list get deny", list_kind::DENY),
        ("list get bans", list_kind::BANS),
    ] {
        v.push(case(
            name,
            ListGetRequest {
                version: VERSION,
                flags: 0,
                list,
                start: 0,
            },
        ));
    }
    v.push(case("set every live field", set(0, all_fields)));
    v.push(case(
        "set every live field --persist",
        set(FLAG_PERSIST, all_fields),
    ));
    // Each live field alone, persisted (REG_DWORD or REG_QWORD).
    for (bit, name) in set_field::NAMES.iter().enumerate() {
        let name: &'static str = Box::leak(format!("set {name} --persist").into_boxed_str());
        v.push(case(
            name,
            SetRequest {
                mask: 1 << bit,
                ..set(FLAG_PERSIST, all_fields)
            },
        ));
    }
    all_fields.ban_threshold = 0;
    v.push(case("set bans off", set(0, all_fields)));
    let add = nets(100, 64);
    for (name, list, op, flags, entries) in [
        ("allow add", list_kind::ALLOW, list_op::ADD, 0, add.clone()),
        ("deny add", list_kind::DENY, list_op::ADD, 0, add.clone()),
        (
            "deny add --persist",
            list_kind::DENY,
            list_op::ADD,
            FLAG_PERSIST,
            add.clone(),
        ),
        (
            "deny remove",
            list_kind::DENY,
            list_op::REMOVE,
            0,
            present[..4].to_vec(),
        ),
        (
            "allow replace --persist",
            list_kind::ALLOW,
            list_op::REPLACE,
            FLAG_PERSIST,
            add.clone(),
        ),
        (
            "deny replace",
            list_kind::DENY,
            list_op::REPLACE,
            0,
            [&present[..4], &add[..]].concat(),
        ),
        ("deny clear", list_kind::DENY, list_op::CLEAR, 0, vec![]),
        (
            "allow clear --persist",
            list_kind::ALLOW,
            list_op::CLEAR,
            FLAG_PERSIST,
            vec![],
        ),
    ] {
        v.push(list_case(name, list, op, flags, &entries));
    }
    // The 4096-entry cap: 4090 at start, 10 more refused as a whole.
    let mut cap = list_case(
        "deny add over the 4096 cap",
        list_kind::DENY,
        list_op::ADD,
        FLAG_PERSIST,
        &nets(NEAR_CAP, 10),
    );
    cap.deny_at_start = NEAR_CAP;
    cap.expect = status::STATUS_QUOTA_EXCEEDED;
    v.push(cap);
    // Up to the cap exactly: allowed.
    let mut to_cap = list_case(
        "deny add up to the 4096 cap --persist",
        list_kind::DENY,
        list_op::ADD,
        FLAG_PERSIST,
        &nets(NEAR_CAP, 6),
    );
    to_cap.deny_at_start = NEAR_CAP;
    v.push(to_cap);
    for (name, target, duration_ms) in [
        ("ban", "198.51.100.0/24", 60_000),
        ("ban forever", "2001:db8:1::/48", FOREVER),
        ("ban replacing one in force", "203.0.113.0/24", 5_000),
    ] {
        v.push(case(
            name,
            BanRequest {
                version: VERSION,
                flags: 0,
                target: cidr(target),
                reserved: 0,
                duration_ms,
            },
        ));
    }
    for (name, target, flags) in [
        ("unban manual and automatic", "0.0.0.0/0", 0),
        ("unban one manual ban", "203.0.113.0/24", 0),
        ("unban automatic only", "10.7.0.0/16", UNBAN_AUTO_ONLY),
        (
            "unban one key's automatic ban",
            "10.7.0.1/32",
            UNBAN_AUTO_ONLY,
        ),
    ] {
        v.push(case(
            name,
            UnbanRequest {
                version: VERSION,
                flags,
                target: cidr(target),
                reserved: 0,
                cursor: CURSOR_START,
            },
        ));
    }
    v.push(case(
        "reset counters",
        ResetRequest {
            version: VERSION,
            flags: 0,
            what: reset_what::COUNTERS,
        },
    ));
    v
}

/// Starts the gate with lists, manual bans and an automatic ban in force.
fn start_for(sim: &Sim, c: &Case) -> (Driver, DeviceHandle) {
    sim.park_on_bugcheck(true);
    let (driver, l) = start(
        sim,
        &[
            // The smallest table, one shard: each of the ~300 starts is
            // cheap, and one `top` or `unban` slice (1024 slots) covers the
            // whole table whatever the start's hash seed placed where, so
            // every run answers the same.
            ("TableCapacity", RegValue::Dword(1024)),
            ("TableShards", RegValue::Dword(1)),
            ("RateMilliPerSecond", RegValue::Dword(1000)),
            ("Burst", RegValue::Dword(1)),
            ("BanThreshold", RegValue::Dword(2)),
            (
                "AllowList",
                RegValue::MultiSz(vec![
                    "10.1.0.0/16".into(),
                    "2001:db8:a::/48".into(),
                    "192.0.2.7".into(),
                ]),
            ),
            ("DenyList", RegValue::MultiSz(nets(0, c.deny_at_start))),
        ],
    );
    for p in 0..4 {
        sim.connect(addr(&format!("{AUTO_BANNED}:{}", 5000 + p)), local_of(&l));
    }
    let h = sim.open_device(USER_PATH, RW).expect("open");
    for (target, ms) in [("203.0.113.0/24", 30_000), ("2001:db8:2::/48", FOREVER)] {
        call(
            &h,
            &BanRequest {
                version: VERSION,
                flags: 0,
                target: cidr(target),
                reserved: 0,
                duration_ms: ms,
            },
        );
    }
    sim.quiesce();
    (driver, h)
}

fn status_of(e: &CapturedEvent) -> i64 {
    match e.field("Status").unwrap().value {
        Value::U64(v) => v as u32 as i32 as i64,
        Value::I64(v) => v as i32 as i64,
        ref v => panic!("Status: {v:?}"),
    }
}

fn str_field(e: &CapturedEvent, name: &str) -> String {
    match &e.field(name).unwrap().value {
        Value::Str(s) => s.clone(),
        v => panic!("{name}: {v:?}"),
    }
}

/// A request's outcome: status and reply bytes.
type Outcome = (i32, Vec<u8>);

/// The request on a fresh start with the `fail_at`-th allocation failing
/// (0: none): its outcome, its allocations, the state before and after,
/// and the outcome and state of the same request repeated un-injected
/// (only when one failed).
struct Run {
    outcome: Outcome,
    counted: fault::Counted,
    before: State,
    after: State,
    rejected: Vec<CapturedEvent>,
    retry: Option<(Outcome, State)>,
}

fn comparable(c: &Case, o: &gate_usersim::IoctlResult) -> Outcome {
    // Status replies carry counters of other threads' work: compare the
    // status only.
    let bytes = if c.code == IOCTL_GATE_STATUS {
        Vec::new()
    } else {
        o.output.clone()
    };
    (o.status, bytes)
}

fn run(c: &Case, fail_at: u64) -> Run {
    let sim = Sim::new();
    let (driver, h) = start_for(&sim, c);
    let before = state(&sim, &h);
    sim.take_events();
    let before = State {
        config_changed_events: 0,
        ..before
    };
    sim.arm_thread_allocations(fail_at);
    let r = h.ioctl(c.code, &c.input, c.out_len);
    let counted = sim.disarm_thread_allocations();
    let rejected: Vec<CapturedEvent> = checked_events(&sim)
        .into_iter()
        .filter(|e| e.name == "ControlRejected")
        .collect();
    let after = state(&sim, &h);
    let retry = (counted.failed > 0).then(|| {
        let again = h.ioctl(c.code, &c.input, c.out_len);
        (comparable(c, &again), state(&sim, &h))
    });
    drop(h);
    let leaks = driver.unload(&sim);
    assert!(leaks.is_clean(), "{} k = {fail_at}: {leaks:#?}", c.name);
    assert!(
        sim.bugchecks().is_empty(),
        "{} k = {fail_at}: {:?}",
        c.name,
        sim.bugchecks()
    );
    let v = sim.violations();
    assert!(v.is_empty(), "{} k = {fail_at}: {v:#?}", c.name);
    Run {
        outcome: comparable(c, &r),
        counted,
        before,
        after,
        rejected,
        retry,
    }
}

/// Every IOCTL, every allocation it makes failing once.
#[test]
fn every_allocation_of_every_ioctl_can_fail() {
    let cases = cases();
    for (code, name) in ALL_CODES {
        assert!(cases.iter().any(|c| c.code == code), "{name} has no case");
    }
    let (mut runs, mut allocating) = (0u64, Vec::new());
    for c in &cases {
        let reference = run(c, 0);
        assert_eq!(reference.counted.failed, 0);
        assert_eq!(
            reference.outcome.0, c.expect,
            "{}: reference status {:#x}",
            c.name, reference.outcome.0
        );
        assert_ne!(
            reference.before.auto_banned.0 & query_state::AUTO_BANNED,
            0,
            "{}: the start has an automatic ban in force",
            c.name
        );
        assert_eq!(reference.before.bans.len(), 2, "{}: manual bans", c.name);
        if c.code == IOCTL_GATE_UNBAN {
            // Each unban case lifts something: manual bans or the
            // automatic one.
            assert!(
                reference.after.bans.len() < 2
                    || reference.after.auto_banned.0 & query_state::AUTO_BANNED == 0,
                "{}: lifted nothing",
                c.name
            );
        }
        let n = reference.counted.allocations;
        if n > 0 {
            allocating.push((c.name, n));
        }
        // Changes allocate (a new configuration at least); reads, reset
        // and the lifting of automatic bans allocate nothing.
        match c.code {
            IOCTL_GATE_SET | IOCTL_GATE_LIST_CHANGE | IOCTL_GATE_BAN => {
                assert!(n > 0, "{}: no allocation", c.name)
            }
            IOCTL_GATE_UNBAN => {}
            _ => assert_eq!(n, 0, "{}: a read allocates", c.name),
        }
        if n == 0 {
            assert_eq!(reference.counted.kept_bytes, 0, "{}", c.name);
        }
        for k in 1..=n + 1 {
            let r = run(c, k);
            runs += 1;
            if k > n {
                // Past the last allocation: nothing injected, the reference.
                assert_eq!(r.counted.failed, 0, "{} k = {k}", c.name);
                assert_eq!(r.outcome, reference.outcome, "{} k = {k}", c.name);
                assert_eq!(r.after, reference.after, "{} k = {k}", c.name);
                break;
            }
            let what = format!("{} k = {k} of {n}", c.name);
            assert_eq!(r.counted.failed, 1, "{what}: no failure happened");
            assert_eq!(
                r.counted.allocations, k,
                "{what}: the request went on allocating after a failure"
            );
            assert_eq!(
                r.outcome,
                (STATUS_INSUFFICIENT_RESOURCES, Vec::new()),
                "{what}: status {:#x}",
                r.outcome.0
            );
            assert_eq!(r.after, r.before, "{what}: state changed");
            assert_eq!(r.counted.kept_bytes, 0, "{what}: bytes not freed");
            assert_eq!(r.rejected.len(), 1, "{what}: one ControlRejected");
            let e = &r.rejected[0];
            assert_eq!(
                status_of(e),
                i64::from(STATUS_INSUFFICIENT_RESOURCES),
                "{what}"
            );
            let reason = str_field(e, "Reason");
            assert!(
                reason.contains("memory"),
                "{what}: the refusal names the allocation: {reason:?}"
            );
            let (again, after_again) = r.retry.expect("retried");
            assert_eq!(again, reference.outcome, "{what}: the retry");
            assert_eq!(after_again.config, reference.after.config, "{what}");
            assert_eq!(after_again.bans, reference.after.bans, "{what}");
            assert_eq!(after_again.generation, reference.after.generation, "{what}");
            assert_eq!(after_again.registry, reference.after.registry, "{what}");
            assert_eq!(
                after_again.auto_banned, reference.after.auto_banned,
                "{what}"
            );
        }
    }
    eprintln!(
        "{} cases, {runs} injected runs; allocations per request: {allocating:?}",
        cases.len()
    );
    assert!(runs > 20, "{runs}");
}
