//! Graceful closes in flight: the connections the listener worker closes
//! itself (no relay configured, `AbortiveClose` 0), closed without waiting
//! on the peer.
//!
//! A graceful WskDisconnect completes only once the peer has taken the
//! data and acknowledged the FIN (WskDisconnect, Remarks), so one slow or
//! hostile peer could hold a synchronous close for as long as it likes.
//! Here each close is a request on its own IRP, in the shape of the WSK
//! samples: the worker issues WskDisconnect; the completion routine only
//! records that it finished and wakes the worker (and releases its rundown
//! reference as its very last action); the worker then calls WskCloseSocket
//! on that socket, with no IRP of ours pending on it. A disconnect still
//! pending at its deadline (`CloseTimeoutMs` after it was issued), or at
//! unload, is given up: WskCloseSocket on the socket completes the pending
//! disconnect and closes the connection abortively (a socket closed without
//! a completed graceful disconnect is reset), and the slot is free again
//! once the disconnect's completion routine has run.
//!
//! At most [`CLOSES_IN_FLIGHT`] closes are in flight, in a fixed pool of
//! slots and IRPs allocated when the worker starts (fallibly: a slot whose
//! IRP could not be allocated then tries again when it is first used).
//! With every slot busy, no pool or no IRP, the connection is closed
//! abortively at once, counted in `GracefulClosesAborted` like a timeout.
//!
//! Wine's netio stubs WskDisconnect (STATUS_NOT_IMPLEMENTED, the IRP never
//! completed): the returned status is taken as the answer, the rundown
//! reference the routine would have released is released here, and the
//! socket is closed at once. Nothing then pends on a socket we close, which
//! Wine needs (platform facts: closing a socket with an IRP pending crashes
//! winedevice).
//!
//! Runs on the listener worker thread only (PASSIVE_LEVEL), except
//! [`close_done`].

use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, Ordering};

use gate_ksys::*;

use crate::kernel::irp::{OwnedIrp, SyncIrp};
use crate::pool::PoolVec;
use crate::state::{Driver, Stats};

/// Graceful closes in flight at once, at most.
pub const CLOSES_IN_FLIGHT: usize = 32;

/// Where one slot's close is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No close.
    Free,
    /// The graceful WskDisconnect is in flight.
    Disconnecting,
    /// Given up on: the socket is closed; the disconnect's completion
    /// routine has yet to run (WskCloseSocket completes it).
    Aborted,
}

/// One close in flight. Its address is the completion routine's context,
/// so slots live in a pool block that never moves.
struct Slot {
    irp: Option<OwnedIrp>,
    socket: *mut WSK_SOCKET,
    /// Interrupt time (100 ns) after which the close is given up.
    due: u64,
    phase: Phase,
    /// Set by the completion routine.
    done: AtomicBool,
    driver: *const Driver,
}

/// IRP completion routine of a slot's WskDisconnect: record, wake the
/// worker, release the rundown reference (last).
unsafe extern "system" fn close_done(_dev: PVOID, _irp: *mut IRP, context: PVOID) -> NTSTATUS {
    // SAFETY: the context is the slot that issued the IRP; the slot lives
    // until the worker has seen `done` (the Closer is dropped only after
    // every slot is free), so the Driver pointer is read first.
    let d = unsafe { (*context.cast::<Slot>()).driver };
    // SAFETY: as above; the last access to the slot.
    unsafe {
        (*context.cast::<Slot>())
            .done
            .store(true, Ordering::Release)
    };
    // SAFETY: the Driver is alive: `start` took a rundown reference for
    // this request, released just below as the last action.
    let d = unsafe { &*d };
    d.wake.set();
    d.rundown.release();
    STATUS_MORE_PROCESSING_REQUIRED
}

/// The pool of closes in flight (owned by the listener worker).
pub struct Closer {
    slots: Option<PoolVec<Slot>>,
}

