//! Independent check of the wire format: every event the driver writes is
//! rebuilt, from its decoded values, with Microsoft's `tracelogging_dynamic`
//! EventBuilder, and the metadata and payload bytes must be identical. (The
//! builder's bytes are read from its Debug output: it has no accessor, and
//! on Linux its `write` is a no-op.)

use etw_manifest::sim::{self, CapturedEvent, Value};
use gate_driver::etw::{self, Provider, RegisterOutcome, SockAddrBuf, SCHEMA};
use tracelogging::{Level, OutType};
use tracelogging_dynamic::EventBuilder;

fn list_after(debug: &str, key: &str) -> Vec<u8> {
    let start = debug
        .find(key)
        .unwrap_or_else(|| panic!("no {key} in {debug}"))
        + key.len();
    let end = start + debug[start..].find(']').unwrap();
    debug[start..end]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect()
}

/// The EventBuilder's (metadata, payload) for the same event and values.
fn rebuild(ev: &CapturedEvent) -> (Vec<u8>, Vec<u8>) {
    let s = SCHEMA.iter().find(|s| s.name == ev.name).unwrap();
    let mut b = EventBuilder::new();
    b.reset(&ev.name, Level::from_int(s.level), s.keyword, 0);
    for (f, sf) in ev.fields.iter().zip(s.fields) {
        let out = OutType::from_int(sf.ty.out_type());
        let n = f.name.as_str();
        match (&f.value, sf.ty.in_type()) {
            (Value::U64(v), 4) => b.add_u8(n, *v as u8, out, 0),
            // A PORT is in network order on the wire: hand the builder the
            // u16 whose little-endian bytes are the big-endian port.
            (Value::U64(v), 6) if sf.ty.out_type() == 7 => {
                b.add_u16(n, (*v as u16).to_be(), out, 0)
            }
            (Value::U64(v), 6) => b.add_u16(n, *v as u16, out, 0),
            (Value::U64(v), 8) => b.add_u32(n, *v as u32, out, 0),
            (Value::U64(v), 10) => b.add_u64(n, *v, out, 0),
            (Value::U64(v), 21) => b.add_hex64(n, *v, out, 0),
            (Value::Bool(v), 13) => b.add_bool32(n, i32::from(*v), out, 0),
            (Value::Bytes(v), 14) => b.add_binary(n, v, out, 0),
            (Value::Str(v), 2) => b.add_cstr8(n, v.as_bytes(), out, 0),
            (v, t) => panic!("{}.{n}: value {v:?} with InType {t} not handled", ev.name),
        };
    }
    let dbg = format!("{b:?}");
    let mut meta = list_after(&dbg, "meta: [");
    // The builder fills in the size when it writes; before that it is 0.
    let size = (meta.len() as u16).to_le_bytes();
    meta[0] = size[0];
    meta[1] = size[1];
    (meta, list_after(&dbg, "data: ["))
}

#[test]
fn every_event_is_byte_identical_to_microsofts_encoder() {
    let p: &'static Provider = Box::leak(Box::new(Provider::new()));
    assert_eq!(p.register(sim::resolve), RegisterOutcome::Registered);
    let remote = SockAddrBuf::from_socket_addr("192.0.2.7:50123".parse().unwrap());
    let local = SockAddrBuf::from_socket_addr("[2001:db8::1]:443".parse().unwrap());
    let (r, l) = (remote.as_bytes(), local.as_bytes());
    let key = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0];
    etw::connection_accepted(p, r, l, 0, 7, 3, 4000, &key, 64);
    etw::connection_rejected(p, r, l, 1, 5, u32::MAX, &key[..4], 32);
    etw::connection_pended(p, r, l, 2, 8, 0, &key, 64, 100, u64::MAX, 1);
    etw::pend_completed(p, r, 1, 99, 1, 2, 0x103);
    etw::connection_aborted(p, 5, 6, false, true, r);
    etw::listener_closed(p, 0, 0, l);
    etw::listener_recreated(p, 1, 100, -1, l);
    etw::listener_up(p, l, 443, 1, 0);
    etw::listener_down(p, l, 8443, 0x120);
    etw::config_loaded(
        p, 80, 1, 1024, 1, 8, 48, 1, 1, 2, 3, 2, true, 4, 5, 6, 7, 8, 9, 10,
    );
    etw::config_rejected(p, "Burst", "", "1..=1000000");
    etw::counters(
        p,
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        8,
        9,
        10,
        11,
        12,
        13,
        14,
        15,
        16,
        17,
        18,
        19,
        20,
        21,
        22,
        23,
        24,
        25,
        26,
        27,
        28,
        29,
        30,
        31,
        32,
        33,
        34,
        35,
        36,
        37,
        38,
        39,
        40,
        41,
        42,
        43,
        44,
        45,
        46,
        47,
        48,
        49,
        50,
        u64::MAX,
    );
    etw::connection_declined(p, r, l, 256, false);
    etw::driver_loaded(p, "9.9.9", 0);
    etw::driver_unloading(p, u64::MAX);
    etw::relay_opened(p, r, l, u32::MAX);
    etw::relay_closed(p, r, l, u64::MAX, 1, 2, 2, 7);
    etw::relay_failed(p, r, &[], -1, 9);
    etw::relay_configured(p, l, 1, 2, 3, 4, 5);
    etw::relay_off(p, "off");
    etw::bans_started(p, u32::MAX, 1, u64::MAX, 0);
    etw::relay_backend_down(p, l, -1, 6);
    etw::relay_backend_up(p, l, u64::MAX, 0);
    etw::config_changed(p, "deny", "0 entries", "3 entries", 77, false);
    etw::control_rejected(
        p,
        "IOCTL_GATE_BAN",
        "target",
        "33",
        "prefix",
        -1073741811,
        0,
    );
    let evs = sim::take_for(p.reg_handle());
    assert_eq!(evs.len(), SCHEMA.len());
    for ev in &evs {
        assert!(ev.error.is_none(), "{ev:?}");
        let (meta, data) = rebuild(ev);
        assert_eq!(
            ev.metadata, meta,
            "{}: metadata differs from tracelogging's",
            ev.name
        );
        assert_eq!(
            ev.payload, data,
            "{}: payload differs from tracelogging's",
            ev.name
        );
    }
    p.unregister();
}
