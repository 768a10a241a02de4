//! Options: the front's own flags, and the driver's registry values as
//! flags named exactly like the values (`--RateMilliPerSecond 5000`, see
//! gate-driver/CONFIG.md), both also readable from a TOML file
//! (`--config FILE`, flags win):
//!
//! ```toml
//! [front]
//! netns = "gs-server"
//! queues = "0:1"
//! reject = "reset"
//!
//! [Parameters]
//! RateMilliPerSecond = 5000
//! Burst = 10
//! DenyList = ["203.0.113.0/24"]
//! ```
//!
//! Registry value names match ASCII case-insensitively, as the registry
//! and the driver's reader compare them (`--burst 10` is `--Burst 10`,
//! `[parameters] ratemillipersecond = 5000` is `RateMilliPerSecond`); the
//! same value given twice under two spellings is refused, naming both.
//!
//! Every bad option is refused with its name and value.

use anyhow::{anyhow, bail, Context, Result};
use clap::{ArgMatches, Args, Command, FromArgMatches};
use gate_driver::config::{RegType, ValueSpec, VALUES};
use gate_usersim::RegValue;
use std::path::PathBuf;
use std::time::Duration;

/// How a refused SYN is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Reject {
    /// A TCP reset (as user-mode conditional accept on Windows answers).
    Reset,
    /// Nothing: the client retransmits.
    Drop,
}

/// The front's own options.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct FrontArgs {
    /// Network namespace to serve (made with `ip netns add`); gate-sim
    /// installs and removes its NFQUEUE rules there, never in the host's.
    #[arg(long)]
    pub netns: Option<String>,
    /// NFQUEUE numbers: N, or A:B for one queue per number (the rule uses
    /// --queue-balance A:B). Default 0:<CPUs-1>.
    #[arg(long)]
    pub queues: Option<String>,
    /// How a refused SYN is answered.
    #[arg(long, value_enum)]
    pub reject: Option<Reject>,
    /// Fail open: NFQA_CFG_F_FAIL_OPEN on each queue and --queue-bypass on
    /// the rule, so SYNs are ACCEPTED without a decision when a queue is
    /// full or gate-sim is not running. Off by default: a gate that opens
    /// under load is no gate.
    #[arg(long)]
    pub fail_open: bool,
    /// How long an accepted request waits for its real handshake before
    /// WskAbortEvent (ms); 0 delivers accepted requests at once, with no
    /// real socket behind them.
    #[arg(long)]
    pub handshake_timeout_ms: Option<u64>,
    /// Accepted requests that may wait for their handshake at once (the
    /// half-open table); when full, the oldest is dropped (WskAbortEvent).
    #[arg(long)]
    pub max_half_open: Option<usize>,
    /// Packets each queue holds in the kernel (NFQA_CFG_QUEUE_MAXLEN).
    #[arg(long)]
    pub queue_maxlen: Option<u32>,
    /// Netlink socket receive buffer per queue, bytes.
    #[arg(long)]
    pub rcvbuf_bytes: Option<usize>,
    /// Scheduling priority (nice value, -20..19) of every gate-sim thread.
    /// Default -20: the driver's decisions, WskAbortEvent and the stack's
    /// handshakes run in the kernel on Windows, ahead of every user-mode
    /// process; gate-sim stands in for that kernel path, so it runs ahead
    /// of the processes beside it (a flood tool, the clients). 0 keeps the
    /// priority gate-sim was started with (lowering the value needs
    /// CAP_SYS_NICE).
    #[arg(long, allow_hyphen_values = true)]
    pub nice: Option<i32>,
    /// Don't install NFQUEUE rules (the caller manages them).
    #[arg(long)]
    pub no_rules: bool,
    /// Stop after this many seconds (default: at SIGINT/SIGTERM).
    #[arg(long)]
    pub duration_s: Option<f64>,
    /// Write every ETW event the driver writes as a JSON line to FILE ("-":
    /// standard output).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Live counters on standard error every N ms (0: off).
    #[arg(long)]
    pub stats_interval_ms: Option<u64>,
    /// Serve the control socket at PATH (gatectl --device PATH; the same
    /// IOCTLs as \\.\TcpFrontGate on Windows), created mode 0600.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// TOML file with [front] options and [Parameters] registry values.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The default `--nice`: ahead of user-mode processes, as the kernel path
