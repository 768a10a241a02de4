//! IRPs: IoAllocateIrp / IoFreeIrp / IoReuseIrp with the real layout (the
//! driver's inline IoSetCompletionRoutine writes the next stack location),
//! and the provider side: taking an IRP like IoCallDriver does and
//! completing it like IoCompleteRequest (stack walk, completion routines
//! chosen by their Control flags, stop on STATUS_MORE_PROCESSING_REQUIRED).
//!
//! Completion happens either inline (before the WSK call returns, which
//! then returns the final status) or on the simulation's I/O thread at
//! DISPATCH_LEVEL (the call returns STATUS_PENDING), per
//! [`CompletionMode`].

use crate::irql;
use crate::recent::RecentSet;
use crate::violation::{record, ViolationKind};
use crate::FastMap as HashMap;
use gate_ksys::*;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::VecDeque;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Condvar, LazyLock, Mutex, MutexGuard, Once};

const IO_TYPE_IRP: i16 = 6;
const SL_PENDING_RETURNED: u8 = 0x01;
const IRP_SIZE: usize = std::mem::size_of::<IRP>();
const LOC_SIZE: usize = std::mem::size_of::<IO_STACK_LOCATION>();

/// How the simulated provider completes the IRPs it is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionMode {
    /// Before the call returns; the call returns the IRP's status.
    Inline,
    /// Later, on the I/O thread at DISPATCH_LEVEL; the call returns
    /// STATUS_PENDING (the default: what a real stack mostly does).
    Async,
    /// Alternating Inline and Async, call by call.
    Alternate,
    /// Like Async, but each completion runs on a thread of its own (as
    /// on many CPUs at once): one completion routine held or slow does
    /// not delay the others.
    Parallel,
}

static MODE: AtomicU8 = AtomicU8::new(1);
static ALTERNATE: AtomicU64 = AtomicU64::new(0);

pub(crate) fn set_mode(m: CompletionMode) {
    MODE.store(
        match m {
            CompletionMode::Inline => 0,
            CompletionMode::Async => 1,
            CompletionMode::Alternate => 2,
            CompletionMode::Parallel => 3,
        },
        Ordering::SeqCst,
    );
}

fn complete_inline_now() -> bool {
    match MODE.load(Ordering::SeqCst) {
        0 => true,
        1 | 3 => false,
        _ => ALTERNATE.fetch_add(1, Ordering::SeqCst).is_multiple_of(2),
    }
}

#[derive(Default)]
struct Irps {
    live: HashMap<usize, (i8, bool)>,
    /// Recently freed IRPs (bounded), for use-after-free detection.
    freed: RecentSet<usize>,
    allocated: u64,
    fail_next: u64,
}

static IRPS: LazyLock<Mutex<Irps>> = LazyLock::new(|| Mutex::new(Irps::default()));

fn irps() -> MutexGuard<'static, Irps> {
    IRPS.lock().unwrap_or_else(|e| e.into_inner())
}

/// IRP counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrpStats {
    /// IRPs allocated and not freed.
    pub outstanding: usize,
    /// Of those, IRPs the provider holds (not completed yet).
    pub in_flight: usize,
    /// IoAllocateIrp successes since reset.
    pub allocated: u64,
}

pub(crate) fn stats() -> IrpStats {
    let g = irps();
    IrpStats {
        outstanding: g.live.len(),
        in_flight: g.live.values().filter(|v| v.1).count(),
        allocated: g.allocated,
    }
}

pub(crate) fn fail_next_allocations(n: u64) {
    irps().fail_next = n;
}

pub(crate) fn reset() {
    *irps() = Irps::default();
    set_mode(CompletionMode::Async);
}

fn layout(stack: i8) -> Layout {
    let n = usize::try_from(stack).unwrap_or(0);
    // SAFETY-free: sizes are small constants; align 16 like pool.
    Layout::from_size_align(IRP_SIZE + n * LOC_SIZE, 16).unwrap_or_else(|_| Layout::new::<IRP>())
}

