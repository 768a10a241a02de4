//! The driver's events, in the driver's terms, forwarded to the ETW
//! provider ([`crate::etw`]). The rest of the driver calls only these
//! functions, so the event plumbing changes in one place.

use core::fmt::Write;
use core::net::SocketAddr;
use core::sync::atomic::Ordering;

use gate_core::{Action, Decision, Family, Reason};
use gate_ksys::WSK_INSPECT_ID;

use crate::config::{DriverConfig, Rejected};
use crate::etw::{self, CloseCause, ListenerMode, Provider, RegisterOutcome, SockAddrBuf};
use crate::kernel::dbg::Line;

/// The gate's one ETW provider.
pub static ETW: Provider = Provider::new();

/// The listener mode this driver uses.
pub const MODE: ListenerMode = ListenerMode::ConditionalAccept;

/// Registers the provider (PASSIVE_LEVEL). Events stay off if it fails.
pub fn register() -> RegisterOutcome {
    ETW.register(crate::kernel::routine::system_routine_wide)
}

/// Unregisters the provider (after the last event).
pub fn unregister() {
    let _ = ETW.unregister();
}

fn sa(a: SocketAddr) -> SockAddrBuf {
    SockAddrBuf::from_socket_addr(a)
}

fn key_bytes(d: &Decision) -> ([u8; 16], usize) {
    let len = match d.key.family() {
        Family::V4 => 4,
        Family::V6 => 16,
    };
    (d.key.bytes(), len)
}

/// One decision answered in WskInspectEvent. `delay_ms` and `id` are used
/// for pends. `reason` overrides the decision's reason (the driver's own
/// reject when the pending table is full).
pub fn decision(
    remote: SocketAddr,
    local: SocketAddr,
    d: &Decision,
    action: Action,
    reason: Reason,
    delay_ms: u32,
    id: &WSK_INSPECT_ID,
) {
    // Runs for every SYN: without a session that wants this event, return
    // before building the address and key buffers.
    let event = match action {
        Action::Accept => etw::def::ConnectionAccepted::DESCRIPTOR,
        Action::Reject => etw::def::ConnectionRejected::DESCRIPTOR,
        Action::Pend => etw::def::ConnectionPended::DESCRIPTOR,
    };
    if !ETW.enabled(event.Level, event.Keyword) {
        return;
    }
    let (r, l) = (sa(remote), sa(local));
    let (kb, klen) = key_bytes(d);
    let key = kb.get(..klen).unwrap_or(&[]);
    let prefix = d.key.prefix_len();
    match action {
        Action::Accept => etw::connection_accepted(
            &ETW,
            r.as_bytes(),
            l.as_bytes(),
            action as u8,
            reason as u8,
            d.observed.map_or(etw::NO_OBSERVED_REASON, |o| o as u8),
            d.tokens_milli,
            key,
            prefix,
        ),
        Action::Reject => etw::connection_rejected(
            &ETW,
            r.as_bytes(),
            l.as_bytes(),
            action as u8,
            reason as u8,
            d.tokens_milli,
            key,
            prefix,
        ),
        Action::Pend => etw::connection_pended(
            &ETW,
            r.as_bytes(),
            l.as_bytes(),
            action as u8,
            reason as u8,
            d.tokens_milli,
            key,
            prefix,
            delay_ms,
            id.Key as u64,
            id.SerialNumber,
        ),
    }
}

/// A pended request was completed (or failed to).
pub fn pend_completed(
    remote: SocketAddr,
    action: Action,
    waited_ms: u32,
    id: &WSK_INSPECT_ID,
    status: i32,
) {
    etw::pend_completed(
        &ETW,
        sa(remote).as_bytes(),
        action as u8,
        waited_ms,
        id.Key as u64,
        id.SerialNumber,
        status,
    );
}

/// WskAbortEvent.
pub fn aborted(
    id: &WSK_INSPECT_ID,
    was_pended: bool,
    token_returned: bool,
    remote: Option<SocketAddr>,
) {
    let r = remote.map_or(SockAddrBuf::EMPTY, sa);
    etw::connection_aborted(
        &ETW,
        id.Key as u64,
        id.SerialNumber,
        was_pended,
        token_returned,
        r.as_bytes(),
    );
    if !was_pended {
        crate::dbg_print!(
            gate_ksys::DPFLTR_TRACE_LEVEL,
            "gate: abort for a request that was not pended (key {:#x} serial {})",
            id.Key,
            id.SerialNumber
        );
    }
}

