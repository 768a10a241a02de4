//! The driver's write functions, run against the simulation's ETW: every
//! event is decoded from the real TraceLogging bytes, conforms to the
//! schema and the manifest, and carries the values written. Session
//! filters, disabling and unregistering behave as ETW does.

use std::net::SocketAddr;

use etw_manifest::check_captured;
use etw_manifest::sim::{self, CapturedEvent, Session, Value};
use gate_driver::etw::{self, keyword, Provider, RegisterOutcome, SockAddrBuf, SCHEMA};

fn registered() -> &'static Provider {
    let p: &'static Provider = Box::leak(Box::new(Provider::new()));
    assert_eq!(p.register(sim::resolve), RegisterOutcome::Registered);
    p
}

fn sa(s: &str) -> SockAddrBuf {
    SockAddrBuf::from_socket_addr(s.parse::<SocketAddr>().unwrap())
}

/// Writes one of every event with distinctive values.
fn write_all(p: &Provider) {
    let remote = sa("192.0.2.7:50123");
    let local = sa("[2001:db8::1]:443");
    let key = [192u8, 0, 2, 0];
    etw::connection_accepted(
        p,
        remote.as_bytes(),
        local.as_bytes(),
        0,
        0,
        255,
        1500,
        &key,
        24,
    );
    etw::connection_rejected(p, remote.as_bytes(), local.as_bytes(), 1, 3, 0, &key, 24);
    etw::connection_pended(
        p,
        remote.as_bytes(),
        local.as_bytes(),
        2,
        8,
        0,
        &key,
        24,
        250,
        0xffff_8000_1234_5678,
        77,
    );
    etw::pend_completed(p, remote.as_bytes(), 0, 251, 0xffff_8000_1234_5678, 77, 0);
    etw::connection_aborted(p, 0xffff_8000_1234_5678, 77, true, true, &[]);
    etw::listener_closed(p, 1, 0xC000_00B6u32 as i32, local.as_bytes());
    etw::listener_recreated(p, 3, 400, 0, local.as_bytes());
    etw::listener_up(p, local.as_bytes(), 443, 0, 0);
    etw::listener_down(p, local.as_bytes(), 443, 0);
    etw::config_loaded(
        p, 443, 0, 65536, 64, 32, 64, 10_000, 20, 0, 1000, 0, false, 0, 10_000, 60_000, 0, 500, 2,
        1,
    );
    etw::config_rejected(p, "RateMilli", "0", "1..=10000000000");
    etw::counters(
        p, 1000, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
        24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46,
        47, 48, 49, 50,
    );
    etw::connection_declined(p, remote.as_bytes(), local.as_bytes(), 256, false);
    etw::driver_loaded(p, "0.1.0", 1);
    etw::driver_unloading(p, 123_456);
    let client = SockAddrBuf::from_socket_addr("192.0.2.7:50123".parse().unwrap());
    let backend = SockAddrBuf::from_socket_addr("[2001:db8::9]:9000".parse().unwrap());
    etw::relay_opened(p, client.as_bytes(), backend.as_bytes(), 3);
    etw::relay_closed(p, client.as_bytes(), backend.as_bytes(), 10, 20, 30, 1, 0);
    etw::relay_failed(
        p,
        client.as_bytes(),
        backend.as_bytes(),
        0xC000_0236_u32 as i32,
        5,
    );
    etw::relay_configured(p, backend.as_bytes(), 2, 1024, 16384, 5000, 300_000);
    etw::relay_off(p, "no BackendAddress");
    etw::bans_started(p, 10_000, 3, 7, 1234);
    etw::relay_backend_down(p, backend.as_bytes(), 0xC000_0236_u32 as i32, 5);
    etw::relay_backend_up(p, backend.as_bytes(), 4321, 17);
    etw::config_changed(p, "burst", "20", "40", 4242, true);
    etw::control_rejected(
        p,
        "IOCTL_GATE_SET",
        "rate_milli",
        "0",
        "1 to 10000000000 milli-connections per second",
        0xC000_000Du32 as i32,
        4242,
    );
}

fn by_name<'a>(evs: &'a [CapturedEvent], name: &str) -> &'a CapturedEvent {
    evs.iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no {name} event captured"))
}

#[test]
fn every_event_decodes_and_conforms() {
    let p = registered();
    write_all(p);
    let evs = sim::take_for(p.reg_handle());
    assert_eq!(evs.len(), SCHEMA.len());
    etw_manifest::check_all(&evs).unwrap();
    for s in SCHEMA {
        by_name(&evs, s.name);
    }
    assert_eq!(p.unregister(), 0);
}

