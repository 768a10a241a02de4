//! The gate's events: the one place each event is defined.
//!
//! Ids are stable (never reused); a change to an event's fields bumps its
//! version. `channel: ADMIN` / `channel: OPERATIONAL` also sends an event
//! to that Event Log channel (see [`super::channel`]): only rare events an
//! operator must see without a trace session, never per-connection ones. etw-manifest/gate.man must describe the same events (its tests
//! compare it with [`SCHEMA`] field by field).

use super::table::gate_events;

gate_events! {
    /// A connection request (SYN) was accepted at once.
    ConnectionAccepted = 1 {
        fn connection_accepted;
        version: 0, level: VERBOSE, keyword: ACCEPT, task: DECISION, opcode: INFO;
        /// Remote address and port of the SYN.
        remote "RemoteAddress": SockAddr,
        /// Local (listening) address and port.
        local "LocalAddress": SockAddr,
        /// The decision: always accept here (value map ActionMap).
        action "Action": U8 => "ActionMap",
        /// Why (value map ReasonMap): within_rate, allow_listed, or observe_would_reject in observe mode.
        reason "Reason": U8 => "ReasonMap",
        /// Observe mode: the reason the gate would have given (255 = none).
        observed "ObservedReason": U8 => "ObservedReasonMap",
        /// Tokens left in the key's bucket, in thousandths (4294967295 = no bucket consulted).
        tokens_milli "TokensLeftMilli": U32,
        /// The key: the remote network address (4 bytes IPv4, 16 bytes IPv6), host bits zero.
        key "Key": Binary,
        /// Prefix length of the key in bits.
        key_prefix_len "KeyPrefixLength": U8,
    }

    /// A connection request was rejected (the client gets no connection).
    ConnectionRejected = 2 {
        fn connection_rejected;
        version: 0, level: INFO, keyword: REJECT, task: DECISION, opcode: INFO;
        /// Remote address and port of the SYN.
        remote "RemoteAddress": SockAddr,
        /// Local (listening) address and port.
        local "LocalAddress": SockAddr,
        /// The decision: always reject here (value map ActionMap).
        action "Action": U8 => "ActionMap",
        /// Why (value map ReasonMap).
        reason "Reason": U8 => "ReasonMap",
        /// Tokens left in the key's bucket, in thousandths (4294967295 = no bucket consulted).
        tokens_milli "TokensLeftMilli": U32,
        /// The key: the remote network address (4 bytes IPv4, 16 bytes IPv6), host bits zero.
        key "Key": Binary,
        /// Prefix length of the key in bits.
        key_prefix_len "KeyPrefixLength": U8,
    }

    /// A connection request was pended: it is accepted after a delay (no SYN-ACK meanwhile).
    ConnectionPended = 3 {
        fn connection_pended;
        version: 0, level: VERBOSE, keyword: PEND, task: DECISION, opcode: INFO;
        /// Remote address and port of the SYN.
        remote "RemoteAddress": SockAddr,
        /// Local (listening) address and port.
        local "LocalAddress": SockAddr,
        /// The decision: always pend here (value map ActionMap).
        action "Action": U8 => "ActionMap",
        /// Why (value map ReasonMap): pend_delayed.
        reason "Reason": U8 => "ReasonMap",
        /// Tokens left in the key's bucket, in thousandths (4294967295 = no bucket consulted).
        tokens_milli "TokensLeftMilli": U32,
        /// The key: the remote network address (4 bytes IPv4, 16 bytes IPv6), host bits zero.
        key "Key": Binary,
        /// Prefix length of the key in bits.
        key_prefix_len "KeyPrefixLength": U8,
        /// Delay before the request is completed, in milliseconds.
        delay_ms "DelayMs": U32,
        /// WSK_INSPECT_ID.Key of the pended request (matches PendCompleted and ConnectionAborted).
        inspect_key "InspectKey": Hex64,
        /// WSK_INSPECT_ID.SerialNumber of the pended request.
        inspect_serial "InspectSerial": U32,
    }

    /// A pended request was completed with WskInspectComplete.
    PendCompleted = 4 {
        fn pend_completed;
        version: 0, level: VERBOSE, keyword: PEND, task: PEND, opcode: INFO;
        /// Remote address and port of the request.
        remote "RemoteAddress": SockAddr,
        /// The final action: accept or reject (value map ActionMap).
        action "Action": U8 => "ActionMap",
        /// Time the request was held, in milliseconds.
        waited_ms "WaitedMs": U32,
        /// WSK_INSPECT_ID.Key.
        inspect_key "InspectKey": Hex64,
        /// WSK_INSPECT_ID.SerialNumber.
        inspect_serial "InspectSerial": U32,
        /// What WskInspectComplete returned (STATUS_FILE_FORCED_CLOSED: the listener must close).
        status "Status": NtStatus,
    }

    /// WskAbortEvent: an accepted or pended request died before it was established.
    ConnectionAborted = 5 {
        fn connection_aborted;
        version: 0, level: INFO, keyword: ABORT, task: ABORT, opcode: INFO;
        /// WSK_INSPECT_ID.Key of the aborted request.
        inspect_key "InspectKey": Hex64,
        /// WSK_INSPECT_ID.SerialNumber of the aborted request.
        inspect_serial "InspectSerial": U32,
        /// Whether the request was pended (else it had been accepted).
        was_pended "WasPended": Bool32,
        /// Whether the request's token was given back to its bucket.
        token_returned "TokenReturned": Bool32,
        /// Remote address and port when known (empty otherwise).
        remote "RemoteAddress": SockAddr,
    }

    /// The listening socket stopped working and is being closed.
    ListenerClosed = 6 {
        fn listener_closed;
        version: 0, level: WARNING, keyword: LISTENER, task: LISTENER, opcode: INFO, channel: ADMIN;
        /// Why (value map CloseCauseMap): null_inspect_id, file_forced_closed, unload, error.
        cause "Cause": U8 => "CloseCauseMap",
        /// The status that told us, when there is one (else 0).
        status "Status": NtStatus,
        /// Local address and port of the listener.
        local "LocalAddress": SockAddr,
    }

    /// An attempt to create the listener again after it closed.
    ListenerRecreated = 7 {
        fn listener_recreated;
        version: 0, level: WARNING, keyword: LISTENER, task: LISTENER, opcode: INFO, channel: OPERATIONAL;
        /// Attempt number since the listener went down (1 = first).
        attempt "Attempt": U32,
        /// Back-off waited before this attempt, in milliseconds.
        backoff_ms "BackoffMs": U32,
        /// Result of the attempt (STATUS_SUCCESS = listening again).
        status "Status": NtStatus,
        /// Local address and port of the listener.
        local "LocalAddress": SockAddr,
    }

    /// The listener is bound and listening.
    ListenerUp = 8 {
        fn listener_up;
        version: 0, level: INFO, keyword: LISTENER, task: LISTENER, opcode: START, channel: OPERATIONAL;
        /// Local address and port.
        local "LocalAddress": SockAddr,
        /// Local port.
        port "Port": Port,
        /// How decisions are made (value map ListenerModeMap): conditional_accept or post_accept.
        mode "Mode": U8 => "ListenerModeMap",
        /// Status of the bind (STATUS_SUCCESS).
        status "Status": NtStatus,
    }

    /// The listener is no longer listening (closed, or creating it failed).
    ListenerDown = 9 {
        fn listener_down;
        version: 0, level: INFO, keyword: LISTENER, task: LISTENER, opcode: STOP, channel: OPERATIONAL;
        /// Local address and port.
        local "LocalAddress": SockAddr,
        /// Local port.
        port "Port": Port,
        /// Status of the close, or of the step that failed.
        status "Status": NtStatus,
    }

    /// The configuration in force after reading the registry (defaults for absent values).
    ConfigLoaded = 10 {
        fn config_loaded;
        version: 0, level: INFO, keyword: CONFIG, task: CONFIG, opcode: INFO, channel: OPERATIONAL;
        /// Listening port.
        port "Port": Port,
        /// Listener mode (value map ListenerModeMap).
        mode "Mode": U8 => "ListenerModeMap",
        /// Keys the table can track.
        capacity "Capacity": U32,
        /// Table shards (one lock each).
        shards "Shards": U32,
        /// IPv4 key prefix length.
        ipv4_prefix "Ipv4PrefixLength": U8,
        /// IPv6 key prefix length.
        ipv6_prefix "Ipv6PrefixLength": U8,
        /// Per-key rate, in thousandths of a connection per second.
        rate_milli "RateMilli": U64,
        /// Per-key burst (bucket size), in connections.
        burst "Burst": U32,
        /// Rate over all sources, in thousandths of a connection per second (0 = no global limit).
        global_rate_milli "GlobalRateMilli": U64,
        /// Global burst, in connections.
        global_burst "GlobalBurst": U32,
        /// What a new key gets when the table is full (value map FullTablePolicyMap).
        full_table "FullTablePolicy": U8 => "FullTablePolicyMap",
        /// Observe mode: decide and count, but accept everything.
        observe "ObserveMode": Bool32,
        /// Rejections within the ban window that ban a key (0 = no bans).
        ban_threshold "BanThreshold": U32,
        /// Window for counting rejections, in milliseconds.
        ban_window_ms "BanWindowMs": U32,
        /// Ban length, in milliseconds.
        ban_ms "BanMs": U32,
        /// Most requests pended at once (0 = never pend).
        max_pending "MaxPending": U32,
        /// Longest pend delay, in milliseconds.
        max_delay_ms "MaxDelayMs": U32,
        /// Entries in the allow list.
        allow_entries "AllowEntries": U32,
        /// Entries in the deny list.
        deny_entries "DenyEntries": U32,
    }

    /// A configuration value was refused. At start (from the registry): the driver does not start (DriverEntry returns STATUS_INVALID_PARAMETER). In a live change through the control device: nothing changed, the driver runs on; ControlRejected (31) carries the request's details.
    ConfigRejected = 11 {
        fn config_rejected;
        version: 0, level: ERROR, keyword: CONFIG, task: CONFIG, opcode: INFO, channel: ADMIN;
        /// Registry value name (the configuration field's name in CONFIG.md, also for a live change).
        value_name "ValueName": Str,
        /// The refused value, as text.
        value "Value": Str,
        /// Why it was refused.
        reason "Reason": Str,
    }

    /// Periodic counters (totals since the driver started), and one last at unload with the final totals (after every relay closed).
    Counters = 12 {
        fn counters;
        version: 5, level: INFO, keyword: COUNTERS, task: COUNTERS, opcode: INFO;
        /// Time since the previous Counters event, in milliseconds.
        interval_ms "IntervalMs": U32,
        /// Decisions with reason within_rate.
        within_rate "WithinRate": U64,
        /// Decisions with reason allow_listed.
        allow_listed "AllowListed": U64,
        /// Decisions with reason deny_listed.
        deny_listed "DenyListed": U64,
        /// Decisions with reason rate_exceeded.
        rate_exceeded "RateExceeded": U64,
        /// Decisions with reason global_limit.
        global_limit "GlobalLimit": U64,
        /// Decisions with reason banned.
        banned "Banned": U64,
        /// Decisions with reason table_full.
        table_full "TableFull": U64,
        /// Decisions with reason observe_would_reject.
        observe_would_reject "ObserveWouldReject": U64,
        /// Decisions with reason pend_delayed.
        pend_delayed "PendDelayed": U64,
        /// Decisions with reason pend_budget_spent.
        pend_budget_spent "PendBudgetSpent": U64,
        /// Decisions with reason manual_ban (an operator's ban; `Banned`
        /// counts automatic bans only).
        manual_ban "ManualBan": U64,
        /// New keys that took the slot of an idle key.
        evicted_idle "EvictedIdleEvents": U64,
        /// New keys that took the slot of the least recently seen active key.
        evicted_lru "EvictedLruEvents": U64,
        /// Times the full-table policy was applied.
        table_full_events "TableFullEvents": U64,
        /// Keys banned.
        ban_started "BanStartedEvents": U64,
        /// Pends completed.
        pend_done "PendDoneEvents": U64,
        /// Pends given up (token returned).
        pend_aborted "PendAbortedEvents": U64,
        /// Completions with a ticket that was not outstanding.
        stale_ticket "StaleTicketEvents": U64,
        /// Pends outstanding now.
        pends_outstanding "PendsOutstanding": U64,
        /// Keys in the table now.
        table_occupancy "TableOccupancy": U32,
        /// Key table capacity.
        table_capacity "TableCapacity": U32,
        /// WskAbortEvent calls seen by the driver.
        aborts "Aborts": U64,
        /// WskInspectEvent calls answered (and, in post-accept mode, connections decided).
        inspects "Inspects": U64,
        /// Requests rejected for an address of an unknown family.
        bad_addresses "BadAddresses": U64,
        /// Pends rejected because the pending table was full or closed.
        pend_table_full "PendTableFull": U64,
        /// Aborts that found a pended request.
        aborts_pended "AbortsPended": U64,
        /// Aborts for a request not pended (accepted at once, or unknown).
        aborts_not_pended "AbortsNotPended": U64,
        /// WskInspectComplete calls issued.
        completions "Completions": U64,
        /// Listener closes asked for by a NULL InspectID.
        null_inspect "NullInspectIds": U64,
        /// Completions that reported STATUS_FILE_FORCED_CLOSED.
        forced_closed "ForcedClosed": U64,
        /// Listeners created (bound).
        listeners_up "ListenersUp": U64,
        /// Connections accepted and handed to the worker.
        accepted_sockets "AcceptedSockets": U64,
        /// Connections accepted by the stack but declined by the driver (hand-off queue full, or unloading).
        declined "Declined": U64,
        /// Accepted connections closed by the worker.
        closed_sockets "ClosedSockets": U64,
        /// Graceful closes that ended abortively: the peer did not finish within CloseTimeoutMs, unload came first, or the close pool was full.
        graceful_closes_aborted "GracefulClosesAborted": U64,
        /// Pending-table slots in use now.
        pending_in_use "PendingInUse": U32,
        /// Relays alive now (0 when no relay runs; the relay's figures are totals since it started).
        relays_active "RelaysActive": U32,
        /// Backend connections established (RelayOpened events).
        relays_opened "RelaysOpened": U64,
        /// Relays that ended after being opened (RelayClosed events).
        relays_closed "RelaysClosed": U64,
        /// Connections that never reached the backend (every RelayFailed).
        relays_failed "RelaysFailed": U64,
        /// Connections refused because MaxConnections relays ran.
        relays_refused_at_limit "RelaysRefusedAtLimit": U64,
        /// Connections refused for lack of memory for a relay.
        relays_no_memory "RelaysNoMemory": U64,
        /// Backends that did not answer within ConnectTimeoutMs.
        relay_connect_timeouts "RelayConnectTimeouts": U64,
        /// Backends that refused the connection.
        relay_backend_refused "RelayBackendRefused": U64,
        /// Relays aborted after IdleTimeoutMs without traffic.
        relay_idle_timeouts "RelayIdleTimeouts": U64,
        /// Relays aborted by a reset or error on either side.
        relay_resets "RelayResets": U64,
        /// Bytes relayed client to backend (without PROXY headers).
        relay_bytes_to_backend "RelayBytesToBackend": U64,
        /// Bytes relayed backend to client.
        relay_bytes_to_client "RelayBytesToClient": U64,
        /// Relays given up on after two teardown graces with IRPs still pending after close (never on Windows; version 5).
        relays_abandoned "RelaysAbandoned": U64,
        /// Of those, freed later when their last IRP came back (unload waits for the rest; version 5).
        relays_abandoned_freed "RelaysAbandonedFreed": U64,
    }

    /// A connection the stack accepted was declined by the driver
    /// (WskAcceptEvent returned STATUS_REQUEST_NOT_ACCEPTED): the hand-off
    /// queue to the worker was full, or the driver is unloading. Counted in
    /// Counters.Declined.
    ConnectionDeclined = 15 {
        fn connection_declined;
        version: 0, level: VERBOSE, keyword: ACCEPT, task: DECISION, opcode: INFO;
        /// Remote address and port of the connection.
        remote "RemoteAddress": SockAddr,
        /// Local (listening) address and port.
        local "LocalAddress": SockAddr,
        /// Connections waiting in the hand-off queue when it was declined.
        queued "Queued": U32,
        /// Whether the driver was unloading.
        unloading "Unloading": Bool32,
    }

    /// The driver started (DriverEntry succeeded).
    DriverLoaded = 13 {
        fn driver_loaded;
        version: 0, level: INFO, keyword: LIFECYCLE, task: DRIVER, opcode: START, channel: OPERATIONAL;
        /// Driver version (Cargo package version).
        version "Version": Str,
        /// Listener mode (value map ListenerModeMap).
        mode "Mode": U8 => "ListenerModeMap",
    }

    /// The driver is unloading (after this, no more events).
    DriverUnloading = 14 {
        fn driver_unloading;
        version: 0, level: INFO, keyword: LIFECYCLE, task: DRIVER, opcode: STOP, channel: OPERATIONAL;
        /// Time since DriverEntry, in milliseconds.
        uptime_ms "UptimeMs": U64,
    }

    /// A relayed connection reached the backend (WskConnect completed).
    RelayOpened = 20 {
        fn relay_opened;
        version: 0, level: VERBOSE, keyword: RELAY, task: RELAY, opcode: START;
        /// The client's address and port (from the accept; empty if unknown).
        client "ClientAddress": SockAddr,
        /// The backend's address and port.
        backend "BackendAddress": SockAddr,
        /// Time from the hand-over to the relay until the backend accepted, in milliseconds.
        connect_ms "ConnectMs": U32,
    }

    /// A relayed connection ended (both sockets closed).
    RelayClosed = 21 {
        fn relay_closed;
        version: 0, level: VERBOSE, keyword: RELAY, task: RELAY, opcode: STOP;
        /// The client's address and port (empty if unknown).
        client "ClientAddress": SockAddr,
        /// The backend's address and port.
        backend "BackendAddress": SockAddr,
        /// Bytes relayed client to backend (without the PROXY header).
        to_backend "BytesToBackend": U64,
        /// Bytes relayed backend to client.
        to_client "BytesToClient": U64,
        /// Time from RelayOpened to the end, in milliseconds.
        duration_ms "DurationMs": U32,
        /// Which side sent EOF first (value map RelaySideMap).
        first_ended "FirstEnded": U8 => "RelaySideMap",
        /// Why it ended (value map RelayCauseMap): both_ended, client_error, backend_error, idle_timeout, unload.
        cause "Cause": U8 => "RelayCauseMap",
    }

    /// An accepted connection could not be relayed: the client was closed abortively.
    RelayFailed = 22 {
        fn relay_failed;
        version: 0, level: WARNING, keyword: RELAY, task: RELAY, opcode: INFO;
        /// The client's address and port (empty if unknown).
        client "ClientAddress": SockAddr,
        /// The backend's address and port.
        backend "BackendAddress": SockAddr,
        /// The failing status (STATUS_CONNECTION_REFUSED, STATUS_IO_TIMEOUT, STATUS_INSUFFICIENT_RESOURCES, ...).
        status "Status": NtStatus,
        /// Why (value map RelayCauseMap): backend_refused, connect_timeout, connect_failed, max_connections, no_memory, unload.
        cause "Cause": U8 => "RelayCauseMap",
    }

    // Id 23 was RelayCounters (version 0): its figures moved into Counters
    // version 2. Ids are never reused: 23 stays retired.

    /// The relay's configuration in force (the relay is on).
    RelayConfigured = 24 {
        fn relay_configured;
        version: 0, level: INFO, keyword: CONFIG, task: CONFIG, opcode: INFO, channel: OPERATIONAL;
        /// The backend's address and port.
        backend "BackendAddress": SockAddr,
        /// PROXY protocol header: 0 none, 1 v1, 2 v2.
        proxy_protocol "ProxyProtocol": U8,
        /// Relays at once.
        max_connections "MaxConnections": U32,
        /// Buffer per direction, bytes.
        buffer_bytes "RelayBufferBytes": U32,
        /// Connect timeout, milliseconds.
        connect_timeout_ms "ConnectTimeoutMs": U32,
        /// Idle timeout, milliseconds (0 = none).
        idle_timeout_ms "IdleTimeoutMs": U32,
    }

    /// No BackendAddress is configured: accepted connections are closed, nothing behind the gate is protected.
    RelayOff = 25 {
        fn relay_off;
        version: 0, level: WARNING, keyword: CONFIG, task: CONFIG, opcode: INFO, channel: ADMIN;
        /// What the driver does instead.
        behaviour "Behaviour": Str,
    }

    /// Keys were banned since the previous Counters event (gate-core's
    /// automatic bans: BanThreshold rejections within BanWindowMs). A summary
    /// written with the Counters event, at most one per CountersIntervalMs
    /// whatever the number of bans (a botnet cannot flood the Event Log); none
    /// when no ban started or CountersIntervalMs is 0. Which keys: the
    /// ConnectionRejected events with reason banned (trace session).
    BansStarted = 32 {
        fn bans_started;
        version: 0, level: WARNING, keyword: REJECT, task: DECISION, opcode: INFO, channel: OPERATIONAL;
        /// Time since the previous Counters event, in milliseconds.
        interval_ms "IntervalMs": U32,
        /// Keys banned during the interval.
        bans_started "BansStarted": U64,
        /// Keys banned since the driver started.
        bans_started_total "BansStartedTotal": U64,
        /// Connection requests rejected during the interval because their key was banned.
        banned_rejections "BannedRejections": U64,
    }

    /// The relay's connects to the backend started failing (refused, timed
    /// out or failed): written once when the state changes, not per
    /// connection; RelayBackendUp follows when a connect succeeds again.
    RelayBackendDown = 33 {
        fn relay_backend_down;
        version: 0, level: ERROR, keyword: RELAY, task: RELAY, opcode: INFO, channel: ADMIN;
        /// The backend's address and port.
        backend "BackendAddress": SockAddr,
        /// The failing status of the first failed connect (STATUS_CONNECTION_REFUSED, STATUS_IO_TIMEOUT, ...).
        status "Status": NtStatus,
        /// Why (value map RelayCauseMap): backend_refused, connect_timeout or connect_failed.
        cause "Cause": U8 => "RelayCauseMap",
    }

    /// A connect to the backend succeeded again after RelayBackendDown.
    RelayBackendUp = 34 {
        fn relay_backend_up;
        version: 0, level: INFO, keyword: RELAY, task: RELAY, opcode: INFO, channel: ADMIN;
        /// The backend's address and port.
        backend "BackendAddress": SockAddr,
        /// Time since RelayBackendDown, in milliseconds.
        down_ms "DownMs": U64,
        /// Relays that never reached the backend meanwhile (every RelayFailed, as Counters.Failed).
        failed "FailedConnects": U64,
    }

    /// The control device applied a live change (gatectl set, allow, deny, ban, unban, reset).
    ConfigChanged = 30 {
        fn config_changed;
        version: 0, level: INFO, keyword: CONFIG, task: CONFIG, opcode: INFO;
        /// What changed: a configuration field name (rate_milli, ...), allow, deny, ban.manual, unban.manual, unban.auto or counters.
        what "What": Str,
        /// The value before, as text.
        old "Old": Str,
        /// The value after, as text.
        new "New": Str,
        /// Process id of the caller (the control device's requester).
        process_id "ProcessId": U32,
        /// Whether the change was also written to the registry Parameters key.
        persisted "Persisted": Bool32,
    }

    /// The control device refused a request; nothing changed. Every refusal (a bad length, version, code or value); a refused configuration value also writes ConfigRejected (11) naming its registry value.
    ControlRejected = 31 {
        fn control_rejected;
        version: 0, level: WARNING, keyword: CONFIG, task: CONFIG, opcode: INFO;
        /// The IOCTL (IOCTL_GATE_SET, ...).
        operation "Operation": Str,
        /// The refused field (version, flags, input_length, rate_milli, target, ...).
        field "Field": Str,
        /// The refused value, as text.
        value "Value": Str,
        /// Why it was refused.
        reason "Reason": Str,
        /// The status the request was completed with.
        status "Status": NtStatus,
        /// Process id of the caller.
        process_id "ProcessId": U32,
    }
}

