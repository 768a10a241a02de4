//! gatectl: the gate's operator CLI.
//!
//! Talks to the driver's control device (`\\.\TcpFrontGate`, Windows) or
//! to the Linux front's control socket (same IOCTL codes and structs, see
//! gate-ioctl). Every read takes `--json`. Exit codes:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done (also when stdout is a pipe that closed: `gatectl status \| head -1`) |
//! | 2 | bad command line or value (the message names the option, the value as typed and its range); found before the device or socket is opened |
//! | 3 | the gate is not reachable: no device / socket, not a socket, a stale socket, or it stopped during the request |
//! | 4 | access denied (Windows: SYSTEM and Administrators, a change needs write access; Linux: the 0600 socket) |
//! | 5 | the driver refused the request (the status names why; ETW ControlRejected names the field) |
//! | 6 | I/O error talking to the driver |
//! | 7 | a list kept changing while it was being read (8 attempts) |

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
    /// Longest wait for each request's answer on the Linux control socket
    /// (read and write timeouts), 100ms to 10m; then exit code 3. On
    /// Windows the driver never blocks a DeviceIoControl (every handler
    /// answers at once, without waiting), so there is nothing to time out.
    #[arg(long, global = true, default_value = "5s", value_parser = parse_timeout)]
    timeout: Duration,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Listener state and mode, configuration, counters by reason, table
    /// (keys tracked), automatic bans in force, pends, uptime.
    Status {
        #[arg(long)]
        json: bool,
        /// Accepted for older scripts, no effect: the tracked keys are
        /// always shown (a cheap sum now).
        #[arg(long, hide = true)]
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
        /// How long, 1ms to 365 days (e.g. 10m, 2h, 1d). Kept as typed so
        /// that an error names it so.
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
        /// List the manual bans instead.
        #[arg(long, conflicts_with_all = ["target", "duration"])]
        list: bool,
        /// Print the ban (or, with --list, the bans) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lift manual and automatic bans inside an address or prefix.
    Unban {
        target: String,
        /// Lift automatic bans only; manual bans inside the prefix stay.
        #[arg(long)]
        auto_only: bool,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Reset counters (name what: `gatectl reset counters`).
    Reset {
        /// What to reset (required: a bare `reset` resets nothing).
        #[arg(value_enum)]
        what: Option<ResetWhat>,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// A refreshing view of status and top talkers (Ctrl-C stops).
    Watch {
        /// Refresh period, 100ms to 1h.
        #[arg(long, default_value = "1s", value_parser = parse_interval)]
        interval: Duration,
        /// Top keys shown, 1 to 1000 (as `top -n`).
        #[arg(short = 'n', long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
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
    /// Global rate, connections per second (0 or off: no global limit).
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
    /// Ban window, 1ms to 1h (e.g. 10s).
    #[arg(long)]
    ban_window: Option<String>,
    /// Automatic ban length, 1ms to 1day (e.g. 1m).
    #[arg(long)]
    ban_time: Option<String>,
    /// Longest pend delay, 1ms to 1m (e.g. 500ms).
    #[arg(long)]
    max_delay: Option<String>,
    /// Full-table policy.
    #[arg(long, value_enum)]
    full_table: Option<Policy>,
    /// Also write the change to the registry Parameters key.
    #[arg(long)]
    persist: bool,
    /// Print the configuration in force after the change, as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum ListOp {
    /// Add prefixes.
    Add {
        #[arg(required_unless_present = "from")]
        cidrs: Vec<String>,
        #[command(flatten)]
        from: FromFile,
        #[arg(long)]
        persist: bool,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Remove prefixes (exact match).
    Remove {
        #[arg(required_unless_present = "from")]
        cidrs: Vec<String>,
        #[command(flatten)]
        from: FromFile,
        #[arg(long)]
        persist: bool,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Replace the whole list (in one atomic change).
    Replace {
        cidrs: Vec<String>,
        #[command(flatten)]
        from: FromFile,
        #[arg(long)]
        persist: bool,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Empty the list.
    Clear {
        #[arg(long)]
        persist: bool,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Show the list.
    List {
        #[arg(long)]
        json: bool,
    },
}

/// `--from FILE`: prefixes read from a file, for lists longer than a
/// command line holds (Windows: 32767 characters, about 2000 IPv4
/// prefixes).
#[derive(clap::Args)]
struct FromFile {
    /// Also take prefixes from FILE ('-' = standard input): one per line,
    /// '#' starts a comment, blank lines are skipped.
    #[arg(long, value_name = "FILE")]
    from: Option<String>,
}

impl FromFile {
    /// The command-line prefixes followed by the file's, each with where
    /// it came from (for error messages).
    fn entries(&self, args: Vec<String>) -> Result<Vec<(String, String)>, Failure> {
        let mut out: Vec<(String, String)> = args.into_iter().map(|a| (a, String::new())).collect();
        let Some(path) = &self.from else {
            return Ok(out);
        };
        let text = if path == "-" {
            let mut t = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)
                .map_err(|e| usage(format!("--from -: reading standard input: {e}")))?;
            t
        } else {
            std::fs::read_to_string(path).map_err(|e| usage(format!("--from {path}: {e}")))?
        };
        let name = self.name().unwrap_or_default();
        // A UTF-8 byte order mark (Windows editors write one) is not part
        // of the first line.
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let given = out.len();
        for (i, line) in text.lines().enumerate() {
            let body = line.split('#').next().unwrap_or("").trim();
            if body.is_empty() {
                continue;
            }
            let at = format!("{name}:{}", i + 1);
            if body.split_whitespace().nth(1).is_some() {
                return Err(usage(format!(
                    "{at}: '{body}': expected one address or prefix per line"
                )));
            }
            out.push((body.to_string(), at));
        }
        if out.len() == given {
            // An empty or truncated file is refused, not taken as "no
            // entries" (a replace would empty the list).
            return Err(usage(format!(
                "{name} has no entries; use `clear` to empty the list"
            )));
        }
        Ok(out)
    }

    /// The file's name in messages (`<stdin>` for '-'), if one is given.
    fn name(&self) -> Option<&str> {
        self.from
            .as_deref()
            .map(|p| if p == "-" { "<stdin>" } else { p })
    }
}

/// Shortest `watch --interval`: each refresh is a status and a whole top
/// walk of the table (one request per shard slice).
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Longest `watch --interval`.
const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// `watch --interval`: a duration from [`MIN_INTERVAL`] to [`MAX_INTERVAL`]
/// (clap prefixes the error with the option and the value).
fn parse_timeout(s: &str) -> Result<Duration, String> {
    let range = "expected 100ms to 10m";
    let d = humantime::parse_duration(s).map_err(|e| format!("{e}; {range}"))?;
    if (Duration::from_millis(100)..=Duration::from_secs(600)).contains(&d) {
        Ok(d)
    } else {
        Err(range.to_string())
    }
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let range = "expected 100ms to 1h";
    let d = humantime::parse_duration(s).map_err(|e| format!("{e}; {range}"))?;
    if (MIN_INTERVAL..=MAX_INTERVAL).contains(&d) {
        Ok(d)
    } else {
        Err(range.to_string())
    }
}

/// A failure with its exit code (an empty message prints nothing).
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// Writing to stdout failed. A closed pipe (`gatectl status | head -1`)
    /// ends gatectl quietly with 0, as Unix tools do; anything else is an
    /// I/O error (6).
    fn output(e: std::io::Error) -> Failure {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Failure {
                code: 0,
                message: String::new(),
            }
        } else {
            Failure {
                code: 6,
                message: format!("writing to stdout: {e}"),
            }
        }
    }
}

/// `println!` that returns a [`Failure`] instead of panicking when stdout
/// fails (a closed pipe in particular).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($t)*).map_err(Failure::output)?
    }};
}

fn usage(message: String) -> Failure {
    Failure { code: 2, message }
}

impl From<TransportError> for Failure {
    fn from(e: TransportError) -> Failure {
        Failure {
            code: e.exit_code(),
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
        STATUS_NOT_SUPPORTED => {
            return Failure {
                code: 5,
                message: format!(
                    "{op}: the driver speaks another version of the control API than this gatectl (version {VERSION}): use the gatectl shipped with the driver ({} {:#010x})",
                    status::name(st),
                    st as u32
                ),
            }
        }
        STATUS_INFO_LENGTH_MISMATCH => "request size mismatch (gatectl and driver versions differ?)",
        STATUS_BUFFER_TOO_SMALL => "reply larger than expected (gatectl and driver versions differ?)",
        STATUS_INVALID_DEVICE_REQUEST => "unknown control code (an older driver?)",
        STATUS_QUOTA_EXCEEDED => match op {
            "allow" | "deny" => {
                return Failure {
                    code: 5,
                    message: format!(
                        "{op}: the {op} list is full (at most {MAX_LIST_ENTRIES} entries; {} {st:#010x})",
                        status::name(st)
                    ),
                }
            }
            "ban" => {
                return Failure {
                    code: 5,
                    message: format!(
                        "ban: the manual ban table is full (at most {MAX_MANUAL_BANS} bans in force; {} {st:#010x})",
                        status::name(st)
                    ),
                }
            }
            _ => "a list or the manual ban table is full",
        },
        STATUS_DEVICE_BUSY => "another change is being applied; retry",
        STATUS_INSUFFICIENT_RESOURCES => "the driver has no memory for the change",
        STATUS_REGISTRY_IO_FAILED => "the live change stands, but writing it to the registry Parameters key failed (the driver's debug output names the value and the cause)",
        _ => "refused",
    };
    Failure {
        code: 5,
        message: format!("{op}: {why} ({} {:#010x})", status::name(st), st as u32),
    }
}

/// Pauses before each retry of a request refused with STATUS_DEVICE_BUSY
/// (the driver applies one change at a time, each in about a millisecond):
/// 5 retries, 62 ms in all, then the refusal is reported.
const BUSY_BACKOFF_MS: [u64; 5] = [2, 4, 8, 16, 32];

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
        let mut tries = 1u32;
        loop {
            let r = self.t.ioctl(code, input, out_len)?;
            if r.status == gate_ioctl::status::STATUS_DEVICE_BUSY {
                // Refused whole (nothing changed) because another change
                // was being applied: retry a few times with a short,
                // growing pause before reporting it.
                if let Some(pause) = BUSY_BACKOFF_MS.get(tries as usize - 1) {
                    std::thread::sleep(Duration::from_millis(*pause));
                    tries += 1;
                    continue;
                }
                let mut f = refused(op, r.status);
                f.message = format!("{} after {tries} tries", f.message);
                return Err(f);
            }
            if r.status != 0 {
                return Err(refused(op, r.status));
            }
            return Ok(r.output);
        }
    }

    /// Status. A driver that answers with a version 1 reply (no relay
    /// figures) is read too: its relay part is left zero, and
    /// [`StatusReply::version`] says it is missing.
    fn status(&mut self) -> Result<StatusReply, Failure> {
        let req = StatusRequest {
            version: VERSION,
            flags: 0,
        };
        let b = self.call_raw("status", IOCTL_GATE_STATUS, req.as_bytes())?;
        status_from_bytes(b)
    }

    /// The `n` best keys by `by`, and the automatic bans in force (summed
    /// over the walk's slices: each call scans one bounded slice).
    fn top(&mut self, n: u32, by: TopBy) -> Result<(Vec<TopEntry>, u64), Failure> {
        let mut all: Vec<TopEntry> = Vec::new();
        let mut auto_bans = 0u64;
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
            auto_bans += u64::from(r.auto_bans);
            all.extend_from_slice(r.entries.get(..r.count as usize).unwrap_or(&[]));
            all.sort_by_key(|e| std::cmp::Reverse(key(e)));
            all.truncate(n as usize);
            if r.next_cursor == CURSOR_DONE {
                return Ok((all, auto_bans));
            }
            cursor = r.next_cursor;
        }
    }

    /// A whole list, page by page, as one list that was in force: every
    /// page must carry the generation of the first, else the list changed
    /// between pages and the read starts again (at most [`LIST_READS`]
    /// times; then exit code 7). A later page refused because the list
    /// shrank under it is a change too.
    fn list(&mut self, list: u32) -> Result<Vec<ListEntry>, Failure> {
        'read: for _ in 0..LIST_READS {
            let mut out: Vec<ListEntry> = Vec::new();
            let mut gen = None;
            loop {
                let req = ListGetRequest {
                    version: VERSION,
                    flags: 0,
                    list,
                    start: out.len() as u32,
                };
                let r: ListGetReply = match self.call("list", &req) {
                    Ok(r) => r,
                    Err(_) if gen.is_some() => continue 'read,
                    Err(e) => return Err(e),
                };
                if *gen.get_or_insert(r.generation) != r.generation {
                    continue 'read;
                }
                out.extend_from_slice(r.entries.get(..r.count as usize).unwrap_or(&[]));
                if r.count == 0 || out.len() as u32 >= r.total {
                    return Ok(out);
                }
            }
        }
        Err(Failure {
            code: 7,
            message: format!(
                "the list changed while it was being read, {LIST_READS} times in a row (it is read in pages of {LIST_PAGE}); try again when changes are less frequent"
            ),
        })
    }
}

