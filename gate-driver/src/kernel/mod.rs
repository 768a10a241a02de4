//! Small safe abstractions over the raw kernel bindings (gate-ksys), kept
//! apart from the gate's logic. Each type owns one kernel object or idiom:
//!
//! | module | owns |
//! |---|---|
//! | [`dbg`] | `dbg_print!`: formatted DbgPrintEx without allocation |
//! | [`routine`] | MmGetSystemRoutineAddress by `&str` name |
//! | [`clock`] | the interrupt-time clock (first routine found wins) |
//! | [`spin`] | `KSpinLock` (a gate-core `RawLock`) and a guarded `SpinMutex` |
//! | [`event`] | `KEvent`: notification/synchronization events, waits |
//! | [`irp`] | `SyncIrp`: an IRP + completion event for synchronous WSK calls |
//! | [`thread`] | `SystemThread`: create, then wait for a system thread |
//! | [`timer`] | `Timer`: a KTIMER with its KDPC |
//! | [`ustr`] | building `UNICODE_STRING`s from Rust strings |

pub mod clock;
pub mod dbg;
pub mod event;
pub mod irp;
pub mod routine;
pub mod spin;
pub mod thread;
pub mod timer;
pub mod ustr;