/// Writes a [`Counters`](def::Counters) event from gate-core's counters
/// snapshot plus the driver's own figures and the relay's (`r`, all zero
/// when no relay runs).
#[allow(clippy::too_many_arguments)] // one argument per source of the event's fields
pub fn counters_from(
    provider: &super::Provider,
    interval_ms: u32,
    c: &gate_core::telemetry::Counters,
    table_occupancy: u32,
    table_capacity: u32,
    s: &crate::state::StatsSnapshot,
    pending_in_use: u32,
    r: &crate::relay::RelaySnapshot,
) {
    use gate_core::telemetry::{Event as E, Reason as R};
    counters(
        provider,
        interval_ms,
        c.reason(R::WithinRate),
        c.reason(R::AllowListed),
        c.reason(R::DenyListed),
        c.reason(R::RateExceeded),
        c.reason(R::GlobalLimit),
        c.reason(R::Banned),
        c.reason(R::TableFull),
        c.reason(R::ObserveWouldReject),
        c.reason(R::PendDelayed),
        c.reason(R::PendBudgetSpent),
        c.reason(R::ManualBan),
        c.event(E::EvictedIdle),
        c.event(E::EvictedLru),
        c.event(E::TableFull),
        c.event(E::BanStarted),
        c.event(E::PendDone),
        c.event(E::PendAborted),
        c.event(E::StaleTicket),
        c.pends_outstanding,
        table_occupancy,
        table_capacity,
        s.aborts,
        s.inspects,
        s.bad_addresses,
        s.pend_table_full,
        s.aborts_pended,
        s.aborts_not_pended,
        s.completions,
        s.null_inspect,
        s.forced_closed,
        s.listeners_up,
        s.accepted_sockets,
        s.accept_queue_full,
        s.closed_sockets,
        s.graceful_closes_aborted,
        pending_in_use,
        r.active,
        r.opened,
        r.closed,
        r.failed,
        r.refused_at_limit,
        r.no_memory,
        r.connect_timeouts,
        r.backend_refused,
        r.idle_timeouts,
        r.resets,
        r.bytes_to_backend,
        r.bytes_to_client,
        r.abandoned,
        r.abandoned_freed,
    );
}