/// gate-sim stands in for.
pub const DEFAULT_NICE: i32 = -20;

/// Everything gate-sim was asked for, merged and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub netns: Option<String>,
    pub queues: (u16, u16),
    pub reject: Reject,
    pub fail_open: bool,
    pub handshake_timeout: Option<Duration>,
    pub max_half_open: usize,
    pub queue_maxlen: u32,
    pub rcvbuf: usize,
    pub rules: bool,
    /// Nice value for every thread (None: leave as started).
    pub nice: Option<i32>,
    pub duration: Option<Duration>,
    pub events: Option<PathBuf>,
    pub stats_interval: Option<Duration>,
    /// The control socket's path, if served.
    pub control: Option<PathBuf>,
    /// Registry `Parameters` values, in VALUES order.
    pub registry: Vec<(&'static str, RegValue)>,
}

fn value_name(ty: RegType) -> &'static str {
    match ty {
        RegType::Dword => "DWORD",
        RegType::DwordOrQword => "NUMBER",
        RegType::Sz => "STRING",
        RegType::MultiSz => "LIST",
    }
}

/// The command line: front flags, then one flag per registry value.
pub fn command() -> Command {
    let mut c = FrontArgs::augment_args(
        Command::new("gate-sim")
            .about("The gate's driver code on gate-usersim, deciding real SYNs through NFQUEUE")
            .after_help(
                "Registry values (gate-driver/CONFIG.md) are flags named like the values, \
                 e.g. --RateMilliPerSecond 5000 --DenyList 10.0.0.0/8,192.0.2.7; \
                 as in the registry, their names match in any case (--burst is --Burst)",
            ),
    );
    for v in VALUES {
        c = c.arg(
            clap::Arg::new(v.name)
                .long(v.name)
                .value_name(value_name(v.ty))
                .help_heading("Registry values (Parameters)")
                .help(format!("registry value {} ({})", v.name, value_name(v.ty))),
        );
    }
    c
}

/// The registry value `name` names, compared ASCII case-insensitively as
/// the registry and the driver's reader (gate-driver config.rs, its check
/// of the names under `Parameters`) compare value names.
fn registry_value(name: &str) -> Option<&'static ValueSpec> {
    VALUES.iter().find(|v| v.name.eq_ignore_ascii_case(name))
}