/// Attempts at reading a list whose pages keep coming from different
/// generations (see `Client::list`).
const LIST_READS: usize = 8;

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

/// The range of `--rate` (and of a non-zero `--global-rate`) in the
/// user's units: gate-core's 1 to [`gate_core::config::MAX_RATE_MILLI`] milli.
const RATE_RANGE: &str = "0.001 to 10000000 connections per second (at most 3 decimals)";

/// "12.5" connections/s -> 12500 milli; the error names `--{field}`, the
/// value and the range.
fn parse_rate(field: &str, s: &str) -> Result<u64, Failure> {
    if field == "global-rate" && s == "off" {
        // As `status` prints it.
        return Ok(0);
    }
    let range = if field == "global-rate" {
        format!("0 or off (no global limit), or {RATE_RANGE}")
    } else {
        RATE_RANGE.to_string()
    };
    let bad = || usage(format!("--{field} {s}: expected {range}"));
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || (int.is_empty() && frac.is_empty()) {
        return Err(bad());
    }
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit());
    if (!int.is_empty() && !digits(int)) || (!frac.is_empty() && !digits(frac)) {
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
    let v = i
        .checked_mul(1000)
        .and_then(|v| v.checked_add(f))
        .ok_or_else(bad)?;
    if v > gate_core::config::MAX_RATE_MILLI || (v == 0 && field != "global-rate") {
        return Err(bad());
    }
    Ok(v)
}

