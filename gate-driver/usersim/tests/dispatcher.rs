//! Events, waits with timeouts on the virtual clock, timers and DPC
//! ordering, KeFlushQueuedDpcs, spin locks with IRQL, system threads and
//! handles.

use gate_ksys::*;
use gate_usersim::*;
use std::ffi::c_void;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

fn event(kind: EVENT_TYPE, signalled: bool) -> Box<KEVENT> {
    // SAFETY: zeroed storage, initialised right away.
    let mut e: Box<KEVENT> = Box::new(unsafe { std::mem::zeroed() });
    // SAFETY: valid KEVENT storage.
    unsafe { KeInitializeEvent(&mut *e, kind, u8::from(signalled)) };
    e
}

fn obj<T>(p: &mut T) -> *mut c_void {
    (p as *mut T).cast()
}

fn wait(o: *mut c_void, timeout: Option<i64>) -> NTSTATUS {
    let t = timeout.unwrap_or(0);
    let tp = if timeout.is_some() {
        &t as *const i64
    } else {
        std::ptr::null()
    };
    // SAFETY: `o` is an initialised object.
    unsafe { KeWaitForSingleObject(o, Executive, KernelMode, FALSE, tp) }
}

/// A raw pointer that may cross threads in these tests.
#[derive(Clone, Copy)]
struct P(usize);
impl P {
    fn of<T>(p: &mut T) -> P {
        P((p as *mut T) as usize)
    }
    fn ptr(self) -> *mut c_void {
        self.0 as *mut c_void
    }
}

#[test]
fn notification_stays_signalled_synchronization_resets() {
    let sim = Sim::new();
    let mut n = event(NotificationEvent, false);
    let mut s = event(SynchronizationEvent, false);
    assert_eq!(wait(obj(&mut *n), Some(0)), STATUS_TIMEOUT);
    // SAFETY: initialised events.
    unsafe {
        assert_eq!(KeSetEvent(&mut *n, 0, FALSE), 0);
        assert_eq!(
            KeSetEvent(&mut *n, 0, FALSE),
            1,
            "returns the previous state"
        );
        KeSetEvent(&mut *s, 0, FALSE);
    }
    assert_eq!(wait(obj(&mut *n), Some(0)), STATUS_SUCCESS);
    assert_eq!(
        wait(obj(&mut *n), Some(0)),
        STATUS_SUCCESS,
        "notification stays set"
    );
    assert_eq!(wait(obj(&mut *s), Some(0)), STATUS_SUCCESS);
    assert_eq!(
        wait(obj(&mut *s), Some(0)),
        STATUS_TIMEOUT,
        "synchronization auto-resets"
    );
    // SAFETY: initialised.
    unsafe { KeClearEvent(&mut *n) };
    assert_eq!(wait(obj(&mut *n), Some(0)), STATUS_TIMEOUT);
    sim.assert_no_violations();
}

