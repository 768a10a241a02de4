//! The listener's whole life cycle, on one system worker thread, in the
//! order of Microsoft's WSK echo server sample:
//!
//! 1. capture the WSK provider NPI (bounded waits of [`CAPTURE_WAIT_MS`],
//!    repeated until WSK is up or unload begins);
//! 2. create the listening socket (AF_INET6 dual-stack, or the family of
//!    the configured address), set IPV6_V6ONLY = 0, SO_EXCLUSIVEADDRUSE,
//!    SO_CONDITIONAL_ACCEPT = 1, enable the accept event, bind (a stack
//!    without conditional accept gets [`crate::post_accept`] mode instead);
//! 3. wait for: the listener died (a callback said so), due pended
//!    requests the timer DPC left ([`crate::pending::PendingTable::drain_backlog`], a slice
//!    of [`crate::pending::WORKER_SLICE`] per pass), accepted connections to
//!    close, a graceful close finishing or running out of time
//!    ([`crate::closer`]), the counters period, or unload;
//! 4. close the listener: stop completions, reject (unload) or drop (dead
//!    listener) pended requests, WskCloseSocket, wait for completions;
//! 5. unless unloading, back off (100 ms doubling to 30 s, reset after a
//!    listener that lived a minute) and go to 2;
//! 6. close what is still queued (abortively) and give up on the graceful
//!    closes in flight, stop the relay (every relayed connection torn down,
//!    bounded), release the provider NPI and end.
//!
//! With a backend configured, step 1 is followed by starting the relay
//! worker ([`crate::relay::start`]), and accepted connections are handed to
//! it ([`crate::relay::adopt`]) instead of being closed.
//!
//! Every WSK call here is synchronous through one [`SyncIrp`]; WskCloseSocket
//! is only ever called from this thread, after [`PendingTable::stop`]
//! guaranteed no other call on the socket is in progress.

use core::ffi::c_void;
use core::net::SocketAddr;
use core::sync::atomic::Ordering;

use gate_ksys::*;

use crate::addr::{self, SockAddrStorage};
use crate::closer::{self, Closer};
use crate::decision::LISTEN_DISPATCH;
use crate::etw::{CloseCause, ListenerMode};
use crate::kernel::irp::SyncIrp;
use crate::post_accept::Acceptor;
use crate::state::{Driver, Stats};
use crate::telemetry;

/// First back-off after a failure (ms).
pub const BACKOFF_MIN_MS: u32 = 100;
/// Longest back-off (ms).
pub const BACKOFF_MAX_MS: u32 = 30_000;
/// A listener that lived this long resets the back-off (ms).
const BACKOFF_RESET_AFTER_MS: u64 = 60_000;

/// The worker thread's body (PsCreateSystemThread start routine).
///
/// # Safety
/// `context` is the Driver, alive until the thread ends (unload joins it).
pub unsafe extern "system" fn worker_main(context: *mut c_void) {
    // SAFETY: per the contract above.
    let d = unsafe { &*context.cast::<Driver>() };
    run(d);
    // SAFETY: ends this system thread; nothing of ours runs after it.
    unsafe { PsTerminateSystemThread(STATUS_SUCCESS) };
}

