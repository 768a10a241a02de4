//! The read operations (FILE_READ_ACCESS): status, query, top, list pages.
//! Each holds at most one lock at a time for a bounded amount of work.

use gate_core::{Config, Key, ManualBan, TICKS_PER_MS};
use gate_ioctl::*;

use super::dispatch::{Io, Refusal};
use crate::kernel::clock;
use crate::state::Driver;

/// Ticks (100 ns) to whole milliseconds, rounded up.
pub(super) fn ms_ceil(t: u64) -> u64 {
    t.div_ceil(TICKS_PER_MS)
}

/// A remaining time in ms from an end tick ([`FOREVER`] for `u64::MAX`).
pub(super) fn left_ms(until: u64, now: u64) -> u64 {
    if until == u64::MAX {
        FOREVER
    } else {
        ms_ceil(until.saturating_sub(now))
    }
}

/// The configuration as the wire carries it.
pub(super) fn wire_config(c: &Config, manual_bans: usize) -> WireConfig {
    let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    WireConfig {
        rate_milli: c.rate_milli,
        global_rate_milli: c.global_rate_milli,
        burst: c.burst,
        global_burst: c.global_burst,
        ban_threshold: c.ban_threshold,
        ban_window_ms: c.ban_window_ms,
        ban_ms: c.ban_ms,
        max_pending: c.max_pending,
        max_delay_ms: c.max_delay_ms,
        observe: u32::from(c.observe),
        full_table: c.full_table as u32,
        capacity: c.capacity,
        shards: c.shards,
        ipv4_prefix: u32::from(c.ipv4_prefix),
        ipv6_prefix: u32::from(c.ipv6_prefix),
        allow_count: n(c.allow.len()),
        deny_count: n(c.deny.len()),
        manual_bans: n(manual_bans),
    }
}

/// A key as the wire carries it.
pub(super) fn wire_key(k: &Key) -> WireAddr {
    WireAddr::prefix(k.network(), k.prefix_len())
}

fn copy_counts(dst: &mut [u64; COUNTER_SLOTS], src: &[u64]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s;
    }
}

/// The relay's part of the status reply: configuration from the
/// registry values in force, counters from the running relay (zero when it
/// does not run).
fn wire_relay(d: &Driver) -> WireRelay {
    let cfg = &d.cfg.relay;
    let mut r = WireRelay {
        max_connections: cfg.max_connections,
        proxy_protocol: u32::from(cfg.proxy_protocol),
        ..WireRelay::default()
    };
    let Some(backend) = cfg.backend else {
        r.state = relay_state::OFF;
        return r;
    };
    r.backend = WireAddr::host(backend.ip());
    r.backend_port = u32::from(backend.port());
    // The relay stops only in DriverUnload, which the I/O manager never
    // runs concurrently with a control request (see relay::snapshot).
    match crate::relay::snapshot() {
        None => r.state = relay_state::NOT_RUNNING,
        Some(s) => {
            r.state = relay_state::RUNNING;
            r.active = s.active;
            r.opened = s.opened;
            r.closed = s.closed;
            r.failed = s.failed;
            r.refused_at_limit = s.refused_at_limit;
            r.bytes_to_backend = s.bytes_to_backend;
            r.bytes_to_client = s.bytes_to_client;
        }
    }
    r
}