/// A duration option (`500ms`, `10s`, `1h`) in ms, checked against
/// `1ms..=max_ms`; the error names `--{field}`, the value as typed and the
/// range.
fn ms(field: &str, s: &str, max_ms: u32) -> Result<u32, Failure> {
    let max = humantime::format_duration(Duration::from_millis(u64::from(max_ms))).to_string();
    let v = ms_within(field, s, u64::from(max_ms), &max)?;
    u32::try_from(v).map_err(|_| usage(format!("--{field} {s}: expected 1ms to {max}")))
}

/// A duration typed as `s` in ms, checked against `1ms..=max_ms`
/// (`max_text`: the bound in the user's words, e.g. "365 days"); the error
/// names `--{field}` and the value exactly as typed (never reformatted:
/// `400d` stays `400d`) and the range.
fn ms_within(field: &str, s: &str, max_ms: u64, max_text: &str) -> Result<u64, Failure> {
    let range = format!("expected 1ms to {max_text}");
    let d =
        humantime::parse_duration(s).map_err(|e| usage(format!("--{field} {s}: {e}; {range}")))?;
    match u64::try_from(d.as_millis()) {
        Ok(v) if (1..=max_ms).contains(&v) => Ok(v),
        _ => Err(usage(format!("--{field} {s}: {range}"))),
    }
}

/// The [`set_field`] bit of a gate-core field name (0: not one `set`
/// changes).
fn set_bit(f: &str) -> u32 {
    use gate_core::field;
    match f {
        field::RATE_MILLI => set_field::RATE_MILLI,
        field::GLOBAL_RATE_MILLI => set_field::GLOBAL_RATE_MILLI,
        field::BURST => set_field::BURST,
        field::GLOBAL_BURST => set_field::GLOBAL_BURST,
        field::BAN_THRESHOLD => set_field::BAN_THRESHOLD,
        field::BAN_WINDOW_MS => set_field::BAN_WINDOW_MS,
        field::BAN_MS => set_field::BAN_MS,
        field::MAX_DELAY_MS => set_field::MAX_DELAY_MS,
        _ => 0,
    }
}

