//! The decision path: the listening socket's WSK callbacks.
//!
//! - [`inspect_event`] (WskInspectEvent): every SYN. Copies the addresses,
//!   reads the clock, asks gate-core, answers Accept or Reject at once, or
//!   Pend after copying the WSK_INSPECT_ID into the pending table (full
//!   table: Reject, counted). A NULL InspectID means the listener died: the
//!   worker is told to close and re-create it.
//! - [`abort_event`] (WskAbortEvent): finds the request by the contents of
//!   its inspect ID, drops it and returns its token.
//! - [`accept_event`] (WskAcceptEvent): takes the connection, copies its
//!   addresses and hands it to the worker, which gives it to the relay
//!   ([`crate::relay`]) or, without a backend, closes it.
//!
//! All run at IRQL <= DISPATCH_LEVEL on any CPU: no waits, no allocation,
//! spin locks only. Each enters the driver's rundown first, so unload can
//! wait for callbacks in flight.

use core::ffi::c_void;
use core::sync::atomic::Ordering;

use gate_core::{Action, Reason, TICKS_PER_MS};
use gate_ksys::*;

use crate::addr;
use crate::etw::CloseCause;
use crate::pending::AbortOutcome;
use crate::state::{Driver, Stats};
use crate::telemetry;

/// The listen dispatch given to WskSocket.
pub static LISTEN_DISPATCH: WSK_CLIENT_LISTEN_DISPATCH = WSK_CLIENT_LISTEN_DISPATCH {
    WskAcceptEvent: Some(accept_event),
    WskInspectEvent: Some(inspect_event),
    WskAbortEvent: Some(abort_event),
};

/// WskInspectEvent.
///
/// # Safety
/// Called by WSK with the socket context we gave (the Driver), SOCKADDRs
/// valid for the call, and an inspect ID that is NULL or valid for the call.
pub unsafe extern "system" fn inspect_event(
    socket_context: PVOID,
    local: *const SOCKADDR,
    remote: *const SOCKADDR,
    inspect_id: *const WSK_INSPECT_ID,
) -> WSK_INSPECT_ACTION {
    // SAFETY: the socket context is the Driver, alive while its listener is.
    let d = unsafe { &*socket_context.cast::<Driver>() };
    let Some(_inside) = d.rundown.enter() else {
        return WskInspectReject;
    };
    if inspect_id.is_null() {
        Stats::bump(&d.stats.null_inspect);
        d.signal_listener_dead(CloseCause::NullInspectId, STATUS_SUCCESS);
        return WskInspectReject;
    }
    // SAFETY: non-NULL and valid for this call; copied by value.
    let id = unsafe { inspect_id.read_unaligned() };
    // SAFETY: WSK's SOCKADDRs are full-size for their family, valid now.
    let (remote, local) = unsafe { (addr::from_sockaddr(remote), addr::from_sockaddr(local)) };
    let (Some(remote), Some(local)) = (remote, local) else {
        Stats::bump(&d.stats.bad_addresses);
        return WskInspectReject;
    };
    Stats::bump(&d.stats.inspects);
    let now = crate::kernel::clock::now();
    let dec = d.gate.decide(remote.ip(), local.ip(), now);
    match (dec.action, dec.pend) {
        (Action::Accept, _) => {
            telemetry::decision(remote, local, &dec, Action::Accept, dec.reason, 0, &id);
            WskInspectAccept
        }
        (Action::Pend, Some(p)) if d.pending.insert(id, p.ticket, p.at, now, remote) => {
            let delay = p.at.saturating_sub(now) / TICKS_PER_MS;
            let delay = u32::try_from(delay).unwrap_or(u32::MAX);
            telemetry::decision(remote, local, &dec, Action::Pend, dec.reason, delay, &id);
            WskInspectPend
        }
        (Action::Pend, p) => {
            // No room in the pending table (or no listener to complete on):
            // reject, and cancel the reservation (gate-core gives its token
            // back only if no later reservation depends on it).
            if let Some(p) = p {
                let _ = d.gate.pend_abort(p.ticket);
            }
            Stats::bump(&d.stats.pend_table_full);
            let reason = Reason::PendBudgetSpent;
            telemetry::decision(remote, local, &dec, Action::Reject, reason, 0, &id);
            WskInspectReject
        }
        (Action::Reject, _) => {
            telemetry::decision(remote, local, &dec, Action::Reject, dec.reason, 0, &id);
            WskInspectReject
        }
    }
}

