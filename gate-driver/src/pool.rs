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

/// A pool allocation failed (the request is refused, never a bug check).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoMemory {
    /// Bytes asked for.
    pub bytes: usize,
}

/// Allocates `layout` from the pool: NULL when the pool refuses.
fn pool_alloc(layout: Layout) -> *mut u8 {
    // SAFETY: any layout is accepted (zero sizes are rounded up to 1).
    unsafe { PoolAllocator.alloc(layout) }
}

/// Frees a block from [`pool_alloc`] with the same layout.
///
/// # Safety
/// `p` came from `pool_alloc(layout)` and is freed once.
unsafe fn pool_free(p: *mut u8, layout: Layout) {
    // SAFETY: per the caller.
    unsafe { PoolAllocator.dealloc(p, layout) }
}

/// One value in its own pool block (tag [`POOL_TAG`]): the driver's `Box`,
/// with a fallible constructor. Every allocation the driver makes itself
/// goes through [`PoolBox`] or [`PoolVec`], so it reaches the kernel pool
/// directly (and the simulation's pool, with its failure injection and
/// leak accounting, in host tests); `alloc`'s infallible `Box`/`Vec` are
/// kept out of the crate by clippy (`gate-driver/clippy.toml`).
pub struct PoolBox<T> {
    ptr: core::ptr::NonNull<T>,
}

// SAFETY: a PoolBox owns its T like a Box does.
unsafe impl<T: Send> Send for PoolBox<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for PoolBox<T> {}

impl<T> PoolBox<T> {
    /// Moves `value` into a new pool block; `Err` (dropping `value`) when
    /// the pool refuses.
    pub fn try_new(value: T) -> Result<PoolBox<T>, NoMemory> {
        let layout = Layout::new::<T>();
        let p = pool_alloc(layout).cast::<T>();
        let Some(ptr) = core::ptr::NonNull::new(p) else {
            return Err(NoMemory {
                bytes: layout.size(),
            });
        };
        // SAFETY: a fresh block of T's size and alignment.
        unsafe { ptr.as_ptr().write(value) };
        Ok(PoolBox { ptr })
    }

    /// Gives up ownership (see [`PoolBox::from_raw`]).
    pub fn into_raw(b: PoolBox<T>) -> *mut T {
        let p = b.ptr.as_ptr();
        core::mem::forget(b);
        p
    }

    /// Takes back a pointer from [`PoolBox::into_raw`].
    ///
    /// # Safety
    /// `p` came from `into_raw` and is taken back once.
    pub unsafe fn from_raw(p: *mut T) -> PoolBox<T> {
        PoolBox {
            // SAFETY: `into_raw` pointers are never NULL.
            ptr: unsafe { core::ptr::NonNull::new_unchecked(p) },
        }
    }
}

impl<T> core::ops::Deref for PoolBox<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the block holds an initialised T for our lifetime.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> core::ops::DerefMut for PoolBox<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, and we are the only owner.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T> Drop for PoolBox<T> {
    fn drop(&mut self) {
        // SAFETY: we own an initialised T in a block from `pool_alloc` with
        // T's layout; it is dropped and freed once.
        unsafe {
            core::ptr::drop_in_place(self.ptr.as_ptr());
            pool_free(self.ptr.as_ptr().cast(), Layout::new::<T>());
        }
    }
}

/// A vector of fixed capacity in one pool block: allocated once
/// ([`PoolVec::with_capacity`], fallible), never grown; [`PoolVec::push`]
/// hands the value back when full.
pub struct PoolVec<T> {
    ptr: core::ptr::NonNull<T>,
    len: usize,
    cap: usize,
}

// SAFETY: a PoolVec owns its elements like a Vec does.
unsafe impl<T: Send> Send for PoolVec<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for PoolVec<T> {}

impl<T> PoolVec<T> {
    /// Room for `cap` elements (no allocation for 0).
    pub fn with_capacity(cap: usize) -> Result<PoolVec<T>, NoMemory> {
        let too_big = NoMemory { bytes: usize::MAX };
        let layout = Layout::array::<T>(cap).map_err(|_| too_big)?;
        if layout.size() == 0 {
            return Ok(PoolVec {
                ptr: core::ptr::NonNull::dangling(),
                len: 0,
                cap,
            });
        }
        let p = pool_alloc(layout).cast::<T>();
        let ptr = core::ptr::NonNull::new(p).ok_or(NoMemory {
            bytes: layout.size(),
        })?;
        Ok(PoolVec { ptr, len: 0, cap })
    }

    /// `cap` copies of `value` (full at once; a relay's buffer).
    pub fn filled(cap: usize, value: T) -> Result<PoolVec<T>, NoMemory>
    where
        T: Copy,
    {
        let mut v: PoolVec<T> = PoolVec::with_capacity(cap)?;
        for i in 0..cap {
            // SAFETY: `i < cap`: inside the block, written once.
            unsafe { v.ptr.as_ptr().add(i).write(value) };
        }
        v.len = cap;
        Ok(v)
    }

    /// Appends; `Err(value)` when full (never allocates).
    pub fn push(&mut self, value: T) -> Result<(), T> {
        if self.len >= self.cap {
            return Err(value);
        }
        // SAFETY: `len < cap`: the slot is inside the block and unused.
        unsafe { self.ptr.as_ptr().add(self.len).write(value) };
        self.len = self.len.saturating_add(1);
        Ok(())
    }

    /// Removes the last element.
    pub fn pop(&mut self) -> Option<T> {
        let last = self.len.checked_sub(1)?;
        self.len = last;
        // SAFETY: the slot held an initialised element, now outside `len`.
        Some(unsafe { self.ptr.as_ptr().add(last).read() })
    }

    /// Elements held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The fixed capacity.
    pub fn capacity(&self) -> usize {
        self.cap
    }
}

impl<T> core::ops::Deref for PoolVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the first `len` slots are initialised.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> core::ops::DerefMut for PoolVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as above; we are the only owner.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> AsRef<[T]> for PoolVec<T> {
    fn as_ref(&self) -> &[T] {
        self
    }
}

impl<T> Drop for PoolVec<T> {
    fn drop(&mut self) {
        // SAFETY: the first `len` slots are initialised and dropped once;
        // the block came from `pool_alloc` with this array layout.
        unsafe {
            core::ptr::drop_in_place(core::ptr::slice_from_raw_parts_mut(
                self.ptr.as_ptr(),
                self.len,
            ));
            if let Ok(layout) = Layout::array::<T>(self.cap) {
                if layout.size() != 0 {
                    pool_free(self.ptr.as_ptr().cast(), layout);
                }
            }
        }
    }
}

/// Appends to a `Vec` whose capacity was reserved with `try_reserve*`
/// (for gate-core's configuration lists, which are `Vec`s): never grows,
/// so never allocates. A value that does not fit is dropped (the callers
/// reserve exactly what they push).
pub fn push_reserved<T>(v: &mut alloc::vec::Vec<T>, value: T) {
    if v.len() < v.capacity() {
        // The one sanctioned `Vec::push`: within the reserved capacity it
        // cannot reallocate.
        #[allow(clippy::disallowed_methods)]
        v.push(value);
    }
}