fn run(d: &Driver) {
    // The worker's IRP: without memory, wait and try again (unload cuts
    // the wait short).
    let mut backoff = BACKOFF_MIN_MS;
    let mut irp = loop {
        if let Some(irp) = SyncIrp::new(&d.rundown) {
            break irp;
        }
        crate::dbg_print!(
            DPFLTR_ERROR_LEVEL,
            "gate: worker: no memory for an IRP; retrying in {} ms",
            backoff
        );
        if d.stopping.load(Ordering::Acquire) {
            return;
        }
        d.wake.wait(Some(backoff));
        if d.stopping.load(Ordering::Acquire) {
            return;
        }
        backoff = backoff.saturating_mul(2).min(BACKOFF_MAX_MS);
    };
    // When the last Counters event was written (the period runs through
    // every wait of this thread: capture, listening, back-off).
    let mut last_counters = crate::kernel::clock::now();
    let Some(npi) = capture(d, &mut last_counters) else {
        return;
    };
    // Issue 12: the relay worker, when a backend is configured.
    let relay = crate::relay::start(d, &npi);
    let mut closer = Closer::new(d);
    life_cycle(d, &npi, &mut irp, &mut closer, &mut last_counters);
    // `stopping` is set: what is still queued is closed abortively, and
    // every graceful close in flight is given up on.
    close_all_accepted(d, &mut irp, &mut closer);
    closer.finish(d, &mut irp);
    // Issue 12: tear every relay down (bounded) before the NPI goes.
    if let Some(r) = relay {
        r.stop();
    }
    // SAFETY: we captured the NPI and every socket is closed.
    unsafe { WskReleaseProviderNPI(d.registration()) };
}

/// How long one WskCaptureProviderNPI call waits for WSK to come up. The
/// wait is bounded so this thread notices unload between calls: unload joins
/// the worker before it calls WskDeregister, so no capture is ever waiting
/// in, racing with, or started after deregistration.
pub const CAPTURE_WAIT_MS: u32 = 500;

/// Step 1: captures the provider NPI, asking again while WSK is not ready
/// and backing off on other failures. `None` when unloading.
fn capture(d: &Driver, last_counters: &mut u64) -> Option<WSK_PROVIDER_NPI> {
    let mut backoff = BACKOFF_MIN_MS;
    loop {
        if d.stopping.load(Ordering::Acquire) {
            return None;
        }
        let mut npi = WSK_PROVIDER_NPI {
            Client: core::ptr::null_mut(),
            Dispatch: core::ptr::null(),
        };
        // SAFETY: the registration is initialised (WskRegister succeeded
        // before this thread started) and stays registered while this
        // thread runs (unload deregisters only after joining it); `npi` is
        // a valid out-parameter.
        let st = unsafe { WskCaptureProviderNPI(d.registration(), CAPTURE_WAIT_MS, &mut npi) };
        if NT_SUCCESS(st) {
            // If unload began meanwhile, life_cycle sees `stopping` at once
            // and `run` releases the NPI.
            return Some(npi);
        }
        if st == STATUS_DEVICE_NOT_READY {
            // (WskCaptureProviderNPI waited up to CAPTURE_WAIT_MS.)
            counters_when_due(d, last_counters);
            // WSK did not come up within the wait: check for unload, ask again.
            continue;
        }
        crate::dbg_print!(
            DPFLTR_WARNING_LEVEL,
            "gate: WskCaptureProviderNPI failed: {:#x}; retrying in {} ms",
            st,
            backoff
        );
        // Counters stay on time during the back-off: wait until the
        // earlier of the two, and write Counters if that was its time.
        let start = crate::kernel::clock::now();
        loop {
            let waited = crate::kernel::clock::now().saturating_sub(start) / 10_000;
            let left = u64::from(backoff).saturating_sub(waited);
            if left == 0 || d.stopping.load(Ordering::Acquire) {
                break;
            }
            let left = u32::try_from(left).unwrap_or(backoff);
            d.wake.wait(closer::earlier(
                Some(left),
                counters_next_ms(d, *last_counters),
            ));
            counters_when_due(d, last_counters);
        }
        backoff = backoff.saturating_mul(2).min(BACKOFF_MAX_MS);
    }
}

/// How long until the Counters event is due (ms; at least 1), `None` when
/// it is off (`CountersIntervalMs` 0). Every wait of the worker is bounded
/// by it, and each wait is followed by [`counters_when_due`], so Counters
/// comes on time whether a listener is up, being re-created or backing off.
fn counters_next_ms(d: &Driver, last: u64) -> Option<u32> {
    let period = d.cfg.counters_interval_ms;
    if period == 0 {
        return None;
    }
    let elapsed_ms = crate::kernel::clock::now().saturating_sub(last) / 10_000;
    let left = u64::from(period).saturating_sub(elapsed_ms).max(1);
    Some(u32::try_from(left).unwrap_or(period))
}