/// A gate-core [`gate_core::ConfigError`] for a `set`, in the CLI's terms:
/// the option the user typed, the value and the range in its units.
/// The message for a change gate-core refuses. A field the user did not
/// type (`mask`) is named as the value in force, with the option that
/// changes it (e.g. `--ban-threshold 5` while the ban time in force is 0).
fn set_error(e: &gate_core::ConfigError, mask: u32) -> Failure {
    use gate_core::field;
    let bit = set_bit(e.field);
    let (opt, range) = match e.field {
        field::RATE_MILLI => ("--rate", RATE_RANGE.to_string()),
        field::GLOBAL_RATE_MILLI => (
            "--global-rate",
            format!("0 or off (no global limit), or {RATE_RANGE}"),
        ),
        field::BURST => ("--burst", format!("1 to {}", gate_core::config::MAX_BURST)),
        field::GLOBAL_BURST => (
            "--global-burst",
            format!(
                "1 to {} while a global rate is set",
                gate_core::config::MAX_GLOBAL_BURST
            ),
        ),
        field::BAN_THRESHOLD => ("--ban-threshold", "0 (bans off) to 65535".to_string()),
        field::BAN_WINDOW_MS => ("--ban-window", "1ms to 1h while bans are on".to_string()),
        field::BAN_MS => ("--ban-time", "1ms to 1day while bans are on".to_string()),
        field::MAX_DELAY_MS => ("--max-delay", "1ms to 1m while pends are on".to_string()),
        _ => return usage(format!("set: {e}")),
    };
    let value = match e.field {
        field::RATE_MILLI | field::GLOBAL_RATE_MILLI => rate_text(e.value),
        field::BAN_WINDOW_MS | field::BAN_MS | field::MAX_DELAY_MS => {
            humantime::format_duration(Duration::from_millis(e.value)).to_string()
        }
        _ => e.value.to_string(),
    };
    if bit != 0 && mask & bit == 0 {
        return usage(format!(
            "the {} in force ({value}) is not valid with this change: expected {range}; give {opt} too",
            &opt[2..]
        ));
    }
    usage(format!("{opt} {value}: expected {range}"))
}

