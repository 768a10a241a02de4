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
use gate_usersim::wsk::real;
use gate_usersim::*;
use std::io::Read;
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

/// Sends one TCP SYN with sequence number `isn` from a source nobody owns
/// (raw socket, in the calling thread's namespace): its SYN-ACK is never
/// answered with an ACK.
fn spoofed_syn(src: [u8; 4], sport: u16, isn: u32) {
    let mut p = Vec::new();
    etherparse::PacketBuilder::ipv4(src, [127, 0, 0, 1], 64)
        .tcp(sport, PORT_NUM, isn, 1024)
        .syn()
        .write(&mut p, &[])
        .unwrap();
    // SAFETY: a raw IPv4 socket (IP_HDRINCL implied by IPPROTO_RAW), used
    // once and closed.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let to = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        let n = libc::sendto(
            fd,
            p.as_ptr().cast(),
            p.len(),
            0,
            (&to as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        );
        assert_eq!(n as usize, p.len());
        libc::close(fd);
    }
}

/// Sets the front's stop flag when dropped (also while unwinding).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
        gate_usersim::nfq::wake_all();
    }
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
    let mut cfg = FrontConfig::queues(3, 4);
    cfg.handshake_timeout = Some(Duration::from_millis(500));
    let cfg = &cfg;
    let acceptor = {
        let listener_ns = ns.0.clone();
        std::thread::spawn(move || {
            enter_netns(&listener_ns).unwrap();
            real::Acceptor::start(TcpListener::bind(("127.0.0.1", PORT_NUM)).unwrap(), 1024)
        })
        .join()
        .unwrap()
    };
    std::thread::scope(|s| {
        let front_ns = ns.0.clone();
        let (sim_ref, stop_ref) = (&sim, &stop);
        let server = s.spawn(move || {
            enter_netns(&front_ns).unwrap();
            serve(sim_ref, cfg, stop_ref, counters).unwrap()
        });
        // A failed assertion below must still stop the front, or the scope
        // would wait for it forever.
        let _stop_on_panic = StopOnDrop(&stop);
        std::thread::sleep(Duration::from_millis(100));

        // Accepted: the handshake completes, then (only then) the driver
        // gets the connection, with the real socket behind it.
        INSPECT_ACTION.store(WskInspectAccept, Ordering::SeqCst);
        let mut c = connect_result(&ns.0, Duration::from_secs(3))
            .expect("accepted SYN completes the handshake");
        let t = Instant::now();
        while ACCEPT_CALLS.load(Ordering::SeqCst) == 0 && t.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(ACCEPT_CALLS.load(Ordering::SeqCst), 1);
        let sock = *ACCEPTED.lock().unwrap().last().unwrap();
        let st = sim.run_on_system_thread(move || {
            let mut data = *b"hi";
            let mut m = [0u64; 6];
            // MDL: next, size/flags/processor/reserved, process, mapped, start, count/offset.
            m[1] = 48;
            m[3] = data.as_mut_ptr() as u64;
            m[4] = data.as_mut_ptr() as u64;
            m[5] = 2;
            let mut b = WSK_BUF {
                Mdl: m.as_mut_ptr().cast(),
                Offset: 0,
                Length: 2,
            };
            let sp = sock as *mut WSK_SOCKET;
            // SAFETY: the accepted connection socket; buffer and MDL outlive the call.
            let f = unsafe { conn_dispatch(sp) }.WskSend.unwrap();
            // SAFETY: as above.
            sync_call(|irp| unsafe { f(sp, &mut b, 0, irp) })
        });
        assert_eq!(st, (STATUS_SUCCESS, 2));
        let mut got = [0u8; 2];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi", "real bytes from the driver to the client");

        // Rejected: a reset at once.
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

        // Pended, then accepted: the held SYN goes through.
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
        // ... and reaches the driver (WskAcceptEvent) before the next stage
        // counts accepts (review s3: this stage did not wait for it).
        let t = Instant::now();
        while ACCEPT_CALLS.load(Ordering::SeqCst) < 2 && t.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            ACCEPT_CALLS.load(Ordering::SeqCst),
            2,
            "the pended request delivered"
        );

        // Accepted from a spoofed source: no handshake, so WskAbortEvent
        // (and never WskAcceptEvent) within the handshake timeout.
        INSPECT_ACTION.store(WskInspectAccept, Ordering::SeqCst);
        let accepts = ACCEPT_CALLS.load(Ordering::SeqCst);
        // No stage above expects an abort. A CI run here (2026-11-29, a
        // loaded machine) once counted two aborts in the stage below where
        // one was expected, and the count alone could not say whose: any
        // abort is now named by its request's remote.
        let earlier = aborted_remotes();
        assert!(
            earlier.is_empty(),
            "aborts before the spoofed stage: {earlier:?}; {:?}",
            real::stats()
        );
        let spoofed = std::net::SocketAddrV4::new([127, 0, 0, 77].into(), 5555);
        let spoof_ns = ns.0.clone();
        std::thread::spawn(move || {
            enter_netns(&spoof_ns).unwrap();
            spoofed_syn([127, 0, 0, 77], 5555, 1);
        })
        .join()
        .unwrap();
        let t = Instant::now();
        let of_spoofed = || aborted_remotes().iter().filter(|&&a| a == spoofed).count();
        while of_spoofed() == 0 && t.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            of_spoofed(),
            1,
            "spoofed source aborted once; aborts so far: {:?}",
            aborted_remotes()
        );
        assert_eq!(
            aborted_remotes().len(),
            earlier.len() + 1,
            "only the spoofed request aborted in this stage: {:?}",
            aborted_remotes()
        );
        assert!(
            t.elapsed() >= Duration::from_millis(300),
            "not before the timeout"
        );
        assert_eq!(ACCEPT_CALLS.load(Ordering::SeqCst), accepts);
        assert!(real::stats().handshake_timeouts >= 1);

        // A new connection on the 4-tuple of an accepted request still
        // waiting for its handshake is a new request, not a retransmission:
        // a SYN from 127.0.0.1:5601 nobody owns is accepted (its SYN-ACK is
        // answered with a reset by the namespace's stack), then a real
        // client bound to 127.0.0.1:5601 connects with its own ISN while
        // the gate now rejects: it is refused (decided), and the first
        // request gets WskAbortEvent at once. Before, this SYN passed
        // undecided as a "retransmission".
        let (aborts, inspects) = (
            ABORT_CALLS.load(Ordering::SeqCst),
            INSPECT_CALLS.load(Ordering::SeqCst),
        );
        let superseded = real::stats().superseded;
        let reuse_ns = ns.0.clone();
        let refused = std::thread::spawn(move || {
            enter_netns(&reuse_ns).unwrap();
            spoofed_syn([127, 0, 0, 1], 5601, 1);
            let t = Instant::now();
            while INSPECT_CALLS.load(Ordering::SeqCst) == inspects
                && t.elapsed() < Duration::from_secs(2)
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            INSPECT_ACTION.store(WskInspectReject, Ordering::SeqCst);
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.set_reuse_address(true).unwrap();
            s.bind(
                &"127.0.0.1:5601"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
            s.connect_timeout(
                &format!("127.0.0.1:{PORT_NUM}")
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
                Duration::from_secs(3),
            )
        })
        .join()
        .unwrap()
        .unwrap_err();
        assert_eq!(
            refused.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "the new connection was decided (rejected): {refused}"
        );
        assert_eq!(INSPECT_CALLS.load(Ordering::SeqCst), inspects + 2);
        assert_eq!(real::stats().superseded, superseded + 1);
        assert_eq!(ABORT_CALLS.load(Ordering::SeqCst), aborts + 1);

        // The same for a pended (held) request: its retransmission (same
        // sequence number) is dropped as a duplicate, but a real client
        // reconnecting from its 4-tuple with its own ISN is a new request,
        // decided (refused) at once, and the held request gets
        // WskAbortEvent. Before, this SYN was dropped as a duplicate.
        INSPECT_ACTION.store(WskInspectPend, Ordering::SeqCst);
        let (aborts, inspects, pended) = (
            ABORT_CALLS.load(Ordering::SeqCst),
            INSPECT_CALLS.load(Ordering::SeqCst),
            PENDED.lock().unwrap().len(),
        );
        let before = counters.snapshot();
        let reuse_ns = ns.0.clone();
        let refused = s
            .spawn(move || {
                enter_netns(&reuse_ns).unwrap();
                spoofed_syn([127, 0, 0, 1], 5602, 1);
                let t = Instant::now();
                while PENDED.lock().unwrap().len() == pended && t.elapsed() < Duration::from_secs(2)
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
                spoofed_syn([127, 0, 0, 1], 5602, 1);
                let t = Instant::now();
                while counters.snapshot().duplicates == before.duplicates
                    && t.elapsed() < Duration::from_secs(2)
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
                INSPECT_ACTION.store(WskInspectReject, Ordering::SeqCst);
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .unwrap();
                s.set_reuse_address(true).unwrap();
                s.bind(
                    &"127.0.0.1:5602"
                        .parse::<std::net::SocketAddr>()
                        .unwrap()
                        .into(),
                )
                .unwrap();
                let t = Instant::now();
                let e = s
                    .connect_timeout(
                        &format!("127.0.0.1:{PORT_NUM}")
                            .parse::<std::net::SocketAddr>()
                            .unwrap()
                            .into(),
                        Duration::from_secs(3),
                    )
                    .unwrap_err();
                (e, t.elapsed())
            })
            .join()
            .unwrap();
        assert_eq!(
            PENDED.lock().unwrap().len(),
            pended + 1,
            "the first SYN was pended"
        );
        assert_eq!(
            refused.0.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "the new connection was decided (rejected): {}",
            refused.0
        );
        assert!(
            refused.1 < Duration::from_millis(900),
            "refused at once, not dropped as a duplicate: {:?}",
            refused.1
        );
        let after = counters.snapshot();
        assert_eq!(
            (after.duplicates, after.superseded, after.pended),
            (
                before.duplicates + 1,
                before.superseded + 1,
                before.pended + 1
            ),
            "one retransmission dropped, one held request superseded: {after:?}"
        );
        assert_eq!(INSPECT_CALLS.load(Ordering::SeqCst), inspects + 2);
        assert_eq!(
            ABORT_CALLS.load(Ordering::SeqCst),
            aborts + 1,
            "the held request got WskAbortEvent"
        );

        stop.store(true, Ordering::SeqCst);
        let stats = server.join().unwrap();
        assert!(
            stats.accepted >= 3 && stats.rejected >= 2 && stats.pended == 2,
            "{stats:?}"
        );
        assert_eq!((stats.looped, stats.lost()), (0, 0), "{stats:?}");
    });
    drop(acceptor);
    sim.set_real_time(false);
    d.unload(&sim);
    sim.assert_no_violations();
}
