//! Dispatcher objects and time: events, waits (single/multiple, relative
//! and absolute timeouts), KeDelayExecutionThread, timers with DPCs, the DPC
//! thread and KeFlushQueuedDpcs.
//!
//! Object state lives in the object's own memory, laid out like the real
//! DISPATCHER_HEADER (type byte at 0, SignalState at 4) plus a magic word at
//! 8 that marks it initialised. All state changes happen under one global
//! lock. A waiting thread registers the objects it waits on with a
//! condition variable of its own: signalling an object wakes only the
//! threads waiting on it (KeSetEvent per relayed I/O would otherwise wake
//! every system thread and the timer thread); a moved clock, an armed or
//! fired timer wakes everyone, and every wait also re-checks every 20 ms,
//! so waits are exact (a waiter re-checks its condition on each wake).
//!
//! Timers are kept in a table keyed by address. In virtual-clock mode they
//! expire only inside `advance`, one due time after another, and each
//! expiry's DPCs run (on the DPC thread, at DISPATCH_LEVEL) before the clock
//! moves on; in real-time mode a timer thread expires them.

use crate::clock;
use crate::irql;
use crate::violation::{record, ViolationKind};
use gate_ksys::*;
use std::collections::{HashMap, VecDeque};
use std::ffi::c_void;
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, Once};
use std::time::Duration;

/// Marks an initialised dispatcher object or DPC ("SIMDISP\0").
pub(crate) const MAGIC: u64 = 0x0050_5349_4444_4d49;

pub(crate) const TYPE_NOTIFICATION_EVENT: u8 = 0;
pub(crate) const TYPE_SYNCHRONIZATION_EVENT: u8 = 1;
pub(crate) const TYPE_THREAD: u8 = 6;
pub(crate) const TYPE_NOTIFICATION_TIMER: u8 = 8;
pub(crate) const TYPE_SYNCHRONIZATION_TIMER: u8 = 9;
const TYPE_DPC: u8 = 0x13;

struct TimerEntry {
    due: u64,
    period: u64,
    dpc: usize,
    seq: u64,
}

/// A thread inside `wait_objects`: the objects it waits on and its own
/// condition variable.
struct Waiter {
    id: u64,
    objects: Vec<usize>,
    cv: Arc<Condvar>,
}

#[derive(Default)]
struct DispState {
    timers: HashMap<usize, TimerEntry>,
    seq: u64,
    waiters: Vec<Waiter>,
    next_waiter: u64,
}

impl DispState {
    /// Wakes every waiter (a moved clock, a timer armed or fired).
    fn wake_everyone(&self) {
        DISP_CV.notify_all();
        for w in &self.waiters {
            w.cv.notify_one();
        }
    }
}

thread_local! {
    static MY_CV: Arc<Condvar> = Arc::new(Condvar::new());
}

static DISP: LazyLock<Mutex<DispState>> = LazyLock::new(|| Mutex::new(DispState::default()));
static DISP_CV: Condvar = Condvar::new();

#[derive(Default)]
struct DpcQueue {
    queue: VecDeque<usize>,
    running: bool,
}

static DPCQ: LazyLock<Mutex<DpcQueue>> = LazyLock::new(|| Mutex::new(DpcQueue::default()));
static DPC_CV: Condvar = Condvar::new();

fn disp() -> MutexGuard<'static, DispState> {
    DISP.lock().unwrap_or_else(|e| e.into_inner())
}

