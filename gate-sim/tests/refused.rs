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

/// Docs audit (s3), defect 3: a list entry that parses but is refused
/// (a NAT64 prefix of a length RFC 6052 does not allow, an IPv4 one) was
/// named by its index, quoted as if it were text: `rejected ("0")`.
#[test]
fn a_refused_list_entry_is_named_by_its_text_and_a_count_is_not_quoted() {
    let err = refused(&["--nice", "0", "--Nat64Prefixes", "64:ff9b::/95"]);
    assert!(
        err.contains("gate-sim: registry value Nat64Prefixes rejected (\"64:ff9b::/95\"): IPv6 prefixes of length 32, 40, 48, 56, 64 or 96"),
        "{err}"
    );
    // The driver's own debug line names it the same way.
    assert!(
        err.contains("gate: registry value Nat64Prefixes rejected (\"64:ff9b::/95\")"),
        "{err}"
    );
    let err = refused(&["--Nat64Prefixes", "64:ff9b::/96,10.0.0.0/8"]);
    assert!(
        err.contains("registry value Nat64Prefixes rejected (\"10.0.0.0/8\"): "),
        "{err}"
    );
    assert!(!err.contains("(\"1\")") && !err.contains("(1)"), "{err}");
    // A list too long is named by its number of entries, unquoted.
    let nat64: Vec<String> = (0..17).map(|i| format!("2001:db8:{i:x}::/96")).collect();
    let err = refused(&["--Nat64Prefixes", &nat64.join(",")]);
    assert!(
        err.contains("gate-sim: registry value Nat64Prefixes rejected (17): at most 16 prefixes"),
        "{err}"
    );
    let allow: Vec<String> = (0..4097u32)
        .map(|i| format!("10.{}.{}.0/24", i >> 8, i & 255))
        .collect();
    let err = refused(&["--AllowList", &allow.join(",")]);
    assert!(
        err.contains("gate-sim: registry value AllowList rejected (4097): at most 4096 entries"),
        "{err}"
    );
}