/// The listener is being closed.
pub fn listener_closed(cause: CloseCause, status: i32, local: SocketAddr) {
    crate::control::note_listener_down();
    etw::listener_closed(&ETW, cause as u8, status, sa(local).as_bytes());
    crate::dbg_print!(
        gate_ksys::DPFLTR_WARNING_LEVEL,
        "gate: closing listener {} ({}, status {:#x})",
        local,
        cause.name(),
        status
    );
}

/// An attempt to create the listener again.
pub fn listener_recreated(attempt: u32, backoff_ms: u32, status: i32, local: SocketAddr) {
    etw::listener_recreated(&ETW, attempt, backoff_ms, status, sa(local).as_bytes());
}

/// The listener is listening.
pub fn listener_up(local: SocketAddr, mode: ListenerMode) {
    crate::control::note_listener_up(mode == ListenerMode::PostAccept);
    etw::listener_up(&ETW, sa(local).as_bytes(), local.port(), mode as u8, 0);
    crate::dbg_print!(
        gate_ksys::DPFLTR_INFO_LEVEL,
        "gate: listening on {} ({})",
        local,
        mode.name()
    );
}

/// The listener stopped listening (closed, or creating it failed with `status`).
pub fn listener_down(local: SocketAddr, status: i32) {
    crate::control::note_listener_down();
    etw::listener_down(&ETW, sa(local).as_bytes(), local.port(), status);
    crate::dbg_print!(
        gate_ksys::DPFLTR_INFO_LEVEL,
        "gate: not listening on {} (status {:#x})",
        local,
        status
    );
}

/// The configuration in force.
pub fn config_loaded(c: &DriverConfig) {
    etw::config_loaded_from(&ETW, c.listen_port, MODE, &c.core);
}

/// A registry value refused (the driver does not start): ETW (Admin
/// channel), the System event log and the debugger.
pub fn config_rejected(r: &Rejected) {
    let mut value = Line::new();
    // A string value is named by its text (sanitised, cut at 64), a
    // number by its decimal value.
    let _ = match r.given() {
        Some(g) => write!(value, "{}", g.as_str()),
        None => write!(value, "{}", r.value),
    };
    let text = core::str::from_utf8(value.as_bytes()).unwrap_or("?");
    etw::config_rejected(&ETW, r.value_name(), text, r.problem);
    crate::errorlog::config_refused(r.value_name(), text, r.problem);
    crate::dbg_print!(gate_ksys::DPFLTR_ERROR_LEVEL, "gate: {}", r);
}

/// The periodic counters.
pub fn counters(d: &crate::state::Driver, interval_ms: u32) {
    let c = d.gate.counters();
    let cap = u32::try_from(d.gate.capacity()).unwrap_or(u32::MAX);
    let tracked = u32::try_from(d.gate.tracked_keys()).unwrap_or(u32::MAX);
    let stats = d.stats.snapshot();
    let in_use = u32::try_from(d.pending.in_use()).unwrap_or(u32::MAX);
    // All zero when no relay runs (no backend, or it could not start);
    // once it stopped (unload), its final totals.
    let relay = crate::relay::snapshot()
        .or_else(crate::relay::last_snapshot)
        .unwrap_or_default();
    LAST_COUNTERS_AT.store(crate::kernel::clock::now(), Ordering::Relaxed);
    etw::counters_from(&ETW, interval_ms, &c, tracked, cap, &stats, in_use, &relay);
    bans_started(d, interval_ms, &c);
}