#[test]
fn values_round_trip() {
    let p = registered();
    write_all(p);
    let evs = sim::take_for(p.reg_handle());

    let rej = by_name(&evs, "ConnectionRejected");
    assert_eq!(
        rej.field("RemoteAddress").unwrap().as_socket_addr(),
        Some("192.0.2.7:50123".parse().unwrap())
    );
    assert_eq!(
        rej.field("LocalAddress").unwrap().as_socket_addr(),
        Some("[2001:db8::1]:443".parse().unwrap())
    );
    assert_eq!(rej.u64("Reason"), Some(3));
    assert_eq!(rej.value("Key"), Some(&Value::Bytes(vec![192, 0, 2, 0])));
    assert_eq!(rej.u64("KeyPrefixLength"), Some(24));

    let pend = by_name(&evs, "ConnectionPended");
    assert_eq!(pend.u64("InspectKey"), Some(0xffff_8000_1234_5678));
    assert_eq!(pend.u64("InspectSerial"), Some(77));
    assert_eq!(pend.u64("DelayMs"), Some(250));

    let abort = by_name(&evs, "ConnectionAborted");
    assert_eq!(abort.value("WasPended"), Some(&Value::Bool(true)));
    assert_eq!(abort.value("RemoteAddress"), Some(&Value::Bytes(vec![])));

    let closed = by_name(&evs, "ListenerClosed");
    assert_eq!(closed.u64("Status"), Some(0xC000_00B6));

    let up = by_name(&evs, "ListenerUp");
    assert_eq!(
        up.u64("Port"),
        Some(443),
        "PORT is decoded from network order"
    );

    let cfg = by_name(&evs, "ConfigRejected");
    assert_eq!(
        cfg.value("ValueName"),
        Some(&Value::Str("RateMilli".into()))
    );
    assert_eq!(
        cfg.value("Reason"),
        Some(&Value::Str("1..=10000000000".into()))
    );

    let c = by_name(&evs, "Counters");
    let counts: Vec<u64> = c
        .fields
        .iter()
        .skip(1)
        .map(|f| f.as_u64().unwrap())
        .collect();
    assert_eq!(counts, (1..=50).collect::<Vec<u64>>());
    // Version 2 carries the relay's figures last (RelayCounters, id 23, is
    // retired); version 3 adds GracefulClosesAborted after ClosedSockets;
    // version 4 ManualBan after PendBudgetSpent (manual bans apart from
    // automatic ones, review 13b item 6); version 5 the relay's abandoned
    // counts last (review 10 item 8).
    assert_eq!(c.u64("PendBudgetSpent"), Some(10));
    assert_eq!(c.u64("ManualBan"), Some(11));
    assert_eq!(c.u64("ClosedSockets"), Some(34));
    assert_eq!(c.u64("GracefulClosesAborted"), Some(35));
    assert_eq!(c.u64("PendingInUse"), Some(36));
    assert_eq!(c.u64("RelaysActive"), Some(37));
    assert_eq!(c.u64("RelayBytesToClient"), Some(48));
    assert_eq!(c.u64("RelaysAbandoned"), Some(49));
    assert_eq!(c.u64("RelaysAbandonedFreed"), Some(50));
    assert!(!evs.iter().any(|e| e.name == "RelayCounters"));

    assert_eq!(
        by_name(&evs, "DriverLoaded").value("Version"),
        Some(&Value::Str("0.1.0".into()))
    );
    assert_eq!(
        by_name(&evs, "DriverUnloading").u64("UptimeMs"),
        Some(123_456)
    );
    p.unregister();
}

#[test]
fn provider_traits_are_set_at_registration() {
    let p = registered();
    assert_eq!(
        sim::provider_name(p.reg_handle()).as_deref(),
        Some("TcpFrontGate")
    );
    assert_eq!(p.traits_status(), Some(0));
    p.unregister();
}

#[test]
fn light_session_takes_rejects_and_counters_but_not_accepts_or_pends() {
    let p = registered();
    assert!(sim::set_session(
        p.reg_handle(),
        Session {
            level: 4,
            any: keyword::LIGHT,
            all: 0
        }
    ));
    assert!(!p.enabled(5, keyword::ACCEPT));
    assert!(p.enabled(4, keyword::REJECT));
    write_all(p);
    let names: Vec<String> = sim::take_for(p.reg_handle())
        .into_iter()
        .map(|e| e.name)
        .collect();
    for absent in ["ConnectionAccepted", "ConnectionPended", "PendCompleted"] {
        assert!(
            !names.iter().any(|n| n == absent),
            "{absent} in a Light session: {names:?}"
        );
    }
    for present in [
        "ConnectionRejected",
        "ConnectionAborted",
        "ListenerClosed",
        "Counters",
        "ConfigRejected",
    ] {
        assert!(
            names.iter().any(|n| n == present),
            "{present} missing: {names:?}"
        );
    }
    p.unregister();
}

#[test]
fn disabled_provider_writes_nothing_and_reenabling_works() {
    let p = registered();
    assert!(sim::disable(p.reg_handle()));
    assert!(!p.enabled(1, keyword::REJECT));
    write_all(p);
    assert!(sim::take_for(p.reg_handle()).is_empty());
    assert!(sim::set_session(p.reg_handle(), Session::ALL));
    etw::driver_unloading(p, 1);
    assert_eq!(sim::take_for(p.reg_handle()).len(), 1);
    p.unregister();
}

