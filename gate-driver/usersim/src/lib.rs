//! gate-usersim: a user-mode implementation of exactly the kernel and WSK
//! routines gate-driver imports (gate-ksys `imports.rs`), so the driver's
//! code — FFI calls, IRP completion routines, WSK callbacks — runs unchanged
//! in host tests. The approach of Microsoft's usersim for ebpf-for-windows.
//!
//! Every import is defined here as `#[no_mangle] pub unsafe extern "system"`
//! with the ksys signature; the routines the driver resolves at run time
//! (ExAllocatePool2, KeQueryInterruptTime*, Etw*) come from
//! MmGetSystemRoutineAddress. A test crate links them with
//! `use gate_usersim as _;` (or by using the harness).
//!
//! # Harness
//! ```ignore
//! use gate_usersim::*;
//! let sim = Sim::new();                       // exclusive + reset
//! sim.registry_set(PARAMS, "Port", RegValue::Dword(8080));
//! let driver = sim.load_driver(gate_driver::DriverEntry, SERVICE_KEY).unwrap();
//! let l = sim.wait_listener(Duration::from_secs(5)).unwrap();
//! assert!(l.conditional_accept && l.accept_event);
//! let req = sim.connect("10.0.0.1:4000".parse().unwrap(), l.addr);
//! assert_eq!(req.verdict(), Some(Verdict::Accept));
//! sim.advance_ms(100);                        // virtual clock: timers + DPCs
//! driver.unload(&sim).assert_clean();         // pool, IRPs, sockets, threads...
//! sim.assert_no_violations();
//! ```
//!
//! # What is simulated, and how
//! - Pool ([`pool`]): tag accounting, double/unknown/wrong-tag frees, failure
//!   injection, ExAllocatePool2 hideable ([`Sim::hide_routine`]).
//! - IRQL ([`irql`]): per thread; spin locks raise to DISPATCH_LEVEL and
//!   really exclude; DPCs, I/O completions and WSK callbacks run at
//!   DISPATCH_LEVEL; routines check the level they need.
//! - Dispatcher ([`dispatcher`]): events, waits with relative/absolute
//!   timeouts, timers with DPCs on a DPC thread, KeFlushQueuedDpcs, all on
//!   a virtual clock ([`clock`]) the test advances, or real time.
//! - Objects ([`objects`]): system threads (waitable, signalled on exit),
//!   handles, references. Registry ([`registry`]): in memory.
//! - IRPs ([`irp`]): real layout, IoCompleteRequest semantics, completion
//!   inline or on an I/O thread ([`CompletionMode`]).
//! - WSK ([`wsk`]): registration, provider NPI, listening sockets with
//!   conditional accept, the inspect/accept/abort callbacks, pend and
//!   WskInspectComplete, connection sockets with send/receive/disconnect,
//!   and the contract's nasty cases. Wine-style stubs on demand
//!   ([`Sim::set_conditional_accept_supported`],
//!   [`Sim::set_disconnect_supported`]): the call returns
//!   STATUS_NOT_IMPLEMENTED without completing its IRP, which real WSK
//!   never does.
//! - Devices ([`device`]): IoCreateDevice, symbolic links, the device's
//!   DACL (decoded), user-mode opens dispatched as the I/O manager does
//!   (IRP_MJ_CREATE/CLEANUP/CLOSE, METHOD_BUFFERED IRP_MJ_DEVICE_CONTROL
//!   with one shared buffer and the CTL_CODE access bits enforced)
//!   ([`Sim::open_device`]).
//! - Real sockets ([`wsk::real`], Linux): a connection socket can have a
//!   real Linux TCP socket behind it (accepted after a real handshake, or
//!   opened by WskConnect), so driver code moves real bytes.
//! - NFQUEUE front ([`nfq`], feature `nfq`): real SYNs decided by the
//!   driver before the handshake (gate-sim is its binary).
//! - I/O error log ([`errorlog`]): IoAllocateErrorLogEntry and
//!   IoWriteErrorLogEntry; written entries are decoded for tests
//!   ([`Sim::error_log`]).
//! - ETW ([`etw`], written by the ETW helper): Etw* routines decoding the
//!   driver's TraceLogging events into a capture ([`Sim::events`]), a
//!   window of the most recent events with totals by name
//!   ([`Sim::event_counts`]) and an optional sink ([`etw::set_sink`]).
//! - Bounded memory ([`recent`], `wsk::history`): finished requests and
//!   closed sockets are kept for a window ([`Sim::set_history_window`])
//!   and then retired; logs, debug lines and violations are rings with
//!   totals; every per-SYN and per-close path is O(1).
//! - Holds ([`hold`]): any driver routine (IRP completion, DPC, system
//!   thread) can be held before any of its import calls (or just after a
//!   spin lock release), so a test can run DriverUnload meanwhile; every
//!   import called after DriverUnload returned (or after a failed
//!   DriverEntry) is a `CodeAfterUnload` violation.
//!   [`CompletionMode::Parallel`] completes each IRP on a thread of its own.
//! - Allocation faults per thread ([`fault`]): the k-th allocation driver
//!   code makes on one thread fails, whichever allocator (pool, IRP, MDL,
//!   and the test binary's global allocator if it asks); the simulation's
//!   own code (every import) never counts.
//! - Violations ([`violation`]): every broken rule is recorded with a
//!   [`ViolationKind`]; a good run has none.
//!
//! Set `GATE_SIM_DEBUG=1` to echo debug output and violations to stderr.
#![allow(non_snake_case, non_upper_case_globals, clippy::missing_safety_doc)]

/// Hash maps and sets of the provider's tables (hit several times per SYN):
/// foldhash's fast hasher instead of SipHash, still seeded per process.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type FastSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

pub mod churn;
pub mod clock;
#[cfg(target_os = "linux")]
pub mod control_channel;
pub mod debug;
pub mod device;
pub mod dispatcher;
pub mod errorlog;
pub mod etw;
pub mod fault;
pub mod harness;
pub mod hold;
pub mod irp;
pub mod irql;
pub mod mdl;
#[cfg(all(feature = "nfq", target_os = "linux"))]
pub mod nfq;
pub mod objects;
pub mod pool;
pub mod recent;
pub mod registry;
pub mod routines;
pub mod spinlock;
pub mod violation;
pub mod wsk;

#[cfg(target_os = "linux")]
pub use control_channel::{ControlServer, ControlSocket};
pub use debug::{BugCheck, DebugLine};
pub use device::{DeviceHandle, DeviceView, IoctlResult};
pub use harness::{Conn, Driver, DriverEntryFn, LeakReport, Request, Sim};
pub use hold::{Hold, HoldAt, Routine};
pub use irp::{CompletionMode, IrpStats};
pub use objects::ObjectStats;
pub use pool::{tag_name, PoolStats, TagStats};
pub use registry::RegValue;
pub use violation::{Violation, ViolationKind};
pub use wsk::connect::BackendMode;
pub use wsk::net::{ConnInfo, ListenerInfo, RequestInfo};
pub use wsk::{RequestState, SocketState, TableSizes, Verdict};

/// The Etw* routines, from the [`etw`] module (NULL for other names).
pub(crate) fn etw_routine(name: &str) -> *mut core::ffi::c_void {
    etw::resolve_name(name)
}
