//! The simulation's decoder and `check_captured` reject what a real
//! decoder would choke on or what the schema does not allow.

use std::ffi::c_void;

use etw_manifest::check_captured;
use etw_manifest::sim::{self, CapturedEvent};
use gate_driver::etw::{
    self, Provider, RegisterOutcome, SockAddrBuf, PROVIDER_GUID, PROVIDER_TRAITS,
};
use gate_ksys::etw::{EventProviderSetTraits, EVENT_DATA_DESCRIPTOR, EVENT_DESCRIPTOR, REGHANDLE};

fn dd(bytes: &[u8], ty: u8) -> EVENT_DATA_DESCRIPTOR {
    EVENT_DATA_DESCRIPTOR {
        Ptr: bytes.as_ptr() as u64,
        Size: bytes.len() as u32,
        Type: ty,
        Reserved1: 0,
        Reserved2: 0,
    }
}

fn unregister(h: REGHANDLE) {
    // SAFETY: the handle is a plain value; EtwUnregister reads nothing else.
    assert_eq!(unsafe { sim::EtwUnregister(h) }, 0);
}

fn raw_register(set_traits: bool) -> REGHANDLE {
    let mut h = 0;
    // SAFETY: valid GUID and handle pointers; no callback.
    let st = unsafe { sim::EtwRegister(&PROVIDER_GUID, None, std::ptr::null_mut(), &mut h) };
    assert_eq!(st, 0);
    if set_traits {
        // SAFETY: the traits blob is valid for its length.
        let st = unsafe {
            sim::EtwSetInformation(
                h,
                EventProviderSetTraits,
                PROVIDER_TRAITS.as_ptr().cast::<c_void>(),
                PROVIDER_TRAITS.len() as u32,
            )
        };
        assert_eq!(st, 0);
    }
    h
}

/// Writes a hand-made event "ConnectionAborted"-like descriptor with the
/// given metadata and payload blocks; returns the captured event.
fn write_raw(h: REGHANDLE, meta: &[u8], payload: &[&[u8]]) -> CapturedEvent {
    // DriverLoaded's descriptor: also on the Operational Event Log channel
    // (17), with that channel's keyword bit.
    let desc = EVENT_DESCRIPTOR {
        Id: 13,
        Version: 0,
        Channel: 17,
        Level: 4,
        Opcode: 1,
        Task: 7,
        Keyword: 0x4000_0000_0000_0080,
    };
    write_raw_with(h, desc, meta, payload)
}

fn write_raw_with(
    h: REGHANDLE,
    desc: EVENT_DESCRIPTOR,
    meta: &[u8],
    payload: &[&[u8]],
) -> CapturedEvent {
    let mut d = vec![dd(&PROVIDER_TRAITS, 2), dd(meta, 1)];
    d.extend(payload.iter().map(|p| dd(p, 0)));
    // SAFETY: every descriptor points to live bytes of its size.
    let st = unsafe {
        sim::EtwWriteTransfer(
            h,
            &desc,
            std::ptr::null(),
            std::ptr::null(),
            d.len() as u32,
            d.as_ptr(),
        )
    };
    assert_eq!(st, 0);
    let mut evs = sim::take_for(h);
    assert_eq!(evs.len(), 1);
    evs.remove(0)
}

/// Metadata for "DriverLoaded" (Version: ANSISTRING, Mode: UINT8).
fn driver_loaded_meta(size_fix: i32) -> Vec<u8> {
    let mut m = vec![0u8, 0, 0];
    m.extend_from_slice(b"DriverLoaded\0Version\0");
    m.push(2);
    m.extend_from_slice(b"Mode\0");
    m.push(4);
    let n = (m.len() as i32 + size_fix) as u16;
    m[..2].copy_from_slice(&n.to_le_bytes());
    m
}

#[test]
fn a_hand_made_event_matching_the_schema_passes() {
    let h = raw_register(true);
    let ev = write_raw(h, &driver_loaded_meta(0), &[b"1.2.3\0", &[1]]);
    check_captured(&ev).unwrap();
    unregister(h);
}