fn conn_dispatch(s: *mut WSK_SOCKET) -> *const WSK_PROVIDER_CONNECTION_DISPATCH {
    // SAFETY: a connection socket's Dispatch is the connection dispatch.
    unsafe { (*s).Dispatch.cast() }
}

/// WskCloseSocket through the worker's IRP (returns its status).
fn close_socket(irp: &mut SyncIrp, s: *mut WSK_SOCKET) -> NTSTATUS {
    // SAFETY: a live connection socket of ours.
    match unsafe { (*conn_dispatch(s)).Basic.WskCloseSocket } {
        // SAFETY: we own the socket and no other call on it is in progress
        // (a pending disconnect of ours is allowed: the close completes it).
        Some(f) => irp.call(|irp| unsafe { f(s, irp) }).0,
        None => STATUS_NOT_SUPPORTED,
    }
}

/// Closes a connection at once: abortive WskDisconnect (RST), then
/// WskCloseSocket, both waited for (neither waits on the peer).
pub(crate) fn close_abortively(d: &Driver, irp: &mut SyncIrp, s: *mut WSK_SOCKET) {
    // SAFETY: a live connection socket of ours.
    if let Some(disconnect) = unsafe { (*conn_dispatch(s)).WskDisconnect } {
        // SAFETY: live socket we own; no buffer; waits for completion.
        irp.call(|irp| unsafe { disconnect(s, core::ptr::null_mut(), WSK_FLAG_ABORTIVE, irp) });
    }
    close_socket(irp, s);
    Stats::bump(&d.stats.closed_sockets);
}

impl Closer {
    /// The pool, or an empty one without memory (every close is then
    /// abortive).
    pub fn new(d: &Driver) -> Closer {
        let slots = PoolVec::with_capacity(CLOSES_IN_FLIGHT).ok().map(|mut v| {
            while v.len() < v.capacity() {
                let slot = Slot {
                    irp: OwnedIrp::new(),
                    socket: core::ptr::null_mut(),
                    due: 0,
                    phase: Phase::Free,
                    done: AtomicBool::new(false),
                    driver: d,
                };
                if v.push(slot).is_err() {
                    break;
                }
            }
            v
        });
        if slots.is_none() {
            crate::dbg_print!(
                DPFLTR_WARNING_LEVEL,
                "gate: no memory for the close pool: connections are closed abortively"
            );
        }
        Closer { slots }
    }

    /// Closes `s`: gracefully in the background (see the module), or
    /// abortively at once when `abortive`, unloading, or no slot is free.
    pub(crate) fn close(
        &mut self,
        d: &Driver,
        irp: &mut SyncIrp,
        s: *mut WSK_SOCKET,
        abortive: bool,
    ) {
        if abortive || d.stopping.load(Ordering::Acquire) {
            return close_abortively(d, irp, s);
        }
        if !self.start(d, irp, s) {
            Stats::bump(&d.stats.graceful_closes_aborted);
            close_abortively(d, irp, s);
        }
    }

    /// Issues the graceful disconnect in a free slot; false: none free (or
    /// no IRP), nothing done.
    fn start(&mut self, d: &Driver, irp: &mut SyncIrp, s: *mut WSK_SOCKET) -> bool {
        // SAFETY: a live connection socket of ours.
        let Some(disconnect) = (unsafe { (*conn_dispatch(s)).WskDisconnect }) else {
            // No graceful disconnect to wait for: close now.
            close_socket(irp, s);
            Stats::bump(&d.stats.closed_sockets);
            return true;
        };
        let Some(slots) = self.slots.as_mut() else {
            return false;
        };
        let Some(slot) = slots.iter_mut().find(|x| x.phase == Phase::Free) else {
            return false;
        };
        if slot.irp.is_none() {
            slot.irp = OwnedIrp::new();
        }
        let Some(irp_ptr) = slot.irp.as_ref().map(OwnedIrp::as_ptr) else {
            return false;
        };
        let timeout = u64::from(d.cfg.close_timeout_ms).saturating_mul(10_000);
        slot.socket = s;
        slot.due = crate::kernel::clock::now().saturating_add(timeout);
        slot.phase = Phase::Disconnecting;
        slot.done.store(false, Ordering::Release);
        let ctx = (slot as *mut Slot).cast::<c_void>();
        if let Some(own) = slot.irp.as_ref() {
            // SAFETY: a free slot's IRP is idle (its last routine ran); the
            // slot stays at its address until the routine has run.
            unsafe { own.prepare(close_done, ctx) };
        }
        // Released by the completion routine as its last action.
        d.rundown.acquire();
        // SAFETY: live socket we own; no buffer; IRP and context stay valid
        // until completion.
        let st = unsafe { disconnect(s, core::ptr::null_mut(), 0, irp_ptr) };
        if st != STATUS_PENDING && !slot.done.load(Ordering::Acquire) {
            // A status other than STATUS_PENDING means the IRP was completed
            // before the call returned (I/O manager rule; real WSK does so
            // for failures too). Not so Wine's stub: the IRP is untouched,
            // its routine never runs: release its reference, and the slot
            // is done.
            d.rundown.release();
            slot.done.store(true, Ordering::Release);
        }
        true
    }