/// The command line with registry-value flags spelt in any case rewritten
/// to the value's own spelling (`--burst=5` -> `--Burst=5`), so clap, whose
/// long flags are case-sensitive, sees one flag per value. One value given
/// under two spellings (`--Burst 1 --burst 2`) is refused here, naming
/// both spellings and the value, as in the TOML file (clap alone would
/// say "cannot be used multiple times" of the one spelling it sees); the
/// same spelling twice is left to clap, whose message is then exact.
/// Flags of the front itself are left as they are; nothing after `--` is
/// touched.
fn canonical_args(args: Vec<std::ffi::OsString>) -> Result<Vec<std::ffi::OsString>> {
    let mut out = Vec::with_capacity(args.len());
    // The first spelling of each registry value given.
    let mut seen: Vec<(&'static str, String)> = Vec::new();
    let mut rest = false;
    for a in args {
        let fixed = match a.to_str() {
            Some("--") => {
                rest = true;
                None
            }
            Some(s) if !rest && s.starts_with("--") => {
                let (name, tail) = match s[2..].split_once('=') {
                    Some((n, v)) => (n, Some(v)),
                    None => (&s[2..], None),
                };
                match registry_value(name) {
                    Some(v) => {
                        match seen.iter().find(|(n, _)| *n == v.name) {
                            Some((_, first)) if first != name => bail!(
                                "--{first} and --{name}: the same registry value {} (names compare case-insensitively): give it once",
                                v.name
                            ),
                            Some(_) => {}
                            None => seen.push((v.name, name.to_string())),
                        }
                        (v.name != name).then(|| match tail {
                            Some(t) => format!("--{}={t}", v.name),
                            None => format!("--{}", v.name),
                        })
                    }
                    None => None,
                }
            }
            _ => None,
        };
        out.push(fixed.map_or(a, Into::into));
    }
    Ok(out)
}

/// Types a registry value given as text, by its documented type.
fn typed(name: &'static str, ty: RegType, text: &str) -> Result<RegValue> {
    let bad = |what: &str| anyhow!("--{name} {text:?}: {what}");
    Ok(match ty {
        RegType::Dword => RegValue::Dword(
            text.trim()
                .parse()
                .map_err(|_| bad("not a 32-bit unsigned number"))?,
        ),
        RegType::DwordOrQword => {
            let n: u64 = text
                .trim()
                .parse()
                .map_err(|_| bad("not an unsigned number"))?;
            u32::try_from(n).map_or(RegValue::Qword(n), RegValue::Dword)
        }
        RegType::Sz => RegValue::Sz(text.to_string()),
        RegType::MultiSz => RegValue::MultiSz(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        ),
    })
}

/// A TOML value as the registry type of `name`.
fn typed_toml(name: &'static str, ty: RegType, v: &toml::Value) -> Result<RegValue> {
    let bad = || anyhow!("[Parameters] {name} = {v}: expected {}", value_name(ty));
    Ok(match (ty, v) {
        (RegType::Dword, toml::Value::Integer(n)) => {
            RegValue::Dword(u32::try_from(*n).map_err(|_| bad())?)
        }
        (RegType::DwordOrQword, toml::Value::Integer(n)) => {
            let n = u64::try_from(*n).map_err(|_| bad())?;
            u32::try_from(n).map_or(RegValue::Qword(n), RegValue::Dword)
        }
        (RegType::Sz, toml::Value::String(s)) => RegValue::Sz(s.clone()),
        (RegType::MultiSz, toml::Value::Array(a)) => RegValue::MultiSz(
            a.iter()
                .map(|x| x.as_str().map(str::to_string).ok_or_else(bad))
                .collect::<Result<_>>()?,
        ),
        _ => return Err(bad()),
    })
}

/// The front options a TOML `[front]` table may set (names as the flags,
/// with `_`).
const FRONT_KEYS: [&str; 13] = [
    "netns",
    "queues",
    "reject",
    "fail_open",
    "handshake_timeout_ms",
    "max_half_open",
    "queue_maxlen",
    "rcvbuf_bytes",
    "no_rules",
    "nice",
    "duration_s",
    "events",
    "stats_interval_ms",
];

/// Fills unset front options from a TOML `[front]` table.
fn front_from_toml(a: &mut FrontArgs, t: &toml::Table) -> Result<()> {
    for (k, v) in t {
        if !FRONT_KEYS.contains(&k.as_str()) {
            bail!(
                "[front] {k}: unknown option (known: {})",
                FRONT_KEYS.join(", ")
            );
        }
        let bad = || anyhow!("[front] {k} = {v}: wrong type");
        let s = || v.as_str().map(str::to_string).ok_or_else(bad);
        let u = || {
            v.as_integer()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(bad)
        };
        match k.as_str() {
            "netns" => a.netns = a.netns.take().or(Some(s()?)),
            "queues" => a.queues = a.queues.take().or(Some(s()?)),
            "reject" => {
                let r = match s()?.as_str() {
                    "reset" => Reject::Reset,
                    "drop" => Reject::Drop,
                    o => bail!("[front] reject = {o:?}: expected \"reset\" or \"drop\""),
                };
                a.reject = a.reject.or(Some(r));
            }
            "fail_open" => a.fail_open |= v.as_bool().ok_or_else(bad)?,
            "nice" => {
                let n = v
                    .as_integer()
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(bad)?;
                a.nice = a.nice.or(Some(n));
            }
            "no_rules" => a.no_rules |= v.as_bool().ok_or_else(bad)?,
            "max_half_open" => {
                a.max_half_open = a
                    .max_half_open
                    .or(Some(usize::try_from(u()?).map_err(|_| bad())?))
            }
            "handshake_timeout_ms" => {
                a.handshake_timeout_ms = a.handshake_timeout_ms.or(Some(u()?))
            }
            "queue_maxlen" => {
                a.queue_maxlen = a
                    .queue_maxlen
                    .or(Some(u32::try_from(u()?).map_err(|_| bad())?))
            }
            "rcvbuf_bytes" => {
                a.rcvbuf_bytes = a
                    .rcvbuf_bytes
                    .or(Some(usize::try_from(u()?).map_err(|_| bad())?))
            }
            "duration_s" => {
                let d = v
                    .as_float()
                    .or_else(|| v.as_integer().map(|n| n as f64))
                    .ok_or_else(bad)?;
                a.duration_s = a.duration_s.or(Some(d));
            }
            "events" => a.events = a.events.take().or(Some(PathBuf::from(s()?))),
            "stats_interval_ms" => a.stats_interval_ms = a.stats_interval_ms.or(Some(u()?)),
            "control" => a.control = a.control.take().or(Some(PathBuf::from(s()?))),
            _ => {}
        }
    }
    Ok(())
}

/// Parses `A:B` or `N`.
fn parse_queues(s: &str) -> Result<(u16, u16)> {
    let num = |x: &str| -> Result<u16> {
        x.trim()
            .parse()
            .map_err(|_| anyhow!("--queues {s:?}: {x:?} is not a queue number (0-65535)"))
    };
    let (a, b) = match s.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let n = num(s)?;
            (n, n)
        }
    };
    if b < a {
        bail!("--queues {s:?}: the range is empty ({b} < {a})");
    }
    if b - a >= 64 {
        bail!("--queues {s:?}: at most 64 queues");
    }
    Ok((a, b))
}

