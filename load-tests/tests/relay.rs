//! The relay comparison of `gate-load peers --relay` (root; skipped with a
//! message otherwise): the same echo payload run straight to the backend and
//! through HAProxy in TCP mode completes every byte-checked exchange both
//! ways, in namespaces the harness makes.

mod common;

use load_tests::payload::ServeMode;
use load_tests::peers::{relay_run, relay_scenario, Peer};
use load_tests::report::PayloadMode;
use load_tests::scenario::PayloadSpec;

#[test]
fn direct_and_haproxy_relay_complete_every_echo() {
    if !common::root_or_skip("direct_and_haproxy_relay_complete_every_echo") {
        return;
    }
    assert!(
        std::path::Path::new("/usr/sbin/haproxy").exists(),
        "haproxy is missing: apt-get install haproxy (cargo xtask ci installs it)"
    );
    let spec = PayloadSpec::new(
        PayloadMode::Echo,
        Some(16_384),
        None,
        Some(5000),
        ["a", "b", "c"],
    )
    .unwrap();
    let sc = relay_scenario(100.0, 1.0, spec).unwrap();
    for peer in [Peer::Direct, Peer::HaproxyRelay] {
        let r = relay_run(peer, &sc, ServeMode::Echo, &common::unique("rl")).unwrap();
        let g = &r.groups[0];
        let p = g.payload.as_ref().unwrap();
        assert_eq!(g.counts.accepted, 100, "{}: {}", peer.name(), r.summary());
        assert_eq!(p.completed, 100, "{}: {}", peer.name(), r.summary());
        assert_eq!(p.bytes_received, 100 * 16_384);
        assert_eq!(p.transfer_us.0.len(), 100);
    }
}