/// Writes a [`ConfigLoaded`](def::ConfigLoaded) event from gate-core's
/// configuration.
pub fn config_loaded_from(
    provider: &super::Provider,
    port: u16,
    mode: ListenerMode,
    c: &gate_core::Config,
) {
    if !provider.enabled(
        def::ConfigLoaded::DESCRIPTOR.Level,
        def::ConfigLoaded::DESCRIPTOR.Keyword,
    ) {
        return;
    }
    config_loaded(
        provider,
        port,
        mode as u8,
        c.capacity,
        c.shards,
        c.ipv4_prefix,
        c.ipv6_prefix,
        c.rate_milli,
        c.burst,
        c.global_rate_milli,
        c.global_burst,
        c.full_table as u8,
        c.observe,
        c.ban_threshold,
        c.ban_window_ms,
        c.ban_ms,
        c.max_pending,
        c.max_delay_ms,
        u32::try_from(c.allow.len()).unwrap_or(u32::MAX),
        u32::try_from(c.deny.len()).unwrap_or(u32::MAX),
    );
}

/// Writes a [`ConfigRejected`](def::ConfigRejected) event for a value
/// gate-core refused (`value_name` is the registry value's name).
pub fn config_rejected_error(
    provider: &super::Provider,
    value_name: &str,
    e: &gate_core::ConfigError,
) {
    let mut buf = [0u8; 20];
    let text = decimal(e.value, &mut buf);
    config_rejected(provider, value_name, text, e.expected);
}