unsafe fn init_irp(irp: *mut IRP, stack: i8) {
    let n = usize::try_from(stack).unwrap_or(0);
    // SAFETY: the caller passes an IRP block of `layout(stack)` bytes.
    unsafe {
        std::ptr::write_bytes(irp.cast::<u8>(), 0, IRP_SIZE + n * LOC_SIZE);
        (*irp).Type = IO_TYPE_IRP;
        (*irp).Size = (IRP_SIZE + n * LOC_SIZE) as u16;
        (*irp).StackCount = stack;
        (*irp).CurrentLocation = stack.saturating_add(1);
        (*irp).Tail.CurrentStackLocation = irp.cast::<u8>().add(IRP_SIZE + n * LOC_SIZE).cast();
        (*irp).ThreadListEntry.Flink = &mut (*irp).ThreadListEntry;
        (*irp).ThreadListEntry.Blink = &mut (*irp).ThreadListEntry;
    }
}

#[no_mangle]
pub unsafe extern "system" fn IoAllocateIrp(stack_size: i8, _charge_quota: BOOLEAN) -> *mut IRP {
    let _sim = crate::fault::sim();
    crate::hold::point("IoAllocateIrp");
    irql::require_at_most_dispatch("IoAllocateIrp");
    if stack_size < 1 {
        record(
            ViolationKind::BadIrp,
            format!("IoAllocateIrp({stack_size})"),
        );
        return std::ptr::null_mut();
    }
    {
        let mut g = irps();
        if g.fail_next > 0 {
            g.fail_next -= 1;
            return std::ptr::null_mut();
        }
    }
    if crate::pool::injected_failure() {
        return std::ptr::null_mut();
    }
    // SAFETY: non-zero size.
    let p = unsafe { alloc_zeroed(layout(stack_size)) }.cast::<IRP>();
    if p.is_null() {
        return p;
    }
    // SAFETY: fresh block of the right size.
    unsafe { init_irp(p, stack_size) };
    let mut g = irps();
    g.freed.remove(&(p as usize));
    g.live.insert(p as usize, (stack_size, false));
    g.allocated += 1;
    p
}

/// Looks an IRP up; records `BadIrp` for unknown or freed ones.
fn lookup(irp: *mut IRP, who: &str) -> Option<(i8, bool)> {
    let g = irps();
    match g.live.get(&(irp as usize)) {
        Some(v) => Some(*v),
        None => {
            let freed = g.freed.contains(&(irp as usize));
            drop(g);
            record(
                ViolationKind::BadIrp,
                format!(
                    "{who}({irp:p}): {}",
                    if freed {
                        "IRP already freed"
                    } else {
                        "not an IRP from IoAllocateIrp"
                    }
                ),
            );
            None
        }
    }
}

#[no_mangle]
pub unsafe extern "system" fn IoFreeIrp(irp: *mut IRP) {
    let _sim = crate::fault::sim();
    crate::hold::point("IoFreeIrp");
    irql::require_at_most_dispatch("IoFreeIrp");
    let Some((stack, in_flight)) = lookup(irp, "IoFreeIrp") else {
        return;
    };
    if in_flight {
        record(
            ViolationKind::IrpInFlight,
            format!("IoFreeIrp({irp:p}) while WSK still owns it"),
        );
        return;
    }
    {
        let mut g = irps();
        g.live.remove(&(irp as usize));
        g.freed.insert(irp as usize);
    }
    let l = layout(stack);
    // SAFETY: allocated by IoAllocateIrp with this layout; removed from the
    // live set, so freed once.
    unsafe {
        std::ptr::write_bytes(irp.cast::<u8>(), 0xDD, l.size());
        dealloc(irp.cast(), l);
    }
}

#[no_mangle]
pub unsafe extern "system" fn IoReuseIrp(irp: *mut IRP, status: NTSTATUS) {
    let _sim = crate::fault::sim();
    crate::hold::point("IoReuseIrp");
    let Some((stack, in_flight)) = lookup(irp, "IoReuseIrp") else {
        return;
    };
    if in_flight {
        record(
            ViolationKind::IrpInFlight,
            format!("IoReuseIrp({irp:p}) while WSK still owns it"),
        );
        return;
    }
    // SAFETY: a live IRP of `stack` locations owned by the driver.
    unsafe {
        init_irp(irp, stack);
        (*irp).IoStatus.Status = status;
    }
}

