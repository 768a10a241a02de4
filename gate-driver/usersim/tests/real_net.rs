//! Real data path on loopback (no root): a real Linux socket behind the
//! simulated WSK connection socket. An accepted real connection is run
//! through the gate (`real::accept_real`) and the tiny test driver's
//! WskReceive/WskSend/WskDisconnect/WskCloseSocket move real bytes; a
//! refused one is reset; WskSocket(connection) + WskBind + WskConnect open
//! a real TCP connection to a real server.
#![cfg(target_os = "linux")]

mod common;
use common::*;
use gate_ksys::*;
use gate_usersim::wsk::real;
use gate_usersim::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// WskReceive into `buf`; returns (status, bytes).
fn receive(sock: *mut WSK_SOCKET, buf: &mut [u8]) -> (NTSTATUS, usize) {
    let mut m = mdl_for(buf);
    let mut b = WSK_BUF {
        Mdl: (&mut m as *mut Mdl).cast(),
        Offset: 0,
        Length: buf.len(),
    };
    // SAFETY: a live connection socket.
    let f = unsafe { conn_dispatch(sock) }.WskReceive.unwrap();
    // SAFETY: buffer and MDL outlive the call (sync_call waits).
    sync_call(|irp| unsafe { f(sock, &mut b, 0, irp) })
}

/// WskSend of `data`.
fn send(sock: *mut WSK_SOCKET, data: &[u8]) -> (NTSTATUS, usize) {
    let mut d = data.to_vec();
    let mut m = mdl_for(&mut d);
    let mut b = WSK_BUF {
        Mdl: (&mut m as *mut Mdl).cast(),
        Offset: 0,
        Length: data.len(),
    };
    // SAFETY: a live connection socket.
    let f = unsafe { conn_dispatch(sock) }.WskSend.unwrap();
    // SAFETY: as above.
    sync_call(|irp| unsafe { f(sock, &mut b, 0, irp) })
}

fn load(sim: &Sim, port: u16) -> Driver {
    sim.set_real_time(true);
    reset_globals();
    PORT.store(u32::from(port), Ordering::SeqCst);
    let d = sim.load_driver(driver_entry, SERVICE_KEY).unwrap();
    sim.wait_listener(Duration::from_secs(5)).unwrap();
    d
}