/// IOCTL_GATE_STATUS. A caller whose output buffer holds a version 1
/// reply but not a version 2 one gets version 1 (its first
/// [`STATUS_REPLY_V1_SIZE`] bytes).
pub fn status(d: &Driver, io: &Io) -> Result<usize, Refusal> {
    // Checked (version, flags), not otherwise read: FLAG_COUNT_KEYS has
    // no effect now, `tracked_keys` is always filled.
    let _req: StatusRequest = io.request(FLAG_COUNT_KEYS)?;
    let v1 = io.out_len() < StatusReply::SIZE;
    if v1 {
        io.need_output_bytes(STATUS_REPLY_V1_SIZE)?;
    }
    let now = clock::now();
    let (listener, mode) = super::listener();
    let c = d.gate.counters();
    let s = d.stats.snapshot();
    let mut r = StatusReply {
        version: STATUS_REPLY_VERSION,
        size: reply_size::<StatusReply>(),
        listener,
        mode,
        uptime_ms: now.saturating_sub(d.started_at) / TICKS_PER_MS,
        port: u32::from(d.cfg.listen_port),
        reasons: gate_core::REASON_COUNT as u32,
        events_used: gate_core::EVENT_COUNT as u32,
        reserved: 0,
        config: d.gate.with_config(|c, b| wire_config(c, b.len())),
        by_reason: [0; COUNTER_SLOTS],
        observed: [0; COUNTER_SLOTS],
        events: [0; COUNTER_SLOTS],
        pends_outstanding: c.pends_outstanding,
        pending_in_use: d.pending.in_use() as u64,
        // A sum of per-shard atomics: no lock, no scan.
        tracked_keys: d.gate.tracked_keys() as u64,
        capacity: d.gate.capacity() as u64,
        inspects: s.inspects,
        aborts: s.aborts,
        accepted_sockets: s.accepted_sockets,
        closed_sockets: s.closed_sockets,
        listeners_up: s.listeners_up,
        null_inspect: s.null_inspect,
        manual_ban_hits: d.gate.manual_ban_hits(),
        changes: u64::from(super::changes()),
        relay: wire_relay(d),
    };
    copy_counts(&mut r.by_reason, &c.by_reason);
    copy_counts(&mut r.observed, &c.observed);
    copy_counts(&mut r.events, &c.events);
    if v1 {
        r.version = 1;
        r.size = STATUS_REPLY_V1_SIZE as u32;
        return io.reply_prefix(&r, STATUS_REPLY_V1_SIZE);
    }
    io.reply(&r)
}

/// Decodes a full-length address (a query names one address).
fn host_addr(a: &WireAddr, field: &'static str) -> Result<core::net::IpAddr, Refusal> {
    let (ip, len) = a.decode(field)?;
    let full = if ip.is_ipv4() { 32 } else { 128 };
    if len != full {
        return Err(Refusal::invalid(
            field,
            u64::from(len),
            "a full-length address (prefix_len 32 or 128)",
        ));
    }
    Ok(ip)
}

/// IOCTL_GATE_QUERY.
pub fn query(d: &Driver, io: &Io) -> Result<usize, Refusal> {
    let req: QueryRequest = io.request(0)?;
    io.need_output::<QueryReply>()?;
    let ip = host_addr(&req.addr, "addr")?;
    let now = clock::now();
    let (k, m) = d.gate.query(ip, now);
    let mut state = 0;
    if k.tracked {
        state |= query_state::TRACKED;
    }
    if m.allowed {
        state |= query_state::ALLOWED;
    }
    if m.denied {
        state |= query_state::DENIED;
    }
    if k.auto_ban_until.is_some() {
        state |= query_state::AUTO_BANNED;
    }
    if m.manual_ban_until.is_some() {
        state |= query_state::MANUAL_BANNED;
    }
    let r = QueryReply {
        version: VERSION,
        size: reply_size::<QueryReply>(),
        key: wire_key(&k.key),
        state,
        tokens_milli: k.tokens_milli,
        rejects: u32::from(k.rejects),
        next_token_ms: ms_ceil(k.next_token.saturating_sub(now)),
        auto_ban_left_ms: k.auto_ban_until.map_or(0, |u| left_ms(u, now)),
        manual_ban_left_ms: m.manual_ban_until.map_or(0, |u| left_ms(u, now)),
        last_seen_ms: k
            .last_seen
            .map_or(FOREVER, |l| now.saturating_sub(l) / TICKS_PER_MS),
    };
    io.reply(&r)
}

/// Slots one IOCTL_GATE_TOP call scans (within one shard).
pub const TOP_SCAN_SLOTS: usize = 1024;