/// Parses the command line (without the program name) into [`Options`].
pub fn parse<I, T>(args: I) -> Result<Options>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let m = command()
        .try_get_matches_from(canonical_args(
            std::iter::once(std::ffi::OsString::from("gate-sim"))
                .chain(args.into_iter().map(Into::into))
                .collect(),
        )?)
        .map_err(|e| {
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) {
                e.exit();
            }
            anyhow!("{}", e.render().to_string().trim_end())
        })?;
    from_matches(&m)
}

fn from_matches(m: &ArgMatches) -> Result<Options> {
    let mut a = FrontArgs::from_arg_matches(m).map_err(|e| anyhow!("{e}"))?;
    let mut reg: Vec<(&'static str, RegValue)> = Vec::new();
    let mut file_params = toml::Table::new();
    if let Some(path) = a.config.clone() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("--config {}: cannot read", path.display()))?;
        let mut t: toml::Table = toml::from_str(&text)
            .with_context(|| format!("--config {}: not valid TOML", path.display()))?;
        // The key name `Parameters` compares case-insensitively too (it is
        // a registry key); `[front]` is gate-sim's own.
        let mut params_key = None;
        for k in t.keys() {
            if k.eq_ignore_ascii_case("Parameters") {
                if let Some(other) = params_key.replace(k.clone()) {
                    bail!(
                        "--config {}: [{other}] and [{k}] are one registry key (names compare case-insensitively): merge them",
                        path.display()
                    );
                }
            } else if k != "front" {
                bail!(
                    "--config {}: unknown table [{k}] (known: [front], [Parameters])",
                    path.display()
                );
            }
        }
        if let Some(f) = t.remove("front") {
            let f = f
                .as_table()
                .ok_or_else(|| anyhow!("--config {}: [front] must be a table", path.display()))?;
            front_from_toml(&mut a, f)?;
        }
        if let Some(p) = params_key.and_then(|k| t.remove(&k)) {
            let given = p.as_table().cloned().ok_or_else(|| {
                anyhow!("--config {}: [Parameters] must be a table", path.display())
            })?;
            // Keys by the value's own spelling, matched as the registry
            // matches names; two spellings of one value are refused.
            let mut seen: Vec<(&'static str, String)> = Vec::new();
            for (k, v) in given {
                let Some(spec) = registry_value(&k) else {
                    bail!("[Parameters] {k}: not a registry value of the driver (see gate-driver/CONFIG.md)");
                };
                if let Some((_, first)) = seen.iter().find(|(n, _)| *n == spec.name) {
                    bail!(
                        "[Parameters] {first} and {k}: the same registry value {} (names compare case-insensitively)",
                        spec.name
                    );
                }
                seen.push((spec.name, k));
                file_params.insert(spec.name.to_string(), v);
            }
        }
    }
    for v in VALUES {
        if let Some(text) = m.get_one::<String>(v.name) {
            reg.push((v.name, typed(v.name, v.ty, text)?));
        } else if let Some(t) = file_params.get(v.name) {
            reg.push((v.name, typed_toml(v.name, v.ty, t)?));
        }
    }
    // The port also names the rules: check it here (the driver checks the rest).
    for (n, v) in &reg {
        if let (&"ListenPort", RegValue::Dword(p)) = (n, v) {
            if *p == 0 || *p > 65_535 {
                bail!("--ListenPort {p}: must be 1-65535");
            }
        }
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let queues = match &a.queues {
        Some(q) => parse_queues(q)?,
        None => (0, u16::try_from(cpus.clamp(1, 64) - 1).unwrap_or(0)),
    };
    if a.netns.is_none() && !a.no_rules {
        bail!("--netns is required: gate-sim installs its NFQUEUE rules only in a namespace it is given, never the host's (or pass --no-rules and install them yourself)");
    }
    if let Some(ns) = &a.netns {
        if ns.is_empty() || ns.contains('/') || ns.starts_with('.') {
            bail!("--netns {ns:?}: not a namespace name");
        }
    }
    let duration = match a.duration_s {
        None => None,
        Some(s) if s > 0.0 && s <= 86_400.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => bail!("--duration-s {s}: must be in (0, 86400]"),
    };
    let hs = a.handshake_timeout_ms.unwrap_or(3000);
    if hs > 600_000 {
        bail!("--handshake-timeout-ms {hs}: at most 600000");
    }
    let max_half_open = a.max_half_open.unwrap_or(65_536);
    if max_half_open == 0 || max_half_open > 4_194_304 {
        bail!("--max-half-open {max_half_open}: must be 1-4194304");
    }
    let nice = a.nice.unwrap_or(DEFAULT_NICE);
    if !(-20..=19).contains(&nice) {
        bail!("--nice {nice}: must be -20..19");
    }
    let maxlen = a.queue_maxlen.unwrap_or(65_536);
    if maxlen == 0 {
        bail!("--queue-maxlen 0: must be at least 1");
    }
    let rcvbuf = a.rcvbuf_bytes.unwrap_or(64 << 20);
    if rcvbuf < 65_536 {
        bail!("--rcvbuf-bytes {rcvbuf}: at least 65536");
    }
    Ok(Options {
        netns: a.netns,
        queues,
        reject: a.reject.unwrap_or(Reject::Reset),
        fail_open: a.fail_open,
        handshake_timeout: (hs > 0).then(|| Duration::from_millis(hs)),
        max_half_open,
        queue_maxlen: maxlen,
        rcvbuf,
        rules: !a.no_rules,
        nice: (nice != 0).then_some(nice),
        duration,
        events: a.events,
        control: a.control,
        stats_interval: match a.stats_interval_ms.unwrap_or(1000) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        },
        registry: reg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Options> {
        parse(s.split_whitespace())
    }

    #[test]
    fn registry_values_are_flags_typed_by_their_names() {
        let o = p("--netns ns1 --queues 2:3 --reject drop --RateMilliPerSecond 5000000000 \
                   --Burst 10 --DenyList 10.0.0.0/8,192.0.2.7 --ListenAddress ::1 --ListenPort 9000")
        .unwrap();
        assert_eq!(o.queues, (2, 3));
        assert_eq!(o.reject, Reject::Drop);
        assert_eq!(
            o.registry,
            vec![
                ("ListenAddress", RegValue::Sz("::1".into())),
                ("ListenPort", RegValue::Dword(9000)),
                ("RateMilliPerSecond", RegValue::Qword(5_000_000_000)),
                ("Burst", RegValue::Dword(10)),
                (
                    "DenyList",
                    RegValue::MultiSz(vec!["10.0.0.0/8".into(), "192.0.2.7".into()])
                ),
            ]
        );
        assert_eq!(o.handshake_timeout, Some(Duration::from_secs(3)));
        assert!(o.rules && !o.fail_open);
    }

    #[test]
    fn bad_options_are_refused_by_name() {
        let e = |s: &str| format!("{:#}", p(s).unwrap_err());
        let m = e("--netns n --Burst ten");
        assert!(m.contains("--Burst") && m.contains("ten"), "{m}");
        let m = e("--netns n --Frobnicate 1");
        assert!(m.contains("--Frobnicate"), "{m}");
        let m = e("--netns n --queues 5:2");
        assert!(m.contains("--queues") && m.contains("5:2"), "{m}");
        let m = e("--netns n --duration-s=-1");
        assert!(m.contains("--duration-s") && m.contains("-1"), "{m}");
        let m = e("--queues 1");
        assert!(m.contains("--netns"), "{m}");
        let m = e("--netns ../x");
        assert!(m.contains("../x"), "{m}");
        let m = e("--netns n --nice 20");
        assert!(m.contains("--nice") && m.contains("20"), "{m}");
        assert_eq!(p("--netns n --nice -5").unwrap().nice, Some(-5));
        assert_eq!(p("--netns n --nice 0").unwrap().nice, None);
        assert_eq!(p("--netns n").unwrap().nice, Some(DEFAULT_NICE));
        let m = e("--netns n --ListenPort 70000");
        assert!(m.contains("--ListenPort") && m.contains("70000"), "{m}");
    }

    /// Registry value names compare case-insensitively (the registry and
    /// the driver's reader): any spelling of every value is that value, in
    /// flags (`--x v` and `--x=v`) and in the TOML file; two spellings of
    /// one value are refused, naming both.
    #[test]
    fn registry_names_match_in_any_case() {
        for v in VALUES {
            let sample = match v.ty {
                RegType::Dword | RegType::DwordOrQword => "7",
                RegType::Sz => "x",
                RegType::MultiSz => "a,b",
            };
            let want = typed(v.name, v.ty, sample).unwrap();
            for spelling in [v.name.to_ascii_lowercase(), v.name.to_ascii_uppercase()] {
                for args in [
                    format!("--netns n --{spelling} {sample}"),
                    format!("--netns n --{spelling}={sample}"),
                ] {
                    let o = p(&args).unwrap_or_else(|e| panic!("{args}: {e:#}"));
                    assert_eq!(o.registry, vec![(v.name, want.clone())], "{args}");
                }
            }
        }
        // Two spellings of one value on the command line: both named, and
        // that they are one value (docs audit s3, defect 5: clap's "cannot
        // be used multiple times" named one spelling only).
        for v in VALUES {
            let sample = match v.ty {
                RegType::Dword | RegType::DwordOrQword => "7",
                RegType::Sz => "x",
                RegType::MultiSz => "a,b",
            };
            let low = v.name.to_ascii_lowercase();
            for args in [
                format!("--netns n --{} {sample} --{low} {sample}", v.name),
                format!("--netns n --{low}={sample} --{}={sample}", v.name),
            ] {
                let m = format!("{:#}", p(&args).unwrap_err());
                let (first, second) = if args.contains(&format!("--{}=", v.name)) {
                    (low.clone(), v.name.to_string())
                } else {
                    (v.name.to_string(), low.clone())
                };
                assert_eq!(
                    m,
                    format!(
                        "--{first} and --{second}: the same registry value {} (names compare case-insensitively): give it once",
                        v.name
                    ),
                    "{args}"
                );
            }
        }
        let m = format!("{:#}", p("--netns n --Burst 1 --burst 2").unwrap_err());
        assert!(
            m.contains("--Burst and --burst: the same registry value Burst"),
            "{m}"
        );
        // The same spelling twice: clap's own refusal, which is exact then.
        let m = format!("{:#}", p("--netns n --burst 5 --burst 6").unwrap_err());
        assert!(m.contains("--Burst") && m.contains("multiple times"), "{m}");
        // After `--`, nothing is a flag of gate-sim.
        assert!(canonical_args(
            ["gate-sim", "--", "--Burst", "--burst"]
                .map(Into::into)
                .to_vec()
        )
        .is_ok());
        // Front flags are not registry names and stay case-sensitive.
        assert!(p("--NETNS n").is_err());
        let dir = std::env::temp_dir().join(format!("gate-sim-case-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        let cfg = |text: &str| {
            std::fs::write(&f, text).unwrap();
            parse(["--config", f.to_str().unwrap(), "--netns", "n"])
        };
        let o = cfg("[parameters]\nburst = 5\nRATEMILLIPERSECOND = 7000\n").unwrap();
        assert_eq!(
            o.registry,
            vec![
                ("RateMilliPerSecond", RegValue::Dword(7000)),
                ("Burst", RegValue::Dword(5))
            ]
        );
        // A flag still wins over the file under any spelling.
        std::fs::write(&f, "[Parameters]\nburst = 5\n").unwrap();
        let o = parse([
            "--config",
            f.to_str().unwrap(),
            "--netns",
            "n",
            "--BURST",
            "9",
        ])
        .unwrap();
        assert_eq!(o.registry, vec![("Burst", RegValue::Dword(9))]);
        let m = format!(
            "{:#}",
            cfg("[Parameters]\nBurst = 5\nburst = 6\n").unwrap_err()
        );
        assert!(m.contains("Burst") && m.contains("burst"), "{m}");
        let m = format!(
            "{:#}",
            cfg("[Parameters]\nBurst = 5\n[parameters]\nTableShards = 4\n").unwrap_err()
        );
        assert!(
            m.contains("[Parameters]") && m.contains("[parameters]"),
            "{m}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn toml_file_fills_what_flags_do_not_set() {
        let dir = std::env::temp_dir().join(format!("gate-sim-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("a.toml");
        std::fs::write(
            &f,
            "[front]\nnetns = \"nsA\"\nqueues = \"1:2\"\nfail_open = true\n\n[Parameters]\nBurst = 5\nRateMilliPerSecond = 7000\nAllowList = [\"10.1.0.0/16\"]\n",
        )
        .unwrap();
        let o = parse(["--config", f.to_str().unwrap(), "--Burst", "9"]).unwrap();
        assert_eq!(o.netns.as_deref(), Some("nsA"));
        assert_eq!(o.queues, (1, 2));
        assert!(o.fail_open);
        assert!(
            o.registry.contains(&("Burst", RegValue::Dword(9))),
            "flag wins"
        );
        assert!(o
            .registry
            .contains(&("RateMilliPerSecond", RegValue::Dword(7000))));
        assert!(o
            .registry
            .contains(&("AllowList", RegValue::MultiSz(vec!["10.1.0.0/16".into()]))));
        std::fs::write(&f, "[Parameters]\nBurts = 5\n").unwrap();
        let m = format!(
            "{:#}",
            parse(["--config", f.to_str().unwrap(), "--netns", "n"]).unwrap_err()
        );
        assert!(m.contains("Burts"), "{m}");
        std::fs::write(&f, "[front]\nqueue = \"1\"\n").unwrap();
        let m = format!(
            "{:#}",
            parse(["--config", f.to_str().unwrap(), "--netns", "n"]).unwrap_err()
        );
        assert!(m.contains("queue"), "{m}");
        std::fs::write(&f, "[Parameters]\nBurst = \"x\"\n").unwrap();
        let m = format!(
            "{:#}",
            parse(["--config", f.to_str().unwrap(), "--netns", "n"]).unwrap_err()
        );
        assert!(m.contains("Burst"), "{m}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
