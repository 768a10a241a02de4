//! Pool accounting and misuse, registry reads (partial information and its
//! size statuses), MmGetSystemRoutineAddress and its switches, interrupt
//! time, debug output and bugchecks.

use gate_ksys::*;
use gate_usersim::*;
use std::ffi::c_void;

const TAG_A: u32 = u32::from_le_bytes(*b"GatA");
const TAG_B: u32 = u32::from_le_bytes(*b"GatB");

fn us(s: &str) -> (Vec<u16>, UNICODE_STRING) {
    let mut v: Vec<u16> = s.encode_utf16().collect();
    let u = UNICODE_STRING {
        Length: (v.len() * 2) as u16,
        MaximumLength: (v.len() * 2) as u16,
        Buffer: v.as_mut_ptr(),
    };
    (v, u)
}

fn resolve(name: &str) -> *mut c_void {
    let (_v, mut u) = us(name);
    // SAFETY: a valid UNICODE_STRING kept alive by `_v`.
    unsafe { MmGetSystemRoutineAddress(&mut u) }
}

#[test]
fn pool_accounts_by_tag_and_detects_misuse() {
    let sim = Sim::new();
    // SAFETY: plain pool use, with deliberate misuse the sim records.
    unsafe {
        let a = ExAllocatePoolWithTag(NonPagedPoolNx, 100, TAG_A);
        let b = ExAllocatePoolWithTag(NonPagedPoolNx, 28, TAG_A);
        let c = ExAllocatePoolWithTag(NonPagedPoolNx, 7, TAG_B);
        assert_eq!(a as usize % 16, 0, "16-byte aligned");
        assert_eq!(*a.cast::<u8>(), 0xCD, "not zeroed");
        let st = sim.pool_stats();
        assert_eq!(st.outstanding.len(), 2);
        assert_eq!(
            (
                st.outstanding[0].tag.as_str(),
                st.outstanding[0].count,
                st.outstanding[0].bytes
            ),
            ("GatA", 2, 128)
        );
        assert_eq!(
            (
                st.outstanding[1].tag.as_str(),
                st.outstanding[1].count,
                st.outstanding[1].bytes
            ),
            ("GatB", 1, 7)
        );
        sim.assert_no_violations();
        ExFreePoolWithTag(a, TAG_A);
        ExFreePoolWithTag(a, TAG_A); // double
        ExFreePoolWithTag(b, TAG_B); // wrong tag (still freed)
        let mut local = 0u64;
        ExFreePoolWithTag((&mut local as *mut u64).cast(), TAG_A); // not pool
        ExAllocatePoolWithTag(NonPagedPoolNx, 1, 0); // tag 0 (leaked on purpose)
        ExFreePoolWithTag(c, TAG_B);
    }
    let kinds: Vec<ViolationKind> = sim.violations().iter().map(|v| v.kind).collect();
    assert_eq!(
        kinds,
        vec![
            ViolationKind::DoubleFree,
            ViolationKind::FreeWrongTag,
            ViolationKind::FreeUnknownPointer,
            ViolationKind::BadPoolCall
        ]
    );
    assert_eq!(
        sim.pool_stats().outstanding.len(),
        1,
        "only the tag-0 block is left"
    );
}

#[test]
fn pool2_zeroes_can_be_hidden_and_failures_injected() {
    let sim = Sim::new();
    let p2 = resolve("ExAllocatePool2");
    assert!(!p2.is_null());
    // SAFETY: the resolved address is ExAllocatePool2.
    let alloc2: PFN_ExAllocatePool2 =
        unsafe { std::mem::transmute::<*mut c_void, PFN_ExAllocatePool2>(p2) };
    // SAFETY: plain allocation.
    unsafe {
        let p = alloc2(POOL_FLAG_NON_PAGED, 64, TAG_A);
        assert!(std::slice::from_raw_parts(p.cast::<u8>(), 64)
            .iter()
            .all(|&b| b == 0));
        ExFreePoolWithTag(p, TAG_A);
        assert!(alloc2(0, 8, TAG_A).is_null(), "no pool type in the flags");
    }
    assert_eq!(sim.violations()[0].kind, ViolationKind::BadPoolCall);
    sim.hide_routine("ExAllocatePool2", true);
    assert!(
        resolve("ExAllocatePool2").is_null(),
        "as on Wine or before Windows 10 2004"
    );
    sim.inject_pool_failures(1, 2);
    // SAFETY: plain allocation.
    unsafe {
        let ok = ExAllocatePoolWithTag(NonPagedPoolNx, 8, TAG_B);
        assert!(!ok.is_null());
        assert!(ExAllocatePoolWithTag(NonPagedPoolNx, 8, TAG_B).is_null());
        assert!(ExAllocatePoolWithTag(NonPagedPoolNx, 8, TAG_B).is_null());
        let again = ExAllocatePoolWithTag(NonPagedPoolNx, 8, TAG_B);
        assert!(!again.is_null());
        ExFreePoolWithTag(ok, TAG_B);
        ExFreePoolWithTag(again, TAG_B);
    }
    assert_eq!(sim.pool_stats().injected_failures, 2);
}