/// When the last Counters event was written (100 ns units, 0: never).
static LAST_COUNTERS_AT: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The last Counters event, at unload (after the listener worker and the
/// relay stopped, before the provider is unregistered), so a trace ends
/// with the final totals; not written when `CountersIntervalMs` is 0.
/// `IntervalMs` is the time since the previous Counters event (or since
/// the start).
pub fn final_counters(d: &crate::state::Driver) {
    if d.cfg.counters_interval_ms == 0 {
        return;
    }
    let since = match LAST_COUNTERS_AT.swap(0, Ordering::Relaxed) {
        0 => d.started_at,
        t => t.max(d.started_at),
    };
    let ms = crate::kernel::clock::now().saturating_sub(since) / 10_000;
    counters(d, u32::try_from(ms).unwrap_or(u32::MAX));
    LAST_COUNTERS_AT.store(0, Ordering::Relaxed);
}

/// The BansStarted summary: one event per Counters interval in which gate-core
/// started a ban (rate limited by construction; the count says how many).
fn bans_started(d: &crate::state::Driver, interval_ms: u32, c: &gate_core::telemetry::Counters) {
    use gate_core::telemetry::Event;
    let total = c.event(Event::BanStarted);
    let banned = c.reason(Reason::Banned);
    let prev = d.bans_reported.swap(total, Ordering::Relaxed);
    let prev_banned = d.banned_reported.swap(banned, Ordering::Relaxed);
    let started = total.saturating_sub(prev);
    if started == 0 {
        return;
    }
    crate::dbg_print!(
        gate_ksys::DPFLTR_WARNING_LEVEL,
        "gate: {} key(s) banned in the last {} ms ({} since start)",
        started,
        interval_ms,
        total
    );
    etw::bans_started(
        &ETW,
        interval_ms,
        started,
        total,
        banned.saturating_sub(prev_banned),
    );
}

/// The relay's connects to `backend` started failing.
pub fn relay_backend_down(backend: SocketAddr, status: i32, cause: crate::relay::Cause) {
    crate::dbg_print!(
        gate_ksys::DPFLTR_ERROR_LEVEL,
        "gate: relay backend {:?} unreachable: {} (status {:#x})",
        backend,
        cause.name(),
        status
    );
    etw::relay_backend_down(&ETW, sa(backend).as_bytes(), status, cause as u8);
}

/// A connect to `backend` succeeded again after [`relay_backend_down`].
pub fn relay_backend_up(backend: SocketAddr, down_ms: u64, failed: u64) {
    crate::dbg_print!(
        gate_ksys::DPFLTR_WARNING_LEVEL,
        "gate: relay backend {:?} reachable again after {} ms",
        backend,
        down_ms
    );
    etw::relay_backend_up(&ETW, sa(backend).as_bytes(), down_ms, failed);
}

/// DriverEntry succeeded.
pub fn driver_loaded() {
    etw::driver_loaded(&ETW, env!("CARGO_PKG_VERSION"), MODE as u8);
}

/// A connection the stack accepted was declined (hand-off queue full or
/// unloading): WskAcceptEvent returned STATUS_REQUEST_NOT_ACCEPTED.
pub fn connection_declined(
    remote: Option<SocketAddr>,
    local: Option<SocketAddr>,
    queued: usize,
    unloading: bool,
) {
    let e = etw::def::ConnectionDeclined::DESCRIPTOR;
    if !ETW.enabled(e.Level, e.Keyword) {
        return;
    }
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    let (r, l) = (
        sa(remote.unwrap_or(unspecified)),
        sa(local.unwrap_or(unspecified)),
    );
    etw::connection_declined(
        &ETW,
        r.as_bytes(),
        l.as_bytes(),
        u32::try_from(queued).unwrap_or(u32::MAX),
        unloading,
    );
}

/// DriverUnload started.
pub fn driver_unloading(uptime_ms: u64) {
    etw::driver_unloading(&ETW, uptime_ms);
}

// ---- relay (issue 12) ----

fn opt(a: Option<SocketAddr>) -> SockAddrBuf {
    a.map_or(SockAddrBuf::EMPTY, sa)
}

/// The relay is on: its configuration.
pub fn relay_on(backend: SocketAddr, c: &crate::config::RelayConfig) {
    etw::relay_configured(
        &ETW,
        sa(backend).as_bytes(),
        c.proxy_protocol,
        c.max_connections,
        c.buffer_bytes,
        c.connect_timeout_ms,
        c.idle_timeout_ms,
    );
    crate::dbg_print!(
        gate_ksys::DPFLTR_INFO_LEVEL,
        "gate: relaying accepted connections to {} (PROXY protocol {}, at most {})",
        backend,
        c.proxy_protocol,
        c.max_connections
    );
}

/// No backend configured (a Warning: the gate protects nothing behind it).
pub fn relay_off() {
    const TEXT: &str =
        "no BackendAddress: accepted connections are closed, nothing is relayed: the gate protects nothing";
    etw::relay_off(&ETW, TEXT);
    crate::dbg_print!(gate_ksys::DPFLTR_WARNING_LEVEL, "gate: {}", TEXT);
}

/// A relay reached its backend.
pub fn relay_opened(client: Option<SocketAddr>, backend: SocketAddr, connect_ms: u32) {
    let ev = etw::def::RelayOpened::DESCRIPTOR;
    if !ETW.enabled(ev.Level, ev.Keyword) {
        return;
    }
    etw::relay_opened(
        &ETW,
        opt(client).as_bytes(),
        sa(backend).as_bytes(),
        connect_ms,
    );
}

/// A relay ended.
pub fn relay_closed(
    client: Option<SocketAddr>,
    backend: SocketAddr,
    to_backend: u64,
    to_client: u64,
    duration_ms: u32,
    first: crate::relay::pair::Side,
    cause: crate::relay::Cause,
) {
    if cause != crate::relay::Cause::BothEnded {
        crate::dbg_print!(
            gate_ksys::DPFLTR_INFO_LEVEL,
            "gate: relay for {:?} aborted: {} after {} ms ({} bytes up, {} down)",
            client,
            cause.name(),
            duration_ms,
            to_backend,
            to_client
        );
    }
    let ev = etw::def::RelayClosed::DESCRIPTOR;
    if !ETW.enabled(ev.Level, ev.Keyword) {
        return;
    }
    etw::relay_closed(
        &ETW,
        opt(client).as_bytes(),
        sa(backend).as_bytes(),
        to_backend,
        to_client,
        duration_ms,
        first as u8,
        cause as u8,
    );
}

/// An accepted connection could not be relayed.
pub fn relay_failed(
    client: Option<SocketAddr>,
    backend: SocketAddr,
    status: i32,
    cause: crate::relay::Cause,
) {
    crate::dbg_print!(
        gate_ksys::DPFLTR_WARNING_LEVEL,
        "gate: relay for {:?} failed: {} (status {:#x})",
        client,
        cause.name(),
        status
    );
    let ev = etw::def::RelayFailed::DESCRIPTOR;
    if !ETW.enabled(ev.Level, ev.Keyword) {
        return;
    }
    etw::relay_failed(
        &ETW,
        opt(client).as_bytes(),
        sa(backend).as_bytes(),
        status,
        cause as u8,
    );
}

/// The control device applied a change (ConfigChanged).
pub fn config_changed(what: &str, old: &[u8], new: &[u8], pid: u32, persisted: bool) {
    let old = core::str::from_utf8(old).unwrap_or("?");
    let new = core::str::from_utf8(new).unwrap_or("?");
    etw::config_changed(&ETW, what, old, new, pid, persisted);
    crate::dbg_print!(
        gate_ksys::DPFLTR_INFO_LEVEL,
        "gate: {} changed: {} -> {} (pid {})",
        what,
        old,
        new,
        pid
    );
}

/// The control device refused a request (ControlRejected).
pub fn control_rejected(operation: &str, r: &crate::control::dispatch::Refusal, pid: u32) {
    let mut value = Line::new();
    let _ = write!(value, "{}", r.value);
    let text = core::str::from_utf8(value.as_bytes()).unwrap_or("?");
    etw::control_rejected(&ETW, operation, r.field, text, r.reason, r.status, pid);
    // A refused configuration value is also the ConfigRejected,
    // named by its registry value (RateMilliPerSecond, ...), like a value
    // refused at start; framing refusals (length, version, code) are not
    // configuration and stay ControlRejected only.
    if gate_core::field::ALL.contains(&r.field) {
        etw::config_rejected(
            &ETW,
            crate::config::value_name_of_field(r.field),
            text,
            r.reason,
        );
    }
    crate::dbg_print!(
        gate_ksys::DPFLTR_WARNING_LEVEL,
        "gate: {} refused: {} = {}: expected {} ({:#x}, pid {})",
        operation,
        r.field,
        text,
        r.reason,
        r.status,
        pid
    );
}