#[test]
fn accepted_real_connection_moves_real_bytes() {
    let sim = Sim::new();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let d = load(&sim, port);
    let client = std::thread::spawn(move || {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"ping").unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        got
    });
    let (s, _) = l.accept().unwrap();
    let req = real::accept_real(s);
    assert_eq!(req.state(), RequestState::Established);
    assert_eq!(ACCEPT_CALLS.load(Ordering::SeqCst), 1);
    let sock = req.conn().unwrap().socket();
    let sp = sock as *mut WSK_SOCKET;
    let mut got = Vec::new();
    while got.len() < 4 {
        let mut buf = [0u8; 16];
        let (st, n) = receive(sp, &mut buf);
        assert_eq!(st, STATUS_SUCCESS);
        assert!(n > 0, "early end of stream");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"ping");
    assert_eq!(send(sp, b"pong!"), (STATUS_SUCCESS, 5));
    // SAFETY: a live connection socket.
    let disc = unsafe { conn_dispatch(sp) }.WskDisconnect.unwrap();
    // SAFETY: NULL buffer: a graceful disconnect without data.
    let (st, _) = sync_call(|irp| unsafe { disc(sp, std::ptr::null_mut(), 0, irp) });
    assert_eq!(st, STATUS_SUCCESS);
    assert_eq!(client.join().unwrap(), b"pong!", "data then FIN");
    // The client closed: a receive now ends the stream.
    let mut buf = [0u8; 4];
    assert_eq!(receive(sp, &mut buf), (STATUS_SUCCESS, 0));
    ACCEPTED.lock().unwrap().retain(|a| *a != sock);
    // SAFETY: a live socket with nothing pending.
    assert_eq!(unsafe { close_socket(sp) }, STATUS_SUCCESS);
    sim.set_real_time(false);
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn pending_receive_completes_when_real_data_arrives_then_end_of_stream() {
    let sim = Sim::new();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let d = load(&sim, port);
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (s, _) = l.accept().unwrap();
    let req = real::accept_real(s);
    let sock = req.conn().unwrap().socket();
    let sa = sock;
    let h = std::thread::spawn(move || {
        let mut buf = [0u8; 8];
        let r = receive(sa as *mut WSK_SOCKET, &mut buf);
        (r, buf)
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(!h.is_finished(), "no data yet: the receive pends");
    c.write_all(b"late").unwrap();
    let ((st, n), buf) = h.join().unwrap();
    assert_eq!((st, &buf[..n]), (STATUS_SUCCESS, &b"late"[..]));
    // The peer closes: the next receive ends the stream.
    drop(c);
    let mut buf = [0u8; 8];
    assert_eq!(
        receive(sock as *mut WSK_SOCKET, &mut buf),
        (STATUS_SUCCESS, 0)
    );
    assert!(real::stats().bytes_in >= 4);
    ACCEPTED.lock().unwrap().retain(|a| *a != sock);
    // SAFETY: a live socket with nothing pending.
    let st = unsafe { close_socket(sock as *mut WSK_SOCKET) };
    assert_eq!(st, STATUS_SUCCESS);
    sim.set_real_time(false);
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn rejected_real_connection_is_reset() {
    let sim = Sim::new();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let d = load(&sim, port);
    INSPECT_ACTION.store(WskInspectReject, Ordering::SeqCst);
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (s, _) = l.accept().unwrap();
    let req = real::accept_real(s);
    assert_eq!(req.state(), RequestState::Rejected);
    let mut b = [0u8; 1];
    let e = c.read(&mut b).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    assert_eq!(ACCEPT_CALLS.load(Ordering::SeqCst), 0);
    sim.set_real_time(false);
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn wsk_connect_opens_a_real_connection() {
    let sim = Sim::new();
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = server.local_addr().unwrap();
    let echo = std::thread::spawn(move || {
        let (mut s, peer) = server.accept().unwrap();
        let mut b = [0u8; 5];
        s.read_exact(&mut b).unwrap();
        s.write_all(&b).unwrap();
        peer
    });
    let d = load(&sim, 18555);
    real::set_connect_real(true);
    // SAFETY: the test driver's captured provider NPI.
    let (client, pd) = unsafe { ((*state()).provider.Client, &*(*state()).provider.Dispatch) };
    let create = pd.WskSocket.unwrap();
    let (st, info) = sync_call(|irp| {
        // SAFETY: a connection socket without callbacks; a fresh IRP.
        unsafe {
            create(
                client,
                AF_INET,
                SOCK_STREAM,
                IPPROTO_TCP,
                WSK_FLAG_CONNECTION_SOCKET,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                irp,
            )
        }
    });
    assert_eq!(st, STATUS_SUCCESS);
    let sp = info as *mut WSK_SOCKET;
    // SAFETY: a live connection socket.
    let cd = unsafe { conn_dispatch(sp) };
    let (bind, connect) = (cd.WskBind.unwrap(), cd.WskConnect.unwrap());
    let any = sockaddr_v4([0, 0, 0, 0], 0);
    let dst = sockaddr_v4([127, 0, 0, 1], to.port());
    // WskConnect before WskBind is refused (as Wine and Windows do).
    // SAFETY: a SOCKADDR_IN that outlives the call.
    let (st, _) =
        sync_call(|irp| unsafe { connect(sp, (&dst as *const SOCKADDR_IN).cast(), 0, irp) });
    assert_eq!(st, STATUS_INVALID_DEVICE_STATE);
    // SAFETY: as above.
    let (st, _) = sync_call(|irp| unsafe { bind(sp, (&any as *const SOCKADDR_IN).cast(), 0, irp) });
    assert_eq!(st, STATUS_SUCCESS);
    // SAFETY: as above.
    let (st, _) =
        sync_call(|irp| unsafe { connect(sp, (&dst as *const SOCKADDR_IN).cast(), 0, irp) });
    assert_eq!(st, STATUS_SUCCESS);
    assert_eq!(send(sp, b"hello"), (STATUS_SUCCESS, 5));
    let mut got = Vec::new();
    while got.len() < 5 {
        let mut b = [0u8; 8];
        let (st, n) = receive(sp, &mut b);
        assert_eq!(st, STATUS_SUCCESS);
        assert!(n > 0);
        got.extend_from_slice(&b[..n]);
    }
    assert_eq!(got, b"hello");
    let peer = echo.join().unwrap();
    // SAFETY: a live socket with nothing pending.
    assert_eq!(unsafe { close_socket(sp) }, STATUS_SUCCESS);
    assert_eq!(peer.ip(), to.ip());
    real::set_connect_real(false);
    sim.set_real_time(false);
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn wsk_connect_to_a_closed_port_is_refused() {
    let sim = Sim::new();
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let d = load(&sim, 18556);
    real::set_connect_real(true);
    // SAFETY: the test driver's captured provider NPI.
    let (client, pd) = unsafe { ((*state()).provider.Client, &*(*state()).provider.Dispatch) };
    let create = pd.WskSocket.unwrap();
    let (_, info) = sync_call(|irp| {
        // SAFETY: a connection socket without callbacks; a fresh IRP.
        unsafe {
            create(
                client,
                AF_INET,
                SOCK_STREAM,
                IPPROTO_TCP,
                WSK_FLAG_CONNECTION_SOCKET,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                irp,
            )
        }
    });
    let sp = info as *mut WSK_SOCKET;
    // SAFETY: a live connection socket.
    let cd = unsafe { conn_dispatch(sp) };
    let any = sockaddr_v4([0, 0, 0, 0], 0);
    let dst = sockaddr_v4([127, 0, 0, 1], port);
    let (bind, connect) = (cd.WskBind.unwrap(), cd.WskConnect.unwrap());
    // SAFETY: SOCKADDR_INs that outlive the calls.
    sync_call(|irp| unsafe { bind(sp, (&any as *const SOCKADDR_IN).cast(), 0, irp) });
    // SAFETY: as above.
    let (st, _) =
        sync_call(|irp| unsafe { connect(sp, (&dst as *const SOCKADDR_IN).cast(), 0, irp) });
    assert_eq!(st as u32, 0xC000_0236, "STATUS_CONNECTION_REFUSED");
    // SAFETY: a live socket.
    assert_eq!(unsafe { close_socket(sp) }, STATUS_SUCCESS);
    real::set_connect_real(false);
    sim.set_real_time(false);
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn handshake_delivers_and_a_full_half_open_table_drops_the_oldest() {
    let sim = Sim::new();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let d = load(&sim, port);
    real::set_max_half_open(2);
    let before = real::stats();
    let local: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let long = Duration::from_secs(60);
    // Two spoofed requests fill the table; a third drops the oldest.
    let a = real::connect_expecting_handshake("10.9.0.1:1000".parse().unwrap(), local, None, long);
    let b = real::connect_expecting_handshake("10.9.0.2:1000".parse().unwrap(), local, None, long);
    assert_eq!(
        (a.state(), b.state()),
        (RequestState::Accepted, RequestState::Accepted)
    );
    assert_eq!(
        ACCEPT_CALLS.load(Ordering::SeqCst),
        0,
        "no accept before the handshake"
    );
    // A real client: its request waits, then its handshake delivers it.
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (s, peer) = l.accept().unwrap();
    let r = real::connect_expecting_handshake(peer, local, None, long);
    assert_eq!(
        a.state(),
        RequestState::Aborted,
        "oldest half-open request dropped"
    );
    assert_eq!(ABORT_CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(
        real::stats().half_open_evicted,
        before.half_open_evicted + 1
    );
    assert!(real::awaiting_handshake(peer, local));
    real::handshake_done(s, peer);
    assert_eq!(r.state(), RequestState::Established);
    assert_eq!(ACCEPT_CALLS.load(Ordering::SeqCst), 1);
    // The driver's socket is the real one: bytes reach the client.
    let sock = r.conn().unwrap().socket();
    assert_eq!(send(sock as *mut WSK_SOCKET, b"ok"), (STATUS_SUCCESS, 2));
    let mut got = [0u8; 2];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ok");
    // A handshake nobody waits for is reset.
    let mut c2 = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (s2, peer2) = l.accept().unwrap();
    real::handshake_done(s2, peer2);
    assert_eq!(real::stats().unmatched, before.unmatched + 1);
    let mut one = [0u8; 1];
    assert!(c2
        .read(&mut one)
        .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset));
    real::set_max_half_open(real::DEFAULT_MAX_HALF_OPEN);
    sim.set_real_time(false);
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

/// A SYN of a 4-tuple whose accepted request waits for its handshake is a
/// retransmission only if it repeats the sequence number; with another
/// sequence number it is a new connection (the client reset the first and
/// reconnected from the same port): the waiting request gets WskAbortEvent
/// at once, the SYN is a new request, and the old request's deadline never
/// removes its successor. (Before: every such SYN passed undecided.)
#[test]
fn a_new_isn_on_a_waiting_4_tuple_is_a_new_request() {
    let sim = Sim::new();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let d = load(&sim, port);
    let before = real::stats();
    let local: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let remote: std::net::SocketAddr = "10.9.1.1:4000".parse().unwrap();
    let first =
        real::connect_expecting_handshake(remote, local, Some(1000), Duration::from_millis(400));
    assert_eq!(first.state(), RequestState::Accepted);
    // The same ISN again: a retransmission, nothing changes.
    assert!(real::syn_arrived(remote, local, 1000));
    assert_eq!(first.state(), RequestState::Accepted);
    assert_eq!(ABORT_CALLS.load(Ordering::SeqCst), 0);
    // Another ISN: a new connection.
    assert!(!real::syn_arrived(remote, local, 5_000_000));
    assert_eq!(first.state(), RequestState::Aborted, "abandoned at once");
    assert_eq!(ABORT_CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(real::stats().superseded, before.superseded + 1);
    assert!(!real::awaiting_handshake(remote, local));
    // The new SYN is decided as a new request, waiting with its own ISN.
    let inspects = INSPECT_CALLS.load(Ordering::SeqCst);
    let second =
        real::connect_expecting_handshake(remote, local, Some(5_000_000), Duration::from_secs(60));
    assert_eq!(INSPECT_CALLS.load(Ordering::SeqCst), inspects + 1);
    assert_eq!(second.state(), RequestState::Accepted);
    assert!(real::syn_arrived(remote, local, 5_000_000));
    // The first request's deadline (400 ms) passes: it must not take the
    // second's entry with it.
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(second.state(), RequestState::Accepted);
    assert!(real::awaiting_handshake(remote, local));
    assert_eq!(ABORT_CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(real::stats().handshake_timeouts, before.handshake_timeouts);
    // A request for the same 4-tuple made without going through
    // syn_arrived (e.g. its SYN came through another queue) supersedes
    // the waiting one too: never two requests on one 4-tuple.
    let third = real::connect_expecting_handshake(remote, local, Some(9), Duration::from_secs(60));
    assert_eq!(second.state(), RequestState::Aborted);
    assert_eq!(third.state(), RequestState::Accepted);
    assert_eq!(real::stats().superseded, before.superseded + 2);
    sim.set_real_time(false);
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

/// Regression (demo run, 2026-11-29): a client that resets right after its
/// handshake, before the acceptor's accept(2), leaves a socket whose
/// getpeername(2) fails. The request was still established by the stack, so
/// it must be delivered at once (WskAcceptEvent), matched by accept(2)'s
/// address, not left to end as a WskAbortEvent after the handshake timeout.
#[test]
fn a_handshake_reset_before_accept_is_still_delivered() {
    use std::os::fd::AsRawFd;
    let sim = Sim::new();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let d = load(&sim, port);
    let before = real::stats();
    let local: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let client = c.local_addr().unwrap();
    let r = real::connect_expecting_handshake(client, local, None, Duration::from_secs(60));
    assert_eq!(r.state(), RequestState::Accepted);
    // Close with RST (SO_LINGER 0) before the server side accepts.
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a linger struct that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            c.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    drop(c);
    std::thread::sleep(Duration::from_millis(50));
    let (s, peer) = l.accept().unwrap();
    assert_eq!(peer, client);
    assert!(s.peer_addr().is_err(), "getpeername fails after the reset");
    real::handshake_done(s, peer);
    assert_eq!(r.state(), RequestState::Established, "delivered at once");
    assert_eq!(
        real::stats().unmatched,
        before.unmatched,
        "not reset as unmatched"
    );
    assert!(!real::awaiting_handshake(client, local));
    sim.set_real_time(false);
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn io_cancel_irp_completes_a_receive_pended_on_a_real_socket() {
    let sim = Sim::new();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let d = load(&sim, port);
    let _c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (s, _) = l.accept().unwrap();
    let req = real::accept_real(s);
    let sock = req.conn().unwrap().socket();
    let (tx, rx) = std::sync::mpsc::channel::<usize>();
    let h = std::thread::spawn(move || {
        let sp = sock as *mut WSK_SOCKET;
        let mut buf = [0u8; 8];
        let mut m = mdl_for(&mut buf);
        let mut b = WSK_BUF {
            Mdl: (&mut m as *mut Mdl).cast(),
            Offset: 0,
            Length: 8,
        };
        // SAFETY: a live connection socket.
        let f = unsafe { conn_dispatch(sp) }.WskReceive.unwrap();
        sync_call(|irp| {
            tx.send(irp as usize).unwrap();
            // SAFETY: buffer and MDL outlive the call (sync_call waits).
            unsafe { f(sp, &mut b, 0, irp) }
        })
    });
    let irp = rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(!h.is_finished(), "no data: the receive pends");
    // SAFETY: the live IRP of the pending receive.
    assert_eq!(unsafe { IoCancelIrp(irp as *mut IRP) }, 1);
    assert_eq!(h.join().unwrap(), (STATUS_CANCELLED, 0));
    ACCEPTED.lock().unwrap().retain(|a| *a != sock);
    // SAFETY: a live socket with nothing pending.
    let st = unsafe { close_socket(sock as *mut WSK_SOCKET) };
    assert_eq!(st, STATUS_SUCCESS);
    sim.set_real_time(false);
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

/// Where and how each completion of [`record_completion`] ran: (thread
/// name, IRQL, whether the WSK call had returned yet).
static COMPLETIONS: std::sync::Mutex<Vec<(String, u8, bool)>> = std::sync::Mutex::new(Vec::new());
static RETURNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

unsafe extern "system" fn record_completion(_dev: PVOID, _irp: *mut IRP, _ctx: PVOID) -> NTSTATUS {
    COMPLETIONS.lock().unwrap().push((
        std::thread::current().name().unwrap_or("").to_string(),
        irql::current(),
        RETURNED.load(Ordering::SeqCst),
    ));
    STATUS_MORE_PROCESSING_REQUIRED
}

/// Calls `f(irp)` with an IRP whose completion routine records where it
/// ran; returns what the call returned and the IRP (the caller frees it).
fn recorded_call(f: impl FnOnce(*mut IRP) -> NTSTATUS) -> (NTSTATUS, *mut IRP) {
    // SAFETY: a fresh IRP with our completion routine.
    unsafe {
        let irp = IoAllocateIrp(1, FALSE);
        assert!(!irp.is_null());
        IoSetCompletionRoutine(
            irp,
            record_completion,
            std::ptr::null_mut(),
            true,
            true,
            true,
        );
        RETURNED.store(false, Ordering::SeqCst);
        let st = f(irp);
        RETURNED.store(true, Ordering::SeqCst);
        (st, irp)
    }
}

/// `real::set_fast_completion` (what gate-sim runs with): a send that can
/// complete at once completes inline — its routine runs on the caller's
/// thread before the call returns, which returns the status, not
/// STATUS_PENDING — and a pended receive is completed by the reactor
/// thread itself at DISPATCH_LEVEL (not the I/O thread).
#[test]
fn fast_completion_completes_inline_or_on_the_reactor() {
    let sim = Sim::new();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let d = load(&sim, port);
    real::set_fast_completion(true);
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (s, _) = l.accept().unwrap();
    let req = real::accept_real(s);
    let sock = req.conn().unwrap().socket();
    let sp = sock as *mut WSK_SOCKET;
    COMPLETIONS.lock().unwrap().clear();
    // A send with room in the socket buffer.
    let mut data = b"fast".to_vec();
    let mut m = mdl_for(&mut data);
    let mut b = WSK_BUF {
        Mdl: (&mut m as *mut Mdl).cast(),
        Offset: 0,
        Length: 4,
    };
    // SAFETY: a live connection socket.
    let f = unsafe { conn_dispatch(sp) }.WskSend.unwrap();
    // SAFETY: buffer and MDL outlive the call (completed inline).
    let (st, irp) = recorded_call(|irp| unsafe { f(sp, &mut b, 0, irp) });
    assert_eq!(st, STATUS_SUCCESS, "the call returns the IRP's status");
    {
        let done = COMPLETIONS.lock().unwrap();
        assert_eq!(done.len(), 1, "completed before the call returned");
        let here = std::thread::current().name().unwrap_or("").to_string();
        assert_eq!(
            done[0],
            (here, PASSIVE_LEVEL, false),
            "inline, on the caller"
        );
    }
    // SAFETY: completed; ours to free.
    unsafe { IoFreeIrp(irp) };
    let mut got = [0u8; 4];
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"fast");
    // A receive with nothing to read pends; the reactor completes it.
    let mut buf = [0u8; 8];
    let mut rm = mdl_for(&mut buf);
    let mut rb = WSK_BUF {
        Mdl: (&mut rm as *mut Mdl).cast(),
        Offset: 0,
        Length: 8,
    };
    // SAFETY: a live connection socket.
    let r = unsafe { conn_dispatch(sp) }.WskReceive.unwrap();
    // SAFETY: buffer and MDL outlive the IRP (waited for below).
    let (st, irp) = recorded_call(|irp| unsafe { r(sp, &mut rb, 0, irp) });
    assert_eq!(st, STATUS_PENDING);
    c.write_all(b"late").unwrap();
    let t = std::time::Instant::now();
    while COMPLETIONS.lock().unwrap().len() < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the receive never completed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        COMPLETIONS.lock().unwrap()[1],
        ("sim-real".to_string(), DISPATCH_LEVEL, true),
        "on the reactor, at DISPATCH_LEVEL"
    );
    // SAFETY: completed; read its result, then free it.
    unsafe {
        assert_eq!(
            ((*irp).IoStatus.Status, (*irp).IoStatus.Information),
            (STATUS_SUCCESS, 4)
        );
        IoFreeIrp(irp);
    }
    assert_eq!(&buf[..4], b"late");
    real::set_fast_completion(false);
    drop(c);
    ACCEPTED.lock().unwrap().retain(|a| *a != sock);
    // SAFETY: a live socket with nothing pending.
    assert_eq!(unsafe { close_socket(sp) }, STATUS_SUCCESS);
    sim.set_real_time(false);
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

/// A send far larger than the socket buffers pends and is written by the
/// reactor straight from the driver's buffer (two chained MDLs, starting
/// at an offset into the first: no copy), byte-exact, in both completion
/// paths (through the I/O thread, and fast completion).
#[test]
fn a_big_send_from_chained_mdls_is_written_in_place_byte_exact() {
    let sim = Sim::new();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let d = load(&sim, port);
    for fast in [false, true] {
        real::set_fast_completion(fast);
        let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (s, _) = l.accept().unwrap();
        let req = real::accept_real(s);
        let sock = req.conn().unwrap().socket();
        let sp = sock as *mut WSK_SOCKET;
        let mut a: Vec<u8> = (0..8_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut b2: Vec<u8> = (0..4_000_000u32).map(|i| (i * 13 + i / 97) as u8).collect();
        let off = 1234usize;
        let len = a.len() - off + b2.len();
        let mut want = a[off..].to_vec();
        want.extend_from_slice(&b2);
        let mut ma = mdl_for(&mut a);
        let mut mb = mdl_for(&mut b2);
        chain(&mut ma, &mut mb);
        let reader = std::thread::spawn(move || {
            let mut c = c;
            c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            // Let the send fill the socket buffers and pend first.
            std::thread::sleep(Duration::from_millis(100));
            let mut got = vec![0u8; len];
            c.read_exact(&mut got).unwrap();
            got
        });
        let mut b = WSK_BUF {
            Mdl: (&mut ma as *mut Mdl).cast(),
            Offset: off as u32,
            Length: len,
        };
        // SAFETY: a live connection socket.
        let f = unsafe { conn_dispatch(sp) }.WskSend.unwrap();
        // SAFETY: buffers and MDLs outlive the call (sync_call waits).
        let r = sync_call(|irp| unsafe { f(sp, &mut b, 0, irp) });
        assert_eq!(r, (STATUS_SUCCESS, len), "fast {fast}");
        assert!(reader.join().unwrap() == want, "fast {fast}: bytes differ");
        ACCEPTED.lock().unwrap().retain(|x| *x != sock);
        // SAFETY: a live socket with nothing pending.
        assert_eq!(unsafe { close_socket(sp) }, STATUS_SUCCESS);
    }
    real::set_fast_completion(false);
    sim.set_real_time(false);
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}