/// Milli-connections per second as the user writes them ("2.5").
fn rate_text(milli: u64) -> String {
    match milli % 1000 {
        0 => format!("{}", milli / 1000),
        f => format!("{}.{f:03}", milli / 1000)
            .trim_end_matches('0')
            .to_string(),
    }
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

/// `status --json`; `auto_bans`: the automatic bans in force (from a
/// `top` walk); `mode` is `null` while the listener is down.
fn status_json(s: &StatusReply, auto_bans: u64) -> Value {
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
        "mode": if s.listener != listener_state::UP { Value::Null }
            else if s.mode == listener_mode::POST_ACCEPT { json!("post_accept") }
            else { json!("conditional_accept") },
        "port": s.port, "uptime_ms": s.uptime_ms,
        "config": config_json(&s.config),
        "decisions": by(&s.by_reason), "observed": by(&s.observed),
        "events": Value::Object(events),
        "pends_outstanding": s.pends_outstanding, "pending_in_use": s.pending_in_use,
        "tracked_keys": s.tracked_keys,
        "auto_bans_in_force": auto_bans,
        "capacity": s.capacity,
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

fn print_status(s: &StatusReply, auto_bans: u64) -> Result<(), Failure> {
    let c = &s.config;
    out!(
        "listener    {} port {}, up {}",
        // The mode only of a listener that is up (review 13b: "DOWN
        // (conditional accept)" while no listener ever came up).
        if s.listener != listener_state::UP {
            "DOWN".to_string()
        } else if s.mode == listener_mode::POST_ACCEPT {
            "up (post-accept)".to_string()
        } else {
            "up (conditional accept)".to_string()
        },
        s.port,
        humantime::format_duration(Duration::from_secs(s.uptime_ms / 1000))
    );
    out!(
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
    out!(
        "bans        {}; {} manual ({} hits)",
        match (c.ban_threshold, auto_bans) {
            (0, _) => "automatic bans off".to_string(),
            (t, n) => format!(
                "threshold {t} in {} ms, {} ms; {n} automatic in force",
                c.ban_window_ms, c.ban_ms
            ),
        },
        c.manual_bans,
        s.manual_ban_hits
    );
    out!("lists       {} allow, {} deny", c.allow_count, c.deny_count);
    out!(
        "table       {} slots in {} shards{}",
        s.capacity,
        c.shards,
        format!(", {} keys tracked", s.tracked_keys)
    );
    out!(
        "pends       {} outstanding (max {}), {} ms max delay",
        s.pends_outstanding,
        c.max_pending,
        c.max_delay_ms
    );
    out!(
        "connections {} inspected, {} accepted, {} closed, {} aborts",
        s.inspects,
        s.accepted_sockets,
        s.closed_sockets,
        s.aborts
    );
    out!("relays      {}", relay_text(s));
    out!("decisions");
    for (n, v) in reason_names().iter().zip(s.by_reason.iter()) {
        out!("  {n:<22} {v}");
    }
    Ok(())
}

fn print_top(entries: &[TopEntry]) -> Result<(), Failure> {
    if entries.is_empty() {
        out!("no tracked keys");
        return Ok(());
    }
    out!(
        "{:<44} {:>8} {:>10} {:>9}  {}",
        "key",
        "rejects",
        "debt_ms",
        "tokens",
        "auto ban left"
    );
    for e in entries {
        out!(
            "{:<44} {:>8} {:>10} {:>9.3}  {}",
            addr_text(&e.key),
            e.rejects,
            e.debt_ms,
            e.tokens_milli as f64 / 1000.0,
            if e.auto_ban_left_ms != 0 {
                left_text(u64::from(e.auto_ban_left_ms))
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

fn top_json(entries: &[TopEntry]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| {
                json!({"key": addr_text(&e.key), "rejects": e.rejects, "debt_ms": e.debt_ms,
                       "tokens_milli": e.tokens_milli, "auto_banned": e.auto_ban_left_ms != 0,
                       "auto_ban_left_ms": if e.auto_ban_left_ms != 0 { json!(e.auto_ban_left_ms) } else { Value::Null },
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

/// One command, checked and built whole from the command line before any
/// transport is opened: every bad value (ranges, prefixes, durations,
/// `--from` files and their lines, missing arguments) is exit code 2 here,
/// whether or not the gate runs or would admit us. Only what depends on the
/// configuration in force (a `set` that makes a value in force invalid) is
/// found after the device is opened.
enum Plan {
    Status {
        json: bool,
    },
    Top {
        count: u32,
        by: TopBy,
        json: bool,
    },
    Query {
        addr: IpAddr,
        json: bool,
    },
    Set(SetPlan),
    /// `allow|deny list`: a list kind ([`list_kind`]).
    ListShow {
        list: u32,
        json: bool,
    },
    ListChange(ListChange),
    BanList {
        json: bool,
    },
    Ban {
        target: WireAddr,
        /// 1..=[`MAX_MANUAL_BAN_MS`], or [`FOREVER`].
        duration_ms: u64,
        json: bool,
    },
    Unban {
        target: WireAddr,
        auto_only: bool,
        json: bool,
    },
    ResetCounters {
        json: bool,
    },
    Watch {
        interval: Duration,
        count: u32,
        iterations: u64,
        json: bool,
    },
}

impl Plan {
    /// Whether the command changes the gate (the device is then opened for
    /// writing too, unless `--read-only`).
    fn writes(&self) -> bool {
        matches!(
            self,
            Plan::Set(_)
                | Plan::ListChange(_)
                | Plan::Ban { .. }
                | Plan::Unban { .. }
                | Plan::ResetCounters { .. }
        )
    }
}

/// A `set`: the fields given (`mask`, [`set_field`] bits) in `w`.
struct SetPlan {
    w: WireConfig,
    mask: u32,
    persist: bool,
    json: bool,
}

/// An `allow|deny add|remove|replace|clear`: the prefixes as the driver
/// stores them (host bits cleared, sorted, duplicates merged).
struct ListChange {
    /// "allow" or "deny" (the operation's name in messages).
    name: &'static str,
    list: u32,
    op: u32,
    entries: Vec<Cidr>,
    persist: bool,
    json: bool,
}

/// Checks the command line and builds the request(s); opens nothing.
fn plan(cmd: Cmd) -> Result<Plan, Failure> {
    Ok(match cmd {
        Cmd::Status { json, count_keys } => {
            let _ = count_keys;
            Plan::Status { json }
        }
        Cmd::Top { count, by, json } => Plan::Top { count, by, json },
        Cmd::Query { addr, json } => Plan::Query { addr, json },
        Cmd::Set(a) => Plan::Set(set_plan(a)?),
        Cmd::Allow { op } => list_plan(list_kind::ALLOW, op)?,
        Cmd::Deny { op } => list_plan(list_kind::DENY, op)?,
        Cmd::Ban {
            list: true, json, ..
        } => Plan::BanList { json },
        Cmd::Ban {
            target,
            duration,
            json,
            ..
        } => {
            let Some(t) = target else {
                return Err(usage("ban: give an address or prefix, or --list".into()));
            };
            let duration_ms = match duration {
                None => FOREVER,
                Some(d) => ms_within("for", &d, MAX_MANUAL_BAN_MS, "365 days")?,
            };
            Plan::Ban {
                target: parse_cidr(&t)?,
                duration_ms,
                json,
            }
        }
        Cmd::Unban {
            target,
            auto_only,
            json,
        } => Plan::Unban {
            target: parse_cidr(&target)?,
            auto_only,
            json,
        },
        Cmd::Reset { what: None, .. } => {
            return Err(usage(
                "reset: name what to reset: `gatectl reset counters` (the only choice)".into(),
            ));
        }
        Cmd::Reset {
            what: Some(ResetWhat::Counters),
            json,
        } => Plan::ResetCounters { json },
        Cmd::Watch {
            interval,
            count,
            iterations,
            json,
        } => Plan::Watch {
            interval,
            count,
            iterations,
            json,
        },
    })
}

/// Checks and builds the whole command, then opens the device or socket,
/// then sends: a bad command line never depends on the gate running.
fn run(cli: Cli) -> Result<(), Failure> {
    let plan = plan(cli.cmd)?;
    let path = cli.device.clone().unwrap_or_else(transport::default_path);
    let access = if cli.read_only || !plan.writes() {
        FILE_READ_ACCESS
    } else {
        FILE_READ_ACCESS | FILE_WRITE_ACCESS
    };
    let mut g = Gate {
        t: transport::open(&path, access, cli.timeout)?,
    };
    match plan {
        Plan::Status { json } => {
            let s = g.status()?;
            // The automatic bans in force: a walk of the table in bounded
            // slices (IOCTL_GATE_TOP, one entry wanted per slice).
            let (_, auto_bans) = g.top(1, TopBy::Rejections)?;
            if json {
                out!("{}", status_json(&s, auto_bans));
            } else {
                print_status(&s, auto_bans)?;
            }
        }
        Plan::Top { count, by, json } => {
            let (t, _) = g.top(count, by)?;
            if json {
                out!("{}", top_json(&t));
            } else {
                print_top(&t)?;
            }
        }
        Plan::Query { addr, json } => {
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
                out!(
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
                out!("address     {addr}");
                out!(
                    "key         {}{}",
                    addr_text(&q.key),
                    if has(query_state::TRACKED) {
                        ""
                    } else {
                        " (not tracked: full bucket)"
                    }
                );
                out!(
                    "tokens      {:.3} (next in {} ms), {} recent rejections",
                    q.tokens_milli as f64 / 1000.0,
                    q.next_token_ms,
                    q.rejects
                );
                if has(query_state::AUTO_BANNED) {
                    out!(
                        "ban         automatic, {} left",
                        left_text(q.auto_ban_left_ms)
                    );
                }
                if has(query_state::MANUAL_BANNED) {
                    out!("ban         manual, {}", left_text(q.manual_ban_left_ms));
                }
                if has(query_state::ALLOWED) {
                    out!("lists       on the allow list");
                }
                if has(query_state::DENIED) {
                    out!("lists       on the deny list");
                }
            }
        }
        Plan::Set(p) => set(&mut g, p)?,
        Plan::ListShow { list, json } => list_show(&mut g, list, json)?,
        Plan::ListChange(c) => list_change(&mut g, c)?,
        Plan::BanList { json } => {
            // A ban that ended stays in the driver's table until the
            // next ban or unban purges it (left 0 ms): not listed.
            let bans: Vec<ListEntry> = g
                .list(list_kind::BANS)?
                .into_iter()
                .filter(|b| b.left_ms != 0)
                .collect();
            if json {
                out!("{}", Value::Array(bans.iter().map(|b| json!({"prefix": addr_text(&b.cidr), "left_ms": if b.left_ms == FOREVER { Value::Null } else { json!(b.left_ms) }})).collect()));
            } else if bans.is_empty() {
                out!("no manual bans");
            } else {
                for b in &bans {
                    out!("{:<44} {}", addr_text(&b.cidr), left_text(b.left_ms));
                }
            }
        }
        Plan::Ban {
            target,
            duration_ms,
            json,
        } => {
            // The prefix as stored (host bits cleared: 10.213.0.7/24 is
            // 10.213.0.0/24), as `ban --list` shows it.
            let stored = addr_text(&target);
            let r: BanReply = g.call(
                "ban",
                &BanRequest {
                    version: VERSION,
                    flags: 0,
                    target,
                    reserved: 0,
                    duration_ms,
                },
            )?;
            if json {
                out!(
                    "{}",
                    json!({"banned": stored,
                        "for_ms": if duration_ms == FOREVER { Value::Null } else { json!(duration_ms) },
                        "manual_bans": r.manual_bans, "replaced": r.replaced != 0})
                );
                return Ok(());
            }
            out!(
                "banned {stored} {} ({} manual bans{})",
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
        Plan::Unban {
            target: t,
            auto_only,
            json,
        } => {
            let (mut manual, mut auto, mut cursor) = (0u64, 0u64, CURSOR_START);
            loop {
                let r: UnbanReply = g.call(
                    "unban",
                    &UnbanRequest {
                        version: VERSION,
                        flags: if auto_only { UNBAN_AUTO_ONLY } else { 0 },
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
            let stored = addr_text(&t);
            if json {
                out!(
                    "{}",
                    json!({"target": stored, "manual_lifted": manual, "auto_lifted": auto})
                );
            } else {
                out!("unbanned {stored}: {manual} manual, {auto} automatic bans lifted");
            }
        }
        Plan::ResetCounters { json } => {
            g.call(
                "reset",
                &ResetRequest {
                    version: VERSION,
                    flags: 0,
                    what: reset_what::COUNTERS,
                },
            )?;
            if json {
                out!("{}", json!({"reset": "counters"}));
            } else {
                out!("counters reset");
            }
        }
        Plan::Watch {
            interval,
            count,
            iterations,
            json,
        } => {
            let mut i = 0u64;
            loop {
                let s = g.status()?;
                let (t, auto_bans) = g.top(count, TopBy::Rejections)?;
                if json {
                    out!(
                        "{}",
                        json!({"status": status_json(&s, auto_bans), "top": top_json(&t)})
                    );
                } else {
                    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                        use std::io::Write as _;
                        write!(std::io::stdout().lock(), "\x1b[2J\x1b[H")
                            .map_err(Failure::output)?;
                    }
                    print_status(&s, auto_bans)?;
                    out!("");
                    print_top(&t)?;
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

/// Checks `set`'s values on their own (ranges, and the rules between the
/// options given: `--global-burst 0 --global-rate 5` is refused here),
/// before anything is opened. What depends on the values in force is
/// checked by [`set`].
fn set_plan(a: SetArgs) -> Result<SetPlan, Failure> {
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
    if let Some(d) = &a.ban_window {
        w.ban_window_ms = ms("ban-window", d, gate_core::config::MAX_BAN_WINDOW_MS)?;
        mask |= set_field::BAN_WINDOW_MS;
    }
    if let Some(d) = &a.ban_time {
        w.ban_ms = ms("ban-time", d, gate_core::config::MAX_BAN_MS)?;
        mask |= set_field::BAN_MS;
    }
    if let Some(d) = &a.max_delay {
        w.max_delay_ms = ms("max-delay", d, gate_core::config::MAX_DELAY_MS)?;
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
    // gate-core's rules over the given fields on a valid base (gate-core's
    // defaults): an error about a field given is the user's value alone. A
    // base field the change makes invalid is left to the check against the
    // values in force, which names it as such.
    let base = Config::default();
    let local = apply(
        Config {
            // Valid with a global rate set, so a `--global-rate` alone
            // passes here.
            global_burst: base.global_burst.max(1),
            ..base
        },
        &w,
        mask,
    );
    if let Err(e) = local.validate() {
        if set_bit(e.field) & mask != 0 {
            return Err(set_error(&e, mask));
        }
    }
    Ok(SetPlan {
        w,
        mask,
        persist: a.persist,
        json: a.json,
    })
}

/// `c` with the fields of `w` that `mask` names.
fn apply(mut c: Config, w: &WireConfig, mask: u32) -> Config {
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
    c
}

/// Sends a checked `set`: gate-core's rules over the configuration in
/// force with the change applied first (a value in force the change makes
/// invalid is named as such), then the request.
fn set(g: &mut Gate, p: SetPlan) -> Result<(), Failure> {
    let SetPlan {
        w,
        mask,
        persist,
        json,
    } = p;
    let cur = g.status()?.config;
    let c = Config {
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
    let c = apply(c, &w, mask);
    if let Err(e) = c.validate() {
        return Err(set_error(&e, mask));
    }
    let r: SetReply = g.call(
        "set",
        &SetRequest {
            version: VERSION,
            flags: if persist { FLAG_PERSIST } else { 0 },
            mask,
            reserved: 0,
            config: w,
        },
    )?;
    if json {
        out!("{}", config_json(&r.config));
    } else {
        let changes = set_changes(&cur, &r.config, mask);
        out!(
            "set {}{}",
            changes.join(", "),
            if persist { " (persisted)" } else { "" }
        );
    }
    Ok(())
}

/// Each field in `mask` as `name old -> new`, in the units `status`
/// shows (`old` is the configuration read just before the change).
fn set_changes(old: &WireConfig, new: &WireConfig, mask: u32) -> Vec<String> {
    let rate = |m: u64| {
        if m == 0 {
            "off".to_string()
        } else {
            format!("{}/s", rate_text(m))
        }
    };
    let dur = |v: u32| humantime::format_duration(Duration::from_millis(u64::from(v))).to_string();
    let on = |v: u32| if v != 0 { "on" } else { "off" }.to_string();
    let policy = |v: u32| {
        ["evict-lru", "fail-open", "fail-closed"]
            .get(v as usize)
            .copied()
            .unwrap_or("?")
            .to_string()
    };
    let fields: [(u32, &str, String, String); 10] = [
        (
            set_field::RATE_MILLI,
            "rate",
            rate(old.rate_milli),
            rate(new.rate_milli),
        ),
        (
            set_field::BURST,
            "burst",
            old.burst.to_string(),
            new.burst.to_string(),
        ),
        (
            set_field::GLOBAL_RATE_MILLI,
            "global rate",
            rate(old.global_rate_milli),
            rate(new.global_rate_milli),
        ),
        (
            set_field::GLOBAL_BURST,
            "global burst",
            old.global_burst.to_string(),
            new.global_burst.to_string(),
        ),
        (
            set_field::OBSERVE,
            "observe",
            on(old.observe),
            on(new.observe),
        ),
        (
            set_field::BAN_THRESHOLD,
            "ban threshold",
            old.ban_threshold.to_string(),
            new.ban_threshold.to_string(),
        ),
        (
            set_field::BAN_WINDOW_MS,
            "ban window",
            dur(old.ban_window_ms),
            dur(new.ban_window_ms),
        ),
        (
            set_field::BAN_MS,
            "ban time",
            dur(old.ban_ms),
            dur(new.ban_ms),
        ),
        (
            set_field::MAX_DELAY_MS,
            "max delay",
            dur(old.max_delay_ms),
            dur(new.max_delay_ms),
        ),
        (
            set_field::FULL_TABLE,
            "full table",
            policy(old.full_table),
            policy(new.full_table),
        ),
    ];
    fields
        .into_iter()
        .filter(|(bit, ..)| mask & bit != 0)
        .map(|(_, name, o, n)| {
            // As the driver's audit: an unchanged field is no change.
            if o == n {
                format!("{name} {n} (unchanged)")
            } else {
                format!("{name} {o} -> {n}")
            }
        })
        .collect()
}

/// "allow" or "deny".
fn list_name(list: u32) -> &'static str {
    if list == list_kind::ALLOW {
        "allow"
    } else {
        "deny"
    }
}

/// `allow|deny list`.
fn list_show(g: &mut Gate, list: u32, json: bool) -> Result<(), Failure> {
    let name = list_name(list);
    let entries = g.list(list)?;
    if json {
        out!(
            "{}",
            Value::Array(entries.iter().map(|e| json!(addr_text(&e.cidr))).collect())
        );
    } else if entries.is_empty() {
        out!("{name} list is empty");
    } else {
        for e in &entries {
            out!("{}", addr_text(&e.cidr));
        }
    }
    Ok(())
}

/// Checks an `allow|deny` command and builds its change: the `--from`
/// file read and every line parsed, prefixes stored as the driver stores
/// them, the cap checked; opens nothing.
fn list_plan(list: u32, op: ListOp) -> Result<Plan, Failure> {
    let name = list_name(list);
    let (op_code, cidrs, persist, json) = match op {
        ListOp::List { json } => return Ok(Plan::ListShow { list, json }),
        ListOp::Add {
            cidrs,
            from,
            persist,
            json,
        } => {
            let file = from.name().map(str::to_string);
            (list_op::ADD, (from.entries(cidrs)?, file), persist, json)
        }
        ListOp::Remove {
            cidrs,
            from,
            persist,
            json,
        } => {
            let file = from.name().map(str::to_string);
            (list_op::REMOVE, (from.entries(cidrs)?, file), persist, json)
        }
        ListOp::Replace {
            cidrs,
            from,
            persist,
            json,
        } => {
            if cidrs.is_empty() && from.from.is_none() {
                return Err(usage(format!(
                    "{name} replace: no entries given (prefixes or --from FILE); \
                     to empty the list use `gatectl {name} clear`"
                )));
            }
            let file = from.name().map(str::to_string);
            (
                list_op::REPLACE,
                (from.entries(cidrs)?, file),
                persist,
                json,
            )
        }
        ListOp::Clear { persist, json } => (list_op::CLEAR, (Vec::new(), None), persist, json),
    };
    let (cidrs, file) = cidrs;
    // Parsed and stored as the driver stores them (host bits cleared), and
    // merged, before the cap is checked: the cap is on distinct prefixes.
    let mut parsed: Vec<Cidr> = Vec::with_capacity(cidrs.len());
    for (c, at) in &cidrs {
        let w = Cidr::parse(c).map_err(|e| {
            let f = usage(format!("bad address or prefix '{c}': {e}"));
            match at.is_empty() {
                true => f,
                false => usage(format!("{at}: {}", f.message)),
            }
        })?;
        parsed.push(w);
    }
    parsed.sort_unstable_by_key(|c| (c.addr(), c.prefix_len()));
    parsed.dedup();
    if parsed.len() > MAX_LIST_ENTRIES as usize {
        return Err(usage(match &file {
            Some(f) => format!(
                "{name}: {f}: {} distinct prefixes{}; at most {MAX_LIST_ENTRIES}",
                parsed.len(),
                if cidrs.iter().any(|(_, at)| at.is_empty()) {
                    " with the command line's"
                } else {
                    ""
                }
            ),
            None => format!(
                "{name}: {} distinct prefixes; at most {MAX_LIST_ENTRIES}",
                parsed.len()
            ),
        }));
    }
    Ok(Plan::ListChange(ListChange {
        name,
        list,
        op: op_code,
        entries: parsed,
        persist,
        json,
    }))
}

/// Sends a checked list change.
fn list_change(g: &mut Gate, c: ListChange) -> Result<(), Failure> {
    let ListChange {
        name,
        list,
        op,
        entries,
        persist,
        json,
    } = c;
    let head = ListChangeHeader {
        version: VERSION,
        flags: if persist { FLAG_PERSIST } else { 0 },
        list,
        op,
        count: entries.len() as u32,
        reserved: 0,
    };
    let mut b = head.as_bytes().to_vec();
    for c in &entries {
        b.extend_from_slice(WireAddr::prefix(c.addr(), c.prefix_len()).as_bytes());
    }
    let out = g.call_raw(name, IOCTL_GATE_LIST_CHANGE, &b)?;
    let r = ListChangeReply::from_prefix(&out).ok_or_else(|| Failure {
        code: 6,
        message: "short reply".into(),
    })?;
    if json {
        out!(
            "{}",
            json!({"list": name, "entries": r.len, "changed": r.changed, "persisted": persist})
        );
    } else {
        out!(
            "{name} list: {} entries ({} changed){}",
            r.len,
            r.changed,
            if persist { ", persisted" } else { "" }
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if !f.message.is_empty() {
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "gatectl: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review 13b, item 7: `set --ban-threshold 5` while the ban time in
    /// force is 0 said "--ban-time 0s: expected ...", an option the user
    /// did not type. A field not in the change is named as the value in
    /// force, with the option that fixes it.
    #[test]
    fn a_refused_field_the_user_did_not_type_is_named_as_in_force() {
        let e = gate_core::ConfigError {
            field: gate_core::field::BAN_MS,
            value: 0,
            expected: "",
        };
        let m = set_error(&e, set_field::BAN_THRESHOLD).message;
        assert_eq!(
            m,
            "the ban-time in force (0s) is not valid with this change: expected 1ms to 1day while bans are on; give --ban-time too"
        );
        let m = set_error(&e, set_field::BAN_MS | set_field::BAN_THRESHOLD).message;
        assert_eq!(m, "--ban-time 0s: expected 1ms to 1day while bans are on");
    }

    /// A transport that answers STATUS_DEVICE_BUSY `busy` times, then
    /// success (an empty reset reply), counting the calls.
    struct BusyThen {
        busy: u32,
        calls: std::rc::Rc<std::cell::Cell<u32>>,
    }

    impl Transport for BusyThen {
        fn ioctl(
            &mut self,
            _: u32,
            _: &[u8],
            out_len: usize,
        ) -> Result<transport::Reply, TransportError> {
            self.calls.set(self.calls.get() + 1);
            let busy = self.calls.get() <= self.busy;
            Ok(transport::Reply {
                status: if busy {
                    gate_ioctl::status::STATUS_DEVICE_BUSY
                } else {
                    0
                },
                output: vec![0; if busy { 0 } else { out_len }],
            })
        }
    }

    /// Issue 13: a change refused as busy is retried (bounded), then
    /// reported with the number of tries.
    #[test]
    fn a_busy_change_is_retried_a_bounded_number_of_times() {
        for (busy, ok, calls) in [
            (0, true, 1),
            (3, true, 4),
            (5, true, 6),
            (6, false, 6),
            (99, false, 6),
        ] {
            let n = std::rc::Rc::new(std::cell::Cell::new(0));
            let mut g = Gate {
                t: Box::new(BusyThen {
                    busy,
                    calls: n.clone(),
                }),
            };
            let r = g.call_raw("ban", IOCTL_GATE_BAN, &[]);
            assert_eq!(r.is_ok(), ok, "busy {busy}");
            assert_eq!(n.get(), calls, "busy {busy}");
            if let Err(f) = r {
                assert_eq!(f.code, 5);
                assert!(
                    f.message
                        .starts_with("ban: another change is being applied")
                        && f.message.ends_with("after 6 tries"),
                    "{}",
                    f.message
                );
            }
        }
    }

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