/// Writes the Counters event when its period has passed since `last`
/// (then moves `last` to now). Called after a wait and the work it woke
/// for, so the event reports that work.
fn counters_when_due(d: &Driver, last: &mut u64) {
    let period = d.cfg.counters_interval_ms;
    if period == 0 {
        return;
    }
    let now = crate::kernel::clock::now();
    let elapsed_ms = now.saturating_sub(*last) / 10_000;
    if elapsed_ms >= u64::from(period) {
        telemetry::counters(d, u32::try_from(elapsed_ms).unwrap_or(u32::MAX));
        *last = now;
    }
}

/// Steps 2-5 until unload.
fn life_cycle(
    d: &Driver,
    npi: &WSK_PROVIDER_NPI,
    irp: &mut SyncIrp,
    closer: &mut Closer,
    last_counters: &mut u64,
) {
    let local = addr::listen_addr(d.cfg.listen_address, d.cfg.listen_port);
    let mut backoff = BACKOFF_MIN_MS;
    let mut attempt: u32 = 0;
    while !d.stopping.load(Ordering::Acquire) {
        d.reset_dead();
        let created = create(d, npi, irp, local);
        if attempt > 0 {
            let st = created.as_ref().err().copied().unwrap_or(STATUS_SUCCESS);
            telemetry::listener_recreated(attempt, backoff, st, local);
        }
        match created {
            Ok((socket, mode)) => {
                // Attempts count from the last time a listener went down.
                attempt = 0;
                Stats::bump(&d.stats.listeners_up);
                telemetry::listener_up(local, mode);
                let up_at = crate::kernel::clock::now();
                let mut acceptor = match mode {
                    ListenerMode::PostAccept => Acceptor::new(d),
                    ListenerMode::ConditionalAccept => None,
                };
                if mode == ListenerMode::PostAccept && acceptor.is_none() {
                    // No memory for the accept IRP: a post-accept listener
                    // that never calls WskAccept would leave connections in
                    // the backlog undecided. Close it and retry with back-off.
                    d.signal_listener_dead(CloseCause::Error, STATUS_INSUFFICIENT_RESOURCES);
                }
                wait_while_listening(
                    d,
                    irp,
                    closer,
                    socket,
                    acceptor.as_deref_mut(),
                    last_counters,
                );
                // This listener's own report (reset for each listener), or
                // unload with status 0.
                let (cause, status) = match d.dead_report() {
                    Some((c, st)) => (cause_of(c), st),
                    None => (CloseCause::Unload, STATUS_SUCCESS),
                };
                telemetry::listener_closed(cause, status, local);
                let st = close(d, irp, socket, cause == CloseCause::Unload);
                if let Some(a) = acceptor.as_deref_mut() {
                    a.wait_idle(d, irp);
                }
                telemetry::listener_down(local, st);
                let lived_ms = crate::kernel::clock::now().saturating_sub(up_at) / 10_000;
                if lived_ms >= BACKOFF_RESET_AFTER_MS {
                    backoff = BACKOFF_MIN_MS;
                }
            }
            Err(st) => {
                telemetry::listener_down(local, st);
            }
        }
        if d.stopping.load(Ordering::Acquire) {
            break;
        }
        attempt = attempt.saturating_add(1);
        back_off(d, irp, closer, backoff, last_counters);
        backoff = backoff.saturating_mul(2).min(BACKOFF_MAX_MS);
    }
}

