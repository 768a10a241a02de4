//! One run of the front, in a linear life cycle: enter the namespace, load
//! the driver on the simulation, start the real listener and the NFQUEUE
//! front, install the rules, serve (live counters on standard error) until
//! the duration ends or SIGINT/SIGTERM, then remove the rules, stop the
//! front, unload the driver and report leaks, violations, queue counters
//! and decisions.

use crate::events::{self, EventLog};
use crate::options::{Options, Reject};
use crate::rules::Rules;
use anyhow::{anyhow, bail, Context, Result};
use gate_usersim::nfq::{self, Counters, FrontConfig, NfqStats, RejectMode, DEFAULT_REJECT_MARK};
use gate_usersim::wsk::real::{self, Acceptor};
use gate_usersim::{etw, Sim};
use std::io::Write;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The service key DriverEntry receives.
const SERVICE_KEY: &str = r"\Registry\Machine\System\CurrentControlSet\Services\gate";
/// Its Parameters subkey (the driver's configuration).
const PARAMS: &str = r"\Registry\Machine\System\CurrentControlSet\Services\gate\Parameters";
/// ETW events the simulation itself keeps (the rest are counted and
/// streamed by [`EventLog`]).
const EVENT_WINDOW: usize = 64;

/// Prints a line of the human-readable output: to standard output, or to
/// standard error when the ETW events stream to standard output
/// (`--events -`), so that stream stays pure JSON lines.
macro_rules! say {
    ($to_err:expr, $($t:tt)*) => {
        if $to_err {
            eprintln!($($t)*)
        } else {
            println!($($t)*)
        }
    };
}

/// DbgPrintEx's DPFLTR_WARNING_LEVEL (levels at or below it are warnings
/// and errors).
const DPFLTR_WARNING_LEVEL: u32 = 1;

/// Whether a ConfigRejected event's `value` for the registry value `name`
/// (`A+B` names a combination, led by `A`) is text the user gave: a
/// string (REG_SZ) or one entry of a list (REG_MULTI_SZ) given for that
/// name, as the driver names it (printable ASCII kept, anything else `?`,
/// cut at 64), or the address it parsed (the BackendAddress loop names
/// the backend as parsed). Otherwise the value is a number (a list's
/// number of entries when it is too long, a registry type) and is shown
/// unquoted, so an index or a count never looks like text the user gave.
fn value_is_given_text(o: &Options, name: &str, value: &str) -> bool {
    let lead = name.split('+').next().unwrap_or(name);
    let names_it = |given: &str| {
        as_driver_names(given) == value
            || given
                .trim()
                .parse::<SocketAddr>()
                .is_ok_and(|a| a.to_string() == value)
    };
    o.registry
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(lead))
        .any(|(_, v)| match v {
            gate_usersim::RegValue::Sz(s) => names_it(s),
            gate_usersim::RegValue::MultiSz(l) => l.iter().any(|s| names_it(s)),
            _ => false,
        })
}

/// `given` as the driver's refusal names it (gate-driver's `ValueName`:
/// per UTF-16 unit, printable ASCII or space kept, anything else `?`, cut
/// at 64 units).
fn as_driver_names(given: &str) -> String {
    given
        .encode_utf16()
        .take(64)
        .map(|u| match u8::try_from(u) {
            Ok(b) if b.is_ascii_graphic() || b == b' ' => char::from(b),
            _ => '?',
        })
        .collect()
}

/// Set by SIGINT/SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores an atomic (async-signal-safe).
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Resident set size of this process, KiB.
pub fn rss_kib() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|x| x.parse::<u64>().ok())
        })
        .unwrap_or(0);
    // SAFETY: sysconf(3).
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    pages * page / 1024
}

/// The queue counters as one `key=value` line.
pub fn nfq_line(s: &NfqStats, secs: f64) -> String {
    format!(
        "syns={} accepted={} rejected={} pended={} duplicates={} superseded={} retransmits={} other={} looped={} \
         queue_dropped={} user_dropped={} unserved={} enobufs={} lost={} batches={} seconds={:.2} syns_per_s={:.0}",
        s.syns,
        s.accepted,
        s.rejected,
        s.pended,
        s.duplicates,
        s.superseded,
        s.retransmits,
        s.other,
        s.looped,
        s.queue_dropped,
        s.user_dropped,
        s.unserved,
        s.enobufs,
        s.lost(),
        s.batches,
        secs,
        s.syns as f64 / secs.max(1e-9)
    )
}