fn dpcq() -> MutexGuard<'static, DpcQueue> {
    DPCQ.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wakes every waiter so it re-checks its condition (clock moved, object
/// signalled).
pub(crate) fn notify_all() {
    disp().wake_everyone();
}

// ---- header access (caller holds DISP) ----

unsafe fn hdr(p: *mut c_void) -> *mut u64 {
    p.cast()
}

/// # Safety
/// `p` must point to at least 16 readable bytes, 8-aligned.
unsafe fn is_object(p: *mut c_void) -> bool {
    // SAFETY: per the contract.
    !p.is_null() && unsafe { hdr(p).add(1).read() } == MAGIC
}

unsafe fn obj_type(p: *mut c_void) -> u8 {
    // SAFETY: caller checked `is_object`.
    (unsafe { hdr(p).read() } & 0xff) as u8
}

unsafe fn signal_state(p: *mut c_void) -> i32 {
    // SAFETY: caller checked `is_object`.
    (unsafe { hdr(p).read() } >> 32) as i32
}

unsafe fn set_signal_state(p: *mut c_void, v: i32) {
    // SAFETY: caller checked `is_object`.
    unsafe {
        let h = hdr(p);
        h.write((h.read() & 0xffff_ffff) | (u64::from(v as u32) << 32));
    }
}

/// Writes a fresh header (type, signal state, magic).
///
/// # Safety
/// `p` must point to at least 24 writable, 8-aligned bytes.
pub(crate) unsafe fn init_header(p: *mut c_void, ty: u8, signalled: bool) {
    let _g = disp();
    // SAFETY: per the contract.
    unsafe {
        hdr(p).write(u64::from(ty) | (u64::from(u32::from(signalled)) << 32));
        hdr(p).add(1).write(MAGIC);
        hdr(p).add(2).write(0);
    }
}

/// Sets an object's signal state and wakes waiters; returns the old state.
///
/// # Safety
/// `p` must be an object initialised with `init_header`.
pub(crate) unsafe fn signal(p: *mut c_void) -> i32 {
    let g = disp();
    // SAFETY: per the contract.
    let old = unsafe { signal_state(p) };
    // SAFETY: per the contract.
    unsafe { set_signal_state(p, 1) };
    for w in g
        .waiters
        .iter()
        .filter(|w| w.objects.contains(&(p as usize)))
    {
        w.cv.notify_one();
    }
    old
}

// ---- events ----

/// # Safety
/// `event` must point to a writable KEVENT.
#[no_mangle]
pub unsafe extern "system" fn KeInitializeEvent(
    event: *mut KEVENT,
    kind: EVENT_TYPE,
    state: BOOLEAN,
) {
    let _sim = crate::fault::sim();
    crate::hold::point("KeInitializeEvent");
    let ty = match kind {
        NotificationEvent => TYPE_NOTIFICATION_EVENT,
        SynchronizationEvent => TYPE_SYNCHRONIZATION_EVENT,
        other => {
            record(
                ViolationKind::BadDispatcherObject,
                format!("KeInitializeEvent type {other}"),
            );
            TYPE_NOTIFICATION_EVENT
        }
    };
    // SAFETY: a KEVENT is 24 bytes, 8-aligned.
    unsafe { init_header(event.cast(), ty, state != 0) };
}

fn check_event(p: *mut c_void, who: &str) -> bool {
    // SAFETY: callers pass a KEVENT pointer; we only read its first 16 bytes.
    let ok = unsafe { is_object(p) && obj_type(p) <= TYPE_SYNCHRONIZATION_EVENT };
    if !ok {
        record(
            ViolationKind::BadDispatcherObject,
            format!("{who}({p:p}): not an initialised event"),
        );
    }
    ok
}

/// # Safety
/// `event` must point to an initialised KEVENT.
#[no_mangle]
pub unsafe extern "system" fn KeSetEvent(
    event: *mut KEVENT,
    _increment: KPRIORITY,
    _wait: BOOLEAN,
) -> i32 {
    let _sim = crate::fault::sim();
    crate::hold::point("KeSetEvent");
    irql::require_at_most_dispatch("KeSetEvent");
    if !check_event(event.cast(), "KeSetEvent") {
        return 0;
    }
    // SAFETY: checked to be an initialised event.
    unsafe { signal(event.cast()) }
}

/// # Safety
/// `event` must point to an initialised KEVENT.
#[no_mangle]
pub unsafe extern "system" fn KeClearEvent(event: *mut KEVENT) {
    let _sim = crate::fault::sim();
    crate::hold::point("KeClearEvent");
    if !check_event(event.cast(), "KeClearEvent") {
        return;
    }
    let _g = disp();
    // SAFETY: checked to be an initialised event.
    unsafe { set_signal_state(event.cast(), 0) };
}

// ---- waits ----

pub(crate) fn wait_objects(
    objects: &[*mut c_void],
    wait_all: bool,
    timeout: *const i64,
    who: &str,
) -> NTSTATUS {
    let timeout = if timeout.is_null() {
        None
    } else {
        // SAFETY: the caller passes NULL or a readable i64.
        Some(unsafe { timeout.read() })
    };
    if timeout != Some(0) && irql::current() >= DISPATCH_LEVEL {
        record(
            ViolationKind::WaitAtDispatch,
            format!("{who} with a non-zero timeout at IRQL {}", irql::current()),
        );
    }
    let deadline = timeout.map(clock::deadline_from);
    let g = disp();
    for &o in objects {
        // SAFETY: the caller passes dispatcher object pointers; reading the
        // first 16 bytes is how the kernel reads the header too.
        if !unsafe { is_object(o) } {
            record(
                ViolationKind::BadDispatcherObject,
                format!("{who}: {o:p} is not an initialised object"),
            );
            return STATUS_INVALID_PARAMETER;
        }
    }
    let cv = MY_CV.with(Arc::clone);
    let (mut g, id) = register(g, objects, &cv);
    let st = loop {
        // SAFETY: all objects were validated and are only touched under DISP.
        unsafe {
            if wait_all {
                if objects.iter().all(|&o| signal_state(o) > 0) {
                    for &o in objects {
                        consume(o);
                    }
                    break STATUS_WAIT_0;
                }
            } else if let Some(i) = objects.iter().position(|&o| signal_state(o) > 0) {
                consume(objects[i]);
                break STATUS_WAIT_0 + i as i32;
            }
        }
        if let Some(d) = deadline {
            if clock::now() >= d {
                break STATUS_TIMEOUT;
            }
        }
        g = cv
            .wait_timeout(g, Duration::from_millis(20))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    };
    g.waiters.retain(|w| w.id != id);
    st
}

/// Registers the calling thread as waiting on `objects` (woken by their
/// signal through `cv`); the caller removes the entry by the id returned.
fn register(
    mut g: MutexGuard<'static, DispState>,
    objects: &[*mut c_void],
    cv: &Arc<Condvar>,
) -> (MutexGuard<'static, DispState>, u64) {
    g.next_waiter = g.next_waiter.wrapping_add(1);
    let id = g.next_waiter;
    g.waiters.push(Waiter {
        id,
        objects: objects.iter().map(|&o| o as usize).collect(),
        cv: Arc::clone(cv),
    });
    (g, id)
}

/// Satisfying a wait resets synchronization events and timers.
unsafe fn consume(o: *mut c_void) {
    // SAFETY: the caller validated `o` and holds DISP.
    unsafe {
        let t = obj_type(o);
        if t == TYPE_SYNCHRONIZATION_EVENT || t == TYPE_SYNCHRONIZATION_TIMER {
            set_signal_state(o, 0);
        }
    }
}

/// # Safety
/// `object` must be an initialised event, timer or thread object; `timeout`
/// NULL or readable.
#[no_mangle]
pub unsafe extern "system" fn KeWaitForSingleObject(
    object: *mut c_void,
    _reason: KWAIT_REASON,
    _mode: KPROCESSOR_MODE,
    _alertable: BOOLEAN,
    timeout: *const i64,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::hold::point("KeWaitForSingleObject");
    wait_objects(&[object], true, timeout, "KeWaitForSingleObject")
}

/// # Safety
/// `objects` must hold `count` initialised objects; `timeout` NULL or readable.
#[no_mangle]
pub unsafe extern "system" fn KeWaitForMultipleObjects(
    count: u32,
    objects: *const *mut c_void,
    wait_type: WAIT_TYPE,
    _reason: KWAIT_REASON,
    _mode: KPROCESSOR_MODE,
    _alertable: BOOLEAN,
    timeout: *const i64,
    wait_blocks: *mut c_void,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::hold::point("KeWaitForMultipleObjects");
    if count == 0
        || objects.is_null()
        || count > 64
        || (count > THREAD_WAIT_OBJECTS && wait_blocks.is_null())
    {
        record(
            ViolationKind::TooManyWaitObjects,
            format!("KeWaitForMultipleObjects(count {count}, wait blocks {wait_blocks:p})"),
        );
        return STATUS_INVALID_PARAMETER;
    }
    if wait_type != WaitAll && wait_type != WaitAny {
        record(
            ViolationKind::Other,
            format!("KeWaitForMultipleObjects wait type {wait_type}"),
        );
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the caller passes `count` readable pointers.
    let objs = unsafe { std::slice::from_raw_parts(objects, count as usize) }.to_vec();
    wait_objects(
        &objs,
        wait_type == WaitAll,
        timeout,
        "KeWaitForMultipleObjects",
    )
}

/// # Safety
/// `interval` must be readable.
#[no_mangle]
pub unsafe extern "system" fn KeDelayExecutionThread(
    _mode: KPROCESSOR_MODE,
    _alertable: BOOLEAN,
    interval: *const i64,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::hold::point("KeDelayExecutionThread");
    if irql::current() >= DISPATCH_LEVEL {
        record(
            ViolationKind::WaitAtDispatch,
            "KeDelayExecutionThread at DISPATCH_LEVEL",
        );
    }
    if interval.is_null() {
        record(
            ViolationKind::Other,
            "KeDelayExecutionThread with a NULL interval",
        );
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: checked non-null; the caller passes a readable i64.
    let deadline = clock::deadline_from(unsafe { interval.read() });
    let mut g = disp();
    while clock::now() < deadline {
        g = DISP_CV
            .wait_timeout(g, Duration::from_millis(20))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    STATUS_SUCCESS
}

// ---- timers ----

/// # Safety
/// `timer` must point to a writable KTIMER.
#[no_mangle]
pub unsafe extern "system" fn KeInitializeTimerEx(timer: *mut KTIMER, kind: TIMER_TYPE) {
    let _sim = crate::fault::sim();
    crate::hold::point("KeInitializeTimerEx");
    let ty = if kind == SynchronizationTimer {
        TYPE_SYNCHRONIZATION_TIMER
    } else {
        TYPE_NOTIFICATION_TIMER
    };
    disp().timers.remove(&(timer as usize));
    // SAFETY: a KTIMER is 64 bytes, 8-aligned.
    unsafe { init_header(timer.cast(), ty, false) };
}

fn check_timer(t: *mut KTIMER, who: &str) -> bool {
    // SAFETY: reads the header of what the caller says is a KTIMER.
    let ok = unsafe {
        is_object(t.cast())
            && matches!(
                obj_type(t.cast()),
                TYPE_NOTIFICATION_TIMER | TYPE_SYNCHRONIZATION_TIMER
            )
    };
    if !ok {
        record(
            ViolationKind::BadDispatcherObject,
            format!("{who}({t:p}): not an initialised timer"),
        );
    }
    ok
}

/// # Safety
/// `timer` must be an initialised KTIMER; `dpc` NULL or an initialised KDPC;
/// both must stay valid while the timer is armed.
#[no_mangle]
pub unsafe extern "system" fn KeSetTimerEx(
    timer: *mut KTIMER,
    due_time: i64,
    period_ms: i32,
    dpc: *mut KDPC,
) -> BOOLEAN {
    let _sim = crate::fault::sim();
    crate::hold::point("KeSetTimerEx");
    irql::require_at_most_dispatch("KeSetTimerEx");
    if !check_timer(timer, "KeSetTimerEx") {
        return FALSE;
    }
    if !dpc.is_null() && !check_dpc(dpc, "KeSetTimerEx") {
        return FALSE;
    }
    if period_ms < 0 {
        record(
            ViolationKind::Other,
            format!("KeSetTimerEx period {period_ms} < 0"),
        );
        return FALSE;
    }
    let due = clock::deadline_from(due_time);
    let was_armed;
    {
        let mut g = disp();
        g.seq += 1;
        let seq = g.seq;
        was_armed = g
            .timers
            .insert(
                timer as usize,
                TimerEntry {
                    due,
                    period: period_ms as u64 * 10_000,
                    dpc: dpc as usize,
                    seq,
                },
            )
            .is_some();
        // SAFETY: validated timer.
        unsafe { set_signal_state(timer.cast(), 0) };
        g.wake_everyone();
    }
    if clock::is_real() {
        start_timer_thread();
    } else if due <= clock::now() {
        fire_due(clock::now());
    }
    u8::from(was_armed)
}

/// # Safety
/// `timer` must be an initialised KTIMER.
#[no_mangle]
pub unsafe extern "system" fn KeCancelTimer(timer: *mut KTIMER) -> BOOLEAN {
    let _sim = crate::fault::sim();
    crate::hold::point("KeCancelTimer");
    irql::require_at_most_dispatch("KeCancelTimer");
    if !check_timer(timer, "KeCancelTimer") {
        return FALSE;
    }
    u8::from(disp().timers.remove(&(timer as usize)).is_some())
}

/// Expires every timer due at or before `now`, in due-time then arming
/// order: signals it, re-arms periodic ones, queues its DPC.
fn fire_due(now: u64) {
    let mut to_queue = Vec::new();
    {
        let mut g = disp();
        let mut due: Vec<(u64, u64, usize)> = g
            .timers
            .iter()
            .filter(|(_, e)| e.due <= now)
            .map(|(&k, e)| (e.due, e.seq, k))
            .collect();
        due.sort_unstable();
        for (_, _, k) in due {
            let Some(e) = g.timers.get_mut(&k) else {
                continue;
            };
            let dpc = e.dpc;
            if e.period > 0 {
                e.due = e.due.saturating_add(e.period);
            } else {
                g.timers.remove(&k);
            }
            // SAFETY: armed timers are validated KTIMERs the driver keeps
            // alive while armed (freeing one armed is caught in pool).
            unsafe { set_signal_state(k as *mut c_void, 1) };
            if dpc != 0 {
                to_queue.push(dpc);
            }
        }
        // Queue the DPCs before anyone woken by the signal can look.
        let sys = now.saturating_add(clock::SYSTEM_TIME_AT_BOOT);
        for d in to_queue {
            queue_dpc(
                d as *mut KDPC,
                (sys & 0xffff_ffff) as usize,
                (sys >> 32) as usize,
            );
        }
        g.wake_everyone();
    }
}

/// The earliest due time of an armed timer, if any is at or before `limit`.
fn next_due(limit: u64) -> Option<u64> {
    disp()
        .timers
        .values()
        .map(|e| e.due)
        .filter(|&d| d <= limit)
        .min()
}

/// Moves the virtual clock forward by `ns` nanoseconds, expiring timers in
/// order and running their DPCs to completion at each expiry time.
pub(crate) fn advance(ns: u64) {
    let target = clock::now().saturating_add(ns / 100);
    while let Some(due) = next_due(target) {
        clock::set_virtual(due);
        fire_due(due);
        drain_dpcs();
    }
    clock::set_virtual(target);
    notify_all();
    drain_dpcs();
}

/// Number of armed timers.
pub(crate) fn armed_timers() -> usize {
    disp().timers.len()
}

fn start_timer_thread() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("sim-timer".into())
            .spawn(|| loop {
                if clock::is_real() {
                    let now = clock::now();
                    if next_due(now).is_some() {
                        fire_due(now);
                    }
                }
                let g = disp();
                let wait = g
                    .timers
                    .values()
                    .map(|e| e.due.saturating_sub(clock::now()))
                    .min()
                    .map_or(Duration::from_millis(20), |t| {
                        Duration::from_nanos(t.saturating_mul(100)).min(Duration::from_millis(20))
                    });
                drop(
                    DISP_CV
                        .wait_timeout(g, wait)
                        .unwrap_or_else(|e| e.into_inner()),
                );
            });
        if let Err(e) = spawned {
            panic!("cannot start the simulated timer thread: {e}");
        }
    });
}

/// Called when the clock switches to real time.
pub(crate) fn real_time_started() {
    start_timer_thread();
}

// ---- DPCs ----
// KDPC words used (as in the real layout): 0 type, 3 DeferredRoutine,
// 4 DeferredContext, 5 SystemArgument1, 6 SystemArgument2, 7 DpcData
// (non-zero while queued); word 2 holds the simulation's magic.

fn dpc_words(dpc: *mut KDPC) -> *mut u64 {
    dpc.cast()
}

/// # Safety
/// `dpc` must point to a writable KDPC.
#[no_mangle]
pub unsafe extern "system" fn KeInitializeDpc(
    dpc: *mut KDPC,
    routine: KDEFERRED_ROUTINE,
    context: *mut c_void,
) {
    let _sim = crate::fault::sim();
    crate::hold::point("KeInitializeDpc");
    let w = dpc_words(dpc);
    // SAFETY: a KDPC is 64 writable bytes.
    unsafe {
        std::ptr::write_bytes(w, 0, 8);
        w.write(u64::from(TYPE_DPC));
        w.add(2).write(MAGIC);
        w.add(3).write(routine as usize as u64);
        w.add(4).write(context as u64);
    }
}

fn check_dpc(dpc: *mut KDPC, who: &str) -> bool {
    // SAFETY: reads the words of what the caller says is a KDPC.
    let ok = unsafe {
        dpc_words(dpc).add(2).read() == MAGIC && dpc_words(dpc).read() & 0xff == u64::from(TYPE_DPC)
    };
    if !ok {
        record(
            ViolationKind::BadDispatcherObject,
            format!("{who}: {dpc:p} is not an initialised KDPC"),
        );
    }
    ok
}

fn queue_dpc(dpc: *mut KDPC, a1: usize, a2: usize) -> bool {
    start_dpc_thread();
    let mut q = dpcq();
    let w = dpc_words(dpc);
    // SAFETY: DPCs are validated when a timer is armed and kept alive by
    // the driver while queued.
    unsafe {
        if w.add(7).read() != 0 {
            return false;
        }
        w.add(5).write(a1 as u64);
        w.add(6).write(a2 as u64);
        w.add(7).write(1);
    }
    q.queue.push_back(dpc as usize);
    DPC_CV.notify_all();
    true
}

fn start_dpc_thread() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("sim-dpc".into())
            .spawn(dpc_thread);
        if let Err(e) = spawned {
            panic!("cannot start the simulated DPC thread: {e}");
        }
    });
}