/// Waits `ms` before the next attempt; unload (which sets `wake` and
/// `stopping`) cuts it short. Other wake-ups are served and waited out;
/// Counters is written when due meanwhile (review item 4: the period must
/// not stop while the listener is down).
fn back_off(d: &Driver, irp: &mut SyncIrp, closer: &mut Closer, ms: u32, last_counters: &mut u64) {
    let start = crate::kernel::clock::now();
    loop {
        let waited = crate::kernel::clock::now().saturating_sub(start) / 10_000;
        let left = u64::from(ms).saturating_sub(waited);
        if left == 0 || d.stopping.load(Ordering::Acquire) {
            return;
        }
        let left = Some(u32::try_from(left).unwrap_or(ms));
        let next = closer::earlier(left, counters_next_ms(d, *last_counters));
        d.wake.wait(closer::earlier(next, closer.next_due_ms()));
        close_accepted(d, irp, closer);
        closer.poll(d, irp);
        counters_when_due(d, last_counters);
    }
}

fn cause_of(v: u8) -> CloseCause {
    CloseCause::ALL
        .iter()
        .copied()
        .find(|c| *c as u8 == v)
        .unwrap_or(CloseCause::Error)
}

/// Step 3: serves the worker's duties until the listener dies or unload.
/// In post-accept mode it also keeps one WskAccept outstanding and decides
/// on each connection it delivers.
fn wait_while_listening(
    d: &Driver,
    irp: &mut SyncIrp,
    closer: &mut Closer,
    socket: *mut WSK_SOCKET,
    mut acceptor: Option<&mut Acceptor>,
    last_counters: &mut u64,
) {
    loop {
        if d.stopping.load(Ordering::Acquire) || d.listener_dead() {
            return;
        }
        if let Some(a) = acceptor.as_deref_mut() {
            // SAFETY: the live listener; it is closed only after this loop,
            // and the caller waits for the accept before dropping `a`.
            unsafe { a.arm(socket) };
        }
        let next = counters_next_ms(d, *last_counters);
        d.wake.wait(closer::earlier(next, closer.next_due_ms()));
        if let Some(a) = acceptor.as_deref_mut() {
            if !a.poll(d, irp) {
                d.signal_listener_dead(CloseCause::Error, STATUS_UNSUCCESSFUL);
            }
        }
        // Due pends the timer DPC left (a backlog beyond one DPC run): a
        // slice per pass, then the other duties, and round again at once.
        // Not on a listener reported dead: the next pass closes it, and
        // `stop` drops what is left.
        if !d.listener_dead() && d.pending.drain_backlog(d) {
            d.wake.set();
        }
        close_accepted(d, irp, closer);
        closer.poll(d, irp);
        counters_when_due(d, last_counters);
    }
}

/// Step 2: a bound, conditional-accept listener, or the failing status.
fn create(
    d: &Driver,
    npi: &WSK_PROVIDER_NPI,
    irp: &mut SyncIrp,
    local: SocketAddr,
) -> Result<(*mut WSK_SOCKET, ListenerMode), NTSTATUS> {
    // SAFETY: the captured NPI's dispatch is valid until released.
    let Some(wsk_socket) = (unsafe { (*npi.Dispatch).WskSocket }) else {
        return Err(STATUS_NOT_SUPPORTED);
    };
    let family = match local {
        SocketAddr::V4(_) => AF_INET,
        SocketAddr::V6(_) => AF_INET6,
    };
    let ctx = (d as *const Driver).cast_mut().cast::<c_void>();
    let dispatch = (&LISTEN_DISPATCH as *const WSK_CLIENT_LISTEN_DISPATCH).cast::<c_void>();
    let (st, info) = irp.call(|irp| {
        // SAFETY: valid client, dispatch and IRP; the context (the Driver)
        // outlives the socket (closed before unload frees it).
        unsafe {
            wsk_socket(
                npi.Client,
                family,
                SOCK_STREAM,
                IPPROTO_TCP,
                WSK_FLAG_LISTEN_SOCKET,
                ctx,
                dispatch,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                irp,
            )
        }
    });
    if !NT_SUCCESS(st) || info == 0 {
        return Err(if NT_SUCCESS(st) {
            STATUS_UNSUCCESSFUL
        } else {
            st
        });
    }
    let socket = info as *mut WSK_SOCKET;
    match configure_and_bind(d, irp, socket, local) {
        Ok(mode) => Ok((socket, mode)),
        Err(st) => {
            // Nothing else can call on the socket yet except completions
            // of pends it already produced: stop those, then close.
            close(d, irp, socket, false);
            Err(st)
        }
    }
}