/// A thread's allocation plan (`fault`) counts what driver code on that
/// thread allocates, pool, IRP and global allocator alike, fails the k-th,
/// and leaves other threads, test code and the global sequence alone.
#[test]
fn a_thread_plan_fails_the_kth_driver_allocation_of_any_allocator() {
    let sim = Sim::new();
    sim.arm_thread_allocations(3);
    // SAFETY: plain allocation and IRP use.
    unsafe {
        // Test code: not counted.
        let t = ExAllocatePoolWithTag(NonPagedPoolNx, 8, TAG_A);
        assert!(!t.is_null());
        assert!(!gate_usersim::fault::global_alloc_fails());
        let d = gate_usersim::fault::driver();
        assert!(gate_usersim::fault::in_driver_code());
        let a = ExAllocatePoolWithTag(NonPagedPoolNx, 8, TAG_A); // 1
        assert!(!a.is_null());
        assert!(!gate_usersim::fault::global_alloc_fails()); // 2
        assert!(IoAllocateIrp(1, 0).is_null(), "the 3rd fails"); // 3
                                                                 // Another thread (the worker, a DPC) has no plan.
        std::thread::scope(|s| {
            s.spawn(|| {
                let _d = gate_usersim::fault::driver();
                assert!(!gate_usersim::fault::global_alloc_fails());
            });
        });
        let irp = IoAllocateIrp(1, 0); // 4
        assert!(!irp.is_null());
        // Global blocks as a test allocator reports them: tracked when
        // driver code allocates, untracked when freed by any code.
        gate_usersim::fault::global_allocated(0x1000 as *mut u8, 8);
        gate_usersim::fault::global_allocated(0x2000 as *mut u8, 16);
        gate_usersim::fault::global_reallocated(0x2000 as *mut u8, 16, 0x3000 as *mut u8, 32);
        drop(d);
        gate_usersim::fault::global_freed(0x1000 as *mut u8);
        // Test code's blocks are not tracked.
        gate_usersim::fault::global_allocated(0x4000 as *mut u8, 64);
        assert!(!gate_usersim::fault::in_driver_code());
        IoFreeIrp(irp);
        ExFreePoolWithTag(a, TAG_A);
        ExFreePoolWithTag(t, TAG_A);
    }
    let c = sim.disarm_thread_allocations();
    assert_eq!((c.allocations, c.failed, c.kept_bytes), (4, 1, 32));
    assert_eq!(
        sim.pool_stats().injected_failures,
        0,
        "global sequence untouched"
    );
    sim.leaks().assert_clean();
    sim.assert_no_violations();
}

#[test]
fn interrupt_time_routines_follow_the_clock_and_can_be_hidden() {
    let sim = Sim::new();
    let q = resolve("KeQueryInterruptTimePrecise");
    let u = resolve("KeQueryUnbiasedInterruptTime");
    assert!(!q.is_null() && !u.is_null() && !resolve("KeQueryInterruptTime").is_null());
    // SAFETY: resolved addresses of the named routines.
    let (precise, unbiased) = unsafe {
        (
            std::mem::transmute::<*mut c_void, PFN_KeQueryInterruptTimePrecise>(q),
            std::mem::transmute::<*mut c_void, PFN_KeQueryInterruptTime>(u),
        )
    };
    let mut qpc = 0u64;
    // SAFETY: valid out pointer.
    let t0 = unsafe { precise(&mut qpc) };
    assert_eq!(t0, clock::VIRTUAL_START);
    assert_eq!(qpc, t0);
    sim.advance(1_500_000_000); // 1.5 s
                                // SAFETY: no arguments.
    assert_eq!(unsafe { unbiased() }, t0 + 15_000_000);
    sim.hide_routine("KeQueryInterruptTimePrecise", true);
    assert!(resolve("KeQueryInterruptTimePrecise").is_null());
    assert!(resolve("NoSuchRoutine").is_null());
}

const KEY: &str = r"\Registry\Machine\System\CurrentControlSet\Services\gate\Parameters";

fn open(path: &str, root: HANDLE) -> Result<HANDLE, NTSTATUS> {
    let (_v, mut name) = us(path);
    let mut oa = OBJECT_ATTRIBUTES {
        Length: size_of::<OBJECT_ATTRIBUTES>() as u32,
        RootDirectory: root,
        ObjectName: &mut name,
        Attributes: OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE,
        SecurityDescriptor: std::ptr::null_mut(),
        SecurityQualityOfService: std::ptr::null_mut(),
    };
    let mut h: HANDLE = std::ptr::null_mut();
    // SAFETY: valid attributes and out pointer.
    let st = unsafe { ZwOpenKey(&mut h, KEY_READ, &mut oa) };
    if st == STATUS_SUCCESS {
        Ok(h)
    } else {
        Err(st)
    }
}