#[test]
fn without_provider_traits_descriptor_types_are_not_honoured() {
    let h = raw_register(false);
    let ev = write_raw(h, &driver_loaded_meta(0), &[b"1.2.3\0", &[1]]);
    assert!(
        ev.error
            .as_deref()
            .unwrap()
            .contains("traits were never set"),
        "{ev:?}"
    );
    assert!(check_captured(&ev).is_err());
    unregister(h);
}

#[test]
fn bad_metadata_size_short_payload_and_leftovers_are_errors() {
    let h = raw_register(true);
    let ev = write_raw(h, &driver_loaded_meta(1), &[b"1.2.3\0", &[1]]);
    assert!(ev.error.as_deref().unwrap().contains("size"), "{ev:?}");
    let ev = write_raw(h, &driver_loaded_meta(0), &[b"1.2.3\0"]);
    assert!(ev.error.as_deref().unwrap().contains("Mode"), "{ev:?}");
    let ev = write_raw(h, &driver_loaded_meta(0), &[b"1.2.3\0", &[1, 9]]);
    assert!(ev.error.as_deref().unwrap().contains("left"), "{ev:?}");
    let ev = write_raw(h, &driver_loaded_meta(0), &[b"1.2.3", &[1]]);
    assert!(
        ev.error.is_some(),
        "string without NUL must not decode: {ev:?}"
    );
    unregister(h);
}

#[test]
fn schema_mismatches_are_reported_by_check_captured() {
    let h = raw_register(true);
    // Mode as UINT16 instead of UINT8.
    let mut m = driver_loaded_meta(0);
    *m.last_mut().unwrap() = 6;
    let ev = write_raw(h, &m, &[b"1.2.3\0", &[1, 0]]);
    assert!(ev.error.is_none());
    let err = check_captured(&ev).unwrap_err();
    assert!(err.contains("Mode"), "{err}");
    // The right event on the wrong channel (TraceLogging only), and
    // without its channel's keyword bit.
    let mut desc = gate_driver::etw::def::DriverLoaded::DESCRIPTOR;
    desc.Channel = 11;
    let ev = write_raw_with(h, desc, &driver_loaded_meta(0), &[b"1.2.3\0", &[1]]);
    let err = check_captured(&ev).unwrap_err();
    assert!(err.contains("channel 11, the schema says 17"), "{err}");
    let mut desc = gate_driver::etw::def::DriverLoaded::DESCRIPTOR;
    desc.Keyword = 0x80;
    let ev = write_raw_with(h, desc, &driver_loaded_meta(0), &[b"1.2.3\0", &[1]]);
    let err = check_captured(&ev).unwrap_err();
    assert!(err.contains("descriptor"), "{err}");
    // Mode value outside ListenerModeMap.
    let ev = write_raw(h, &driver_loaded_meta(0), &[b"1.2.3\0", &[7]]);
    let err = check_captured(&ev).unwrap_err();
    assert!(err.contains("not in value map ListenerModeMap"), "{err}");
    unregister(h);
}

#[test]
fn bad_values_from_the_write_functions_are_reported() {
    let p: &'static Provider = Box::leak(Box::new(Provider::new()));
    assert_eq!(p.register(sim::resolve), RegisterOutcome::Registered);
    let local = SockAddrBuf::v4([127, 0, 0, 1], 443);
    // A reason no map knows.
    etw::connection_rejected(
        p,
        local.as_bytes(),
        local.as_bytes(),
        1,
        200,
        0,
        &[127, 0, 0, 1],
        32,
    );
    // A SOCKADDR that is not one.
    etw::connection_rejected(
        p,
        &[1, 2, 3],
        local.as_bytes(),
        1,
        3,
        0,
        &[127, 0, 0, 1],
        32,
    );
    let evs = sim::take_for(p.reg_handle());
    assert_eq!(evs.len(), 2);
    let e0 = check_captured(&evs[0]).unwrap_err();
    assert!(
        e0.contains("value 200 is not in value map ReasonMap"),
        "{e0}"
    );
    let e1 = check_captured(&evs[1]).unwrap_err();
    assert!(
        e1.contains("RemoteAddress") && e1.contains("SOCKADDR"),
        "{e1}"
    );
    p.unregister();
}
