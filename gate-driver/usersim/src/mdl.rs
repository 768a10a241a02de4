//! MDLs: IoAllocateMdl / MmBuildMdlForNonPagedPool / IoFreeMdl with the
//! real x64 layout (48-byte header, then one PFN per page spanned), so the
//! simulated WskSend/WskReceive read the buffer through `MappedSystemVa`
//! exactly as the driver built it. Outstanding MDLs are counted for the
//! leak report; freeing an unknown or freed MDL is a violation.
//! IoAllocateMdl takes part in the pool's failure injection (an MDL comes
//! from the pool on Windows): `Sim::inject_pool_failures` counts it in the
//! same sequence as pool blocks and IRPs.

use crate::violation::{record, ViolationKind};
use gate_ksys::{BOOLEAN, IRP, PMDL};
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const HEADER: usize = 48;
const PAGE: usize = 4096;
const MDL_SOURCE_IS_NONPAGED_POOL: i16 = 0x0004;

static LIVE: Mutex<Option<HashMap<usize, usize>>> = Mutex::new(None);
/// IoAllocateMdl calls that returned an MDL since the last reset.
static ALLOCATED: AtomicU64 = AtomicU64::new(0);

/// MDLs allocated since the last reset (for the failure-injection tests'
/// allocation count).
pub(crate) fn allocated() -> u64 {
    ALLOCATED.load(Ordering::Relaxed)
}

fn live<R>(f: impl FnOnce(&mut HashMap<usize, usize>) -> R) -> R {
    let mut g = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(HashMap::new))
}

/// MDLs allocated and not freed.
pub(crate) fn outstanding() -> usize {
    live(|m| m.len())
}

pub(crate) fn reset() {
    live(|m| m.clear());
    ALLOCATED.store(0, Ordering::Relaxed);
}

fn layout(bytes: usize) -> Option<Layout> {
    Layout::from_size_align(bytes, 16).ok()
}

/// # Safety
/// Arguments as for the ntoskrnl routine.
#[no_mangle]
pub unsafe extern "system" fn IoAllocateMdl(
    va: *mut c_void,
    length: u32,
    secondary: BOOLEAN,
    _charge_quota: BOOLEAN,
    irp: *mut IRP,
) -> PMDL {
    let _sim = crate::fault::sim();
    crate::irql::require_at_most_dispatch("IoAllocateMdl");
    if secondary != 0 || !irp.is_null() {
        record(
            ViolationKind::WskBadCall,
            "IoAllocateMdl with an IRP or as a secondary buffer: not simulated",
        );
        return std::ptr::null_mut();
    }
    if crate::pool::injected_failure() {
        return std::ptr::null_mut();
    }
    let start = va as usize;
    let offset = start % PAGE;
    let pages = (offset + length as usize).div_ceil(PAGE).max(1);
    let bytes = HEADER + pages * 8;
    let Some(l) = layout(bytes) else {
        return std::ptr::null_mut();
    };
    // SAFETY: non-zero size layout.
    let p = unsafe { alloc_zeroed(l) };
    if p.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: `p` has `bytes` writable bytes; the fields are at their x64
    // offsets (Next 0, Size 8, MdlFlags 10, MappedSystemVa 24, StartVa 32,
    // ByteCount 40, ByteOffset 44).
    unsafe {
        p.add(8).cast::<i16>().write(bytes as i16);
        p.add(32).cast::<usize>().write(start - offset);
        p.add(40).cast::<u32>().write(length);
        p.add(44).cast::<u32>().write(offset as u32);
    }
    live(|m| m.insert(p as usize, bytes));
    ALLOCATED.fetch_add(1, Ordering::Relaxed);
    p.cast()
}

/// # Safety
/// Arguments as for the ntoskrnl routine.
#[no_mangle]
pub unsafe extern "system" fn MmBuildMdlForNonPagedPool(mdl: PMDL) {
    let _sim = crate::fault::sim();
    crate::irql::require_at_most_dispatch("MmBuildMdlForNonPagedPool");
    if !live(|m| m.contains_key(&(mdl as usize))) {
        record(
            ViolationKind::WskBadCall,
            format!("MmBuildMdlForNonPagedPool({mdl:p}): not an MDL from IoAllocateMdl"),
        );
        return;
    }
    let p = mdl.cast::<u8>();
    // SAFETY: a live MDL built by IoAllocateMdl (header layout above).
    unsafe {
        let start = p.add(32).cast::<usize>().read();
        let offset = p.add(44).cast::<u32>().read() as usize;
        p.add(24).cast::<usize>().write(start + offset);
        let flags = p.add(10).cast::<i16>();
        flags.write(flags.read() | MDL_SOURCE_IS_NONPAGED_POOL);
    }
}

/// # Safety
/// Arguments as for the ntoskrnl routine.
#[no_mangle]
pub unsafe extern "system" fn IoFreeMdl(mdl: PMDL) {
    let _sim = crate::fault::sim();
    crate::irql::require_at_most_dispatch("IoFreeMdl");
    let Some(bytes) = live(|m| m.remove(&(mdl as usize))) else {
        record(
            ViolationKind::WskBadCall,
            format!("IoFreeMdl({mdl:p}): unknown or already freed"),
        );
        return;
    };
    if let Some(l) = layout(bytes) {
        // SAFETY: allocated above with this layout.
        unsafe { dealloc(mdl.cast(), l) };
    }
}
