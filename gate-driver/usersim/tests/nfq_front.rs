//! NFQUEUE front end to end: a network namespace made by the test,
//! iptables-nft rules queueing SYNs to port 18080 over two queues
//! (`--queue-balance 3:4`) and answering the reject mark with a TCP reset, a
//! real Linux listener, and the tiny test driver deciding each SYN through
//! the simulated provider.
//! Needs root, `ip netns` and `iptables-nft`:
//! `cargo test -p gate-usersim --features nfq --test nfq_front -- --ignored`.
#![cfg(all(feature = "nfq", target_os = "linux"))]

mod common;
use common::*;
use gate_ksys::*;
use gate_usersim::nfq::{enter_netns, serve, Counters, FrontConfig, DEFAULT_REJECT_MARK};
use gate_usersim::*;
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const PORT_NUM: u16 = 18080;

struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("gatesim{}", std::process::id());
        let run = |args: &[&str]| {
            let st = Command::new(args[0])
                .args(&args[1..])
                .status()
                .expect("run");
            assert!(st.success(), "{args:?} failed");
        };
        run(&["ip", "netns", "add", &name]);
        run(&[
            "ip", "netns", "exec", &name, "ip", "link", "set", "lo", "up",
        ]);
        let mark = format!("{DEFAULT_REJECT_MARK:#x}");
        let rules: [&[&str]; 2] = [
            &[
                "-A",
                "INPUT",
                "-p",
                "tcp",
                "--dport",
                "18080",
                "--syn",
                "-m",
                "mark",
                "--mark",
                &mark,
                "-j",
                "REJECT",
                "--reject-with",
                "tcp-reset",
            ],
            &[
                "-A",
                "INPUT",
                "-p",
                "tcp",
                "--dport",
                "18080",
                "--syn",
                "-j",
                "NFQUEUE",
                "--queue-balance",
                "3:4",
            ],
        ];
        for r in rules {
            let mut a = vec!["ip", "netns", "exec", &name, "iptables-nft"];
            a.extend_from_slice(r);
            run(&a);
        }
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn try_connect(ns: &str, timeout: Duration) -> bool {
    connect_result(ns, timeout).is_ok()
}

fn connect_result(ns: &str, timeout: Duration) -> std::io::Result<TcpStream> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter_netns(&ns).unwrap();
        TcpStream::connect_timeout(&format!("127.0.0.1:{PORT_NUM}").parse().unwrap(), timeout)
    })
    .join()
    .unwrap()
}

#[test]
#[ignore = "needs root, ip netns and iptables-nft"]
fn real_syns_are_decided_before_the_handshake() {
    let sim = Sim::new();
    sim.set_real_time(true);
    reset_globals();
    PORT.store(u32::from(PORT_NUM), Ordering::SeqCst);
    let d = sim.load_driver(driver_entry, SERVICE_KEY).unwrap();
    sim.wait_listener(Duration::from_secs(2)).unwrap();
    let ns = Netns::new();
    let stop = AtomicBool::new(false);
    let counters = Counters::default();
    let counters = &counters;
    std::thread::scope(|s| {
        let listener_ns = ns.0.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let stop_l = &stop;
        s.spawn(move || {
            enter_netns(&listener_ns).unwrap();
            let l = TcpListener::bind(("127.0.0.1", PORT_NUM)).unwrap();
            tx.send(()).unwrap();
            l.set_nonblocking(true).unwrap();
            let start = Instant::now();
            while !stop_l.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(20) {
                let _ = l.accept();
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        rx.recv().unwrap();
        let front_ns = ns.0.clone();
        let (sim_ref, stop_ref) = (&sim, &stop);
        let server = s.spawn(move || {
            enter_netns(&front_ns).unwrap();
            serve(sim_ref, &FrontConfig::queues(3, 4), stop_ref, counters).unwrap()
        });
        std::thread::sleep(Duration::from_millis(100));

        INSPECT_ACTION.store(WskInspectAccept, Ordering::SeqCst);
        assert!(
            try_connect(&ns.0, Duration::from_secs(3)),
            "accepted SYN completes the handshake"
        );
        INSPECT_ACTION.store(WskInspectReject, Ordering::SeqCst);
        let t = Instant::now();
        let e = connect_result(&ns.0, Duration::from_millis(3000)).unwrap_err();
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "rejected SYN is answered with a reset: {e}"
        );
        assert!(
            t.elapsed() < Duration::from_millis(900),
            "refused at once, not after retransmits"
        );

        INSPECT_ACTION.store(WskInspectPend, Ordering::SeqCst);
        let pend_ns = ns.0.clone();
        let client = s.spawn(move || try_connect(&pend_ns, Duration::from_secs(5)));
        let t = Instant::now();
        while PENDED.lock().unwrap().is_empty() && t.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let id = PENDED.lock().unwrap()[0];
        std::thread::sleep(Duration::from_millis(300));
        assert!(!client.is_finished(), "held while pended");
        let st = sim.run_on_system_thread(move || {
            // SAFETY: the test driver's listening socket; a fresh IRP.
            let s = unsafe { (*state()).listen };
            // SAFETY: as above.
            let f = unsafe { listen_dispatch(s) }.WskInspectComplete.unwrap();
            // SAFETY: as above.
            sync_call(|irp| unsafe { f(s, &id, WskInspectAccept, irp) }).0
        });
        assert_eq!(st, STATUS_SUCCESS);
        assert!(
            client.join().unwrap(),
            "pended then accepted: the held SYN goes through"
        );

        stop.store(true, Ordering::SeqCst);
        let stats = server.join().unwrap();
        assert!(
            stats.accepted >= 2 && stats.rejected >= 1 && stats.pended == 1,
            "{stats:?}"
        );
        assert_eq!((stats.looped, stats.lost()), (0, 0), "{stats:?}");
    });
    sim.set_real_time(false);
    d.unload(&sim);
    sim.assert_no_violations();
}