thread_local! {
    static IS_DPC_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn dpc_thread() {
    IS_DPC_THREAD.with(|c| c.set(true));
    loop {
        let (dpc, routine, ctx, a1, a2) = {
            let mut q = dpcq();
            loop {
                if let Some(d) = q.queue.pop_front() {
                    q.running = true;
                    let w = d as *mut u64;
                    // SAFETY: queued DPCs are alive (see queue_dpc).
                    let vals = unsafe {
                        (
                            w.add(3).read(),
                            w.add(4).read(),
                            w.add(5).read(),
                            w.add(6).read(),
                        )
                    };
                    // SAFETY: as above; dequeued now.
                    unsafe { w.add(7).write(0) };
                    break (d, vals.0, vals.1, vals.2, vals.3);
                }
                q = DPC_CV.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        // SAFETY: word 3 was written by KeInitializeDpc from a
        // KDEFERRED_ROUTINE and checked by magic.
        let f: KDEFERRED_ROUTINE =
            unsafe { std::mem::transmute::<usize, KDEFERRED_ROUTINE>(routine as usize) };
        crate::hold::in_routine(crate::hold::Routine::Dpc, routine as usize, || {
            irql::run_at(DISPATCH_LEVEL, "DPC routine", || {
                // SAFETY: calls the driver's DPC routine with its own arguments.
                unsafe {
                    f(
                        dpc as *mut KDPC,
                        ctx as *mut c_void,
                        a1 as *mut c_void,
                        a2 as *mut c_void,
                    )
                }
            })
        });
        let mut q = dpcq();
        q.running = false;
        DPC_CV.notify_all();
    }
}

/// Waits until no DPC is queued or running.
pub(crate) fn drain_dpcs() {
    if IS_DPC_THREAD.with(|c| c.get()) {
        return;
    }
    let mut q = dpcq();
    while !q.queue.is_empty() || q.running {
        q = DPC_CV.wait(q).unwrap_or_else(|e| e.into_inner());
    }
}

/// Number of DPCs queued and not yet run.
pub(crate) fn queued_dpcs() -> usize {
    dpcq().queue.len()
}

/// # Safety
/// `dpc` must point to an initialised KDPC that stays alive while queued.
#[no_mangle]
pub unsafe extern "system" fn KeInsertQueueDpc(
    dpc: *mut KDPC,
    arg1: *mut c_void,
    arg2: *mut c_void,
) -> BOOLEAN {
    let _sim = crate::fault::sim();
    crate::hold::point("KeInsertQueueDpc");
    irql::require_at_most_dispatch("KeInsertQueueDpc");
    if !check_dpc(dpc, "KeInsertQueueDpc") {
        return 0;
    }
    BOOLEAN::from(queue_dpc(dpc, arg1 as usize, arg2 as usize))
}

#[no_mangle]
pub unsafe extern "system" fn KeFlushQueuedDpcs() {
    let _sim = crate::fault::sim();
    crate::hold::point("KeFlushQueuedDpcs");
    irql::require_passive("KeFlushQueuedDpcs");
    drain_dpcs();
}

/// Called by pool before freeing [addr, addr + size): armed timers and queued
/// DPCs inside the block are violations (Driver Verifier catches the same).
pub(crate) fn check_free_range(addr: usize, size: usize) {
    let end = addr.saturating_add(size);
    {
        let mut g = disp();
        let hits: Vec<usize> = g
            .timers
            .keys()
            .copied()
            .filter(|&k| k >= addr && k < end)
            .collect();
        for k in hits {
            g.timers.remove(&k);
            record(
                ViolationKind::FreeActiveObject,
                format!("pool block {addr:#x} freed with armed timer {k:#x}"),
            );
        }
    }
    let mut q = dpcq();
    let before = q.queue.len();
    q.queue.retain(|&d| d < addr || d >= end);
    if q.queue.len() != before {
        record(
            ViolationKind::FreeActiveObject,
            format!("pool block {addr:#x} freed with a queued DPC"),
        );
    }
}

/// Forgets armed timers and queued DPCs (after a test).
pub(crate) fn reset() {
    disp().timers.clear();
    dpcq().queue.clear();
}