/// WskAbortEvent.
///
/// # Safety
/// As [`inspect_event`].
pub unsafe extern "system" fn abort_event(
    socket_context: PVOID,
    inspect_id: *const WSK_INSPECT_ID,
) -> NTSTATUS {
    // SAFETY: the socket context is the Driver, alive while its listener is.
    let d = unsafe { &*socket_context.cast::<Driver>() };
    let Some(_inside) = d.rundown.enter() else {
        return STATUS_SUCCESS;
    };
    if inspect_id.is_null() {
        return STATUS_SUCCESS;
    }
    // SAFETY: non-NULL and valid for this call; copied by value.
    let id = unsafe { inspect_id.read_unaligned() };
    Stats::bump(&d.stats.aborts);
    match d.pending.abort(&id) {
        AbortOutcome::Dropped(ticket, remote) => {
            let returned = d.gate.pend_abort(ticket).is_ok();
            Stats::bump(&d.stats.aborts_pended);
            telemetry::aborted(&id, true, returned, Some(remote));
        }
        AbortOutcome::WhileCompleting(remote) => {
            Stats::bump(&d.stats.aborts_pended);
            // The completion routine returns the token.
            telemetry::aborted(&id, true, true, Some(remote));
        }
        AbortOutcome::NotFound => {
            Stats::bump(&d.stats.aborts_not_pended);
            telemetry::aborted(&id, false, false, None);
        }
    }
    STATUS_SUCCESS
}

/// WskAcceptEvent.
///
/// # Safety
/// As [`inspect_event`]; the out-pointers are valid for the call.
pub unsafe extern "system" fn accept_event(
    socket_context: PVOID,
    _flags: u32,
    local: *const SOCKADDR,
    remote: *const SOCKADDR,
    accept_socket: *mut WSK_SOCKET,
    accept_socket_context: *mut PVOID,
    accept_socket_dispatch: *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
) -> NTSTATUS {
    // SAFETY: the socket context is the Driver, alive while its listener is.
    let d = unsafe { &*socket_context.cast::<Driver>() };
    let Some(_inside) = d.rundown.enter() else {
        return STATUS_REQUEST_NOT_ACCEPTED;
    };
    if accept_socket.is_null() {
        // The listening socket is no longer functional.
        d.signal_listener_dead(CloseCause::Error, STATUS_SUCCESS);
        return STATUS_SUCCESS;
    }
    // The relay needs the client's address (never WskGetRemoteAddress: a
    // Wine stub): copy both now, the buffers are lent for this call.
    // SAFETY: WSK's SOCKADDRs are full-size for their family, valid now.
    let (remote, local) = unsafe { (addr::from_sockaddr(remote), addr::from_sockaddr(local)) };
    let acc = crate::state::Accepted {
        socket: accept_socket,
        remote,
        local,
    };
    let unloading = d.stopping.load(Ordering::Acquire);
    let queued = {
        let mut q = d.accepted.lock();
        if !unloading && q.push(acc) {
            None
        } else {
            Some(q.len())
        }
    };
    if let Some(queued) = queued {
        Stats::bump(&d.stats.accept_queue_full);
        telemetry::connection_declined(remote, local, queued, unloading);
        return STATUS_REQUEST_NOT_ACCEPTED;
    }
    Stats::bump(&d.stats.accepted_sockets);
    // No connection callbacks: no context, no dispatch.
    // SAFETY: the out-pointers are valid for the call (WSK contract).
    unsafe {
        if !accept_socket_context.is_null() {
            *accept_socket_context = core::ptr::null_mut::<c_void>();
        }
        if !accept_socket_dispatch.is_null() {
            *accept_socket_dispatch = core::ptr::null();
        }
    }
    d.wake.set();
    STATUS_SUCCESS
}
