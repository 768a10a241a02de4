//! The control socket's ownership of its path (newcomer review of issue
//! 13, item 3): a second server refuses a live socket instead of taking it
//! over, replaces only a stale one, never removes what is not a socket, and
//! removes the path at exit only if it is still its own socket.

use std::io::ErrorKind;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use gate_usersim::ControlServer;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("usersim-cc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_second_server_refuses_a_live_socket_and_the_first_keeps_it() {
    let d = dir("live");
    let p = d.join("control.sock");
    let a = ControlServer::start(&p).expect("first");
    let e = ControlServer::bind(&p)
        .err()
        .expect("the second must refuse");
    assert_eq!(e.kind(), ErrorKind::AddrInUse);
    let msg = e.to_string();
    assert!(msg.contains(p.to_str().unwrap()), "{msg}");
    assert!(msg.contains("in use by a running gate-sim"), "{msg}");
    // The first still owns the path and answers.
    UnixStream::connect(&p).expect("the first still serves");
    a.stop();
    assert!(!p.exists(), "its own socket is removed at exit");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn a_stale_socket_is_replaced() {
    let d = dir("stale");
    let p = d.join("control.sock");
    drop(UnixListener::bind(&p).unwrap()); // the file stays, nobody listens
    assert_eq!(
        UnixStream::connect(&p).unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
    let s = ControlServer::start(&p).expect("a stale socket is replaced");
    UnixStream::connect(&p).expect("serves");
    s.stop();
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn a_path_that_is_not_a_socket_is_left_alone() {
    let d = dir("file");
    let p = d.join("control.sock");
    std::fs::write(&p, b"keep me").unwrap();
    let e = ControlServer::bind(&p).err().expect("refused");
    assert!(e.to_string().contains("not a socket"), "{e}");
    assert_eq!(std::fs::read(&p).unwrap(), b"keep me");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn a_server_removes_the_path_at_exit_only_if_it_is_still_its_socket() {
    let d = dir("own");
    let p = d.join("control.sock");
    let a = ControlServer::start(&p).expect("first");
    // Someone replaces the path (another server after removing A's file).
    std::fs::remove_file(&p).unwrap();
    let b = ControlServer::start(&p).expect("second, on a free path");
    a.stop();
    assert!(p.exists(), "A must not remove B's socket");
    UnixStream::connect(&p).expect("B still serves");
    // An unserved bind removes its own path when dropped.
    b.stop();
    assert!(!p.exists());
    let s = ControlServer::bind(&p).unwrap();
    assert!(p.exists());
    drop(s);
    assert!(!p.exists());
    let _ = std::fs::remove_dir_all(d);
}
