//! The kernel pool as Rust's global allocator.
//!
//! [`PoolAllocator`] allocates non-paged, non-executable pool tagged
//! [`POOL_TAG`] ("Gate" in pool-tag tools). It calls `ExAllocatePool2` when
//! [`init`] (run once in `DriverEntry`, at PASSIVE_LEVEL) found it, and falls
//! back to `ExAllocatePoolWithTag(NonPagedPoolNx)` on systems without it
//! (before Windows 10 2004, and Wine). Pool blocks are 16-byte aligned on
//! x64; a larger alignment (gate-core's 64-byte shards) is served by
//! over-allocating and keeping the block's start just below the aligned
//! pointer.

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, Ordering};

use gate_ksys::{
    ExAllocatePoolWithTag, ExFreePoolWithTag, NonPagedPoolNx, PFN_ExAllocatePool2,
    POOL_FLAG_NON_PAGED, POOL_FLAG_UNINITIALIZED,
};

/// The pool tag: the bytes "Gate" as pool-tag tools display them.
pub const POOL_TAG: u32 = u32::from_le_bytes(*b"Gate");

/// Alignment every pool block has on x64.
const POOL_ALIGN: usize = 16;

/// ExAllocatePool2, when the system has it (set by [`init`]).
static EX_ALLOCATE_POOL2: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());

/// Resolves `ExAllocatePool2`. Call once at PASSIVE_LEVEL before the first
/// allocation that should use it; allocations before it use the fallback.
pub fn init() {
    let p = crate::kernel::routine::system_routine("ExAllocatePool2");
    EX_ALLOCATE_POOL2.store(p, Ordering::Release);
}

/// Forgets `ExAllocatePool2` (unload, so a reload resolves it again).
pub fn reset() {
    EX_ALLOCATE_POOL2.store(core::ptr::null_mut(), Ordering::Release);
}

fn raw_alloc(bytes: usize) -> *mut u8 {
    let f = EX_ALLOCATE_POOL2.load(Ordering::Acquire);
    if f.is_null() {
        // SAFETY: ExAllocatePoolWithTag may be called at IRQL <= DISPATCH_LEVEL
        // for non-paged pool; it returns NULL on failure, which we pass on.
        unsafe { ExAllocatePoolWithTag(NonPagedPoolNx, bytes, POOL_TAG).cast() }
    } else {
        // SAFETY: `f` was returned by MmGetSystemRoutineAddress for
        // "ExAllocatePool2", whose signature is PFN_ExAllocatePool2.
        let f: PFN_ExAllocatePool2 = unsafe { core::mem::transmute(f) };
        // SAFETY: same IRQL rule as above; NULL on failure.
        unsafe {
            f(
                POOL_FLAG_NON_PAGED | POOL_FLAG_UNINITIALIZED,
                bytes,
                POOL_TAG,
            )
            .cast()
        }
    }
}

/// The global allocator of the driver image (and of the simulation tests).
pub struct PoolAllocator;

// SAFETY: blocks come from the pool, are at least `layout.size()` bytes and
// aligned to `layout.align()` (16 natively; larger alignments by the
// over-allocation below), and `dealloc` frees exactly the block `alloc`
// obtained (recomputed from the same layout).
unsafe impl GlobalAlloc for PoolAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let size = layout.size().max(1);
        if layout.align() <= POOL_ALIGN {
            return raw_alloc(size);
        }
        // Room for the alignment slack and the saved block start.
        let Some(total) = size.checked_add(layout.align()) else {
            return core::ptr::null_mut();
        };
        let block = raw_alloc(total);
        if block.is_null() {
            return block;
        }
        // `align_offset` of a power-of-two alignment on a u8 pointer is exact.
        let mut off = block.align_offset(layout.align());
        if off < core::mem::size_of::<usize>() {
            off = off.wrapping_add(layout.align());
        }
        // SAFETY: `block` is 16-aligned and `align` >= 32, so `off` is a
        // multiple of 16 in 16..=align; hence `block + off + size <=
        // block + total` stays inside the block.
        let aligned = unsafe { block.add(off) };
        // SAFETY: `aligned - 8` lies inside the block (off >= 8) and is
        // 8-aligned (aligned is at least 32-aligned).
        unsafe { aligned.cast::<usize>().sub(1).write(block as usize) };
        aligned
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let block = if layout.align() <= POOL_ALIGN {
            ptr
        } else {
            // SAFETY: `alloc` stored the block start just below `ptr`.
            unsafe { ptr.cast::<usize>().sub(1).read() as *mut u8 }
        };
        // SAFETY: `block` came from the pool with our tag and is freed once.
        unsafe { ExFreePoolWithTag(block.cast(), POOL_TAG) };
    }
}