fn real_line() -> String {
    let r = real::stats();
    format!(
        "handshakes={} handshake_timeouts={} half_open_evicted={} superseded={} unmatched={} awaiting={} connects={} bytes_in={} bytes_out={}",
        r.handshakes,
        r.handshake_timeouts,
        r.half_open_evicted,
        r.superseded,
        r.unmatched,
        real::awaiting_count(),
        r.connects,
        r.bytes_in,
        r.bytes_out
    )
}

/// Waits until `/proc` shows the queues bound (so rules installed next
/// never meet an unbound queue).
fn wait_queues_bound(q: (u16, u16), limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        let text = std::fs::read_to_string("/proc/thread-self/net/netfilter/nfnetlink_queue")
            .unwrap_or_default();
        if (q.0..=q.1).all(|n| nfq::netlink::parse_proc(&text, n).is_some()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// The `--control` path, for messages.
fn c_path(o: &Options) -> String {
    o.control
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Runs gate-sim; returns the process exit code (0 clean, 1 leaks or
/// violations or a failed front, 2 setup errors).
pub fn run(o: &Options) -> Result<i32> {
    let text_to_err = o.events.as_deref() == Some(std::path::Path::new("-"));
    install_signal_handlers();
    if let Some(n) = o.nice {
        // Before any thread starts: Linux nice values are per thread and
        // a new thread inherits its creator's.
        // SAFETY: setpriority(2) on the calling thread (who = 0).
        let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, n) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            bail!("--nice {n}: cannot set the scheduling priority: {e} (lowering it needs CAP_SYS_NICE; --nice 0 keeps it)");
        }
    }
    if let Some(ns) = &o.netns {
        // Every thread started from here on lives in the namespace.
        nfq::enter_netns(ns)
            .with_context(|| format!("--netns {ns}: cannot enter /var/run/netns/{ns}"))?;
    }
    // Claim the control socket before anything else: a path another
    // gate-sim serves is refused (exit 2), not taken over; a stale one is
    // replaced. Clients wait in the backlog until the driver is loaded.
    let control = match &o.control {
        Some(p) => Some(
            gate_usersim::ControlServer::bind(p)
                .with_context(|| format!("--control {}", p.display()))?,
        ),
        None => None,
    };
    let out: Option<Box<dyn Write + Send>> = match &o.events {
        None => None,
        Some(p) if p.as_os_str() == "-" => {
            Some(Box::new(std::io::LineWriter::new(std::io::stdout())))
        }
        // Line-buffered like stdout: each event reaches the file as it
        // happens (an operator's `tail -f` audits live changes).
        Some(p) => Some(Box::new(std::io::LineWriter::new(
            std::fs::File::create(p)
                .with_context(|| format!("--events {}: cannot create", p.display()))?,
        ))),
    };
    // With --events every event is built, counted and written by the sink;
    // without, the simulation only counts them (cheaper per SYN).
    let streaming = out.is_some();
    let log = EventLog::new(out);
    let sink_log = Arc::clone(&log);
    let count = |name: &str| -> u64 {
        if streaming {
            log.count(name)
        } else {
            etw::counts().get(name).copied().unwrap_or(0)
        }
    };

    let sim = Sim::new();
    sim.set_real_time(true);
    sim.set_event_window(EVENT_WINDOW);
    sim.set_request_log(false);
    if streaming {
        etw::set_sink(Some(Box::new(move |e| sink_log.record(e))));
    }
    for (n, v) in &o.registry {
        sim.registry_set(PARAMS, n, v.clone());
    }
    let driver = match sim.load_driver(gate_driver::DriverEntry, SERVICE_KEY) {
        Ok(d) => d,
        Err(st) => {
            eprintln!("gate-sim: DriverEntry failed with {:#010x}", st as u32);
            for e in sim.events().iter().filter(|e| e.name == "ConfigRejected") {
                let name = events::field_text(e, "ValueName");
                let value = events::field_text(e, "Value");
                // A string value (BackendAddress, an Allow entry, ...) is
                // shown quoted as the driver names it: the text given; a
                // number (a list's length) unquoted.
                let shown = if value_is_given_text(o, &name, &value) {
                    format!("\"{value}\"")
                } else {
                    value
                };
                eprintln!(
                    "gate-sim: registry value {name} rejected ({shown}): {}",
                    events::field_text(e, "Reason"),
                );
            }
            for l in sim.debug_output() {
                eprintln!("  {}", l.text);
            }
            etw::set_sink(None);
            return Ok(2);
        }
    };
    let Some(l) = sim.wait_listener(Duration::from_secs(5)) else {
        etw::set_sink(None);
        return Err(anyhow!("the driver opened no listener within 5 s"));
    };
    let port = l.addr.port();
    // The driver's warnings at start (DbgPrintEx at error or warning
    // level: RelayOff when no BackendAddress is set, ...) are an
    // operator's business: shown as the debugger would show them.
    for d in sim
        .debug_output()
        .iter()
        .filter(|d| d.level <= DPFLTR_WARNING_LEVEL)
    {
        eprintln!("gate-sim: driver: {}", d.text.trim_end());
    }
    // gatectl's way in: the control socket into the driver's own
    // IRP_MJ_DEVICE_CONTROL handler (stopped before the unload).
    let control = match control {
        Some(c) => Some(
            c.serve()
                .with_context(|| format!("serving the control socket {}", c_path(o)))?,
        ),
        None => None,
    };
    if let Some(c) = &control {
        say!(
            text_to_err,
            "gate-sim: control socket {}",
            c.path().display()
        );
    }
    if !streaming {
        // Loaded: nothing needs whole events any more (ConfigRejected was
        // read from this window if the load failed).
        sim.set_event_window(0);
    }
    let acceptor = match o.handshake_timeout {
        None => None,
        Some(_) => {
            let at = if l.addr.ip().is_unspecified() {
                SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)
            } else {
                l.addr
            };
            let tl = TcpListener::bind(at)
                .with_context(|| format!("binding the real listener on {at}"))?;
            Some(Acceptor::start(tl, 65_535))
        }
    };
    real::set_max_half_open(o.max_half_open);
    // A connection socket the driver opens (WskConnect: the relay to its
    // backend) is a real TCP connection from the namespace.
    real::set_connect_real(true);
    // Real-socket IRPs complete inline when they can and on the reactor
    // otherwise (as Windows' WSK does), not through the I/O thread.
    real::set_fast_completion(true);
    let mut cfg = FrontConfig::queues(o.queues.0, o.queues.1);
    cfg.rcvbuf = o.rcvbuf;
    cfg.queue_maxlen = o.queue_maxlen;
    cfg.fail_open = o.fail_open;
    cfg.handshake_timeout = o.handshake_timeout;
    cfg.reject = match o.reject {
        Reject::Reset => RejectMode::Reset {
            mark: DEFAULT_REJECT_MARK,
        },
        Reject::Drop => RejectMode::Drop,
    };
    say!(
        text_to_err,
        "gate-sim: listening on {} (conditional accept {}), queues {}:{}, netns {}, reject {}, fail-open {}, handshake timeout {}, nice {}",
        l.addr,
        l.conditional_accept,
        o.queues.0,
        o.queues.1,
        o.netns.as_deref().unwrap_or("(current)"),
        match o.reject {
            Reject::Reset => "reset",
            Reject::Drop => "drop",
        },
        o.fail_open,
        o.handshake_timeout
            .map_or("off".to_string(), |d| format!("{} ms", d.as_millis())),
        o.nice.map_or("unchanged".to_string(), |n| n.to_string())
    );
    let counters = Counters::default();
    let (served, elapsed) = std::thread::scope(|s| {
        let (sim, cfg, counters) = (&sim, &cfg, &counters);
        let front = s.spawn(move || nfq::serve(sim, cfg, &STOP, counters));
        let rules = if !wait_queues_bound(o.queues, Duration::from_secs(5)) {
            Err(anyhow!("the NFQUEUE queues were not bound within 5 s"))
        } else if o.rules {
            let ns = o.netns.as_deref().unwrap_or_default();
            let mark = matches!(o.reject, Reject::Reset).then_some(DEFAULT_REJECT_MARK);
            Rules::install(ns, port, o.queues, mark, o.fail_open).map(Some)
        } else {
            Ok(None)
        };
        let start = Instant::now();
        let rules = match rules {
            Ok(r) => {
                say!(text_to_err, "ready");
                let _ = std::io::stdout().flush();
                let _ = std::io::stderr().flush();
                r
            }
            Err(e) => {
                eprintln!("gate-sim: {e:#}");
                STOP.store(true, Ordering::SeqCst);
                None
            }
        };
        let mut next_stats = o.stats_interval.map(|i| start + i);
        let mut next_trim = start + Duration::from_secs(1);
        while !STOP.load(Ordering::SeqCst) && !front.is_finished() {
            if o.duration.is_some_and(|d| start.elapsed() >= d) {
                break;
            }
            if Instant::now() >= next_trim {
                // Give freed heap pages back to the kernel (glibc keeps them
                // in per-thread arenas), so RSS follows live memory.
                // SAFETY: malloc_trim(3) has no preconditions.
                unsafe { libc::malloc_trim(0) };
                next_trim = Instant::now() + Duration::from_secs(1);
            }
            if let Some(t) = next_stats {
                if Instant::now() >= t {
                    let secs = start.elapsed().as_secs_f64();
                    let ts = sim.wsk_table_sizes();
                    eprintln!(
                        "stats: t={secs:.1}s {} {} decisions_accepted={} decisions_rejected={} \
                         requests={} sockets={} buffers={} rss_kib={}",
                        nfq_line(&counters.snapshot(), secs),
                        real_line(),
                        count("ConnectionAccepted"),
                        count("ConnectionRejected"),
                        ts.requests,
                        ts.sockets,
                        ts.buffers,
                        rss_kib()
                    );
                    next_stats = o.stats_interval.map(|i| t + i);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Rules out first (no new SYN is queued), then the front drains
        // what is queued and stops.
        if let Some(r) = &rules {
            match r.packets() {
                Ok(n) => say!(text_to_err, "rules: syns_in={n}"),
                Err(e) => eprintln!("gate-sim: reading the rule counters: {e:#}"),
            }
        }
        drop(rules);
        STOP.store(true, Ordering::SeqCst);
        nfq::wake_all();
        let r = front
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the front thread panicked")));
        (r, start.elapsed())
    });
    drop(acceptor);
    if let Some(c) = control {
        c.stop();
    }
    sim.set_real_time(false);
    let leaks = driver.unload(&sim);
    let violations = sim.violations();
    etw::set_sink(None);
    let write_errors = log.finish();

    let mut failed = false;
    match &served {
        Ok(stats) => say!(
            text_to_err,
            "nfq: {}",
            nfq_line(stats, elapsed.as_secs_f64())
        ),
        Err(e) => {
            eprintln!("gate-sim: the front failed: {e}");
            failed = true;
        }
    }
    say!(text_to_err, "real: {}", real_line());
    say!(text_to_err, "memory: rss_kib={}", rss_kib());
    say!(text_to_err, "decisions (ETW events, by name and reason):");
    let decisions = if streaming {
        log.counts()
    } else {
        crate::events::sim_counts()
    };
    for (k, n) in decisions {
        say!(text_to_err, "  {k} {n}");
    }
    if write_errors > 0 {
        eprintln!("gate-sim: {write_errors} event line(s) could not be written");
    }
    if leaks.is_clean() {
        say!(text_to_err, "leaks: none");
    } else {
        say!(text_to_err, "leaks: {leaks:#?}");
        failed = true;
    }
    if violations.is_empty() {
        say!(text_to_err, "violations: none");
    } else {
        say!(text_to_err, "violations: {}", violations.len());
        for v in &violations {
            say!(text_to_err, "  {v:?}");
        }
        failed = true;
    }
    Ok(i32::from(failed))
}