    /// Finishes the closes whose disconnect completed (WskCloseSocket) and
    /// gives up on those past their deadline, or all of them when
    /// unloading. Bounded: one pass over [`CLOSES_IN_FLIGHT`] slots.
    pub fn poll(&mut self, d: &Driver, irp: &mut SyncIrp) {
        let Some(slots) = self.slots.as_mut() else {
            return;
        };
        let now = crate::kernel::clock::now();
        let stopping = d.stopping.load(Ordering::Acquire);
        for slot in slots.iter_mut() {
            let done = slot.done.load(Ordering::Acquire);
            match slot.phase {
                Phase::Free => {}
                Phase::Disconnecting if done => {
                    close_socket(irp, slot.socket);
                    Stats::bump(&d.stats.closed_sockets);
                    slot.phase = Phase::Free;
                }
                Phase::Disconnecting if stopping || now >= slot.due => {
                    // The peer did not finish in time (or unload): closing
                    // the socket completes the pending disconnect and resets
                    // the connection.
                    close_socket(irp, slot.socket);
                    Stats::bump(&d.stats.closed_sockets);
                    Stats::bump(&d.stats.graceful_closes_aborted);
                    slot.phase = if slot.done.load(Ordering::Acquire) {
                        Phase::Free
                    } else {
                        Phase::Aborted
                    };
                }
                Phase::Disconnecting => {}
                Phase::Aborted if done => slot.phase = Phase::Free,
                Phase::Aborted => {}
            }
        }
    }

    /// Closes in flight (disconnecting, or aborted and not yet completed).
    pub fn in_flight(&self) -> usize {
        self.slots
            .as_ref()
            .map_or(0, |v| v.iter().filter(|x| x.phase != Phase::Free).count())
    }

    /// Milliseconds until the earliest deadline of a close in flight (the
    /// worker waits no longer), or `None` with nothing to wait for.
    pub fn next_due_ms(&self) -> Option<u32> {
        let slots = self.slots.as_ref()?;
        let due = slots
            .iter()
            .filter(|x| x.phase == Phase::Disconnecting)
            .map(|x| x.due)
            .min()?;
        let left = due.saturating_sub(crate::kernel::clock::now());
        // Rounded up, so the wait ends at or after the deadline.
        Some(u32::try_from(left.div_ceil(10_000)).unwrap_or(u32::MAX))
    }

    /// The worker's end: gives up on every close in flight and waits until
    /// each disconnect's completion routine has run (WskCloseSocket
    /// completes them; on Windows before the close itself completes).
    /// Call with `stopping` set.
    pub fn finish(&mut self, d: &Driver, irp: &mut SyncIrp) {
        loop {
            self.poll(d, irp);
            if self.in_flight() == 0 {
                return;
            }
            // The completion routine sets `done`, then `wake`.
            d.wake.wait(Some(100));
        }
    }
}

/// The earlier of two optional waits (ms).
pub fn earlier(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}