/// Provider side of IoCallDriver: validates the IRP, moves to the next stack
/// location and marks it in flight. Returns false (after recording) when the
/// IRP cannot be taken.
pub(crate) fn take(irp: *mut IRP, who: &str) -> bool {
    if irp.is_null() {
        record(
            ViolationKind::MissingIrp,
            format!("{who} requires an IRP, got NULL"),
        );
        return false;
    }
    let Some((_, in_flight)) = lookup(irp, who) else {
        return false;
    };
    if in_flight {
        record(
            ViolationKind::IrpInFlight,
            format!("{who}: IRP {irp:p} is already owned by WSK"),
        );
        return false;
    }
    // SAFETY: a live IRP the driver hands over.
    unsafe {
        if (*irp).CurrentLocation <= 1 {
            record(
                ViolationKind::NoIrpStackLocation,
                format!("{who}: IRP {irp:p} has no stack location left"),
            );
            return false;
        }
        (*irp).CurrentLocation -= 1;
        (*irp).Tail.CurrentStackLocation = (*irp).Tail.CurrentStackLocation.sub(1);
        (*irp).PendingReturned = 0;
        (*irp).IoStatus.Status = STATUS_PENDING;
        (*irp).IoStatus.Information = 0;
    }
    if let Some(v) = irps().live.get_mut(&(irp as usize)) {
        v.1 = true;
    }
    true
}

/// IoCompleteRequest on an IRP taken with [`take`].
pub(crate) fn complete(irp: *mut IRP, status: NTSTATUS, information: usize) {
    if let Some(v) = irps().live.get_mut(&(irp as usize)) {
        v.1 = false;
    }
    // SAFETY: the IRP was taken by the provider and is live; the driver may
    // free it only from its completion routine, after which it is not
    // touched (checked through the live set).
    unsafe {
        (*irp).IoStatus.Status = status;
        (*irp).IoStatus.Information = information;
        loop {
            let cur = (*irp).Tail.CurrentStackLocation;
            (*irp).PendingReturned = (*cur).Control & SL_PENDING_RETURNED;
            (*irp).CurrentLocation += 1;
            (*irp).Tail.CurrentStackLocation = cur.add(1);
            let routine = (*cur).CompletionRoutine;
            let ctx = (*cur).Context;
            let control = (*cur).Control;
            (*cur).CompletionRoutine = None;
            (*cur).Context = std::ptr::null_mut();
            (*cur).Control = 0;
            let st = (*irp).IoStatus.Status;
            let at_top = (*irp).CurrentLocation > (*irp).StackCount;
            let invoke = routine.is_some()
                && ((NT_SUCCESS(st) && control & SL_INVOKE_ON_SUCCESS != 0)
                    || (!NT_SUCCESS(st) && control & SL_INVOKE_ON_ERROR != 0)
                    || ((*irp).Cancel != 0 && control & SL_INVOKE_ON_CANCEL != 0));
            if let (true, Some(f)) = (invoke, routine) {
                let device = if at_top {
                    std::ptr::null_mut()
                } else {
                    (*(*irp).Tail.CurrentStackLocation).DeviceObject
                };
                let level = irql::current();
                let r = crate::hold::in_routine(
                    crate::hold::Routine::IrpCompletion,
                    f as usize,
                    || irql::run_at(level, "IRP completion routine", || f(device, irp, ctx)),
                );
                if r == STATUS_MORE_PROCESSING_REQUIRED {
                    return;
                }
                if !irps().live.contains_key(&(irp as usize)) {
                    record(
                        ViolationKind::BadIrp,
                        format!("IRP {irp:p} freed in its completion routine, which did not return STATUS_MORE_PROCESSING_REQUIRED"),
                    );
                    return;
                }
            } else if (*irp).PendingReturned != 0 && !at_top {
                (*(*irp).Tail.CurrentStackLocation).Control |= SL_PENDING_RETURNED;
            }
            if at_top {
                break;
            }
        }
    }
    record(
        ViolationKind::IrpCompletedToTop,
        format!("IRP {irp:p} (from IoAllocateIrp) completed with no completion routine returning STATUS_MORE_PROCESSING_REQUIRED"),
    );
}

// ---- the I/O thread ----

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct IoQueue {
    jobs: VecDeque<Job>,
    running: bool,
    /// Completions running on threads of their own.
    parallel: usize,
}