/// `v` in decimal, written into `buf` (20 digits hold any u64).
fn decimal(v: u64, buf: &mut [u8; 20]) -> &str {
    const DIGITS: &[u8; 10] = b"0123456789";
    let mut rest = v;
    let mut start = buf.len();
    while let Some(pos) = start.checked_sub(1) {
        let digit = rest.checked_rem(10).unwrap_or(0);
        rest = rest.checked_div(10).unwrap_or(0);
        if let (Some(slot), Some(d)) = (buf.get_mut(pos), DIGITS.get(digit as usize)) {
            *slot = *d;
        }
        start = pos;
        if rest == 0 {
            break;
        }
    }
    core::str::from_utf8(buf.get(start..).unwrap_or(&[])).unwrap_or("")
}

/// Writes the decision event that matches `d.action`
/// ([`ConnectionAccepted`](def::ConnectionAccepted),
/// [`ConnectionRejected`](def::ConnectionRejected) or
/// [`ConnectionPended`](def::ConnectionPended)). `remote`/`local` are
/// SOCKADDR bytes; for a pend, pass the inspect ID (key, serial) and the
/// delay in milliseconds (ignored otherwise).
pub fn decision(
    provider: &super::Provider,
    remote: &[u8],
    local: &[u8],
    d: &gate_core::Decision,
    pend: (u64, u32, u32),
) {
    let key = d.key.bytes();
    let key_len = match d.key.family() {
        gate_core::Family::V4 => 4,
        gate_core::Family::V6 => 16,
    };
    let key_bytes = key.get(..key_len).unwrap_or(&key);
    let prefix = d.key.prefix_len();
    match d.action {
        gate_core::Action::Accept => connection_accepted(
            provider,
            remote,
            local,
            d.action as u8,
            d.reason as u8,
            d.observed.map_or(NO_OBSERVED_REASON, |r| r as u8),
            d.tokens_milli,
            key_bytes,
            prefix,
        ),
        gate_core::Action::Reject => connection_rejected(
            provider,
            remote,
            local,
            d.action as u8,
            d.reason as u8,
            d.tokens_milli,
            key_bytes,
            prefix,
        ),
        gate_core::Action::Pend => {
            let (inspect_key, inspect_serial, delay_ms) = pend;
            connection_pended(
                provider,
                remote,
                local,
                d.action as u8,
                d.reason as u8,
                d.tokens_milli,
                key_bytes,
                prefix,
                delay_ms,
                inspect_key,
                inspect_serial,
            )
        }
    }
}