fn query(h: HANDLE, name: &str, len: usize) -> (NTSTATUS, u32, Vec<u8>) {
    let (_v, mut n) = us(name);
    let mut buf = vec![0xEEu8; len];
    let mut result = 0u32;
    // SAFETY: buffer of `len` bytes, valid handle and name.
    let st = unsafe {
        ZwQueryValueKey(
            h,
            &mut n,
            KeyValuePartialInformation,
            buf.as_mut_ptr().cast(),
            len as u32,
            &mut result,
        )
    };
    (st, result, buf)
}

#[test]
fn registry_partial_information_and_size_statuses() {
    let sim = Sim::new();
    sim.registry_set(KEY, "Port", RegValue::Dword(8080));
    sim.registry_set(KEY, "Name", RegValue::Sz("ab".into()));
    assert_eq!(
        open(r"\Registry\Machine\System\Nope", std::ptr::null_mut()),
        Err(STATUS_OBJECT_NAME_NOT_FOUND)
    );
    let h = open(&KEY.to_uppercase(), std::ptr::null_mut()).expect("case-insensitive open");
    let (st, len, buf) = query(h, "port", 64);
    assert_eq!((st, len), (STATUS_SUCCESS, 16));
    assert_eq!(&buf[4..8], &REG_DWORD.to_le_bytes());
    assert_eq!(&buf[8..12], &4u32.to_le_bytes());
    assert_eq!(&buf[12..16], &8080u32.to_le_bytes());
    let (st, len, buf) = query(h, "Port", 8);
    assert_eq!((st, len), (STATUS_BUFFER_TOO_SMALL, 16));
    assert!(buf.iter().all(|&b| b == 0xEE), "nothing written");
    let (st, len, buf) = query(h, "Port", 14);
    assert_eq!((st, len), (STATUS_BUFFER_OVERFLOW, 16));
    assert_eq!(&buf[8..12], &4u32.to_le_bytes(), "header filled");
    assert_eq!(&buf[12..14], &[0xEE, 0xEE], "data not copied");
    let (st, len, buf) = query(h, "Name", 64);
    assert_eq!((st, len), (STATUS_SUCCESS, 12 + 6));
    assert_eq!(&buf[12..18], &[b'a', 0, b'b', 0, 0, 0]);
    assert_eq!(query(h, "Missing", 64).0, STATUS_OBJECT_NAME_NOT_FOUND);
    // Relative open from the parent.
    let parent = open(
        r"\Registry\Machine\System\CurrentControlSet\Services\gate",
        std::ptr::null_mut(),
    );
    assert!(parent.is_err(), "keys exist only when created");
    sim.registry_create_key(r"\Registry\Machine\System\CurrentControlSet\Services\gate");
    let parent = open(
        r"\Registry\Machine\System\CurrentControlSet\Services\gate",
        std::ptr::null_mut(),
    )
    .unwrap();
    let child = open("Parameters", parent).unwrap();
    assert_eq!(query(child, "Port", 64).1, 16);
    // SAFETY: open handles.
    unsafe {
        assert_eq!(ZwClose(child), STATUS_SUCCESS);
        assert_eq!(ZwClose(parent), STATUS_SUCCESS);
        assert_eq!(ZwClose(h), STATUS_SUCCESS);
    }
    assert_eq!(sim.object_stats().handles_open, 0);
    sim.assert_no_violations();
    // At DISPATCH_LEVEL: recorded.
    let h = open(KEY, std::ptr::null_mut()).unwrap();
    let mut lock: KSPIN_LOCK = 0;
    // SAFETY: local lock around a registry read (a violation on purpose).
    unsafe {
        let old = KeAcquireSpinLockRaiseToDpc(&mut lock);
        query(h, "Port", 64);
        KeReleaseSpinLock(&mut lock, old);
        ZwClose(h);
    }
    assert_eq!(sim.violations()[0].kind, ViolationKind::IrqlTooHigh);
}

#[test]
fn debug_output_is_captured() {
    let sim = Sim::new();
    // SAFETY: NUL-terminated strings.
    unsafe {
        DbgPrintEx(
            DPFLTR_IHVDRIVER_ID,
            DPFLTR_INFO_LEVEL,
            c"%s".as_ptr().cast(),
            c"gate: hello\n".as_ptr().cast(),
        );
    }
    let out = sim.debug_output();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].text, "gate: hello");
    assert_eq!(
        (out[0].component, out[0].level),
        (DPFLTR_IHVDRIVER_ID, DPFLTR_INFO_LEVEL)
    );
}

#[test]
fn bugcheck_is_recorded_and_parks_when_asked() {
    let sim = Sim::new();
    sim.park_on_bugcheck(true);
    std::thread::spawn(|| {
        // SAFETY: the simulated bugcheck parks this thread for good.
        unsafe { KeBugCheckEx(0xE2, 1, 2, 3, 4) }
    });
    let start = std::time::Instant::now();
    while sim.bugchecks().is_empty() && start.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(
        sim.bugchecks(),
        vec![BugCheck {
            code: 0xE2,
            params: [1, 2, 3, 4]
        }]
    );
    assert_eq!(sim.violations()[0].kind, ViolationKind::BugCheck);
}
