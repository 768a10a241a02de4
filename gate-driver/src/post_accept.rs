//! Post-accept mode: for stacks without conditional accept (Wine's netio
//! stubs WskControlSocket; a transport may refuse SO_CONDITIONAL_ACCEPT).
//! The listener accepts every connection with WskAccept (one outstanding
//! IRP, re-armed by the worker), then the worker asks gate-core about the
//! remote address: a rejected connection is closed at once (abortively),
//! an accepted one goes to the connection handler. A pend cannot hold a
//! connection that is already established, so it is accepted at once and
//! its pend ticket completed (`pend_done`). This protects the service
//! behind the gate, not the TCP stack: the handshake has already happened.
//!
//! Runs only on the worker thread (PASSIVE_LEVEL); the IRP's completion
//! routine (any IRQL) just flags the result and wakes the worker.

use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, Ordering};

use gate_core::Action;
use gate_ksys::*;

use crate::kernel::irp::{OwnedIrp, SyncIrp};
use crate::pool::PoolBox;
use crate::state::{Driver, Stats};
use crate::{addr, telemetry};

/// Consecutive WskAccept failures after which the listener is declared dead.
const MAX_FAILURES: u32 = 16;

/// The one outstanding WskAccept of a post-accept listener.
pub struct Acceptor {
    irp: OwnedIrp,
    driver: *const Driver,
    local: [u64; 16],
    remote: [u64; 16],
    busy: bool,
    done: AtomicBool,
    failures: u32,
}

unsafe extern "system" fn accept_done(_dev: PVOID, _irp: *mut IRP, context: PVOID) -> NTSTATUS {
    // SAFETY: the context is the Acceptor that issued the IRP; it stays
    // alive until `done` is published below (the worker may drop it as soon
    // as it sees `done`), so the Driver pointer is read first.
    let d = unsafe { (*context.cast::<Acceptor>()).driver };
    // SAFETY: as above; the last access to the Acceptor.
    unsafe {
        (*context.cast::<Acceptor>())
            .done
            .store(true, Ordering::Release)
    };
    // SAFETY: the Driver is alive: `arm` took a rundown reference for this
    // request, released just below as the last action.
    let d = unsafe { &*d };
    d.wake.set();
    d.rundown.release();
    STATUS_MORE_PROCESSING_REQUIRED
}

impl Acceptor {
    /// An idle acceptor (None: no memory). Boxed: the IRP context and the
    /// address buffers must not move while an accept is outstanding.
    pub fn new(d: &Driver) -> Option<PoolBox<Acceptor>> {
        PoolBox::try_new(Acceptor {
            irp: OwnedIrp::new()?,
            driver: d,
            local: [0; 16],
            remote: [0; 16],
            busy: false,
            done: AtomicBool::new(false),
            failures: 0,
        })
        .ok()
    }

    /// Issues WskAccept unless one is outstanding.
    ///
    /// # Safety
    /// `socket` is a live, bound listening socket, not closed before
    /// [`Acceptor::wait_idle`] returned.
    pub unsafe fn arm(&mut self, socket: *mut WSK_SOCKET) {
        if self.busy {
            return;
        }
        // SAFETY: a listen socket's Dispatch is the listen dispatch.
        let f = unsafe { (*(*socket).Dispatch.cast::<WSK_PROVIDER_LISTEN_DISPATCH>()).WskAccept };
        let Some(f) = f else { return };
        self.done.store(false, Ordering::Release);
        self.busy = true;
        let ctx = (self as *mut Acceptor).cast::<c_void>();
        // SAFETY: not busy, so the IRP is idle; `self` is boxed and kept
        // alive until the completion (see `wait_idle`).
        unsafe { self.irp.prepare(accept_done, ctx) };
        // The completion routine releases it as its last action.
        // SAFETY: the Driver outlives its acceptors.
        unsafe { (*self.driver).rundown.acquire() };
        // SAFETY: live listen socket; buffers and IRP stay valid until completion.
        unsafe {
            f(
                socket,
                0,
                core::ptr::null_mut(),
                core::ptr::null(),
                self.local.as_mut_ptr().cast(),
                self.remote.as_mut_ptr().cast(),
                self.irp.as_ptr(),
            )
        };
    }

    /// Handles a completed accept, if any: decide, then close or hand over.
    /// Returns false when the listener should be treated as dead.
    pub fn poll(&mut self, d: &Driver, irp: &mut SyncIrp) -> bool {
        if !self.busy || !self.done.load(Ordering::Acquire) {
            return true;
        }
        self.busy = false;
        // SAFETY: the completion routine ran.
        let (st, info) = unsafe { self.irp.io_status() };
        if !NT_SUCCESS(st) || info == 0 {
            self.failures = self.failures.saturating_add(1);
            return st != STATUS_FILE_FORCED_CLOSED && self.failures < MAX_FAILURES;
        }
        self.failures = 0;
        let socket = info as *mut WSK_SOCKET;
        // SAFETY: WskAccept filled both buffers (128 bytes each, enough for
        // any SOCKADDR) before completing.
        let (remote, local) = unsafe {
            (
                addr::from_sockaddr(self.remote.as_ptr().cast()),
                addr::from_sockaddr(self.local.as_ptr().cast()),
            )
        };
        let (Some(remote), Some(local)) = (remote, local) else {
            Stats::bump(&d.stats.bad_addresses);
            crate::closer::close_abortively(d, irp, socket);
            return true;
        };
        Stats::bump(&d.stats.inspects);
        let now = crate::kernel::clock::now();
        let mut dec = d.gate.decide(remote.ip(), local.ip(), now);
        if let (Action::Pend, Some(p)) = (dec.action, dec.pend) {
            let _ = d.gate.pend_done(p.ticket);
            dec.action = Action::Accept;
        }
        let id = WSK_INSPECT_ID::default();
        telemetry::decision(remote, local, &dec, dec.action, dec.reason, 0, &id);
        let acc = crate::state::Accepted {
            socket,
            remote: Some(remote),
            local: Some(local),
        };
        if dec.action == Action::Accept && d.accepted.lock().push(acc) {
            Stats::bump(&d.stats.accepted_sockets);
        } else {
            crate::closer::close_abortively(d, irp, socket);
        }
        true
    }

    /// Waits (after the listener was closed) until no accept is outstanding.
    pub fn wait_idle(&mut self, d: &Driver, irp: &mut SyncIrp) {
        // The completion routine sets `done`, then `wake`: a wait that
        // starts after `done` was set returns at once.
        while self.busy && !self.done.load(Ordering::Acquire) {
            d.wake.wait(None);
        }
        if self.busy {
            let _ = self.poll(d, irp);
        }
        self.busy = false;
    }
}
