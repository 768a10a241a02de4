//! gate-driver: the Windows kernel driver (WSK conditional-accept gate).
//!
//! All driver code lives in this `#![no_std]` library; the Windows image
//! root (src/main.rs) only plugs in the allocator and panic handler and
//! links [`DriverEntry`]. On Linux the same code runs against gate-usersim.
//!
//! | module | owns |
//! |---|---|
//! | [`entry`] | DriverEntry and DriverUnload: start-up and tear-down order |
//! | [`listener`] | the worker thread: the listener's whole life cycle |
//! | [`closer`] | graceful closes in flight, with a deadline, for connections the worker closes |
//! | [`decision`] | the listen callbacks: inspect, abort, accept |
//! | [`pending`] | pended requests: the bounded table, its timer, completion |
//! | [`deadline`] | pended slots ordered by deadline (indexed min-heap) |
//! | [`idmap`] | pended slots by inspect ID (hash index) |
//! | [`post_accept`] | the fallback without conditional accept (Wine): WskAccept, then decide |
//! | [`relay`] | every accepted connection carried to the backend: pairs, worker, PROXY header |
//! | [`config`] | registry configuration: names, types, defaults, checks |
//! | [`control`] | the control device: live status, changes, bans (IOCTL API, gatectl's server) |
//! | [`addr`] | SOCKADDR <-> IpAddr conversion |
//! | [`seed`] | the per-start random seed of gate-core's hash |
//! | [`telemetry`] | the driver's events (forwarded to [`etw`]) and counters |
//! | [`kernel`] | small safe wrappers over the kernel bindings |
//! | [`pool`], [`panic`] | global allocator and panic bug check |
#![no_std]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::float_arithmetic,
        clippy::todo,
        clippy::unimplemented,
        clippy::unreachable
    )
)]

extern crate alloc;

// Unit tests run against the user-mode simulation, which defines every
// imported kernel function.
#[cfg(test)]
extern crate std;
#[cfg(test)]
use gate_usersim as _;

pub mod addr;
pub mod closer;
pub mod config;
pub mod control;
pub mod deadline;
pub mod decision;
pub mod entry;
pub mod errorlog;
pub mod etw;
pub mod idmap;
pub mod kernel;
pub mod listener;
pub mod panic;
pub mod pending;
pub mod pool;
pub mod post_accept;
pub mod relay;
pub mod seed;
pub mod state;
pub mod telemetry;

pub use entry::DriverEntry;