#[test]
fn unregister_stops_writes_and_allows_registering_again() {
    let p = registered();
    let h = p.reg_handle();
    assert_eq!(p.unregister(), 0);
    assert!(!sim::is_registered(h));
    assert!(!p.is_registered());
    write_all(p);
    assert!(sim::take_for(h).is_empty());
    assert_eq!(p.unregister(), 0, "second unregister is a no-op");
    assert_eq!(p.register(sim::resolve), RegisterOutcome::Registered);
    assert_eq!(p.register(sim::resolve), RegisterOutcome::AlreadyRegistered);
    p.unregister();
}

#[test]
fn decision_helper_picks_the_event_of_the_action() {
    use gate_core::{Config, Gate, TICKS_PER_SEC};
    let p = registered();
    let cfg = Config {
        rate_milli: 1000,
        burst: 1,
        ..Config::default()
    };
    let gate: Gate = Gate::new(&cfg, [1, 2]).unwrap();
    let remote_ip = "198.51.100.9".parse().unwrap();
    let local_ip = "192.0.2.1".parse().unwrap();
    let remote = SockAddrBuf::from_ip(remote_ip, 40000);
    let local = SockAddrBuf::from_ip(local_ip, 443);
    let t = 10 * TICKS_PER_SEC;
    for _ in 0..2 {
        let d = gate.decide(remote_ip, local_ip, t);
        etw::decision(p, remote.as_bytes(), local.as_bytes(), &d, (0, 0, 0));
    }
    let stats = gate_driver::state::StatsSnapshot {
        accept_queue_full: 7,
        ..Default::default()
    };
    let relay = gate_driver::relay::RelaySnapshot {
        active: 2,
        opened: 5,
        closed: 3,
        failed: 1,
        refused_at_limit: 1,
        bytes_to_backend: 4096,
        bytes_to_client: 8192,
        abandoned: 2,
        abandoned_freed: 1,
        ..Default::default()
    };
    etw::counters_from(p, 1000, &gate.counters(), 1, 65536, &stats, 3, &relay);
    etw::config_loaded_from(p, 443, etw::ListenerMode::ConditionalAccept, &cfg);
    let evs = sim::take_for(p.reg_handle());
    for e in &evs {
        check_captured(e).unwrap();
    }
    let names: Vec<&str> = evs.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ConnectionAccepted",
            "ConnectionRejected",
            "Counters",
            "ConfigLoaded"
        ]
    );
    assert_eq!(
        evs[1].u64("Reason"),
        Some(gate_core::Reason::RateExceeded as u64)
    );
    assert_eq!(
        evs[1].value("Key"),
        Some(&Value::Bytes(vec![198, 51, 100, 9]))
    );
    assert_eq!(evs[2].u64("WithinRate"), Some(1));
    assert_eq!(evs[2].u64("RateExceeded"), Some(1));
    assert_eq!(evs[2].u64("PendingInUse"), Some(3));
    assert_eq!(
        [
            "RelaysActive",
            "RelaysOpened",
            "RelaysClosed",
            "RelaysFailed",
            "RelaysRefusedAtLimit",
            "RelaysNoMemory",
            "RelayBytesToBackend",
            "RelayBytesToClient",
            "RelaysAbandoned",
            "RelaysAbandonedFreed"
        ]
        .map(|f| evs[2].u64(f)),
        [2, 5, 3, 1, 1, 0, 4096, 8192, 2, 1].map(Some)
    );
    assert_eq!(evs[3].u64("RateMilli"), Some(1000));
    p.unregister();
}

/// What the Event Log service's session for a channel gets: it enables the
/// provider with that channel's keyword bit only, so it must receive
/// exactly the events declared on that channel (and nothing per
/// connection), each carrying the channel's value.
#[test]
fn an_event_log_channel_session_gets_exactly_its_channel_events() {
    use gate_driver::etw::channel;
    for (chid, _, _, value, bit) in channel::CHANNELS {
        let p = registered();
        assert!(sim::set_session(
            p.reg_handle(),
            Session {
                level: 0,
                any: *bit,
                all: 0
            }
        ));
        write_all(p);
        let got = sim::take_for(p.reg_handle());
        let mut names: Vec<&str> = got.iter().map(|e| e.name.as_str()).collect();
        names.sort();
        names.dedup();
        let mut want: Vec<&str> = SCHEMA
            .iter()
            .filter(|s| s.channel == *value)
            .map(|s| s.name)
            .collect();
        want.sort();
        assert!(!want.is_empty(), "no events on {chid}");
        assert_eq!(names, want, "channel {chid}");
        for e in &got {
            assert_eq!(e.channel, *value, "{} on {chid}", e.name);
            check_captured(e).unwrap();
        }
        p.unregister();
    }
}
