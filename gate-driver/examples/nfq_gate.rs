//! nfq_gate: the real gate code (`gate_driver::DriverEntry`) deciding real
//! Linux SYNs before the handshake, through gate-usersim's NFQUEUE front.
//!
//! ```text
//! cargo run -p gate-driver --example nfq_gate -- [--port P] [--queue N]
//!     [--netns NAME] [--registry NAME=VALUE ...] [--duration-s S]
//! ```
//!
//! Needs root and an NFQUEUE rule sending the SYNs to the port to queue N,
//! in the namespace the gate serves (e.g. `ip netns exec NS iptables-nft -A
//! INPUT -p tcp --dport 8080 --syn -j NFQUEUE --queue-num 0`). The example
//! creates the simulation in real-time mode, writes the registry
//! `Parameters` values (`ListenPort` from `--port`, then every `--registry`
//! value, see gate-driver/CONFIG.md), loads the driver, starts a real
//! listener on the port in the same namespace (an accepted SYN completes a
//! real handshake with it) and serves the queue until `--duration-s` ends or
//! SIGINT. It then unloads the driver and prints the leak report, the
//! simulation's violations, the queue counters and the gate's decisions
//! counted from its ETW events; the exit code is 1 when something leaked
//! or a rule was broken, 2 on bad arguments or setup errors.
//!
//! Registry values: `ListenAddress` is REG_SZ, `AllowList`/`DenyList` are
//! REG_MULTI_SZ (comma-separated), every other value is a number (REG_DWORD,
//! or REG_QWORD when it does not fit 32 bits).
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)] // test code: std allocation is fine

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("nfq_gate: Linux only (NFQUEUE)");
    std::process::exit(2);
}

#[cfg(target_os = "linux")]
fn main() {
    std::process::exit(linux::main());
}

#[cfg(target_os = "linux")]
mod linux {
    use gate_usersim::etw::CapturedEvent;
    use gate_usersim::nfq::{enter_netns, serve, NfqStats};
    use gate_usersim::{RegValue, Sim};
    use std::collections::BTreeMap;
    use std::net::{Ipv6Addr, SocketAddr, TcpListener};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    /// The service key DriverEntry receives.
    const SERVICE_KEY: &str = r"\Registry\Machine\System\CurrentControlSet\Services\gate";
    /// Its Parameters subkey (the driver's configuration).
    const PARAMS: &str = r"\Registry\Machine\System\CurrentControlSet\Services\gate\Parameters";

    /// Set by the SIGINT handler; the serve loop stops when it is set.
    static STOP: AtomicBool = AtomicBool::new(false);

    /// Command-line options.
    #[derive(Debug)]
    struct Options {
        port: u16,
        queue: u16,
        netns: Option<String>,
        registry: Vec<(String, RegValue)>,
        duration: Option<Duration>,
    }

    const USAGE: &str = "usage: nfq_gate [--port P] [--queue N] [--netns NAME] \
                         [--registry NAME=VALUE ...] [--duration-s S]";