#[test]
fn relative_timeout_follows_the_virtual_clock() {
    let sim = Sim::new();
    let mut e = event(NotificationEvent, false);
    let p = P::of(&mut *e);
    let start = sim.now();
    let h = std::thread::spawn(move || {
        let st = wait(p.ptr(), Some(-10 * 10_000)); // 10 ms relative
        (st, gate_usersim::clock::now())
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(!h.is_finished(), "no virtual time passed: still waiting");
    sim.advance_ms(5);
    std::thread::sleep(Duration::from_millis(50));
    assert!(!h.is_finished(), "5 ms of 10 passed");
    sim.advance_ms(5);
    let (st, at) = h.join().unwrap();
    assert_eq!(st, STATUS_TIMEOUT);
    assert_eq!(at - start, 100_000, "woke exactly at the deadline");
    sim.assert_no_violations();
}

#[test]
fn absolute_timeout_and_signal_before_timeout() {
    let sim = Sim::new();
    let mut e = event(SynchronizationEvent, false);
    let p = P::of(&mut *e);
    let deadline = (sim.now() + clock::SYSTEM_TIME_AT_BOOT + 20_000) as i64; // +2 ms absolute
    let h = std::thread::spawn(move || wait(p.ptr(), Some(deadline)));
    sim.advance_ms(3);
    assert_eq!(h.join().unwrap(), STATUS_TIMEOUT);
    let h = std::thread::spawn(move || wait(p.ptr(), None));
    std::thread::sleep(Duration::from_millis(20));
    // SAFETY: initialised.
    unsafe { KeSetEvent(p.ptr().cast(), 0, FALSE) };
    assert_eq!(h.join().unwrap(), STATUS_SUCCESS);
    sim.assert_no_violations();
}

#[test]
fn wait_any_wait_all_and_too_many_objects() {
    let sim = Sim::new();
    let mut a = event(NotificationEvent, false);
    let mut b = event(NotificationEvent, true);
    let objs = [obj(&mut *a), obj(&mut *b)];
    let zero = 0i64;
    // SAFETY: initialised objects.
    unsafe {
        assert_eq!(
            KeWaitForMultipleObjects(
                2,
                objs.as_ptr(),
                WaitAny,
                Executive,
                KernelMode,
                FALSE,
                &zero,
                std::ptr::null_mut()
            ),
            STATUS_WAIT_1
        );
        assert_eq!(
            KeWaitForMultipleObjects(
                2,
                objs.as_ptr(),
                WaitAll,
                Executive,
                KernelMode,
                FALSE,
                &zero,
                std::ptr::null_mut()
            ),
            STATUS_TIMEOUT
        );
        KeSetEvent(&mut *a, 0, FALSE);
        assert_eq!(
            KeWaitForMultipleObjects(
                2,
                objs.as_ptr(),
                WaitAll,
                Executive,
                KernelMode,
                FALSE,
                &zero,
                std::ptr::null_mut()
            ),
            STATUS_WAIT_0
        );
    }
    sim.assert_no_violations();
    let four = [objs[0], objs[1], objs[0], objs[1]];
    // SAFETY: four objects without wait blocks: refused and recorded.
    let st = unsafe {
        KeWaitForMultipleObjects(
            4,
            four.as_ptr(),
            WaitAny,
            Executive,
            KernelMode,
            FALSE,
            &zero,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(st, STATUS_INVALID_PARAMETER);
    assert_eq!(sim.violations()[0].kind, ViolationKind::TooManyWaitObjects);
}

#[test]
fn waiting_on_garbage_or_at_dispatch_is_recorded() {
    let sim = Sim::new();
    let mut junk = [0u64; 3];
    assert_eq!(wait(obj(&mut junk), Some(0)), STATUS_INVALID_PARAMETER);
    let mut e = event(NotificationEvent, true);
    let mut lock: KSPIN_LOCK = 0;
    // SAFETY: a local spin lock; the wait is satisfied at once.
    unsafe {
        let old = KeAcquireSpinLockRaiseToDpc(&mut lock);
        assert_eq!(
            wait(obj(&mut *e), Some(0)),
            STATUS_SUCCESS,
            "zero timeout is fine at DISPATCH"
        );
        assert_eq!(wait(obj(&mut *e), Some(-1)), STATUS_SUCCESS);
        let i = 0i64; // no virtual time passes: returns at once
        KeDelayExecutionThread(KernelMode, FALSE, &i);
        KeReleaseSpinLock(&mut lock, old);
    }
    let kinds: Vec<ViolationKind> = sim.violations().iter().map(|v| v.kind).collect();
    assert_eq!(
        kinds,
        vec![
            ViolationKind::BadDispatcherObject,
            ViolationKind::WaitAtDispatch,
            ViolationKind::WaitAtDispatch
        ]
    );
}

static FIRED: Mutex<Vec<(usize, u64, u8)>> = Mutex::new(Vec::new());

fn fired() -> std::sync::MutexGuard<'static, Vec<(usize, u64, u8)>> {
    FIRED.lock().unwrap_or_else(|e| e.into_inner())
}

unsafe extern "system" fn record_dpc(
    _dpc: *mut KDPC,
    ctx: *mut c_void,
    _a1: *mut c_void,
    _a2: *mut c_void,
) {
    fired().push((ctx as usize, clock::now(), irql::current()));
}

#[allow(clippy::vec_box)] // boxed: the kernel objects must not move
struct TimerSet {
    timers: Vec<Box<KTIMER>>,
    dpcs: Vec<Box<KDPC>>,
}

fn timers(n: usize) -> TimerSet {
    let mut t = TimerSet {
        timers: Vec::new(),
        dpcs: Vec::new(),
    };
    for i in 0..n {
        // SAFETY: zeroed storage initialised by the Ke routines.
        unsafe {
            let mut tm: Box<KTIMER> = Box::new(std::mem::zeroed());
            let mut d: Box<KDPC> = Box::new(std::mem::zeroed());
            KeInitializeTimerEx(&mut *tm, NotificationTimer);
            KeInitializeDpc(&mut *d, record_dpc, i as *mut c_void);
            t.timers.push(tm);
            t.dpcs.push(d);
        }
    }
    t
}

#[test]
fn timers_expire_in_due_order_with_dpcs_at_dispatch() {
    let sim = Sim::new();
    fired().clear();
    let mut t = timers(3);
    let start = sim.now();
    for (i, ms) in [(0usize, 30i64), (1, 10), (2, 20)] {
        let (tm, d) = (
            &mut *t.timers[i] as *mut KTIMER,
            &mut *t.dpcs[i] as *mut KDPC,
        );
        // SAFETY: initialised timer and DPC that outlive the test.
        assert_eq!(unsafe { KeSetTimerEx(tm, -ms * 10_000, 0, d) }, FALSE);
    }
    sim.advance_ms(25);
    assert_eq!(
        *fired(),
        vec![
            (1, start + 100_000, DISPATCH_LEVEL),
            (2, start + 200_000, DISPATCH_LEVEL)
        ]
    );
    assert_eq!(
        wait(obj(&mut *t.timers[1]), Some(0)),
        STATUS_SUCCESS,
        "expired timer is signalled"
    );
    assert_eq!(wait(obj(&mut *t.timers[0]), Some(0)), STATUS_TIMEOUT);
    // SAFETY: initialised timers.
    unsafe {
        assert_eq!(KeCancelTimer(&mut *t.timers[0]), TRUE);
        assert_eq!(KeCancelTimer(&mut *t.timers[0]), FALSE);
    }
    sim.advance_ms(100);
    assert_eq!(fired().len(), 2, "cancelled timer never fires");
    sim.assert_no_violations();
}

#[test]
fn periodic_timer_fires_every_period_and_rearm_reports_armed() {
    let sim = Sim::new();
    fired().clear();
    let mut t = timers(1);
    let (tm, d) = (
        &mut *t.timers[0] as *mut KTIMER,
        &mut *t.dpcs[0] as *mut KDPC,
    );
    // SAFETY: initialised timer/DPC.
    unsafe {
        assert_eq!(KeSetTimerEx(tm, -5 * 10_000, 10, d), FALSE);
        assert_eq!(KeSetTimerEx(tm, -5 * 10_000, 10, d), TRUE, "was armed");
    }
    sim.advance_ms(36);
    let times: Vec<u64> = fired().iter().map(|f| f.1).collect();
    assert_eq!(times.len(), 4, "5, 15, 25, 35 ms");
    assert!(times.windows(2).all(|w| w[1] - w[0] == 100_000));
    // SAFETY: initialised timer.
    unsafe { KeCancelTimer(tm) };
    // SAFETY: nothing queued; at PASSIVE_LEVEL.
    unsafe { KeFlushQueuedDpcs() };
    assert_eq!(sim.leaks().timers_armed, 0);
    sim.assert_no_violations();
}

#[test]
fn freeing_pool_with_an_armed_timer_is_recorded() {
    let sim = Sim::new();
    // SAFETY: a pool block holding a timer, freed while armed.
    unsafe {
        let p = ExAllocatePoolWithTag(
            NonPagedPoolNx,
            size_of::<KTIMER>(),
            u32::from_le_bytes(*b"Tmrs"),
        );
        let tm = p.cast::<KTIMER>();
        KeInitializeTimerEx(tm, NotificationTimer);
        KeSetTimerEx(tm, -10_000_000, 0, std::ptr::null_mut());
        assert_eq!(sim.leaks().timers_armed, 1);
        ExFreePoolWithTag(p, u32::from_le_bytes(*b"Tmrs"));
    }
    assert_eq!(sim.violations()[0].kind, ViolationKind::FreeActiveObject);
    assert_eq!(sim.leaks().timers_armed, 0);
}

#[test]
fn spin_lock_excludes_across_threads() {
    let sim = Sim::new();
    struct Shared {
        lock: KSPIN_LOCK,
        counter: u64,
    }
    let mut s = Shared {
        lock: 0,
        counter: 0,
    };
    let p = P::of(&mut s);
    std::thread::scope(|sc| {
        for _ in 0..4 {
            sc.spawn(move || {
                for _ in 0..2000 {
                    let sh = p.0 as *mut Shared;
                    // SAFETY: the counter is only touched under the lock.
                    unsafe {
                        let old = KeAcquireSpinLockRaiseToDpc(&mut (*sh).lock);
                        assert_eq!(irql::current(), DISPATCH_LEVEL);
                        let v = std::ptr::read_volatile(&(*sh).counter);
                        std::hint::spin_loop();
                        std::ptr::write_volatile(&mut (*sh).counter, v + 1);
                        KeReleaseSpinLock(&mut (*sh).lock, old);
                    }
                    assert_eq!(irql::current(), PASSIVE_LEVEL);
                }
            });
        }
    });
    assert_eq!(s.counter, 8000);
    sim.assert_no_violations();
}

#[test]
fn spin_lock_misuse_is_recorded() {
    let sim = Sim::new();
    let mut lock: KSPIN_LOCK = 0;
    // SAFETY: exercising the checks on a local lock.
    unsafe {
        KeReleaseSpinLock(&mut lock, PASSIVE_LEVEL); // not held, wrong IRQL
        let old = KeAcquireSpinLockRaiseToDpc(&mut lock);
        irql::set(PASSIVE_LEVEL); // someone lowered the IRQL
        KeReleaseSpinLock(&mut lock, old);
    }
    let kinds: Vec<ViolationKind> = sim.violations().iter().map(|v| v.kind).collect();
    assert_eq!(
        kinds,
        vec![
            ViolationKind::SpinLockReleaseIrql,
            ViolationKind::SpinLockNotHeld,
            ViolationKind::SpinLockReleaseIrql
        ]
    );
}

static THREAD_RAN: AtomicU64 = AtomicU64::new(0);
static THREAD_IRQL: AtomicI32 = AtomicI32::new(-1);

unsafe extern "system" fn thread_body(ctx: *mut c_void) {
    THREAD_IRQL.store(i32::from(irql::current()), Ordering::SeqCst);
    // SAFETY: ctx is an initialised event owned by the test.
    unsafe { KeWaitForSingleObject(ctx, Executive, KernelMode, FALSE, std::ptr::null()) };
    THREAD_RAN.fetch_add(1, Ordering::SeqCst);
    // SAFETY: a system thread ending itself.
    unsafe { PsTerminateSystemThread(STATUS_SUCCESS) };
}

#[test]
fn system_thread_is_waitable_and_handles_are_accounted() {
    let sim = Sim::new();
    let mut go = event(NotificationEvent, false);
    let mut h: HANDLE = std::ptr::null_mut();
    // SAFETY: creating a thread with a valid routine and context.
    let st = unsafe {
        PsCreateSystemThread(
            &mut h,
            THREAD_ALL_ACCESS,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            thread_body,
            obj(&mut *go),
        )
    };
    assert_eq!(st, STATUS_SUCCESS);
    let mut thread: *mut c_void = std::ptr::null_mut();
    // SAFETY: a valid handle.
    unsafe {
        assert_eq!(
            ObReferenceObjectByHandle(
                h,
                SYNCHRONIZE,
                std::ptr::null_mut(),
                KernelMode,
                &mut thread,
                std::ptr::null_mut()
            ),
            STATUS_SUCCESS
        );
        assert_eq!(ZwClose(h), STATUS_SUCCESS);
    }
    assert_eq!(sim.object_stats().threads_running, 1);
    assert_eq!(wait(thread, Some(0)), STATUS_TIMEOUT);
    // SAFETY: initialised event.
    unsafe { KeSetEvent(&mut *go, 0, FALSE) };
    assert_eq!(wait(thread, None), STATUS_SUCCESS, "signalled on exit");
    assert_eq!(THREAD_RAN.load(Ordering::SeqCst), 1);
    assert_eq!(
        THREAD_IRQL.load(Ordering::SeqCst),
        0,
        "system threads start at PASSIVE_LEVEL"
    );
    assert_eq!(sim.object_stats().object_refs, 1);
    // SAFETY: referenced above.
    unsafe { ObfDereferenceObject(thread) };
    let s = sim.object_stats();
    assert_eq!(
        (s.threads_running, s.handles_open, s.object_refs),
        (0, 0, 0)
    );
    sim.assert_no_violations();
    // SAFETY: misuse, recorded.
    unsafe {
        ObfDereferenceObject(thread);
        ZwClose(h);
    }
    let kinds: Vec<ViolationKind> = sim.violations().iter().map(|v| v.kind).collect();
    assert_eq!(
        kinds,
        vec![
            ViolationKind::ObjectOverDereferenced,
            ViolationKind::BadHandle
        ]
    );
}

#[test]
fn delay_execution_follows_virtual_clock() {
    let sim = Sim::new();
    let h = std::thread::spawn(|| {
        let i = -50 * 10_000i64; // 50 ms
                                 // SAFETY: PASSIVE_LEVEL thread.
        unsafe { KeDelayExecutionThread(KernelMode, FALSE, &i) }
    });
    std::thread::sleep(Duration::from_millis(30));
    assert!(!h.is_finished());
    sim.advance_ms(50);
    assert_eq!(h.join().unwrap(), STATUS_SUCCESS);
    sim.assert_no_violations();
}

#[test]
fn real_time_mode_fires_timers_by_itself() {
    let sim = Sim::new();
    fired().clear();
    sim.set_real_time(true);
    let mut t = timers(1);
    let (tm, d) = (
        &mut *t.timers[0] as *mut KTIMER,
        &mut *t.dpcs[0] as *mut KDPC,
    );
    // SAFETY: initialised timer/DPC.
    unsafe { KeSetTimerEx(tm, -20 * 10_000, 0, d) };
    let tm = P(tm as usize);
    assert_eq!(
        wait(tm.ptr(), Some(-2_000 * 10_000)),
        STATUS_SUCCESS,
        "timer signalled within 2 s of real time"
    );
    sim.quiesce();
    assert_eq!(fired().len(), 1);
    sim.set_real_time(false);
    sim.assert_no_violations();
}

static LEAKY_LOCK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static SLOW_DPC_DONE: AtomicU64 = AtomicU64::new(0);

unsafe extern "system" fn leaky_dpc(
    _d: *mut KDPC,
    _c: *mut c_void,
    _a: *mut c_void,
    _b: *mut c_void,
) {
    let l = &LEAKY_LOCK as *const std::sync::atomic::AtomicUsize as *mut KSPIN_LOCK;
    // SAFETY: a static lock word; left held on purpose.
    unsafe { KeAcquireSpinLockRaiseToDpc(l) };
}

unsafe extern "system" fn slow_dpc(
    _d: *mut KDPC,
    _c: *mut c_void,
    _a: *mut c_void,
    _b: *mut c_void,
) {
    std::thread::sleep(Duration::from_millis(100));
    SLOW_DPC_DONE.store(1, Ordering::SeqCst);
}

unsafe extern "system" fn leaky_thread(_c: *mut c_void) {
    let mut lock: KSPIN_LOCK = 0;
    // SAFETY: a local lock left held when the thread returns (on purpose).
    unsafe { KeAcquireSpinLockRaiseToDpc(&mut lock) };
}

fn arm(routine: KDEFERRED_ROUTINE, ms: i64) -> (Box<KTIMER>, Box<KDPC>) {
    // SAFETY: zeroed storage initialised by the Ke routines; armed once.
    unsafe {
        let mut tm: Box<KTIMER> = Box::new(std::mem::zeroed());
        let mut d: Box<KDPC> = Box::new(std::mem::zeroed());
        KeInitializeTimerEx(&mut *tm, NotificationTimer);
        KeInitializeDpc(&mut *d, routine, std::ptr::null_mut());
        KeSetTimerEx(&mut *tm, -ms * 10_000, 0, &mut *d);
        (tm, d)
    }
}

#[test]
fn dpc_or_thread_leaving_a_spin_lock_held_is_recorded() {
    let sim = Sim::new();
    LEAKY_LOCK.store(0, Ordering::SeqCst);
    let _t = arm(leaky_dpc, 1);
    sim.advance_ms(1);
    assert_ne!(
        LEAKY_LOCK.load(Ordering::SeqCst),
        0,
        "the DPC ran and kept the lock"
    );
    let mut h: HANDLE = std::ptr::null_mut();
    // SAFETY: valid routine; the thread ends at DISPATCH_LEVEL on purpose.
    unsafe {
        PsCreateSystemThread(
            &mut h,
            THREAD_ALL_ACCESS,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            leaky_thread,
            std::ptr::null_mut(),
        );
    }
    let mut t: *mut c_void = std::ptr::null_mut();
    // SAFETY: a valid handle, then a wait on the thread object.
    unsafe {
        ObReferenceObjectByHandle(
            h,
            SYNCHRONIZE,
            std::ptr::null_mut(),
            KernelMode,
            &mut t,
            std::ptr::null_mut(),
        );
        assert_eq!(wait(t, None), STATUS_SUCCESS);
        ObfDereferenceObject(t);
        ZwClose(h);
    }
    let kinds: Vec<ViolationKind> = sim.violations().iter().map(|v| v.kind).collect();
    assert_eq!(
        kinds,
        vec![ViolationKind::IrqlLeak, ViolationKind::ThreadExitIrql]
    );
}

#[test]
fn flush_queued_dpcs_waits_for_a_running_dpc() {
    let sim = Sim::new();
    SLOW_DPC_DONE.store(0, Ordering::SeqCst);
    sim.set_real_time(true);
    let _t = arm(slow_dpc, 1);
    std::thread::sleep(Duration::from_millis(30));
    // SAFETY: at PASSIVE_LEVEL.
    unsafe { KeFlushQueuedDpcs() };
    assert_eq!(
        SLOW_DPC_DONE.load(Ordering::SeqCst),
        1,
        "the running DPC finished before the flush returned"
    );
    sim.set_real_time(false);
    sim.assert_no_violations();
}
