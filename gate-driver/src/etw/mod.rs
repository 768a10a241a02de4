//! ETW (TraceLogging) events of the gate: one definition per event.
//!
//! # Why not the `tracelogging` crate
//! On non-Windows targets every `tracelogging` call compiles to a no-op, so
//! the user-mode simulation (which runs this code on Linux) could never
//! observe an event; and it imports EtwRegister/EtwWriteTransfer
//! statically, which aborts the driver under Wine (Wine's ntoskrnl lacks
//! them). So this module is a small TraceLogging encoder of its own:
//! - [`Provider::register`] resolves EtwRegister, EtwUnregister,
//!   EtwSetInformation and EtwWriteTransfer at run time (through
//!   `MmGetSystemRoutineAddress`, passed in as a closure), registers the
//!   provider and sets its TraceLogging traits (the provider name blob, as
//!   TraceLoggingProvider.h does). A missing routine leaves events off.
//! - The enable callback records the level and keywords sessions asked for;
//!   every write function checks them first and returns at once when no
//!   session wants the event (the common case: no allocation, no work).
//! - Events use the real TraceLogging wire format ([`meta`]): channel 11,
//!   a provider-traits descriptor (type 2), an event-metadata descriptor
//!   (type 1), then the payload. WPA, tracerpt and TDH decode them with no
//!   manifest installed.
//! - The few events an operator must see without a trace session also carry
//!   an Event Log channel of the manifest ([`channel`]): still TraceLogging
//!   on the wire (Windows 10 marks a traits-registered provider's events as
//!   TraceLogging whatever their channel), and the Event Log service, which
//!   enables the provider with the channel's keyword bit once `wevtutil im`
//!   has installed gate.man, records them under Applications and Services
//!   Logs\TcpFrontGate.
//!
//! # Use from the driver
//! ```ignore
//! static ETW: etw::Provider = etw::Provider::new();
//! // DriverEntry (PASSIVE_LEVEL):
//! match ETW.register(|name| mm_get_system_routine_address(name)) {
//!     etw::RegisterOutcome::Registered => {}
//!     other => debug_print!("gate: ETW off: {:?}", other),
//! }
//! etw::connection_rejected(&ETW, remote, local, Action::Reject as u8, ...);
//! // Unload, after callbacks have stopped:
//! ETW.unregister();
//! ```
//!
//! No allocation, no panics, no floating point: the metadata blobs are built
//! at compile time, and a write puts its descriptors on the stack. Register
//! and unregister at PASSIVE_LEVEL; write functions may be called at any
//! IRQL up to DISPATCH_LEVEL (EtwWriteTransfer allows it), from several CPUs
//! at once. Target: Windows 10 and later (EtwSetInformation with provider
//! traits is what makes ETW honour the descriptor types).

pub mod events;
pub mod meta;
pub mod provider;
pub mod sockaddr;
mod table;

pub use events::*;
pub use meta::{EventSchema, FieldSchema, FieldType};
pub use provider::{routine, Provider, RegisterOutcome};
pub use sockaddr::SockAddrBuf;

use gate_ksys::types::GUID;

/// The provider name (xperf and recent WPR also accept `*TcpFrontGate`).
pub const PROVIDER_NAME: &str = "TcpFrontGate";

/// The provider GUID: the standard ETW name hash of [`PROVIDER_NAME`]
/// (`{86ab67bc-6c8b-5f93-f17b-9c54d7cf2666}`; etw-manifest's tests recompute it).
pub const PROVIDER_GUID: GUID = GUID {
    Data1: 0x86ab67bc,
    Data2: 0x6c8b,
    Data3: 0x5f93,
    Data4: [0xf1, 0x7b, 0x9c, 0x54, 0xd7, 0xcf, 0x26, 0x66],
};

const TRAITS_LEN: usize = meta::provider_traits_len(PROVIDER_NAME);

/// The TraceLogging provider-traits blob (size, name, NUL).
pub static PROVIDER_TRAITS: [u8; TRAITS_LEN] = meta::provider_traits::<TRAITS_LEN>(PROVIDER_NAME);

/// Keyword bits: a session selects event groups with them.
pub mod keyword {
    /// ConnectionAccepted.
    pub const ACCEPT: u64 = 0x1;
    /// ConnectionRejected.
    pub const REJECT: u64 = 0x2;
    /// ConnectionPended, PendCompleted.
    pub const PEND: u64 = 0x4;
    /// ConnectionAborted.
    pub const ABORT: u64 = 0x8;
    /// Listener life cycle.
    pub const LISTENER: u64 = 0x10;
    /// Configuration.
    pub const CONFIG: u64 = 0x20;
    /// Periodic counters.
    pub const COUNTERS: u64 = 0x40;
    /// Driver load and unload.
    pub const LIFECYCLE: u64 = 0x80;
    /// The relay to the backend: RelayOpened, RelayClosed, RelayFailed.
    pub const RELAY: u64 = 0x100;
    /// Every keyword.
    pub const ALL: u64 = 0x1FF;
    /// What the Light WPR profile takes: everything except accept and pend
    /// decisions (and, by level, the relay's per-connection Verbose events:
    /// it takes RelayFailed).
    pub const LIGHT: u64 = REJECT | ABORT | LISTENER | CONFIG | COUNTERS | LIFECYCLE | RELAY;