    fn parse_number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
        v.parse()
            .map_err(|_| format!("{flag} {v:?} is not a valid number"))
    }

    /// One `--registry NAME=VALUE`, typed by the value's name.
    fn parse_registry(arg: &str) -> Result<(String, RegValue), String> {
        let Some((name, value)) = arg.split_once('=') else {
            return Err(format!("--registry {arg:?} must be NAME=VALUE"));
        };
        if name.is_empty() {
            return Err(format!("--registry {arg:?}: empty value name"));
        }
        let v = match name {
            "ListenAddress" => RegValue::Sz(value.to_string()),
            "AllowList" | "DenyList" => RegValue::MultiSz(
                value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
            _ => {
                let n: u64 = value.parse().map_err(|_| {
                    format!("--registry {name}={value:?}: {value:?} is not an unsigned number")
                })?;
                match u32::try_from(n) {
                    Ok(d) => RegValue::Dword(d),
                    Err(_) => RegValue::Qword(n),
                }
            }
        };
        Ok((name.to_string(), v))
    }

    fn parse_args(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            port: 8080,
            queue: 0,
            netns: None,
            registry: Vec::new(),
            duration: None,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
            };
            match flag.as_str() {
                "--port" => {
                    let v = value()?;
                    o.port = parse_number(flag, v)?;
                    if o.port == 0 {
                        return Err(format!("--port {v:?} must be 1..=65535"));
                    }
                }
                "--queue" => o.queue = parse_number(flag, value()?)?,
                "--netns" => o.netns = Some(value()?.clone()),
                "--registry" => o.registry.push(parse_registry(value()?)?),
                "--duration-s" => {
                    let v = value()?;
                    let s: f64 = parse_number(flag, v)?;
                    if !(s > 0.0 && s <= 86_400.0) {
                        return Err(format!("--duration-s {v:?} must be in (0, 86400]"));
                    }
                    o.duration = Some(Duration::from_secs_f64(s));
                }
                "-h" | "--help" => return Err(USAGE.to_string()),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        if o.registry.iter().any(|(n, _)| n == "ListenPort") {
            return Err("set the port with --port, not --registry ListenPort=...".to_string());
        }
        Ok(o)
    }

    extern "C" fn on_sigint(_: i32) {
        STOP.store(true, Ordering::SeqCst);
    }

    extern "C" {
        fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
    }

    /// SIGINT and SIGTERM set [`STOP`].
    fn install_stop_handlers() {
        const SIGINT: i32 = 2;
        const SIGTERM: i32 = 15;
        for sig in [SIGINT, SIGTERM] {
            // SAFETY: libc's signal(); the handler only stores an atomic,
            // which is async-signal-safe.
            unsafe { signal(sig, on_sigint) };
        }
    }

    /// A real listener on `port` in namespace `netns` (or the current one)
    /// that accepts and closes every connection, on its own thread; returns
    /// once it is bound.
    fn start_listener(netns: Option<String>, port: u16) -> Result<(), String> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let bound = (|| {
                if let Some(ns) = &netns {
                    enter_netns(ns).map_err(|e| format!("entering netns {ns:?}: {e}"))?;
                }
                TcpListener::bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port))
                    .map_err(|e| format!("binding the real listener on [::]:{port}: {e}"))
            })();
            match bound {
                Ok(l) => {
                    let _ = tx.send(Ok(()));
                    for c in l.incoming() {
                        drop(c);
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
        rx.recv().map_err(|_| "listener thread ended".to_string())?
    }

    /// Decisions counted from the captured events: "EventName" or
    /// "EventName/reason" -> count.
    fn count_events(events: &[CapturedEvent]) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for e in events {
            *m.entry(e.name.clone()).or_insert(0) += 1;
            if let Some(r) = e.u64("Reason") {
                let reason = usize::try_from(r)
                    .ok()
                    .and_then(|i| gate_core::Reason::ALL.get(i))
                    .map_or_else(|| format!("reason{r}"), |r| r.name().to_string());
                *m.entry(format!("{}/{reason}", e.name)).or_insert(0) += 1;
            }
        }
        m
    }

    fn print_stats(s: &NfqStats, elapsed: Duration) {
        let secs = elapsed.as_secs_f64().max(1e-9);
        println!(
            "nfq: syns={} accepted={} dropped={} pended={} duplicates={} other={} \
             seconds={:.2} syns_per_s={:.0}",
            s.syns,
            s.accepted,
            s.dropped,
            s.pended,
            s.duplicates,
            s.other,
            secs,
            s.syns as f64 / secs
        );
    }

    pub fn main() -> i32 {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let o = match parse_args(&args) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("nfq_gate: {e}");
                return 2;
            }
        };
        install_stop_handlers();

        let sim = Sim::new();
        sim.set_real_time(true);
        sim.registry_set(PARAMS, "ListenPort", RegValue::Dword(u32::from(o.port)));
        for (n, v) in &o.registry {
            sim.registry_set(PARAMS, n, v.clone());
        }
        let driver = match sim.load_driver(gate_driver::DriverEntry, SERVICE_KEY) {
            Ok(d) => d,
            Err(st) => {
                eprintln!("nfq_gate: DriverEntry failed with {:#010x}", st as u32);
                for l in sim.debug_output() {
                    eprintln!("  {l:?}");
                }
                return 2;
            }
        };
        let Some(l) = sim.wait_listener(Duration::from_secs(5)) else {
            eprintln!("nfq_gate: the driver opened no listener within 5 s");
            return 2;
        };
        println!(
            "gate: listening on {} (conditional accept {}), queue {}, netns {}",
            l.addr,
            l.conditional_accept,
            o.queue,
            o.netns.as_deref().unwrap_or("(current)")
        );
        if let Err(e) = start_listener(o.netns.clone(), o.port) {
            eprintln!("nfq_gate: {e}");
            return 2;
        }

        let served = std::thread::scope(|s| {
            let sim = &sim;
            let netns = o.netns.clone();
            let queue = o.queue;
            let server = s.spawn(move || -> Result<NfqStats, String> {
                if let Some(ns) = &netns {
                    enter_netns(ns).map_err(|e| format!("entering netns {ns:?}: {e}"))?;
                }
                serve(sim, queue, &STOP).map_err(|e| format!("serving NFQUEUE {queue}: {e}"))
            });
            let start = Instant::now();
            println!("ready");
            while !STOP.load(Ordering::SeqCst) && !server.is_finished() {
                if o.duration.is_some_and(|d| start.elapsed() >= d) {
                    STOP.store(true, Ordering::SeqCst);
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            STOP.store(true, Ordering::SeqCst);
            let r = server
                .join()
                .unwrap_or_else(|_| Err("the NFQUEUE thread panicked".to_string()));
            (r, start.elapsed())
        });

        sim.set_real_time(false);
        let leaks = driver.unload(&sim);
        let violations = sim.violations();
        let events = sim.take_events();

        let mut failed = false;
        match &served.0 {
            Ok(stats) => print_stats(stats, served.1),
            Err(e) => {
                eprintln!("nfq_gate: {e}");
                failed = true;
            }
        }
        println!("decisions (ETW events, by name and reason):");
        for (k, n) in count_events(&events) {
            println!("  {k} {n}");
        }
        if leaks.is_clean() {
            println!("leaks: none");
        } else {
            println!("leaks: {leaks:#?}");
            failed = true;
        }
        if violations.is_empty() {
            println!("violations: none");
        } else {
            println!("violations: {}", violations.len());
            for v in &violations {
                println!("  {v:?}");
            }
            failed = true;
        }
        if failed {
            1
        } else {
            0
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn args(s: &str) -> Vec<String> {
            s.split_whitespace().map(str::to_string).collect()
        }

        #[test]
        fn parses_options_and_types_registry_values() {
            let o = parse_args(&args(
                "--port 9000 --queue 3 --netns ns1 --duration-s 2.5 \
                 --registry RateMilliPerSecond=5000 --registry GlobalRateMilliPerSecond=5000000000 \
                 --registry DenyList=10.0.0.0/8,192.0.2.7 --registry ListenAddress=::1",
            ))
            .unwrap();
            assert_eq!((o.port, o.queue), (9000, 3));
            assert_eq!(o.netns.as_deref(), Some("ns1"));
            assert_eq!(o.duration, Some(Duration::from_millis(2500)));
            assert_eq!(
                o.registry,
                vec![
                    ("RateMilliPerSecond".to_string(), RegValue::Dword(5000)),
                    (
                        "GlobalRateMilliPerSecond".to_string(),
                        RegValue::Qword(5_000_000_000)
                    ),
                    (
                        "DenyList".to_string(),
                        RegValue::MultiSz(vec!["10.0.0.0/8".into(), "192.0.2.7".into()])
                    ),
                    ("ListenAddress".to_string(), RegValue::Sz("::1".into())),
                ]
            );
        }

        #[test]
        fn bad_arguments_name_the_value() {
            let e = parse_args(&args("--port 70000")).unwrap_err();
            assert!(e.contains("70000"), "{e}");
            let e = parse_args(&args("--registry Burst=ten")).unwrap_err();
            assert!(e.contains("Burst") && e.contains("ten"), "{e}");
            let e = parse_args(&args("--registry Burst")).unwrap_err();
            assert!(e.contains("NAME=VALUE"), "{e}");
            let e = parse_args(&args("--duration-s -1")).unwrap_err();
            assert!(e.contains("-1"), "{e}");
            let e = parse_args(&args("--frobnicate")).unwrap_err();
            assert!(e.contains("--frobnicate"), "{e}");
            let e = parse_args(&args("--queue")).unwrap_err();
            assert!(e.contains("needs a value"), "{e}");
        }
    }
}