/// No observed reason (the `ObservedReason` field's value outside observe mode).
pub const NO_OBSERVED_REASON: u8 = 255;

/// Listener close causes (`CloseCauseMap`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseCause {
    /// WskInspectEvent was called with a NULL InspectID.
    NullInspectId = 0,
    /// WskInspectComplete returned STATUS_FILE_FORCED_CLOSED.
    FileForcedClosed = 1,
    /// The driver is unloading.
    Unload = 2,
    /// Any other failure of the listening socket.
    Error = 3,
}

impl CloseCause {
    /// Every cause, in value order.
    pub const ALL: [CloseCause; 4] = [
        CloseCause::NullInspectId,
        CloseCause::FileForcedClosed,
        CloseCause::Unload,
        CloseCause::Error,
    ];

    /// Name in the value map.
    pub const fn name(self) -> &'static str {
        match self {
            CloseCause::NullInspectId => "null_inspect_id",
            CloseCause::FileForcedClosed => "file_forced_closed",
            CloseCause::Unload => "unload",
            CloseCause::Error => "error",
        }
    }
}

/// How the listener decides (`ListenerModeMap`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerMode {
    /// SO_CONDITIONAL_ACCEPT: decisions before the handshake.
    ConditionalAccept = 0,
    /// Accept, then decide and close at once if refused (Wine lacks conditional accept).
    PostAccept = 1,
}

impl ListenerMode {
    /// Every mode, in value order.
    pub const ALL: [ListenerMode; 2] = [ListenerMode::ConditionalAccept, ListenerMode::PostAccept];

    /// Name in the value map.
    pub const fn name(self) -> &'static str {
        match self {
            ListenerMode::ConditionalAccept => "conditional_accept",
            ListenerMode::PostAccept => "post_accept",
        }
    }
}

/// Names of gate-core's `FullTablePolicy` values (`FullTablePolicyMap`).
pub const FULL_TABLE_POLICY_NAMES: [(u8, &str); 3] = [
    (gate_core::FullTablePolicy::EvictLru as u8, "evict_lru"),
    (gate_core::FullTablePolicy::FailOpen as u8, "fail_open"),
    (gate_core::FullTablePolicy::FailClosed as u8, "fail_closed"),
];

pub use crate::relay::pair::{Cause as RelayCause, Side as RelaySide};
