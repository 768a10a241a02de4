//! Cost of the driver's event writes, without ETW itself: a stub
//! EtwWriteTransfer that only reads the descriptors. Compares a write no
//! session wants (the check only) with one that is built and handed over.
//!
//! `cargo bench -p etw-manifest --bench write`

use std::ffi::c_void;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use gate_driver::etw::{self, keyword, Provider, RegisterOutcome, SockAddrBuf};
use gate_ksys::etw::{EVENT_DATA_DESCRIPTOR, EVENT_DESCRIPTOR, PETWENABLECALLBACK, REGHANDLE};
use gate_ksys::types::GUID;

unsafe extern "system" fn stub_register(
    _id: *const GUID,
    cb: PETWENABLECALLBACK,
    ctx: *mut c_void,
    handle: *mut REGHANDLE,
) -> i32 {
    // SAFETY: the provider passes a writable handle slot.
    unsafe { *handle = 1 };
    if let Some(cb) = cb {
        // SAFETY: the provider's own callback and context.
        unsafe {
            cb(
                std::ptr::null(),
                1,
                5,
                keyword::ALL,
                0,
                std::ptr::null(),
                ctx,
            )
        };
    }
    0
}

unsafe extern "system" fn stub_unregister(_h: REGHANDLE) -> i32 {
    0
}

unsafe extern "system" fn stub_write(
    _h: REGHANDLE,
    d: *const EVENT_DESCRIPTOR,
    _a: *const GUID,
    _r: *const GUID,
    n: u32,
    data: *const EVENT_DATA_DESCRIPTOR,
) -> i32 {
    // SAFETY: the provider passes `n` descriptors and a descriptor.
    let total: u64 = unsafe { std::slice::from_raw_parts(data, n as usize) }
        .iter()
        .map(|x| u64::from(x.Size))
        .sum();
    // SAFETY: valid descriptor pointer.
    black_box((unsafe { (*d).Id }, total));
    0
}

fn resolve(name: &[u16]) -> *mut c_void {
    match String::from_utf16_lossy(name).as_str() {
        "EtwRegister" => stub_register as *mut c_void,
        "EtwUnregister" => stub_unregister as *mut c_void,
        "EtwWriteTransfer" => stub_write as *mut c_void,
        _ => std::ptr::null_mut(),
    }
}

fn bench(c: &mut Criterion) {
    let p: &'static Provider = Box::leak(Box::new(Provider::new()));
    assert_eq!(p.register(resolve), RegisterOutcome::Registered);
    let off: &'static Provider = Box::leak(Box::new(Provider::new()));
    let remote = SockAddrBuf::from_socket_addr("192.0.2.7:50123".parse().unwrap());
    let local = SockAddrBuf::from_socket_addr("[2001:db8::1]:443".parse().unwrap());
    let key = [192u8, 0, 2, 0];
    let mut g = c.benchmark_group("connection_rejected");
    g.bench_function("no_session", |b| {
        b.iter(|| {
            etw::connection_rejected(
                black_box(off),
                remote.as_bytes(),
                local.as_bytes(),
                1,
                3,
                0,
                &key,
                24,
            )
        })
    });
    g.bench_function("enabled_stub_etw", |b| {
        b.iter(|| {
            etw::connection_rejected(
                black_box(p),
                remote.as_bytes(),
                local.as_bytes(),
                1,
                3,
                0,
                &key,
                24,
            )
        })
    });
    g.finish();
    c.bench_function("counters/enabled_stub_etw", |b| {
        b.iter(|| {
            etw::counters(
                black_box(p),
                1000,
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
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
