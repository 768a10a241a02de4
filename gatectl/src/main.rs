//! gatectl: the gate's operator CLI.
//!
//! Talks to the driver's control device (`\\.\TcpFrontGate`, Windows) or
//! to the Linux front's control socket (same IOCTL codes and structs, see
//! gate-ioctl). Every read takes `--json`. Exit codes:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 2 | bad command line or value (the message names it) |
//! | 3 | the gate is not running (no device / no control socket) |
//! | 4 | access denied (the device admits SYSTEM and Administrators; a change needs write access) |
//! | 5 | the driver refused the request (the status names why; ETW ControlRejected names the field) |
//! | 6 | I/O error talking to the driver |

mod transport;

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use gate_core::{Cidr, Config, FullTablePolicy, Reason};
use gate_ioctl::*;
use serde_json::{json, Value};

use transport::{Transport, TransportError};

#[derive(Parser)]
#[command(name = "gatectl", version, about = "Operate the TCP front gate live")]
struct Cli {
    /// Control device (Windows, default \\.\TcpFrontGate) or control socket
    /// (Linux, default $GATE_CONTROL or /run/gate/control.sock).
    #[arg(long, global = true)]
    device: Option<String>,
    /// Open the device for reading only (changes are then refused).
    #[arg(long, global = true)]
    read_only: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Listener state and mode, configuration, counters by reason, table, pends, uptime.
    Status {
        #[arg(long)]
        json: bool,
        /// Also count tracked keys (one shard lock at a time).
        #[arg(long)]
        count_keys: bool,
    },
    /// The keys with the most rejections (or the highest recent rate).
    Top {
        /// How many keys.
        #[arg(short = 'n', long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
        count: u32,
        /// Order.
        #[arg(long, value_enum, default_value_t = TopBy::Rejections)]
        by: TopBy,
        #[arg(long)]
        json: bool,
    },
    /// One address: its key, tokens left, next token, ban state, list membership.
    Query {
        addr: IpAddr,
        #[arg(long)]
        json: bool,
    },
    /// Change limits live (atomically; table state is kept).
    Set(SetArgs),
    /// The allow list.
    Allow {
        #[command(subcommand)]
        op: ListOp,
    },
    /// The deny list.
    Deny {
        #[command(subcommand)]
        op: ListOp,
    },
    /// Ban an address or prefix manually (until unban unless --for is given),
    /// or list the manual bans.
    Ban {
        /// Address or prefix (e.g. 192.0.2.7 or 198.51.100.0/24).
        target: Option<String>,
        /// How long (e.g. 10m, 2h, 1d).
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// List the manual bans instead.
        #[arg(long, conflicts_with = "target")]
        list: bool,
        #[arg(long)]
        json: bool,
    },
    /// Lift manual and automatic bans inside an address or prefix.
    Unban { target: String },
    /// Reset counters.
    Reset {
        /// What to reset.
        #[arg(value_enum, default_value_t = ResetWhat::Counters)]
        what: ResetWhat,
    },
    /// A refreshing view of status and top talkers (Ctrl-C stops).
    Watch {
        /// Refresh period.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Top keys shown.
        #[arg(short = 'n', long, default_value_t = 10)]
        count: u32,
        /// Stop after this many refreshes (0 = never).
        #[arg(long, default_value_t = 0)]
        iterations: u64,
        /// One JSON object per refresh instead of a screen.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum TopBy {
    Rejections,
    Rate,
}

#[derive(Clone, Copy, ValueEnum)]
enum ResetWhat {
    Counters,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum OnOff {
    On,
    Off,
}

#[derive(Clone, Copy, ValueEnum)]
enum Policy {
    EvictLru,
    FailOpen,
    FailClosed,
}

#[derive(clap::Args)]
struct SetArgs {
    /// Per-key rate, connections per second (decimal, e.g. 0.5).
    #[arg(long)]
    rate: Option<String>,
    /// Per-key burst.
    #[arg(long)]
    burst: Option<u32>,
    /// Global rate, connections per second (0 = off).
    #[arg(long)]
    global_rate: Option<String>,
    /// Global burst.
    #[arg(long)]
    global_burst: Option<u32>,
    /// Observe mode.
    #[arg(long, value_enum)]
    observe: Option<OnOff>,
    /// Rejections within the ban window that ban a key (0 = no bans).
    #[arg(long)]
    ban_threshold: Option<u32>,
    /// Ban window (e.g. 10s).
    #[arg(long, value_parser = humantime::parse_duration)]
    ban_window: Option<Duration>,
    /// Automatic ban length (e.g. 1m).
    #[arg(long, value_parser = humantime::parse_duration)]
    ban_time: Option<Duration>,
    /// Longest pend delay (e.g. 500ms).
    #[arg(long, value_parser = humantime::parse_duration)]
    max_delay: Option<Duration>,
    /// Full-table policy.
    #[arg(long, value_enum)]
    full_table: Option<Policy>,
    /// Also write the change to the registry Parameters key.
    #[arg(long)]
    persist: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum ListOp {
    /// Add prefixes.
    Add {
        #[arg(required = true)]
        cidrs: Vec<String>,
        #[arg(long)]
        persist: bool,
    },
    /// Remove prefixes (exact match).
    Remove {
        #[arg(required = true)]
        cidrs: Vec<String>,
        #[arg(long)]
        persist: bool,
    },
    /// Replace the whole list.
    Replace {
        cidrs: Vec<String>,
        #[arg(long)]
        persist: bool,
    },
    /// Empty the list.
    Clear {
        #[arg(long)]
        persist: bool,
    },
    /// Show the list.
    List {
        #[arg(long)]
        json: bool,
    },
}

/// A failure with its exit code.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

fn usage(message: String) -> Failure {
    Failure { code: 2, message }
}

impl From<TransportError> for Failure {
    fn from(e: TransportError) -> Failure {
        let code = match e {
            TransportError::NotLoaded(_) => 3,
            TransportError::AccessDenied(_) => 4,
            TransportError::Io(_) => 6,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

fn refused(op: &str, st: i32) -> Failure {
    use gate_ioctl::status::*;
    let why = match st {
        STATUS_ACCESS_DENIED => {
            return Failure {
                code: 4,
                message: format!(
                    "{op}: access denied (a change needs a handle with write access; run elevated, without --read-only)"
                ),
            }
        }
        STATUS_DEVICE_NOT_READY => {
            return Failure {
                code: 3,
                message: format!("{op}: the gate is not running (device not ready)"),
            }
        }
        STATUS_INVALID_PARAMETER => "a field has a bad value (ETW ControlRejected names it)",
        STATUS_NOT_SUPPORTED => "the driver speaks another version of the control API",
        STATUS_INFO_LENGTH_MISMATCH => "request size mismatch (gatectl and driver versions differ?)",
        STATUS_BUFFER_TOO_SMALL => "reply larger than expected (gatectl and driver versions differ?)",
        STATUS_INVALID_DEVICE_REQUEST => "unknown control code (an older driver?)",
        STATUS_QUOTA_EXCEEDED => "a list or the manual ban table is full",
        STATUS_DEVICE_BUSY => "another change is being applied; retry",
        STATUS_INSUFFICIENT_RESOURCES => "the driver has no memory for the change",
        STATUS_REGISTRY_IO_FAILED => "the live change stands, but writing it to the registry failed",
        _ => "refused",
    };
    Failure {
        code: 5,
        message: format!("{op}: {why} ({} {:#010x})", status::name(st), st as u32),
    }
}

struct Gate {
    t: Box<dyn Transport>,
}

impl Gate {
    fn call<R: Request>(&mut self, op: &str, req: &R) -> Result<R::Reply, Failure> {
        self.call_raw(op, R::CODE, req.as_bytes()).and_then(|b| {
            R::Reply::from_prefix(&b).ok_or_else(|| Failure {
                code: 6,
                message: format!("{op}: short reply ({} bytes)", b.len()),
            })
        })
    }

    fn call_raw(&mut self, op: &str, code: u32, input: &[u8]) -> Result<Vec<u8>, Failure> {
        let out_len = match code {
            IOCTL_GATE_STATUS => StatusReply::SIZE,
            IOCTL_GATE_QUERY => QueryReply::SIZE,
            IOCTL_GATE_TOP => TopReply::SIZE,
            IOCTL_GATE_LIST_GET => ListGetReply::SIZE,
            IOCTL_GATE_SET => SetReply::SIZE,
            IOCTL_GATE_LIST_CHANGE => ListChangeReply::SIZE,
            IOCTL_GATE_BAN => BanReply::SIZE,
            IOCTL_GATE_UNBAN => UnbanReply::SIZE,
            _ => ResetReply::SIZE,
        };
        let r = self.t.ioctl(code, input, out_len)?;
        if r.status != 0 {
            return Err(refused(op, r.status));
        }
        Ok(r.output)
    }

    /// Status. A driver that answers with a version 1 reply (no relay
    /// figures) is read too: its relay part is left zero, and
    /// [`StatusReply::version`] says it is missing.
    fn status(&mut self, count_keys: bool) -> Result<StatusReply, Failure> {
        let req = StatusRequest {
            version: VERSION,
            flags: if count_keys { FLAG_COUNT_KEYS } else { 0 },
        };
        let b = self.call_raw("status", IOCTL_GATE_STATUS, req.as_bytes())?;
        status_from_bytes(b)
    }

    fn top(&mut self, n: u32, by: TopBy) -> Result<Vec<TopEntry>, Failure> {
        let mut all: Vec<TopEntry> = Vec::new();
        let mut cursor = CURSOR_START;
        let order = match by {
            TopBy::Rejections => top_order::REJECTIONS,
            TopBy::Rate => top_order::RATE,
        };
        let key = |e: &TopEntry| match by {
            TopBy::Rejections => (e.rejects as u64, e.debt_ms),
            TopBy::Rate => (e.debt_ms, e.rejects as u64),
        };
        loop {
            let r: TopReply = self.call(
                "top",
                &TopRequest {
                    version: VERSION,
                    flags: 0,
                    cursor,
                    max: n.min(TOP_MAX as u32),
                    order,
                },
            )?;
            all.extend_from_slice(r.entries.get(..r.count as usize).unwrap_or(&[]));
            all.sort_by_key(|e| std::cmp::Reverse(key(e)));
            all.truncate(n as usize);
            if r.next_cursor == CURSOR_DONE {
                return Ok(all);
            }
            cursor = r.next_cursor;
        }
    }

    fn list(&mut self, list: u32) -> Result<Vec<ListEntry>, Failure> {
        let mut out = Vec::new();
        loop {
            let r: ListGetReply = self.call(
                "list",
                &ListGetRequest {
                    version: VERSION,
                    flags: 0,
                    list,
                    start: out.len() as u32,
                },
            )?;
            out.extend_from_slice(r.entries.get(..r.count as usize).unwrap_or(&[]));
            if r.count == 0 || out.len() as u32 >= r.total {
                return Ok(out);
            }
        }
    }
}

fn addr_text(a: &WireAddr) -> String {
    match a.decode("addr") {
        Ok((ip, len)) => format!("{ip}/{len}"),
        Err(_) => "?".into(),
    }
}

fn parse_cidr(s: &str) -> Result<WireAddr, Failure> {
    let c = Cidr::parse(s).map_err(|e| usage(format!("bad address or prefix '{s}': {e}")))?;
    Ok(WireAddr::prefix(c.addr(), c.prefix_len()))
}

/// "12.5" connections/s -> 12500 milli.
fn parse_rate(field: &str, s: &str) -> Result<u64, Failure> {
    let bad = || {
        usage(format!(
            "bad --{field} '{s}': expected connections per second, e.g. 10 or 0.5"
        ))
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || (int.is_empty() && frac.is_empty()) {
        return Err(bad());
    }
    let i: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    let f: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<3}").parse().map_err(|_| bad())?
    };
    i.checked_mul(1000)
        .and_then(|v| v.checked_add(f))
        .ok_or_else(bad)
}

fn ms(field: &str, d: Duration) -> Result<u32, Failure> {
    u32::try_from(d.as_millis()).map_err(|_| usage(format!("--{field} {d:?} is too long")))
}

fn reason_names() -> Vec<&'static str> {
    Reason::ALL.iter().map(|r| r.name()).collect()
}

fn config_json(c: &WireConfig) -> Value {
    let policy = ["evict_lru", "fail_open", "fail_closed"]
        .get(c.full_table as usize)
        .copied()
        .unwrap_or("?");
    json!({
        "rate_milli": c.rate_milli, "burst": c.burst,
        "global_rate_milli": c.global_rate_milli, "global_burst": c.global_burst,
        "observe": c.observe != 0, "ban_threshold": c.ban_threshold,
        "ban_window_ms": c.ban_window_ms, "ban_ms": c.ban_ms,
        "max_pending": c.max_pending, "max_delay_ms": c.max_delay_ms,
        "full_table": policy,
        "capacity": c.capacity, "shards": c.shards,
        "ipv4_prefix": c.ipv4_prefix, "ipv6_prefix": c.ipv6_prefix,
        "allow_entries": c.allow_count, "deny_entries": c.deny_count, "manual_bans": c.manual_bans,
    })
}

fn status_json(s: &StatusReply) -> Value {
    let names = reason_names();
    let by = |a: &[u64; COUNTER_SLOTS]| {
        let mut m = serde_json::Map::new();
        for (n, v) in names.iter().zip(a.iter()) {
            m.insert(n.to_string(), json!(v));
        }
        Value::Object(m)
    };
    let ev_names: Vec<&str> = gate_core::Event::ALL.iter().map(|e| e.name()).collect();
    let mut events = serde_json::Map::new();
    for (n, v) in ev_names.iter().zip(s.events.iter()) {
        events.insert(n.to_string(), json!(v));
    }
    json!({
        "listener": if s.listener == listener_state::UP { "up" } else { "down" },
        "mode": if s.mode == listener_mode::POST_ACCEPT { "post_accept" } else { "conditional_accept" },
        "port": s.port, "uptime_ms": s.uptime_ms,
        "config": config_json(&s.config),
        "decisions": by(&s.by_reason), "observed": by(&s.observed),
        "events": Value::Object(events),
        "pends_outstanding": s.pends_outstanding, "pending_in_use": s.pending_in_use,
        "tracked_keys": s.tracked_keys, "capacity": s.capacity,
        "inspects": s.inspects, "aborts": s.aborts,
        "accepted_connections": s.accepted_sockets, "closed_connections": s.closed_sockets,
        "listeners_created": s.listeners_up, "null_inspect_ids": s.null_inspect,
        "manual_ban_hits": s.manual_ban_hits, "changes": s.changes,
        "relay": relay_json(s),
    })
}

/// Reads a status reply: version 2, or version 1 (its
/// [`STATUS_REPLY_V1_SIZE`] bytes; the relay part is left zero).
fn status_from_bytes(mut b: Vec<u8>) -> Result<StatusReply, Failure> {
    let version = b
        .get(..4)
        .and_then(|v| v.try_into().ok())
        .map(u32::from_le_bytes);
    if version == Some(1) && b.len() >= STATUS_REPLY_V1_SIZE {
        b.truncate(STATUS_REPLY_V1_SIZE);
        b.resize(StatusReply::SIZE, 0);
    }
    StatusReply::from_prefix(&b).ok_or_else(|| Failure {
        code: 6,
        message: format!("status: short reply ({} bytes)", b.len()),
    })
}

/// The relay's state name ([`relay_state`]).
fn relay_state_name(state: u32) -> &'static str {
    match state {
        relay_state::OFF => "off",
        relay_state::RUNNING => "running",
        relay_state::NOT_RUNNING => "not_running",
        _ => "unknown",
    }
}

/// `IP:port` of the configured backend (`[IPv6]:port`).
fn backend_text(r: &WireRelay) -> String {
    match r.backend.decode("backend") {
        Ok((ip, _)) => std::net::SocketAddr::new(ip, r.backend_port as u16).to_string(),
        Err(_) => "?".into(),
    }
}

/// The relay part of `status --json`; `null` when the driver's reply is
/// version 1 (it has no relay figures).
fn relay_json(s: &StatusReply) -> Value {
    if s.version < 2 {
        return Value::Null;
    }
    let r = &s.relay;
    json!({
        "state": relay_state_name(r.state),
        "backend": if r.state == relay_state::OFF { Value::Null } else { json!(backend_text(r)) },
        "max_connections": r.max_connections,
        "proxy_protocol": r.proxy_protocol,
        "active": r.active, "opened": r.opened, "closed": r.closed, "failed": r.failed,
        "refused_at_limit": r.refused_at_limit,
        "bytes_to_backend": r.bytes_to_backend, "bytes_to_client": r.bytes_to_client,
    })
}

/// The relay line(s) of `status`.
fn relay_text(s: &StatusReply) -> String {
    if s.version < 2 {
        return "not reported (the driver's status reply is version 1)".into();
    }
    let r = &s.relay;
    match r.state {
        relay_state::OFF => format!(
            "off: no BackendAddress, accepted connections are closed (MaxConnections {})",
            r.max_connections
        ),
        state => format!(
            "{} to {}{}, {} open of {} max\n            \
             {} opened, {} closed, {} failed ({} at MaxConnections); \
             {} bytes to backend, {} bytes to clients",
            if state == relay_state::RUNNING {
                "running"
            } else {
                "NOT RUNNING"
            },
            backend_text(r),
            match r.proxy_protocol {
                0 => String::new(),
                v => format!(" (PROXY v{v})"),
            },
            r.active,
            r.max_connections,
            r.opened,
            r.closed,
            r.failed,
            r.refused_at_limit,
            r.bytes_to_backend,
            r.bytes_to_client
        ),
    }
}

fn print_status(s: &StatusReply) {
    let c = &s.config;
    println!(
        "listener    {} ({}) port {}, up {}",
        if s.listener == listener_state::UP {
            "up"
        } else {
            "DOWN"
        },
        if s.mode == listener_mode::POST_ACCEPT {
            "post-accept"
        } else {
            "conditional accept"
        },
        s.port,
        humantime::format_duration(Duration::from_secs(s.uptime_ms / 1000))
    );
    println!(
        "limits      {}.{:03}/s burst {} per key; global {}; observe {}",
        c.rate_milli / 1000,
        c.rate_milli % 1000,
        c.burst,
        if c.global_rate_milli == 0 {
            "off".to_string()
        } else {
            format!(
                "{}.{:03}/s burst {}",
                c.global_rate_milli / 1000,
                c.global_rate_milli % 1000,
                c.global_burst
            )
        },
        if c.observe != 0 { "ON" } else { "off" }
    );
    println!(
        "bans        threshold {} in {} ms, {} ms; {} manual ({} hits)",
        c.ban_threshold, c.ban_window_ms, c.ban_ms, c.manual_bans, s.manual_ban_hits
    );
    println!("lists       {} allow, {} deny", c.allow_count, c.deny_count);
    println!(
        "table       {} slots in {} shards{}",
        s.capacity,
        c.shards,
        if s.tracked_keys > 0 {
            format!(", {} keys tracked", s.tracked_keys)
        } else {
            String::new()
        }
    );
    println!(
        "pends       {} outstanding (max {}), {} ms max delay",
        s.pends_outstanding, c.max_pending, c.max_delay_ms
    );
    println!(
        "connections {} inspected, {} accepted, {} closed, {} aborts",
        s.inspects, s.accepted_sockets, s.closed_sockets, s.aborts
    );
    println!("relays      {}", relay_text(s));
    println!("decisions");
    for (n, v) in reason_names().iter().zip(s.by_reason.iter()) {
        println!("  {n:<22} {v}");
    }
}

fn print_top(entries: &[TopEntry]) {
    println!(
        "{:<44} {:>8} {:>10} {:>9} {:>8}",
        "key", "rejects", "debt_ms", "tokens", "banned"
    );
    for e in entries {
        println!(
            "{:<44} {:>8} {:>10} {:>9.3} {:>8}",
            addr_text(&e.key),
            e.rejects,
            e.debt_ms,
            e.tokens_milli as f64 / 1000.0,
            if e.banned != 0 { "auto" } else { "" }
        );
    }
}

fn top_json(entries: &[TopEntry]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| {
                json!({"key": addr_text(&e.key), "rejects": e.rejects, "debt_ms": e.debt_ms,
                       "tokens_milli": e.tokens_milli, "auto_banned": e.banned != 0,
                       "last_seen_ms": e.last_seen_ms})
            })
            .collect(),
    )
}

fn left_text(ms: u64) -> String {
    if ms == FOREVER {
        "until unban".into()
    } else {
        humantime::format_duration(Duration::from_millis(ms)).to_string()
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let path = cli.device.clone().unwrap_or_else(transport::default_path);
    let writes = matches!(cli.cmd, Cmd::Set(_) | Cmd::Unban { .. } | Cmd::Reset { .. })
        || matches!(&cli.cmd, Cmd::Ban { list: false, .. })
        || matches!(&cli.cmd, Cmd::Allow { op } | Cmd::Deny { op } if !matches!(op, ListOp::List { .. }));
    let access = if cli.read_only || !writes {
        FILE_READ_ACCESS
    } else {
        FILE_READ_ACCESS | FILE_WRITE_ACCESS
    };
    let mut g = Gate {
        t: transport::open(&path, access)?,
    };
    match cli.cmd {
        Cmd::Status { json, count_keys } => {
            let s = g.status(count_keys)?;
            if json {
                println!("{}", status_json(&s));
            } else {
                print_status(&s);
            }
        }
        Cmd::Top { count, by, json } => {
            let t = g.top(count, by)?;
            if json {
                println!("{}", top_json(&t));
            } else {
                print_top(&t);
            }
        }
        Cmd::Query { addr, json } => {
            let q: QueryReply = g.call(
                "query",
                &QueryRequest {
                    version: VERSION,
                    flags: 0,
                    addr: WireAddr::host(addr),
                },
            )?;
            let has = |b| q.state & b != 0;
            if json {
                println!(
                    "{}",
                    json!({
                        "address": addr.to_string(), "key": addr_text(&q.key),
                        "tracked": has(query_state::TRACKED), "tokens_milli": q.tokens_milli,
                        "next_token_ms": q.next_token_ms, "rejects": q.rejects,
                        "auto_banned": has(query_state::AUTO_BANNED), "auto_ban_left_ms": q.auto_ban_left_ms,
                        "manual_banned": has(query_state::MANUAL_BANNED),
                        "manual_ban_left_ms": if q.manual_ban_left_ms == FOREVER { Value::Null } else { json!(q.manual_ban_left_ms) },
                        "allowed": has(query_state::ALLOWED), "denied": has(query_state::DENIED),
                        "last_seen_ms": if q.last_seen_ms == FOREVER { Value::Null } else { json!(q.last_seen_ms) },
                    })
                );
            } else {
                println!("address     {addr}");
                println!(
                    "key         {}{}",
                    addr_text(&q.key),
                    if has(query_state::TRACKED) {
                        ""
                    } else {
                        " (not tracked: full bucket)"
                    }
                );
                println!(
                    "tokens      {:.3} (next in {} ms), {} recent rejections",
                    q.tokens_milli as f64 / 1000.0,
                    q.next_token_ms,
                    q.rejects
                );
                if has(query_state::AUTO_BANNED) {
                    println!(
                        "ban         automatic, {} left",
                        left_text(q.auto_ban_left_ms)
                    );
                }
                if has(query_state::MANUAL_BANNED) {
                    println!("ban         manual, {}", left_text(q.manual_ban_left_ms));
                }
                if has(query_state::ALLOWED) {
                    println!("lists       on the allow list");
                }
                if has(query_state::DENIED) {
                    println!("lists       on the deny list");
                }
            }
        }
        Cmd::Set(a) => set(&mut g, a)?,
        Cmd::Allow { op } => list_cmd(&mut g, list_kind::ALLOW, op)?,
        Cmd::Deny { op } => list_cmd(&mut g, list_kind::DENY, op)?,
        Cmd::Ban {
            target,
            duration,
            list,
            json,
        } => {
            if list {
                let bans = g.list(list_kind::BANS)?;
                if json {
                    println!("{}", Value::Array(bans.iter().map(|b| json!({"prefix": addr_text(&b.cidr), "left_ms": if b.left_ms == FOREVER { Value::Null } else { json!(b.left_ms) }})).collect()));
                } else {
                    for b in &bans {
                        println!("{:<44} {}", addr_text(&b.cidr), left_text(b.left_ms));
                    }
                }
                return Ok(());
            }
            let Some(t) = target else {
                return Err(usage("ban: give an address or prefix, or --list".into()));
            };
            let duration_ms = match duration {
                None => FOREVER,
                Some(d) => {
                    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                    if ms == 0 || ms > MAX_MANUAL_BAN_MS {
                        return Err(usage(format!(
                            "--for {}: expected 1ms to 365 days",
                            humantime::format_duration(d)
                        )));
                    }
                    ms
                }
            };
            let r: BanReply = g.call(
                "ban",
                &BanRequest {
                    version: VERSION,
                    flags: 0,
                    target: parse_cidr(&t)?,
                    reserved: 0,
                    duration_ms,
                },
            )?;
            println!(
                "banned {t} {} ({} manual bans{})",
                if duration_ms == FOREVER {
                    "until unban".to_string()
                } else {
                    format!("for {}", left_text(duration_ms))
                },
                r.manual_bans,
                if r.replaced != 0 {
                    ", end replaced"
                } else {
                    ""
                }
            );
        }
        Cmd::Unban { target } => {
            let t = parse_cidr(&target)?;
            let (mut manual, mut auto, mut cursor) = (0u64, 0u64, CURSOR_START);
            loop {
                let r: UnbanReply = g.call(
                    "unban",
                    &UnbanRequest {
                        version: VERSION,
                        flags: 0,
                        target: t,
                        reserved: 0,
                        cursor,
                    },
                )?;
                manual += u64::from(r.manual_lifted);
                auto += u64::from(r.auto_lifted);
                if r.next_cursor == CURSOR_DONE {
                    break;
                }
                cursor = r.next_cursor;
            }
            println!("unbanned {target}: {manual} manual, {auto} automatic bans lifted");
        }
        Cmd::Reset {
            what: ResetWhat::Counters,
        } => {
            g.call(
                "reset",
                &ResetRequest {
                    version: VERSION,
                    flags: 0,
                    what: reset_what::COUNTERS,
                },
            )?;
            println!("counters reset");
        }
        Cmd::Watch {
            interval,
            count,
            iterations,
            json,
        } => {
            let mut i = 0u64;
            loop {
                let s = g.status(false)?;
                let t = g.top(count, TopBy::Rejections)?;
                if json {
                    println!(
                        "{}",
                        json!({"status": status_json(&s), "top": top_json(&t)})
                    );
                } else {
                    print!("\x1b[2J\x1b[H");
                    print_status(&s);
                    println!();
                    print_top(&t);
                }
                i += 1;
                if iterations != 0 && i >= iterations {
                    break;
                }
                std::thread::sleep(interval);
            }
        }
    }
    Ok(())
}

fn set(g: &mut Gate, a: SetArgs) -> Result<(), Failure> {
    let mut w = WireConfig::default();
    let mut mask = 0u32;
    if let Some(r) = &a.rate {
        w.rate_milli = parse_rate("rate", r)?;
        mask |= set_field::RATE_MILLI;
    }
    if let Some(b) = a.burst {
        w.burst = b;
        mask |= set_field::BURST;
    }
    if let Some(r) = &a.global_rate {
        w.global_rate_milli = parse_rate("global-rate", r)?;
        mask |= set_field::GLOBAL_RATE_MILLI;
    }
    if let Some(b) = a.global_burst {
        w.global_burst = b;
        mask |= set_field::GLOBAL_BURST;
    }
    if let Some(o) = a.observe {
        w.observe = u32::from(o == OnOff::On);
        mask |= set_field::OBSERVE;
    }
    if let Some(t) = a.ban_threshold {
        w.ban_threshold = t;
        mask |= set_field::BAN_THRESHOLD;
    }
    if let Some(d) = a.ban_window {
        w.ban_window_ms = ms("ban-window", d)?;
        mask |= set_field::BAN_WINDOW_MS;
    }
    if let Some(d) = a.ban_time {
        w.ban_ms = ms("ban-time", d)?;
        mask |= set_field::BAN_MS;
    }
    if let Some(d) = a.max_delay {
        w.max_delay_ms = ms("max-delay", d)?;
        mask |= set_field::MAX_DELAY_MS;
    }
    if let Some(p) = a.full_table {
        w.full_table = p as u32;
        mask |= set_field::FULL_TABLE;
    }
    if mask == 0 {
        return Err(usage(
            "set: nothing to change (see gatectl set --help)".into(),
        ));
    }
    // Check the result with gate-core's own rules first, so the message
    // names the field and what it accepts.
    let cur = g.status(false)?.config;
    let mut c = Config {
        capacity: cur.capacity,
        shards: cur.shards,
        ipv4_prefix: cur.ipv4_prefix as u8,
        ipv6_prefix: cur.ipv6_prefix as u8,
        rate_milli: cur.rate_milli,
        burst: cur.burst,
        global_rate_milli: cur.global_rate_milli,
        global_burst: cur.global_burst,
        full_table: FullTablePolicy::from_u8(cur.full_table as u8)
            .unwrap_or(FullTablePolicy::EvictLru),
        observe: cur.observe != 0,
        ban_threshold: cur.ban_threshold,
        ban_window_ms: cur.ban_window_ms,
        ban_ms: cur.ban_ms,
        max_pending: cur.max_pending,
        max_delay_ms: cur.max_delay_ms,
        allow: Vec::new(),
        deny: Vec::new(),
        nat64_prefixes: Vec::new(),
    };
    if mask & set_field::RATE_MILLI != 0 {
        c.rate_milli = w.rate_milli;
    }
    if mask & set_field::BURST != 0 {
        c.burst = w.burst;
    }
    if mask & set_field::GLOBAL_RATE_MILLI != 0 {
        c.global_rate_milli = w.global_rate_milli;
    }
    if mask & set_field::GLOBAL_BURST != 0 {
        c.global_burst = w.global_burst;
    }
    if mask & set_field::BAN_THRESHOLD != 0 {
        c.ban_threshold = w.ban_threshold;
    }
    if mask & set_field::BAN_WINDOW_MS != 0 {
        c.ban_window_ms = w.ban_window_ms;
    }
    if mask & set_field::BAN_MS != 0 {
        c.ban_ms = w.ban_ms;
    }
    if mask & set_field::MAX_DELAY_MS != 0 {
        c.max_delay_ms = w.max_delay_ms;
    }
    if let Err(e) = c.validate() {
        return Err(usage(format!("set: {e}")));
    }
    let r: SetReply = g.call(
        "set",
        &SetRequest {
            version: VERSION,
            flags: if a.persist { FLAG_PERSIST } else { 0 },
            mask,
            reserved: 0,
            config: w,
        },
    )?;
    if a.json {
        println!("{}", config_json(&r.config));
    } else {
        let names: Vec<&str> = (0..10)
            .filter(|b| mask & (1 << b) != 0)
            .map(|b| set_field::NAMES[b])
            .collect();
        println!(
            "set {}{}",
            names.join(", "),
            if a.persist { " (persisted)" } else { "" }
        );
    }
    Ok(())
}

fn list_cmd(g: &mut Gate, list: u32, op: ListOp) -> Result<(), Failure> {
    let name = if list == list_kind::ALLOW {
        "allow"
    } else {
        "deny"
    };
    let (op_code, cidrs, persist) = match op {
        ListOp::List { json } => {
            let entries = g.list(list)?;
            if json {
                println!(
                    "{}",
                    Value::Array(entries.iter().map(|e| json!(addr_text(&e.cidr))).collect())
                );
            } else {
                for e in &entries {
                    println!("{}", addr_text(&e.cidr));
                }
            }
            return Ok(());
        }
        ListOp::Add { cidrs, persist } => (list_op::ADD, cidrs, persist),
        ListOp::Remove { cidrs, persist } => (list_op::REMOVE, cidrs, persist),
        ListOp::Replace { cidrs, persist } => (list_op::REPLACE, cidrs, persist),
        ListOp::Clear { persist } => (list_op::CLEAR, Vec::new(), persist),
    };
    if cidrs.len() > MAX_LIST_ENTRIES as usize {
        return Err(usage(format!(
            "{name}: {} entries; at most {MAX_LIST_ENTRIES}",
            cidrs.len()
        )));
    }
    let head = ListChangeHeader {
        version: VERSION,
        flags: if persist { FLAG_PERSIST } else { 0 },
        list,
        op: op_code,
        count: cidrs.len() as u32,
        reserved: 0,
    };
    let mut b = head.as_bytes().to_vec();
    for c in &cidrs {
        b.extend_from_slice(parse_cidr(c)?.as_bytes());
    }
    let out = g.call_raw(name, IOCTL_GATE_LIST_CHANGE, &b)?;
    let r = ListChangeReply::from_prefix(&out).ok_or_else(|| Failure {
        code: 6,
        message: "short reply".into(),
    })?;
    println!(
        "{name} list: {} entries ({} changed){}",
        r.len,
        r.changed,
        if persist { ", persisted" } else { "" }
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("gatectl: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2() -> StatusReply {
        let mut s = StatusReply::zeroed();
        s.version = STATUS_REPLY_VERSION;
        s.size = StatusReply::SIZE as u32;
        s.changes = 5;
        s.relay.state = relay_state::RUNNING;
        s.relay.backend = WireAddr::host("2001:db8::5".parse().unwrap());
        s.relay.backend_port = 443;
        s.relay.opened = 9;
        s
    }

    #[test]
    fn a_version_2_reply_shows_the_relay() {
        let s = status_from_bytes(v2().as_bytes().to_vec()).unwrap();
        assert_eq!(s, v2());
        assert_eq!(relay_json(&s)["backend"], "[2001:db8::5]:443");
        assert_eq!(relay_json(&s)["opened"], 9);
        assert!(relay_text(&s).starts_with("running to [2001:db8::5]:443, 0 open"));
    }

    #[test]
    fn a_version_1_reply_is_read_without_relay_figures() {
        let mut b = v2().as_bytes()[..STATUS_REPLY_V1_SIZE].to_vec();
        b[0..4].copy_from_slice(&1u32.to_le_bytes());
        let s = status_from_bytes(b).unwrap();
        assert_eq!((s.version, s.changes), (1, 5));
        assert_eq!(s.relay, WireRelay::default());
        assert_eq!(relay_json(&s), Value::Null);
        assert!(relay_text(&s).contains("version 1"));
    }

    #[test]
    fn a_short_reply_is_an_error_naming_its_length() {
        let e = status_from_bytes(vec![2, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(e.code, 6);
        assert!(e.message.contains("6 bytes"), "{}", e.message);
        // Version 1 but shorter than a version 1 reply.
        let mut b = vec![0; STATUS_REPLY_V1_SIZE - 1];
        b[0] = 1;
        assert!(status_from_bytes(b).is_err());
    }
}