fn listen_dispatch(socket: *mut WSK_SOCKET) -> *const WSK_PROVIDER_LISTEN_DISPATCH {
    // SAFETY: a listen socket's Dispatch is the provider's listen dispatch.
    unsafe { (*socket).Dispatch.cast() }
}

/// Sets a ULONG socket option through WskControlSocket.
fn set_option(
    irp: &mut SyncIrp,
    socket: *mut WSK_SOCKET,
    level: u32,
    option: u32,
    value: u32,
) -> NTSTATUS {
    // SAFETY: the dispatch table of a live socket.
    let Some(control) = (unsafe { (*listen_dispatch(socket)).Basic.WskControlSocket }) else {
        return STATUS_NOT_SUPPORTED;
    };
    let mut v = value;
    irp.call(|irp| {
        // SAFETY: live socket; `v` outlives the call (we wait for it).
        unsafe {
            control(
                socket,
                WskSetOption,
                option,
                level,
                core::mem::size_of::<u32>(),
                (&mut v as *mut u32).cast(),
                0,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                irp,
            )
        }
    })
    .0
}

fn configure_and_bind(
    d: &Driver,
    irp: &mut SyncIrp,
    socket: *mut WSK_SOCKET,
    local: SocketAddr,
) -> Result<ListenerMode, NTSTATUS> {
    let ok = |st: NTSTATUS| if NT_SUCCESS(st) { Ok(()) } else { Err(st) };
    let missing = |st: NTSTATUS| st == STATUS_NOT_IMPLEMENTED || st == STATUS_NOT_SUPPORTED;
    if local.is_ipv6() {
        // Dual-stack: IPv4 clients arrive as v4-mapped addresses.
        let st = set_option(irp, socket, IPPROTO_IPV6, IPV6_V6ONLY, 0);
        if missing(st) {
            crate::dbg_print!(
                DPFLTR_WARNING_LEVEL,
                "gate: IPV6_V6ONLY not settable ({:#x}): the stack's default applies",
                st
            );
        } else {
            ok(st)?;
        }
    }
    let st = set_option(irp, socket, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 1);
    if !NT_SUCCESS(st) {
        crate::dbg_print!(
            DPFLTR_WARNING_LEVEL,
            "gate: SO_EXCLUSIVEADDRUSE refused ({:#x}); continuing",
            st
        );
    }
    let st = set_option(irp, socket, SOL_SOCKET, SO_CONDITIONAL_ACCEPT, 1);
    if missing(st) {
        crate::dbg_print!(
            DPFLTR_WARNING_LEVEL,
            "gate: no conditional accept ({:#x}): post-accept mode (decides after the handshake)",
            st
        );
        return bind(d, irp, socket, local).map(|()| ListenerMode::PostAccept);
    }
    ok(st)?;
    // Accept events: SO_WSK_EVENT_CALLBACK is set without an IRP (WSK
    // documents Irp = NULL for it; it completes synchronously).
    // SAFETY: the dispatch table of a live socket.
    let Some(control) = (unsafe { (*listen_dispatch(socket)).Basic.WskControlSocket }) else {
        return Err(STATUS_NOT_SUPPORTED);
    };
    let mut ev = WSK_EVENT_CALLBACK_CONTROL {
        NpiId: &NPI_WSK_INTERFACE_ID,
        EventMask: WSK_EVENT_ACCEPT,
    };
    // SAFETY: live socket; `ev` is valid for the (synchronous) call.
    ok(unsafe {
        control(
            socket,
            WskSetOption,
            SO_WSK_EVENT_CALLBACK,
            SOL_SOCKET,
            core::mem::size_of::<WSK_EVENT_CALLBACK_CONTROL>(),
            (&mut ev as *mut WSK_EVENT_CALLBACK_CONTROL).cast(),
            0,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
        )
    })?;
    bind(d, irp, socket, local).map(|()| ListenerMode::ConditionalAccept)
}

