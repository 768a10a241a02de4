//! Pool: ExAllocatePoolWithTag / ExAllocatePool2 / ExFreePoolWithTag over
//! the host allocator, with accounting by tag, failure injection and
//! detection of double, unknown and wrong-tag frees.
//!
//! Blocks are 16-byte aligned like x64 pool. ExAllocatePoolWithTag memory is
//! filled with 0xCD (never assume zeroed pool); ExAllocatePool2 zeroes unless
//! POOL_FLAG_UNINITIALIZED; freed memory is filled with 0xDD before release.

use crate::irql;
use crate::recent::RecentSet;
use crate::violation::{record, ViolationKind};
use crate::FastMap as HashMap;
use gate_ksys::{DISPATCH_LEVEL, POOL_FLAG_NON_PAGED, POOL_FLAG_UNINITIALIZED, SIZE_T};
use std::alloc::{alloc, dealloc, Layout};
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::sync::Mutex;

const ALIGN: usize = 16;
const POOL_FLAG_PAGED: u64 = 0x100;
const POOL_FLAG_NON_PAGED_EXECUTE: u64 = 0x80;

struct Block {
    tag: u32,
    size: usize,
}

#[derive(Default)]
struct Pool {
    live: HashMap<usize, Block>,
    /// Recently freed addresses (bounded), for double-free detection.
    freed: RecentSet<usize>,
    /// Allocations to let through before failing.
    fail_skip: u64,
    /// Allocations to fail after `fail_skip`.
    fail_count: u64,
    failed: u64,
    total_allocs: u64,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut Pool) -> R) -> R {
    let mut g = POOL.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(Pool::default))
}

/// Outstanding allocations of one tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagStats {
    /// The tag as its four characters (e.g. "Gate").
    pub tag: String,
    pub raw_tag: u32,
    pub count: usize,
    pub bytes: usize,
}

/// Pool counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Outstanding blocks by tag (empty when nothing leaks).
    pub outstanding: Vec<TagStats>,
    /// Allocations that succeeded since reset.
    pub allocations: u64,
    /// Allocations failed by injection since reset.
    pub injected_failures: u64,
}

