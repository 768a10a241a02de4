//! gate-core: the decision engine of the gate.
//!
//! For every SYN the kernel driver calls [`Gate::decide`] (inside
//! `WskInspectEvent`, at IRQL <= DISPATCH_LEVEL, on several CPUs at once)
//! and gets a [`Decision`]: accept, reject, or pend until a given time, with
//! the reason, the tokens left and the key, for telemetry.
//!
//! `#![no_std]` + `alloc`: every byte is allocated once in [`Gate::new`]
//! (exactly [`Config::memory_bytes`]); the decision path never allocates,
//! never blocks beyond a short spin lock, never panics, uses no floating
//! point, and reads no clock (the caller passes `now` in 100 ns ticks).
//!
//! Guarantees, each with its source in a module's docs and a test:
//!
//! * **Rate.** Per key and globally, accepted connections in any window of
//!   `w` ticks never exceed `burst + rate * w` (burst 1 above 2441/s:
//!   `1 + rate * (w + 1 tick)`, see [`bucket`]), with aborted pends in the
//!   mix; a key counts a pend at its accept time, the global bucket when it
//!   is decided. The configured rate is
//!   delivered to within 2^-12 (0.025 %) over a long run, for every valid
//!   rate ([`time::Interval`]), also after a live change from any rate to
//!   any other (buckets are converted to the new rate's units: [`bucket`]).
//! * **Aborts** give back only what no later decision depends on
//!   ([`Gate::pend_abort`]).
//! * **Rounding.** Every limit rounds toward its stricter side and none
//!   reads a truncated clock ([`time`]); bans last exactly `ban_ms` and
//!   rejection windows are exact to the tick ([`ban`]).
//! * **Observe mode** reports exactly the reasons enforcing would give
//!   ([`gate`]).
//!
//! | module | owns |
//! |---|---|
//! | [`time`] | the caller's clock: tick units, fixed-point intervals, the clamping and rounding rules |
//! | [`config`] | the configuration struct, its validation, its memory cost |
//! | [`key`] | addresses aggregated by prefix into keys |
//! | [`hash`] | the keyed hash (SipHash-1-3) that places keys |
//! | [`bucket`] | token-bucket state and arithmetic (GCRA), per key and global |
//! | [`table`] | the fixed, sharded table: probe, placement, eviction |
//! | [`lock`] | the lock trait the driver plugs its spin lock into |
//! | [`lists`] | CIDR allow and deny lists |
//! | [`nat64`] | NAT64 (RFC 6052) prefixes: keying by the embedded IPv4 address |
//! | [`ban`] | bans after repeated rejections, in exact ticks |
//! | [`pend`] | pend-with-delay budget, tickets, what an abort may give back |
//! | [`telemetry`] | `Action`, `Reason`, `Decision`, counters |
//! | [`gate`] | the engine tying them together |
//! | [`live`] | the live configuration, swapped whole while decisions run |
//! | [`control`] | the control path: live changes, manual bans, key queries, bounded scans |
//!
//! ```
//! use gate_core::{Config, Gate, Action, Reason, TICKS_PER_SEC};
//! let cfg = Config { rate_milli: 1000, burst: 2, ..Config::default() };
//! let gate: Gate = Gate::new(&cfg, [1, 2]).unwrap();
//! let (remote, local) = ("192.0.2.7".parse().unwrap(), "198.51.100.1".parse().unwrap());
//! let t = 5 * TICKS_PER_SEC;
//! assert_eq!(gate.decide(remote, local, t).action, Action::Accept);
//! assert_eq!(gate.decide(remote, local, t).action, Action::Accept);
//! let d = gate.decide(remote, local, t);
//! assert_eq!((d.action, d.reason), (Action::Reject, Reason::RateExceeded));
//! assert_eq!(gate.decide(remote, local, t + TICKS_PER_SEC).action, Action::Accept);
//! ```
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
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]
#![warn(missing_docs)]

extern crate alloc;

pub mod ban;
pub mod bucket;
pub mod config;
pub mod control;
pub mod gate;
pub mod hash;
pub mod key;
pub mod lists;
pub mod live;
pub mod lock;
pub mod nat64;
pub mod pend;
pub mod table;
pub mod telemetry;
pub mod time;

pub use config::{field, Config, ConfigError, FullTablePolicy};
pub use control::{BanOutcome, ChangeError, KeyState, Membership, SCAN_CHUNK};
pub use gate::{Error, Gate};
pub use hash::Seed;
pub use key::{Family, Key};
pub use lists::{Cidr, CidrError, MAX_LIST_ENTRIES};
pub use live::{ManualBan, MAX_MANUAL_BANS};
pub use lock::{RawLock, SpinLock};
pub use nat64::{MAX_NAT64_PREFIXES, WELL_KNOWN_PREFIX};
pub use pend::{PendTicket, StaleTicket};
pub use telemetry::{
    Action, Counters, Decision, Event, Pended, Reason, EVENT_COUNT, NO_BUCKET, REASON_COUNT,
};
pub use time::{Interval, Ticks, TICKS_PER_MS, TICKS_PER_SEC};