/// WskBind (which also starts listening).
fn bind(
    d: &Driver,
    irp: &mut SyncIrp,
    socket: *mut WSK_SOCKET,
    local: SocketAddr,
) -> Result<(), NTSTATUS> {
    let ok = |st: NTSTATUS| if NT_SUCCESS(st) { Ok(()) } else { Err(st) };
    // Pends may start as soon as the bind completes.
    d.pending.open_listener(socket);
    // SAFETY: the dispatch table of a live socket.
    let Some(bind) = (unsafe { (*listen_dispatch(socket)).WskBind }) else {
        return Err(STATUS_NOT_SUPPORTED);
    };
    let sa = SockAddrStorage::new(local);
    let (st, _) = irp.call(|irp| {
        // SAFETY: live socket; `sa` outlives the call.
        unsafe { bind(socket, sa.as_ptr(), 0, irp) }
    });
    ok(st)
}

/// Step 4: closes a listener. Returns WskCloseSocket's status.
fn close(d: &Driver, irp: &mut SyncIrp, socket: *mut WSK_SOCKET, reject_pended: bool) -> NTSTATUS {
    let dropped = d.pending.stop(d, reject_pended);
    if dropped > 0 {
        crate::dbg_print!(
            DPFLTR_INFO_LEVEL,
            "gate: dropped {} pended requests of a closed listener",
            dropped
        );
    }
    // SAFETY: the dispatch table of a live socket.
    let close = unsafe { (*listen_dispatch(socket)).Basic.WskCloseSocket };
    let st = match close {
        // SAFETY: no other call on the socket is in progress (`stop`
        // returned) and none will start; WSK waits for callbacks in progress.
        Some(f) => irp.call(|irp| unsafe { f(socket, irp) }).0,
        None => STATUS_NOT_SUPPORTED,
    };
    d.pending.detach();
    st
}

/// Connections the worker handles per pass of its loop: the rest wait for
/// the next pass (the wake event is set again), so periodic duties (the
/// Counters event) stay on time under a flood of accepted connections.
pub const CLOSES_PER_PASS: usize = 16;

/// Hands up to [`CLOSES_PER_PASS`] accepted connections waiting in the
/// queue to the relay (issue 12), or closes them: without a relay as
/// configured (`AbortiveClose`; graceful closes go on in the background,
/// [`crate::closer`]), abortively when the relay refused one.
fn close_accepted(d: &Driver, irp: &mut SyncIrp, closer: &mut Closer) {
    for _ in 0..CLOSES_PER_PASS {
        let Some(a) = d.accepted.lock().pop() else {
            return;
        };
        hand_over(d, irp, closer, a);
    }
    if !d.accepted.lock().is_empty() {
        // More next pass, after the periodic duties.
        d.wake.set();
    }
}

/// Hands every accepted connection still queued over (the worker's end).
fn close_all_accepted(d: &Driver, irp: &mut SyncIrp, closer: &mut Closer) {
    loop {
        let Some(a) = d.accepted.lock().pop() else {
            return;
        };
        hand_over(d, irp, closer, a);
    }
}

fn hand_over(d: &Driver, irp: &mut SyncIrp, closer: &mut Closer, a: crate::state::Accepted) {
    if let Err(abortive) = crate::relay::adopt(d, a) {
        closer.close(d, irp, a.socket, abortive || d.cfg.abortive_close);
    }
}
