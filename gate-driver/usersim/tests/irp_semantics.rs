//! IRP layout and IoCompleteRequest semantics: completion routines chosen
//! by their Control flags, the status they see, STATUS_MORE_PROCESSING_REQUIRED
//! stopping the walk, pending propagation, IoReuseIrp, and the recorded
//! misuse (double free, free in flight, completion to the top).

use gate_ksys::*;
use gate_usersim::irp::{provider_complete, provider_take};
use gate_usersim::*;
use std::ffi::c_void;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering};

static CALLS: AtomicU32 = AtomicU32::new(0);
static SEEN_STATUS: AtomicI32 = AtomicI32::new(0);
static SEEN_DEVICE: AtomicUsize = AtomicUsize::new(1);
static SEEN_PENDING: AtomicU32 = AtomicU32::new(0);
static ORDER: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

unsafe extern "system" fn stop_here(dev: PVOID, irp: *mut IRP, ctx: PVOID) -> NTSTATUS {
    CALLS.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the IRP being completed.
    unsafe {
        SEEN_STATUS.store((*irp).IoStatus.Status, Ordering::SeqCst);
        SEEN_PENDING.store(u32::from((*irp).PendingReturned), Ordering::SeqCst);
    }
    SEEN_DEVICE.store(dev as usize, Ordering::SeqCst);
    ORDER.lock().unwrap().push(ctx as usize);
    STATUS_MORE_PROCESSING_REQUIRED
}

unsafe extern "system" fn pass_on(_dev: PVOID, _irp: *mut IRP, ctx: PVOID) -> NTSTATUS {
    ORDER.lock().unwrap().push(ctx as usize);
    STATUS_SUCCESS
}

fn reset() {
    CALLS.store(0, Ordering::SeqCst);
    SEEN_STATUS.store(0, Ordering::SeqCst);
    SEEN_DEVICE.store(1, Ordering::SeqCst);
    ORDER.lock().unwrap().clear();
}

fn alloc(stack: i8) -> *mut IRP {
    // SAFETY: plain allocation.
    let irp = unsafe { IoAllocateIrp(stack, FALSE) };
    assert!(!irp.is_null());
    irp
}

#[test]
fn fresh_irp_has_the_io_manager_layout() {
    let sim = Sim::new();
    let irp = alloc(2);
    // SAFETY: a live IRP.
    unsafe {
        assert_eq!((*irp).Type, 6);
        assert_eq!((*irp).StackCount, 2);
        assert_eq!((*irp).CurrentLocation, 3);
        let base = irp.cast::<u8>().add(size_of::<IRP>());
        assert_eq!(
            (*irp).Tail.CurrentStackLocation.cast::<u8>(),
            base.add(2 * size_of::<IO_STACK_LOCATION>())
        );
        assert_eq!(
            IoGetNextIrpStackLocation(irp).cast::<u8>(),
            base.add(size_of::<IO_STACK_LOCATION>())
        );
        IoFreeIrp(irp);
    }
    assert_eq!(sim.irp_stats().outstanding, 0);
    sim.assert_no_violations();
}

#[test]
fn success_runs_on_success_routine_and_more_processing_stops() {
    let sim = Sim::new();
    reset();
    let irp = alloc(1);
    // SAFETY: a live IRP with one location.
    unsafe { IoSetCompletionRoutine(irp, stop_here, 7usize as PVOID, true, false, false) };
    assert!(provider_take(irp));
    assert_eq!(sim.irp_stats().in_flight, 1);
    provider_complete(irp, STATUS_SUCCESS, 42);
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(SEEN_STATUS.load(Ordering::SeqCst), STATUS_SUCCESS);
    assert_eq!(
        SEEN_DEVICE.load(Ordering::SeqCst),
        0,
        "no device object at the top"
    );
    // SAFETY: still live (the routine returned MORE_PROCESSING_REQUIRED).
    unsafe {
        assert_eq!((*irp).IoStatus.Information, 42);
        assert_eq!((*irp).CurrentLocation, 2, "back above the last location");
        IoFreeIrp(irp);
    }
    sim.assert_no_violations();
}

#[test]
fn error_skips_a_success_only_routine_and_records_completion_to_top() {
    let sim = Sim::new();
    reset();
    let irp = alloc(1);
    // SAFETY: a live IRP.
    unsafe { IoSetCompletionRoutine(irp, stop_here, std::ptr::null_mut(), true, false, false) };
    assert!(provider_take(irp));
    provider_complete(irp, STATUS_CONNECTION_RESET, 0);
    assert_eq!(CALLS.load(Ordering::SeqCst), 0);
    let v = sim.violations();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].kind, ViolationKind::IrpCompletedToTop);
    // SAFETY: live IRP, completed.
    unsafe { IoFreeIrp(irp) };
}