/// IOCTL_GATE_TOP: the best `max` keys of one bounded slice of one shard.
pub fn top(d: &Driver, io: &Io) -> Result<usize, Refusal> {
    let req: TopRequest = io.request(0)?;
    io.need_output::<TopReply>()?;
    if req.max == 0 || req.max as usize > TOP_MAX {
        return Err(Refusal::invalid(
            "max",
            u64::from(req.max),
            "1..=32 entries",
        ));
    }
    if req.order > top_order::RATE {
        return Err(Refusal::invalid(
            "order",
            u64::from(req.order),
            "0 (rejections) or 1 (rate)",
        ));
    }
    let slots = d.gate.slots();
    if req.cursor >= slots {
        return Err(Refusal::invalid(
            "cursor",
            req.cursor,
            "a cursor below the table's slot count (start with 0)",
        ));
    }
    let now = clock::now();
    let mut best = [TopEntry::default(); TOP_MAX];
    let mut n = 0usize;
    let max = req.max as usize;
    let score = |e: &TopEntry| match req.order {
        top_order::RATE => (e.debt_ms, u64::from(e.rejects)),
        _ => (u64::from(e.rejects), e.debt_ms),
    };
    let mut auto_bans = 0u32;
    let next = d.gate.scan(req.cursor, TOP_SCAN_SLOTS, now, |k| {
        if k.auto_ban_until.is_some() {
            auto_bans = auto_bans.saturating_add(1);
        }
        let e = TopEntry {
            key: wire_key(&k.key),
            rejects: u32::from(k.rejects),
            tokens_milli: k.tokens_milli,
            // At least 1 while banned (the longest ban, a day, fits in u32 ms).
            auto_ban_left_ms: k.auto_ban_until.map_or(0, |u| {
                u32::try_from(left_ms(u, now).max(1)).unwrap_or(u32::MAX)
            }),
            debt_ms: k.debt / TICKS_PER_MS,
            last_seen_ms: k
                .last_seen
                .map_or(0, |l| now.saturating_sub(l) / TICKS_PER_MS),
        };
        // Insertion into a fixed array sorted best first (no allocation
        // under the lock).
        let s = score(&e);
        let pos = best
            .get(..n)
            .unwrap_or(&[])
            .iter()
            .position(|b| score(b) < s)
            .unwrap_or(n);
        if pos >= max {
            return;
        }
        let n_new = n.saturating_add(1).min(max);
        if pos.saturating_add(1) < n_new {
            best.copy_within(pos..n_new.saturating_sub(1), pos.saturating_add(1));
        }
        if let Some(slot) = best.get_mut(pos) {
            *slot = e;
        }
        n = n_new;
    });
    let r = TopReply {
        version: VERSION,
        size: reply_size::<TopReply>(),
        next_cursor: next.unwrap_or(CURSOR_DONE),
        scanned: u32::try_from(
            next.unwrap_or(slots)
                .saturating_sub(req.cursor)
                .min(TOP_SCAN_SLOTS as u64),
        )
        .unwrap_or(0),
        count: n as u32,
        slots_total: slots,
        auto_bans,
        reserved: 0,
        entries: best,
    };
    io.reply(&r)
}

/// IOCTL_GATE_LIST_GET: one page of the allow list, the deny list or the
/// manual bans (copied under the control lock: at most one page), with the
/// configuration's generation (a reader of several pages restarts when it
/// moves).
pub fn list_get(d: &Driver, io: &Io) -> Result<usize, Refusal> {
    let req: ListGetRequest = io.request(0)?;
    io.need_output::<ListGetReply>()?;
    if req.list > list_kind::BANS {
        return Err(Refusal::invalid(
            "list",
            u64::from(req.list),
            "0 (allow), 1 (deny) or 2 (manual bans)",
        ));
    }
    let now = clock::now();
    let mut r = ListGetReply {
        version: VERSION,
        size: reply_size::<ListGetReply>(),
        total: 0,
        count: 0,
        generation: 0,
        reserved: 0,
        entries: [ListEntry::default(); LIST_PAGE],
    };
    let start = req.start as usize;
    let bad_start = d.gate.with_config_generation(|c, bans: &[ManualBan], gen| {
        r.generation = gen as u32;
        let cidr_entry = |c: &gate_core::Cidr, left_ms: u64| ListEntry {
            cidr: WireAddr::prefix(c.addr(), c.prefix_len()),
            reserved: 0,
            left_ms,
        };
        let total = match req.list {
            list_kind::ALLOW => c.allow.len(),
            list_kind::DENY => c.deny.len(),
            _ => bans.len(),
        };
        if start > total {
            return true;
        }
        r.total = total as u32;
        for (i, slot) in r.entries.iter_mut().enumerate() {
            let j = start.saturating_add(i);
            let e = match req.list {
                list_kind::ALLOW => c.allow.get(j).map(|x| cidr_entry(x, 0)),
                list_kind::DENY => c.deny.get(j).map(|x| cidr_entry(x, 0)),
                _ => bans
                    .get(j)
                    .map(|b| cidr_entry(&b.cidr, left_ms(b.until, now))),
            };
            match e {
                Some(e) => {
                    *slot = e;
                    r.count = r.count.saturating_add(1);
                }
                None => break,
            }
        }
        false
    });
    if bad_start {
        return Err(Refusal::invalid(
            "start",
            u64::from(req.start),
            "at most the number of entries",
        ));
    }
    io.reply(&r)
}
