//! Bounded memory for any run length: finished requests and closed
//! sockets are retired beyond the history window, socket objects and lent
//! buffers are recycled, and the log is a window. A run of many connection
//! requests (accepted and closed, rejected, pended and completed) ends with
//! tables no larger than the window plus what is live.

mod common;
use common::*;
use gate_ksys::*;
use gate_usersim::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

const WINDOW: usize = 50;

fn remote(i: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 40000)
}

#[test]
fn tables_stay_within_the_history_window() {
    let sim = Sim::new();
    reset_globals();
    sim.set_history_window(WINDOW);
    let d = sim.load_driver(driver_entry, SERVICE_KEY).unwrap();
    let l = sim.wait_listener(Duration::from_secs(5)).unwrap();
    let mut first = None;
    let mut peak = TableSizes::default();
    for i in 0..3000u32 {
        let action = match i % 3 {
            0 => WskInspectAccept,
            1 => WskInspectReject,
            _ => WskInspectPend,
        };
        INSPECT_ACTION.store(action, Ordering::SeqCst);
        let r = sim.connect(remote(i), l.addr);
        first.get_or_insert(r);
        match i % 3 {
            0 => {
                assert_eq!(r.state(), RequestState::Established);
                let s = r.conn().unwrap().socket();
                // The test driver closes what it accepted at unload: close
                // it now instead.
                ACCEPTED.lock().unwrap().retain(|a| *a != s);
                // SAFETY: the connection socket the driver was given.
                let st = unsafe { close_socket(s as *mut WSK_SOCKET) };
                assert_eq!(st, STATUS_SUCCESS);
            }
            1 => assert_eq!(r.state(), RequestState::Rejected),
            _ => {
                assert_eq!(r.state(), RequestState::Pended);
                let id = PENDED.lock().unwrap().pop().unwrap();
                let st = sim.run_on_system_thread(move || {
                    // SAFETY: the test driver's listening socket; a fresh IRP.
                    let s = unsafe { (*state()).listen };
                    // SAFETY: as above.
                    let f = unsafe { listen_dispatch(s) }.WskInspectComplete.unwrap();
                    // SAFETY: as above.
                    sync_call(|irp| unsafe { f(s, &id, WskInspectReject, irp) }).0
                });
                assert_eq!(st, STATUS_SUCCESS);
                assert_eq!(r.state(), RequestState::CompletedReject);
            }
        }
        let t = sim.wsk_table_sizes();
        peak.sockets = peak.sockets.max(t.sockets);
        peak.socket_objects = peak.socket_objects.max(t.socket_objects);
        peak.requests = peak.requests.max(t.requests);
        peak.buffers = peak.buffers.max(t.buffers);
    }
    sim.quiesce();
    let t = sim.wsk_table_sizes();
    // One listener plus the window of closed connection sockets.
    assert!(peak.sockets <= WINDOW + 2, "{peak:?}");
    assert!(peak.socket_objects <= WINDOW + 3, "{peak:?}");
    assert!(peak.requests <= WINDOW + 2, "{peak:?}");
    // Poisoned buffers waiting for reuse (256), the kept requests' ids and
    // the two of a call in progress.
    assert!(peak.buffers <= 257 + WINDOW + 3, "{peak:?}");
    assert_eq!(t.requests_in_flight, 0, "{t:?}");
    assert_eq!(t.requests_retired, 3000 - t.requests as u64, "{t:?}");
    assert_eq!(t.sockets_retired, 1000 - (t.sockets as u64 - 1), "{t:?}");
    assert!(t.log_lines <= gate_usersim::wsk::LOG_LIMIT);
    // A retired request says so; a recent one still has its outcome.
    assert_eq!(first.unwrap().state(), RequestState::Retired);
    d.unload(&sim).assert_clean();
    sim.assert_no_violations();
}

#[test]
fn use_after_close_is_still_recorded_within_the_window() {
    let sim = Sim::new();
    reset_globals();
    sim.set_history_window(WINDOW);
    let d = sim.load_driver(driver_entry, SERVICE_KEY).unwrap();
    let l = sim.wait_listener(Duration::from_secs(5)).unwrap();
    let r = sim.connect(remote(1), l.addr);
    let s = r.conn().unwrap().socket();
    ACCEPTED.lock().unwrap().retain(|a| *a != s);
    let s = s as *mut WSK_SOCKET;
    // SAFETY: the connection socket the driver was given.
    assert_eq!(unsafe { close_socket(s) }, STATUS_SUCCESS);
    // SAFETY: the object stays valid (closed, not retired); the call is
    // the misuse under test.
    unsafe { close_socket(s) };
    assert!(sim
        .violations()
        .iter()
        .any(|v| v.kind == ViolationKind::WskUseAfterClose));
    d.unload(&sim);
}
