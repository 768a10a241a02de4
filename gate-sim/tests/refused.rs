//! A configuration the driver refuses: gate-sim exits 2 and names the
//! registry value, the value given and what is allowed, as plain text
//! (from the driver's `ConfigRejected` event). Needs no privileges: the
//! driver refuses in DriverEntry, before any namespace or NFQUEUE work.

use std::process::Command;

fn refused(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gate-sim"))
        .arg("--no-rules")
        .args(args)
        .output()
        .expect("running gate-sim");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn a_refused_value_is_named_with_the_value_given() {
    let err = refused(&["--RateMilliPerSecond", "0"]);
    assert!(
        err.contains(
            "gate-sim: registry value RateMilliPerSecond rejected (0): \
             1 to 10000000000 milli-connections per second"
        ),
        "{err}"
    );
    // The value is the one given, not a default 0.
    let err = refused(&["--Burst", "2000000"]);
    assert!(
        err.contains("gate-sim: registry value Burst rejected (2000000): "),
        "{err}"
    );
    // A combination: the value reported is the largest TableShards allowed.
    let err = refused(&["--TableCapacity", "1024"]);
    assert!(
        err.contains("gate-sim: registry value TableShards+TableCapacity rejected (16): "),
        "{err}"
    );
    // No Rust debug formatting in an operator's message.
    assert!(!err.contains("Str("), "{err}");
    // A string value is named by its text, not its length (issue 12
    // review: "rejected (7) ... (text length given)").
    let err = refused(&["--BackendAddress", "1.2.3.4"]);
    assert!(
        err.contains(
            "gate-sim: registry value BackendAddress rejected (\"1.2.3.4\"): \
             not IPv4:port or [IPv6]:port"
        ),
        "{err}"
    );
    assert!(!err.contains("text length"), "{err}");
    let err = refused(&["--BackendAddress", "[fe80::1]:9000"]);
    assert!(
        err.contains("BackendAddress rejected (\"[fe80::1]:9000\"): IPv6 link-local"),
        "{err}"
    );
    // The gate's own port on loopback: a loop, naming both values.
    let err = refused(&["--ListenPort", "8080", "--BackendAddress", "127.0.0.1:8080"]);
    assert!(
        err.contains("registry value BackendAddress+ListenPort rejected (\"127.0.0.1:8080\"): "),
        "{err}"
    );
}
