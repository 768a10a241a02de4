//! Failing the k-th allocation driver code makes on one thread, whichever
//! allocator it uses: pool blocks, IRPs and MDLs (the imports) and the
//! global allocator (gate-core's and the driver's `Vec::try_reserve*`; in
//! the image the global allocator is the pool).
//!
//! The pool's own injection ([`crate::Sim::inject_pool_failures`]) counts
//! every thread's pool allocations in one global sequence. A request that
//! runs on the caller's thread (an IOCTL: the simulated I/O manager calls
//! the dispatch routine on the thread of `DeviceIoControl`) is better
//! tested with a sequence of its own, unaffected by the worker or DPC
//! threads: [`arm`] a plan on the calling thread, run the request,
//! [`disarm`] and read what it counted.
//!
//! Only *driver code* counts. The simulation marks what it runs: a
//! dispatch routine it calls runs as driver code ([`driver`]); every
//! import runs as simulation code ([`sim`], entered first thing in each
//! import), whose own allocations (its maps, captured events, debug
//! lines) never count and never fail. A pool block, IRP or MDL counts when
//! the import was called from driver code.
//!
//! The global allocator is the test binary's: a test that wants its
//! allocations in the sequence installs a `#[global_allocator]` that asks
//! [`global_alloc_fails`] before each `alloc`, `alloc_zeroed` and growing
//! `realloc`, and reports what it allocated and freed ([`global_allocated`],
//! [`global_freed`], [`global_reallocated`]) so a plan can tell whether
//! driver code kept any bytes
//! (tests/ioctl_alloc_failure.rs and tests/alloc_failure.rs do). Without
//! one, only pool, IRP and MDL allocations count.
//!
//! DriverEntry runs on a thread of its own: [`crate::Sim::load_driver_failing`]
//! arms the plan there.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Code {
    /// Test code, or a simulation thread outside any driver call.
    Other,
    /// A driver routine the simulation called (dispatch routine).
    Driver,
    /// An import the driver called (the simulation's own code).
    Sim,
}

/// The plan armed on one thread.
#[derive(Clone, Copy, Debug, Default)]
struct Plan {
    armed: bool,
    /// 1-based index of the allocation to fail (0: none, count only).
    fail_at: u64,
    counted: u64,
    failed: u64,
}

thread_local! {
    static CODE: Cell<Code> = const { Cell::new(Code::Other) };
    /// The outermost import on this thread was called by driver code.
    static FROM_DRIVER: Cell<bool> = const { Cell::new(false) };
    static PLAN: Cell<Plan> = const {
        Cell::new(Plan { armed: false, fail_at: 0, counted: 0, failed: 0 })
    };
    /// Global-allocator blocks driver code allocated on this thread while
    /// the plan is armed and that are still live.
    static LIVE: RefCell<Blocks> = const {
        RefCell::new(Blocks { n: 0, overflow: false, slots: [(0, 0); TRACKED] })
    };
}

/// Blocks tracked at once (more: `kept_bytes` is -1).
const TRACKED: usize = 1024;

/// Live blocks: (address, bytes attributed to driver code).
struct Blocks {
    n: usize,
    overflow: bool,
    slots: [(usize, usize); TRACKED],
}

impl Blocks {
    fn add(&mut self, p: usize, bytes: usize) {
        match self.slots.get_mut(self.n) {
            Some(s) => {
                *s = (p, bytes);
                self.n += 1;
            }
            None => self.overflow = true,
        }
    }

    /// Forgets `p`; the bytes it was tracked with.
    fn remove(&mut self, p: usize) -> Option<usize> {
        let i = self.slots[..self.n].iter().position(|s| s.0 == p)?;
        let bytes = self.slots[i].1;
        self.n -= 1;
        self.slots[i] = self.slots[self.n];
        Some(bytes)
    }

    fn kept(&self) -> i64 {
        if self.overflow {
            return -1;
        }
        self.slots[..self.n].iter().map(|s| s.1 as i64).sum()
    }
}

/// What ran before a [`Scope`] began (restored when it ends).
#[must_use = "the scope ends when this is dropped"]
pub struct Scope {
    code: Code,
    from_driver: bool,
}

impl Drop for Scope {
    fn drop(&mut self) {
        let _ = CODE.try_with(|c| c.set(self.code));
        let _ = FROM_DRIVER.try_with(|c| c.set(self.from_driver));
    }
}

fn enter(code: Code) -> Scope {
    let prev = CODE.try_with(|c| c.replace(code)).unwrap_or(Code::Other);
    let from_driver = FROM_DRIVER.try_with(Cell::get).unwrap_or(false);
    if code == Code::Sim && prev != Code::Sim {
        let _ = FROM_DRIVER.try_with(|c| c.set(prev == Code::Driver));
    }
    Scope {
        code: prev,
        from_driver,
    }
}

/// Simulation code until the scope ends (first thing in every import).
pub(crate) fn sim() -> Scope {
    enter(Code::Sim)
}

/// Driver code until the scope ends: around a driver routine the
/// simulation calls on the caller's thread (the dispatch routines), or in
/// a test that calls driver code (or an import, as driver code would)
/// directly.
pub fn driver() -> Scope {
    enter(Code::Driver)
}

/// Whether the calling thread runs driver code now (not an import, not
/// the harness): for a test's global allocator that accounts for what
/// driver code allocates and frees.
pub fn in_driver_code() -> bool {
    CODE.try_with(Cell::get) == Ok(Code::Driver)
}

