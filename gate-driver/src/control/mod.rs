//! The control device: `\Device\TcpFrontGate` (link `\DosDevices\TcpFrontGate`),
//! the gate's live operation API (HAProxy's runtime API and IIS Dynamic IP
//! Restrictions' immediate effect are the models).
//!
//! | module | owns |
//! |---|---|
//! | [`device`] | creating the device, its link and its DACL (SYSTEM and Administrators only); deleting them |
//! | [`dispatch`] | the IRP_MJ_* routines, METHOD_BUFFERED input/output, refusals (NTSTATUS + ETW ControlRejected naming the field) |
//! | [`read`] | status, query, top (one bounded shard slice per call), list pages |
//! | [`change`] | set, allow/deny changes, ban/unban, reset; ETW ConfigChanged for each |
//! | [`persist`] | `--persist`: writing a change to the registry Parameters key |
//!
//! The request and reply structs and the IOCTL codes are gate-ioctl's (one
//! definition for the driver, gatectl and the Linux control channel).
//! Handlers run at PASSIVE_LEVEL in the caller's thread, never wait, and
//! never hold a lock over a whole table: changes are swapped into gate-core
//! whole (see gate-core's `live`), table reads take one shard lock at a
//! time for a bounded number of slots.

pub mod change;
pub mod device;
pub mod dispatch;
pub mod persist;
pub mod read;

use core::sync::atomic::{AtomicU32, Ordering};

/// Listener state for status ([`gate_ioctl::listener_state`]), set by telemetry.
static LISTENER_STATE: AtomicU32 = AtomicU32::new(gate_ioctl::listener_state::DOWN);
/// Listener mode for status ([`gate_ioctl::listener_mode`]), set by telemetry.
static LISTENER_MODE: AtomicU32 = AtomicU32::new(gate_ioctl::listener_mode::CONDITIONAL_ACCEPT);
/// Changes applied since this start (zeroed when the device is created).
static CHANGES: AtomicU32 = AtomicU32::new(0);

/// The listener is up in `post_accept` mode or not (from telemetry).
pub fn note_listener_up(post_accept: bool) {
    LISTENER_MODE.store(
        if post_accept {
            gate_ioctl::listener_mode::POST_ACCEPT
        } else {
            gate_ioctl::listener_mode::CONDITIONAL_ACCEPT
        },
        Ordering::Relaxed,
    );
    LISTENER_STATE.store(gate_ioctl::listener_state::UP, Ordering::Relaxed);
}

/// The listener is down (from telemetry).
pub fn note_listener_down() {
    LISTENER_STATE.store(gate_ioctl::listener_state::DOWN, Ordering::Relaxed);
}

fn listener() -> (u32, u32) {
    (
        LISTENER_STATE.load(Ordering::Relaxed),
        LISTENER_MODE.load(Ordering::Relaxed),
    )
}

/// Zeroes the change count ("since start": a statics-keeping host, like
/// gate-usersim, loads the same image again; Windows maps it afresh).
fn reset_changes() {
    CHANGES.store(0, Ordering::Relaxed);
}

fn count_change() {
    CHANGES.fetch_add(1, Ordering::Relaxed);
}

fn changes() -> u32 {
    CHANGES.load(Ordering::Relaxed)
}