#[test]
fn error_and_cancel_flags_select_the_routine() {
    let sim = Sim::new();
    reset();
    let irp = alloc(1);
    // SAFETY: a live IRP.
    unsafe { IoSetCompletionRoutine(irp, stop_here, std::ptr::null_mut(), false, true, false) };
    assert!(provider_take(irp));
    provider_complete(irp, STATUS_CANCELLED, 0);
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(SEEN_STATUS.load(Ordering::SeqCst), STATUS_CANCELLED);
    // Reuse: same IRP, fresh stack, status preset.
    // SAFETY: live IRP owned by the test.
    unsafe {
        IoReuseIrp(irp, STATUS_UNSUCCESSFUL);
        assert_eq!((*irp).CurrentLocation, 2);
        assert_eq!((*irp).IoStatus.Status, STATUS_UNSUCCESSFUL);
        assert!((*IoGetNextIrpStackLocation(irp))
            .CompletionRoutine
            .is_none());
        // on_cancel only: a success does not invoke it.
        IoSetCompletionRoutine(irp, stop_here, std::ptr::null_mut(), false, false, true);
        assert!(provider_take(irp));
        (*irp).Cancel = TRUE;
        provider_complete(irp, STATUS_CANCELLED, 0);
    }
    assert_eq!(
        CALLS.load(Ordering::SeqCst),
        2,
        "cancelled IRP runs the on-cancel routine"
    );
    // SAFETY: live IRP.
    unsafe { IoFreeIrp(irp) };
    sim.assert_no_violations();
}

#[test]
fn two_locations_complete_bottom_up_and_propagate_pending() {
    let sim = Sim::new();
    reset();
    let irp = alloc(2);
    // SAFETY: a two-location IRP: the test acts as the upper driver
    // (location 2 routine) and an intermediate driver (location 1).
    unsafe {
        IoSetCompletionRoutine(irp, stop_here, 2usize as PVOID, true, true, true);
        // Act as the driver that owns location 2: move down, then set the
        // routine for location 1.
        assert!(provider_take(irp));
        IoSetCompletionRoutine(irp, pass_on, 1usize as PVOID, true, true, true);
        // Mark the current (upper) location pending as its dispatch would.
        (*(*irp).Tail.CurrentStackLocation).Control |= 0x01;
        // The provider takes location 1 and completes.
        (*irp).CurrentLocation -= 1;
        (*irp).Tail.CurrentStackLocation = (*irp).Tail.CurrentStackLocation.sub(1);
    }
    provider_complete(irp, STATUS_SUCCESS, 0);
    assert_eq!(*ORDER.lock().unwrap(), vec![1, 2], "lower routine first");
    assert_eq!(
        SEEN_PENDING.load(Ordering::SeqCst),
        1,
        "PendingReturned seen by the upper routine"
    );
    // SAFETY: live.
    unsafe { IoFreeIrp(irp) };
    sim.assert_no_violations();
}

#[test]
fn misuse_is_recorded() {
    let sim = Sim::new();
    let irp = alloc(1);
    assert!(provider_take(irp));
    assert!(!provider_take(irp), "already in flight");
    // SAFETY: exercising the checks; the sim refuses to free in flight.
    unsafe { IoFreeIrp(irp) };
    // SAFETY: as above.
    unsafe { IoReuseIrp(irp, 0) };
    // SAFETY: a live IRP; now completed (to the top, recorded).
    provider_complete(irp, STATUS_SUCCESS, 0);
    // SAFETY: live IRP, freed twice (the second is recorded, not executed).
    unsafe {
        IoFreeIrp(irp);
        IoFreeIrp(irp);
    }
    let mut local = [0u8; 0x200];
    // SAFETY: not an IRP; the sim only looks it up.
    unsafe { IoFreeIrp(local.as_mut_ptr().cast()) };
    let one = alloc(1);
    // SAFETY: live IRP; emulate an exhausted stack.
    unsafe { (*one).CurrentLocation = 1 };
    assert!(!provider_take(one));
    assert!(!provider_take(std::ptr::null_mut()));
    // SAFETY: stack size 0 is refused.
    assert!(unsafe { IoAllocateIrp(0, FALSE) }.is_null());
    let kinds: Vec<ViolationKind> = sim.violations().iter().map(|v| v.kind).collect();
    assert_eq!(
        kinds,
        vec![
            ViolationKind::IrpInFlight,
            ViolationKind::IrpInFlight,
            ViolationKind::IrpInFlight,
            ViolationKind::IrpCompletedToTop,
            ViolationKind::BadIrp,
            ViolationKind::BadIrp,
            ViolationKind::NoIrpStackLocation,
            ViolationKind::MissingIrp,
            ViolationKind::BadIrp,
        ]
    );
    assert_eq!(sim.irp_stats().outstanding, 1);
    // SAFETY: live.
    unsafe { IoFreeIrp(one) };
}

#[test]
fn irp_allocation_failure_injection() {
    let sim = Sim::new();
    sim.fail_next_irp_allocations(1);
    // SAFETY: plain allocation.
    assert!(unsafe { IoAllocateIrp(1, FALSE) }.is_null());
    let irp = alloc(1);
    // SAFETY: live.
    unsafe { IoFreeIrp(irp) };
    assert_eq!(sim.irp_stats().allocated, 1);
    let _ = std::ptr::null::<c_void>();
}