static IOQ: LazyLock<Mutex<IoQueue>> = LazyLock::new(|| Mutex::new(IoQueue::default()));
static IO_CV: Condvar = Condvar::new();

fn ioq() -> MutexGuard<'static, IoQueue> {
    IOQ.lock().unwrap_or_else(|e| e.into_inner())
}

thread_local! {
    static IS_IO_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `job` later on the I/O thread at DISPATCH_LEVEL (FIFO).
pub(crate) fn post(job: impl FnOnce() + Send + 'static) {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new().name("sim-io".into()).spawn(|| {
            IS_IO_THREAD.with(|c| c.set(true));
            loop {
                let job = {
                    let mut q = ioq();
                    loop {
                        if let Some(j) = q.jobs.pop_front() {
                            q.running = true;
                            break j;
                        }
                        q = IO_CV.wait(q).unwrap_or_else(|e| e.into_inner());
                    }
                };
                irql::run_at(DISPATCH_LEVEL, "I/O completion", job);
                ioq().running = false;
                IO_CV.notify_all();
            }
        });
        if let Err(e) = spawned {
            panic!("cannot start the simulated I/O thread: {e}");
        }
    });
    ioq().jobs.push_back(Box::new(job));
    IO_CV.notify_all();
}

/// Runs `job` now on a thread of its own at DISPATCH_LEVEL
/// ([`CompletionMode::Parallel`]).
fn post_parallel(job: impl FnOnce() + Send + 'static) {
    ioq().parallel += 1;
    let spawned = std::thread::Builder::new()
        .name("sim-io-parallel".into())
        .spawn(move || {
            IS_IO_THREAD.with(|c| c.set(true));
            irql::run_at(DISPATCH_LEVEL, "I/O completion", job);
            ioq().parallel -= 1;
            IO_CV.notify_all();
        });
    if let Err(e) = spawned {
        panic!("cannot start a simulated I/O completion thread: {e}");
    }
}

/// Waits until the I/O threads are idle with nothing queued. (A
/// completion held by [`crate::hold`] on a parallel thread is not waited
/// for: the test that holds it releases it.)
pub(crate) fn drain() {
    if IS_IO_THREAD.with(|c| c.get()) {
        return;
    }
    let mut q = ioq();
    while !q.jobs.is_empty() || q.running || (q.parallel > 0 && !crate::hold::is_held()) {
        q = IO_CV
            .wait_timeout(q, std::time::Duration::from_millis(10))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

struct SendIrp(*mut IRP);
// SAFETY: an IRP is handed between threads exactly as the kernel does.
unsafe impl Send for SendIrp {}

/// Finishes a provider request: completes the IRP inline or on the I/O
/// thread per the completion mode, and returns what the WSK call returns.
pub(crate) fn finish(irp: *mut IRP, status: NTSTATUS, information: usize) -> NTSTATUS {
    if complete_inline_now() {
        complete(irp, status, information);
        status
    } else {
        // SAFETY: the IRP is taken (in flight); marking the provider's stack
        // location pending is what IoMarkIrpPending does.
        unsafe { (*(*irp).Tail.CurrentStackLocation).Control |= SL_PENDING_RETURNED };
        let p = SendIrp(irp);
        let job = move || {
            let p = p;
            complete(p.0, status, information);
        };
        if MODE.load(Ordering::SeqCst) == 3 {
            post_parallel(job);
        } else {
            post(job);
        }
        STATUS_PENDING
    }
}

/// Whether `p` is the address of a live IRP (for tests).
pub(crate) fn is_live(p: *const c_void) -> bool {
    irps().live.contains_key(&(p as usize))
}

/// Test hook: takes `irp` as the provider would on a WSK call (IoCallDriver:
/// moves to the next stack location, marks it in flight). Returns false
/// (recording the violation) when the IRP cannot be taken.
pub fn provider_take(irp: *mut IRP) -> bool {
    take(irp, "provider_take")
}

/// Test hook: completes an IRP taken with [`provider_take`] like
/// IoCompleteRequest, on the calling thread.
pub fn provider_complete(irp: *mut IRP, status: NTSTATUS, information: usize) {
    complete(irp, status, information)
}