/// Renders a pool tag as its characters (tags are stored little-endian:
/// 'etaG' in C spells "Gate" in memory).
pub fn tag_name(tag: u32) -> String {
    tag.to_le_bytes()
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

pub(crate) fn stats() -> PoolStats {
    with(|p| {
        let mut by: BTreeMap<u32, (usize, usize)> = BTreeMap::new();
        for b in p.live.values() {
            let e = by.entry(b.tag).or_default();
            e.0 += 1;
            e.1 += b.size;
        }
        PoolStats {
            outstanding: by
                .into_iter()
                .map(|(t, (count, bytes))| TagStats {
                    tag: tag_name(t),
                    raw_tag: t,
                    count,
                    bytes,
                })
                .collect(),
            allocations: p.total_allocs,
            injected_failures: p.failed,
        }
    })
}

pub(crate) fn inject_failures(skip: u64, count: u64) {
    with(|p| {
        p.fail_skip = skip;
        p.fail_count = count;
    });
}

/// Forgets the accounting (blocks still outstanding are leaked on purpose:
/// a stray thread of an earlier test may still use them).
pub(crate) fn reset() {
    with(|p| *p = Pool::default());
}

/// Whether [`ptr`, `ptr + size`) is a live pool block start (for tests).
pub(crate) fn is_live(ptr: *const c_void) -> bool {
    with(|p| p.live.contains_key(&(ptr as usize)))
}

/// Counts one allocation against the injection plan (pool blocks and, as
/// on Windows where IRPs come from the pool, IoAllocateIrp): true when
/// this one must fail.
pub(crate) fn injected_failure() -> bool {
    // A plan armed on this thread for driver allocations comes first (see
    // `fault`); it leaves the global sequence alone.
    if let Some(fail) = crate::fault::import_alloc() {
        return fail;
    }
    with(|p| {
        if p.fail_count > 0 {
            if p.fail_skip > 0 {
                p.fail_skip -= 1;
                false
            } else {
                p.fail_count -= 1;
                p.failed += 1;
                true
            }
        } else {
            false
        }
    })
}

fn allocate(bytes: SIZE_T, tag: u32, fill: Option<u8>, who: &str) -> *mut c_void {
    if tag == 0 {
        record(ViolationKind::BadPoolCall, format!("{who} with tag 0"));
    }
    if injected_failure() {
        return std::ptr::null_mut();
    }
    let Ok(layout) = Layout::from_size_align(bytes.max(1), ALIGN) else {
        return std::ptr::null_mut();
    };
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { alloc(layout) };
    if p.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: `p` is a fresh block of `layout.size()` bytes.
    unsafe { std::ptr::write_bytes(p, fill.unwrap_or(0xCD), layout.size()) };
    with(|pl| {
        pl.freed.remove(&(p as usize));
        pl.live.insert(p as usize, Block { tag, size: bytes });
        pl.total_allocs += 1;
    });
    p.cast()
}

/// # Safety
/// Plain allocation; always safe to call.
#[no_mangle]
pub unsafe extern "system" fn ExAllocatePoolWithTag(
    pool_type: i32,
    bytes: SIZE_T,
    tag: u32,
) -> *mut c_void {
    let _sim = crate::fault::sim();
    crate::hold::point("ExAllocatePoolWithTag");
    // POOL_TYPE: bit 0 set = paged (PagedPool = 1, PagedPoolCacheAligned = 5...).
    if pool_type & 1 == 1 && irql::current() >= DISPATCH_LEVEL {
        record(
            ViolationKind::BadPoolCall,
            format!("ExAllocatePoolWithTag(paged pool type {pool_type}) at DISPATCH_LEVEL"),
        );
    }
    irql::require_at_most_dispatch("ExAllocatePoolWithTag");
    allocate(bytes, tag, None, "ExAllocatePoolWithTag")
}

/// `ExAllocatePool2`, handed out through MmGetSystemRoutineAddress.
///
/// # Safety
/// Plain allocation; always safe to call.
pub unsafe extern "system" fn ExAllocatePool2(flags: u64, bytes: SIZE_T, tag: u32) -> *mut c_void {
    let _sim = crate::fault::sim();
    crate::hold::point("ExAllocatePool2");
    let kinds = flags & (POOL_FLAG_NON_PAGED | POOL_FLAG_PAGED | POOL_FLAG_NON_PAGED_EXECUTE);
    if kinds.count_ones() != 1 {
        record(
            ViolationKind::BadPoolCall,
            format!("ExAllocatePool2 flags {flags:#x} name no single pool type"),
        );
        return std::ptr::null_mut();
    }
    if kinds == POOL_FLAG_PAGED && irql::current() >= DISPATCH_LEVEL {
        record(
            ViolationKind::BadPoolCall,
            "ExAllocatePool2(paged) at DISPATCH_LEVEL",
        );
    }
    irql::require_at_most_dispatch("ExAllocatePool2");
    let fill = if flags & POOL_FLAG_UNINITIALIZED != 0 {
        None
    } else {
        Some(0)
    };
    allocate(bytes, tag, fill, "ExAllocatePool2")
}

/// # Safety
/// `p` must be a block from ExAllocatePoolWithTag/ExAllocatePool2 (anything
/// else is recorded as a violation and not released).
#[no_mangle]
pub unsafe extern "system" fn ExFreePoolWithTag(p: *mut c_void, tag: u32) {
    let _sim = crate::fault::sim();
    crate::hold::point("ExFreePoolWithTag");
    irql::require_at_most_dispatch("ExFreePoolWithTag");
    let addr = p as usize;
    let block = with(|pl| {
        let b = pl.live.remove(&addr);
        if b.is_some() {
            pl.freed.insert(addr);
        }
        (b, pl.freed.contains(&addr))
    });
    let Some(block) = block.0 else {
        if block.1 {
            record(
                ViolationKind::DoubleFree,
                format!("ExFreePoolWithTag({p:p}): freed twice"),
            );
        } else {
            record(
                ViolationKind::FreeUnknownPointer,
                format!("ExFreePoolWithTag({p:p}): not a pool block"),
            );
        }
        return;
    };
    if tag != 0 && tag != block.tag {
        record(
            ViolationKind::FreeWrongTag,
            format!(
                "ExFreePoolWithTag({p:p}, '{}'): block was allocated with tag '{}'",
                tag_name(tag),
                tag_name(block.tag)
            ),
        );
    }
    crate::dispatcher::check_free_range(addr, block.size);
    let size = block.size.max(1);
    // SAFETY: `p` was allocated by `allocate` with exactly this layout and
    // has just been removed from the live set, so it is freed once.
    unsafe {
        std::ptr::write_bytes(p.cast::<u8>(), 0xDD, size);
        dealloc(p.cast(), Layout::from_size_align_unchecked(size, ALIGN));
    }
}