/// Arms a plan on the calling thread: from now on every allocation driver
/// code makes on this thread is counted, and the `fail_at`-th (1-based)
/// fails; 0 counts without failing. Replaces an earlier plan.
pub fn arm(fail_at: u64) {
    PLAN.with(|p| {
        p.set(Plan {
            armed: true,
            fail_at,
            counted: 0,
            failed: 0,
        })
    });
    LIVE.with(|l| {
        let mut l = l.borrow_mut();
        l.n = 0;
        l.overflow = false;
    });
}

/// What a plan counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counted {
    /// Allocations driver code asked for on the thread (the failed ones
    /// included).
    pub allocations: u64,
    /// Allocations the plan failed (0 or 1).
    pub failed: u64,
    /// Global-allocator bytes driver code allocated on the thread while the
    /// plan was armed and that were not freed (on the thread) by
    /// [`disarm`], as reported by the test's allocator
    /// ([`global_allocated`], [`global_freed`], [`global_reallocated`]); a
    /// refused request must keep 0. -1 when more than 1024 such blocks
    /// were live at once (not tracked).
    pub kept_bytes: i64,
}

/// Ends the calling thread's plan; what it counted.
pub fn disarm() -> Counted {
    PLAN.with(|p| {
        let v = p.replace(Plan::default());
        Counted {
            allocations: v.counted,
            failed: v.failed,
            kept_bytes: LIVE.with(|l| l.borrow().kept()),
        }
    })
}

/// Counts one allocation against the thread's plan: `Some(true)` when it
/// must fail, `Some(false)` when it goes on, `None` when no plan counts it.
fn count(from_driver: bool) -> Option<bool> {
    if !from_driver {
        return None;
    }
    PLAN.try_with(|p| {
        let mut v = p.get();
        if !v.armed {
            return None;
        }
        v.counted = v.counted.saturating_add(1);
        let fail = v.counted == v.fail_at;
        if fail {
            v.failed = v.failed.saturating_add(1);
        }
        p.set(v);
        Some(fail)
    })
    .ok()
    .flatten()
}

/// For a pool, IRP or MDL allocation (inside its import): the thread's
/// plan's answer when the import was called by driver code.
pub(crate) fn import_alloc() -> Option<bool> {
    let from_driver = CODE.try_with(Cell::get) == Ok(Code::Sim)
        && FROM_DRIVER.try_with(Cell::get).unwrap_or(false);
    count(from_driver)
}

/// For a test's `#[global_allocator]`: whether this allocation must fail
/// (true only on a thread with a plan armed, in driver code, at the
/// plan's index). Allocates nothing (const thread-locals).
pub fn global_alloc_fails() -> bool {
    let driver = CODE.try_with(Cell::get) == Ok(Code::Driver);
    count(driver).unwrap_or(false)
}

fn armed() -> bool {
    PLAN.try_with(|p| p.get().armed).unwrap_or(false)
}

fn with_live(f: impl FnOnce(&mut Blocks)) {
    let _ = LIVE.try_with(|l| {
        if let Ok(mut l) = l.try_borrow_mut() {
            f(&mut l);
        }
    });
}

/// For a test's `#[global_allocator]`: the block `p` of `bytes` was
/// allocated. Tracked for the thread's plan when driver code runs.
pub fn global_allocated(p: *mut u8, bytes: usize) {
    if armed() && in_driver_code() {
        with_live(|l| l.add(p as usize, bytes));
    }
}

/// For a test's `#[global_allocator]`: the block `p` was freed (by any
/// code on this thread).
pub fn global_freed(p: *mut u8) {
    if armed() {
        with_live(|l| {
            l.remove(p as usize);
        });
    }
}

/// For a test's `#[global_allocator]`: the block `old` of `old_bytes`
/// became `new` of `new_bytes`. A tracked block stays tracked; an older
/// block that driver code grows is tracked for its growth.
pub fn global_reallocated(old: *mut u8, old_bytes: usize, new: *mut u8, new_bytes: usize) {
    if !armed() {
        return;
    }
    let driver = in_driver_code();
    with_live(|l| match l.remove(old as usize) {
        Some(b) => l.add(
            new as usize,
            b.saturating_add(new_bytes).saturating_sub(old_bytes),
        ),
        None if driver && new_bytes > old_bytes => {
            l.add(new as usize, new_bytes.saturating_sub(old_bytes))
        }
        None => {}
    });
}

/// The `#[global_allocator]` a test installs to put the global allocator in
/// the plan ([`global_alloc_fails`] and the `global_*` reports), around the
/// system allocator:
/// `#[global_allocator] static ALLOC: gate_usersim::fault::PlannedAlloc = gate_usersim::fault::PlannedAlloc;`
/// The system allocator, refusing what the calling thread's plan says
/// (only ever driver code on a thread with a plan armed), and reporting
/// what it allocated and freed so the plan can count the bytes driver code
/// kept (`Counted::kept_bytes`): a refused request must free whatever it
/// allocated before it returns.
pub struct PlannedAlloc;

// SAFETY: forwards to the system allocator; refusing (NULL) is allowed by
// the GlobalAlloc contract.
unsafe impl GlobalAlloc for PlannedAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if global_alloc_fails() {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            global_allocated(p, l.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if global_alloc_fails() {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            global_allocated(p, l.size());
        }
        p
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        // A growing realloc is an allocation (Vec::try_reserve on a Vec
        // that has a buffer); a failed one leaves `p` as it was.
        if new_size > l.size() && global_alloc_fails() {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's contract.
        let q = unsafe { System.realloc(p, l, new_size) };
        if !q.is_null() {
            global_reallocated(p, l.size(), q, new_size);
        }
        q
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        global_freed(p);
        // SAFETY: `p` came from this allocator with `l`.
        unsafe { System.dealloc(p, l) }
    }
}