    /// (name, bit) of every keyword, as in the manifest.
    pub const NAMES: &[(&str, u64)] = &[
        ("Accept", ACCEPT),
        ("Reject", REJECT),
        ("Pend", PEND),
        ("Abort", ABORT),
        ("Listener", LISTENER),
        ("Config", CONFIG),
        ("Counters", COUNTERS),
        ("Lifecycle", LIFECYCLE),
        ("Relay", RELAY),
    ];
}

/// Channels: where an event goes besides trace sessions.
///
/// An Event Log channel is an ETW session the Event Log service runs for a
/// `<channel>` of an installed manifest; it enables the provider with that
/// channel's keyword bit. mc.exe gives a provider's channels the top
/// keyword bits in declaration order (the first 0x8000000000000000, the
/// next 0x4000000000000000, ...) and ORs the bit into the descriptor of
/// every event of that channel (Microsoft's own documented descriptor
/// `WINSOCK_WS2HELP_LSP_RESET = {0x4, 0x0, 0x10, 0x0, 0x0, 0x0,
/// 0x8000000000000000}` shows it: channel 16, its provider's first, and
/// that channel's bit as the keyword); [`keyword_bit`] is that rule, and
/// etw-manifest's tests check the manifest declares the channels in this
/// order with these values. The descriptor's Channel must be the channel's
/// `value` in the manifest.
pub mod channel {
    /// 11: plain TraceLogging (trace sessions only).
    pub const TRACELOGGING: u8 = gate_ksys::etw::WINEVENT_CHANNEL_TRACELOGGING;
    /// `TcpFrontGate/Admin` (type Admin): problems an administrator must act on.
    pub const ADMIN: u8 = 16;
    /// `TcpFrontGate/Operational` (type Operational): state changes worth keeping.
    pub const OPERATIONAL: u8 = 17;

    /// (manifest chid, channel name, type, value, keyword bit) in manifest order.
    pub const CHANNELS: &[(&str, &str, &str, u8, u64)] = &[
        (
            "Admin",
            "TcpFrontGate/Admin",
            "Admin",
            ADMIN,
            0x8000_0000_0000_0000,
        ),
        (
            "Operational",
            "TcpFrontGate/Operational",
            "Operational",
            OPERATIONAL,
            0x4000_0000_0000_0000,
        ),
    ];

    /// The keyword bit of `channel` (0 for TraceLogging or an unknown value).
    pub const fn keyword_bit(channel: u8) -> u64 {
        let mut rest = CHANNELS;
        while let [(_, _, _, value, bit), tail @ ..] = rest {
            if *value == channel {
                return *bit;
            }
            rest = tail;
        }
        0
    }
}

/// Levels (the standard win: levels).
pub mod level {
    pub const CRITICAL: u8 = 1;
    pub const ERROR: u8 = 2;
    pub const WARNING: u8 = 3;
    pub const INFO: u8 = 4;
    pub const VERBOSE: u8 = 5;
}

/// Tasks (group events in the manifest and in WPA).
pub mod task {
    pub const DECISION: u16 = 1;
    pub const PEND: u16 = 2;
    pub const ABORT: u16 = 3;
    pub const LISTENER: u16 = 4;
    pub const CONFIG: u16 = 5;
    pub const COUNTERS: u16 = 6;
    pub const DRIVER: u16 = 7;
    pub const RELAY: u16 = 8;

    /// (name, value) of every task, as in the manifest.
    pub const NAMES: &[(&str, u16)] = &[
        ("Decision", DECISION),
        ("Pend", PEND),
        ("Abort", ABORT),
        ("Listener", LISTENER),
        ("Config", CONFIG),
        ("Counters", COUNTERS),
        ("Driver", DRIVER),
        ("Relay", RELAY),
    ];
}

/// Opcodes (the standard win: opcodes).
pub mod opcode {
    /// win:Info.
    pub const INFO: u8 = 0;
    /// win:Start.
    pub const START: u8 = 1;
    /// win:Stop.
    pub const STOP: u8 = 2;
}

/// Compile-time check: event ids are unique and non-zero; every event has
/// a keyword (so sessions can select it) and a level from 1 to 5.
const _: () = {
    let mut a = SCHEMA;
    while let [first, rest @ ..] = a {
        assert!(first.id != 0, "event id 0");
        assert!(first.keyword != 0, "event without keyword");
        assert!(
            first.channel == channel::TRACELOGGING || channel::keyword_bit(first.channel) != 0,
            "event on an undeclared channel"
        );
        // The Event Log keeps only what an administrator reads: no verbose
        // events on a channel.
        assert!(
            first.channel == channel::TRACELOGGING || first.level <= level::INFO,
            "verbose event on an Event Log channel"
        );
        assert!(
            first.level >= level::CRITICAL && first.level <= level::VERBOSE,
            "bad level"
        );
        let mut b = rest;
        while let [second, tail @ ..] = b {
            assert!(first.id != second.id, "duplicate event id");
            b = tail;
        }
        a = rest;
    }
};
