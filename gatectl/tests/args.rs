//! Every argument error is found before gatectl opens the gate (docs audit
//! of session 3, code defects 1, 2 and 4): the real binary, with
//! `GATE_CONTROL` pointing to a socket that does not exist, gives exit code
//! 2 and a message naming the bad value as typed for every subcommand and
//! kind of option, while each valid command gets as far as the open and
//! gets exit code 3 (not running). Had a check run after the open, its case
//! would give 3 here.
#![cfg(unix)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

struct Run {
    code: i32,
    stderr: String,
}

/// A path under a fresh temporary directory that does not exist.
fn nowhere() -> PathBuf {
    std::env::temp_dir()
        .join(format!("gatectl-args-{}", std::process::id()))
        .join("no-such-dir")
        .join("control.sock")
}

fn gatectl(args: &[&str]) -> Run {
    let o = Command::new(env!("CARGO_BIN_EXE_gatectl"))
        .env("GATE_CONTROL", nowhere())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run gatectl");
    Run {
        code: o.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Files for `--from`, in a directory of this test's own.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(tag: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("gatectl-args-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Files { dir }
    }

    fn put(&self, name: &str, text: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// (arguments, texts the message must contain). Each row is one kind of
/// bad argument of one subcommand.
fn bad_cases(f: &Files) -> Vec<(Vec<String>, Vec<String>)> {
    let bad_line = f.put("bad-line.txt", "10.0.0.0/8\n# comment\n10.300.0.0/16\n");
    let two = f.put("two.txt", "10.0.0.0/8 10.1.0.0/16\n");
    let empty = f.put("empty.txt", "# only a comment\n\n");
    let mut many = String::new();
    for i in 0..4097u32 {
        many.push_str(&format!("10.{}.{}.0/24\n", i / 256, i % 256));
    }
    let many = f.put("many.txt", &many);
    let missing = f.dir.join("missing.txt").to_str().unwrap().to_string();
    let rows: Vec<(Vec<&str>, Vec<&str>)> = vec![
        // set: every option, out of range and malformed.
        (
            vec!["set", "--rate", "0"],
            vec!["--rate 0: expected 0.001 to 10000000"],
        ),
        (
            vec!["set", "--rate", "1.2345"],
            vec!["--rate 1.2345: expected"],
        ),
        (vec!["set", "--rate", "fast"], vec!["--rate fast: expected"]),
        (
            vec!["set", "--rate", "10000001"],
            vec!["--rate 10000001: expected"],
        ),
        (
            vec!["set", "--global-rate=-1"],
            vec!["--global-rate -1: expected 0 or off"],
        ),
        (
            vec!["set", "--burst", "0"],
            vec!["--burst 0: expected 1 to 1000000"],
        ),
        (
            vec!["set", "--burst", "1000001"],
            vec!["--burst 1000001: expected 1 to 1000000"],
        ),
        (vec!["set", "--burst", "many"], vec!["'many'", "--burst"]),
        (
            vec!["set", "--global-rate", "5", "--global-burst", "0"],
            vec!["--global-burst 0: expected 1 to 100000000 while a global rate is set"],
        ),
        (
            vec!["set", "--global-rate", "1", "--global-burst", "100000001"],
            vec!["--global-burst 100000001: expected 1 to 100000000"],
        ),
        (
            vec!["set", "--ban-threshold", "70000"],
            vec!["--ban-threshold 70000: expected 0 (bans off) to 65535"],
        ),
        (
            vec!["set", "--ban-window", "0s"],
            vec!["--ban-window 0s: expected 1ms to 1h"],
        ),
        (
            vec!["set", "--ban-window", "2h"],
            vec!["--ban-window 2h: expected 1ms to 1h"],
        ),
        (
            vec!["set", "--ban-time", "2days"],
            vec!["--ban-time 2days: expected 1ms to 1day"],
        ),
        (
            vec!["set", "--max-delay", "61s"],
            vec!["--max-delay 61s: expected 1ms to 1m"],
        ),
        (
            vec!["set", "--max-delay", "soon"],
            vec!["--max-delay soon:", "expected 1ms to 1m"],
        ),
        (
            vec!["set", "--observe", "maybe"],
            vec!["'maybe'", "--observe"],
        ),
        (
            vec!["set", "--full-table", "drop"],
            vec!["'drop'", "--full-table"],
        ),
        (vec!["set"], vec!["set: nothing to change"]),
        (vec!["set", "--persist"], vec!["set: nothing to change"]),
        // top, query, watch.
        (vec!["top", "-n", "0"], vec!["'0'", "1..=1000"]),
        (vec!["top", "-n", "1001"], vec!["'1001'", "1..=1000"]),
        (vec!["top", "--by", "size"], vec!["'size'", "--by"]),
        (vec!["query", "10.0.0.300"], vec!["'10.0.0.300'"]),
        (vec!["query"], vec!["required", "<ADDR>"]),
        (vec!["watch", "-n", "0"], vec!["'0'", "1..=1000"]),
        (vec!["watch", "-n", "5000"], vec!["'5000'", "1..=1000"]),
        (
            vec!["watch", "--interval", "50ms"],
            vec!["'50ms'", "expected 100ms to 1h"],
        ),
        (vec!["watch", "--iterations", "-1"], vec!["'-1'"]),
        (
            vec!["--timeout", "10ms", "status"],
            vec!["'10ms'", "expected 100ms to 10m"],
        ),
        // ban, unban.
        (vec!["ban", "10.0.0.0/99"], vec!["'10.0.0.0/99'"]),
        (
            vec!["ban", "10.0.0.1", "--for", "400d"],
            vec!["--for 400d: expected 1ms to 365 days"],
        ),
        (
            vec!["ban", "10.0.0.1", "--for", "0s"],
            vec!["--for 0s: expected 1ms to 365 days"],
        ),
        (
            vec!["ban", "10.0.0.1", "--for", "a while"],
            vec!["--for a while:", "365 days"],
        ),
        (
            vec!["ban"],
            vec!["ban: give an address or prefix, or --list"],
        ),
        (
            vec!["ban", "--for", "10m"],
            vec!["ban: give an address or prefix, or --list"],
        ),
        (
            vec!["ban", "--list", "--for", "10m"],
            vec!["--for", "cannot be used with"],
        ),
        (
            vec!["ban", "--list", "10.0.0.1"],
            vec!["cannot be used with"],
        ),
        (vec!["unban", "2001:db8::/129"], vec!["'2001:db8::/129'"]),
        (vec!["unban", "host.example"], vec!["'host.example'"]),
        (vec!["unban"], vec!["required", "<TARGET>"]),
        // reset.
        (
            vec!["reset"],
            vec!["reset: name what to reset", "reset counters"],
        ),
        (vec!["reset", "everything"], vec!["'everything'"]),
        // allow / deny: prefixes, missing arguments, --from files.
        (vec!["allow", "add", "10.0.0.0/33"], vec!["'10.0.0.0/33'"]),
        (
            vec!["deny", "remove", "10.0.0.0/8", "1.2.3.4/40"],
            vec!["'1.2.3.4/40'"],
        ),
        (vec!["deny", "replace", "fe80::/200"], vec!["'fe80::/200'"]),
        (vec!["allow", "add"], vec!["required", "<CIDRS>"]),
        (
            vec!["allow", "remove", "10.0.0.1/8", "::/-1"],
            vec!["'::/-1'"],
        ),
        (vec!["deny", "remove"], vec!["required", "<CIDRS>"]),
        (
            vec!["allow", "replace"],
            vec!["allow replace: no entries given"],
        ),
        (vec!["deny", "frobnicate"], vec!["'frobnicate'"]),
        (vec!["allow", "add", "--from", &missing], vec![&missing]),
        (
            vec!["allow", "replace", "--from", &bad_line],
            vec![&bad_line, ":3: bad address or prefix '10.300.0.0/16'"],
        ),
        (
            vec!["deny", "add", "--from", &two],
            vec![":1: '10.0.0.0/8 10.1.0.0/16': expected one address or prefix per line"],
        ),
        (
            vec!["deny", "replace", "--from", &empty],
            vec![&empty, "has no entries"],
        ),
        (
            vec!["allow", "add", "--from", &many],
            vec!["4097 distinct prefixes; at most 4096"],
        ),
        // global options and unknown subcommands.
        (vec!["frobnicate"], vec!["'frobnicate'"]),
        (vec!["status", "--bogus"], vec!["--bogus"]),
    ];
    rows.into_iter()
        .map(|(a, m)| {
            (
                a.into_iter().map(str::to_string).collect(),
                m.into_iter().map(str::to_string).collect(),
            )
        })
        .collect()
}

/// Valid commands: each reaches the open and is told the gate is not
/// running (exit code 3), whatever its check needs from the gate.
fn good_cases(f: &Files) -> Vec<Vec<String>> {
    let good = f.put(
        "good.txt",
        "\u{feff}# list\n10.0.0.0/8\n\n2001:db8::/32 # doc\n",
    );
    let rows: Vec<Vec<&str>> = vec![
        vec!["status"],
        vec!["status", "--json", "--count-keys"],
        vec!["top", "-n", "1000", "--by", "rate"],
        vec!["query", "2001:db8::1", "--json"],
        vec!["set", "--rate", "0.001", "--burst", "1000000"],
        vec!["set", "--global-rate", "off", "--global-burst", "0"],
        vec!["set", "--global-burst", "0"],
        // gate-core checks the global burst only while a global rate is
        // set: alone, it depends on the global rate in force.
        vec!["set", "--global-burst", "100000001"],
        // Needs the ban time in force to be checked: after the open.
        vec!["set", "--ban-threshold", "5"],
        vec![
            "set",
            "--ban-window",
            "1h",
            "--ban-time",
            "1day",
            "--max-delay",
            "1m",
        ],
        vec![
            "set",
            "--observe",
            "on",
            "--full-table",
            "fail-closed",
            "--persist",
        ],
        vec!["allow", "add", "10.0.0.0/8", "--persist"],
        vec!["allow", "add", "--from", &good],
        vec!["deny", "remove", "2001:db8::/32"],
        vec!["deny", "replace", "10.0.0.7/8", "10.0.0.0/8"],
        vec!["allow", "remove", "10.0.0.0/8", "--json"],
        vec!["allow", "replace", "--from", &good, "192.0.2.0/24"],
        vec!["allow", "list"],
        vec!["allow", "clear"],
        vec!["deny", "add", "2001:db8::/32"],
        vec!["deny", "clear", "--persist"],
        vec!["deny", "list", "--json"],
        vec!["ban", "10.0.0.1", "--for", "365days"],
        vec!["ban", "10.0.0.0/24", "--for", "1ms", "--json"],
        vec!["ban", "--list"],
        vec!["unban", "::/0", "--auto-only"],
        vec!["reset", "counters"],
        vec![
            "watch",
            "-n",
            "1000",
            "--iterations",
            "1",
            "--interval",
            "100ms",
        ],
    ];
    rows.into_iter()
        .map(|a| a.into_iter().map(str::to_string).collect())
        .collect()
}

#[test]
fn every_bad_argument_is_exit_2_before_the_gate_is_opened() {
    let f = Files::new("bad");
    let mut failures = Vec::new();
    for (args, wants) in bad_cases(&f) {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = gatectl(&a);
        let named = wants.iter().all(|w| r.stderr.contains(w.as_str()));
        let opened = r.stderr.contains("not running");
        if r.code != 2 || !named || opened {
            failures.push(format!(
                "{a:?}: exit {} (want 2), want {wants:?} in: {}",
                r.code,
                r.stderr.trim()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_valid_command_gets_as_far_as_the_open() {
    let f = Files::new("good");
    let mut failures = Vec::new();
    for args in good_cases(&f) {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = gatectl(&a);
        if r.code != 3 || !r.stderr.contains("the gate is not running") {
            failures.push(format!(
                "{a:?}: exit {} (want 3): {}",
                r.code,
                r.stderr.trim()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The subcommands `gatectl help` (and `allow|deny help`) lists.
fn subcommands(args: &[&str]) -> Vec<String> {
    let o = Command::new(env!("CARGO_BIN_EXE_gatectl"))
        .args(args)
        .output()
        .expect("run gatectl");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    text.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// The tables above cover every subcommand there is: one added later
/// without a row here fails this test, so its checks get one.
#[test]
fn the_tables_cover_every_subcommand() {
    let f = Files::new("cover");
    let bad = bad_cases(&f);
    let good = good_cases(&f);
    let covered = |path: &[&str], rows: &[Vec<String>]| {
        rows.iter().any(|r| {
            let cmd: Vec<&str> = r
                .iter()
                .map(String::as_str)
                .filter(|a| !a.starts_with('-'))
                .take(path.len())
                .collect();
            cmd == path
        })
    };
    let bad_args: Vec<Vec<String>> = bad.into_iter().map(|(a, _)| a).collect();
    let top = subcommands(&["help"]);
    assert!(top.len() >= 10, "{top:?}");
    let mut missing = Vec::new();
    for c in &top {
        let leaves = match c.as_str() {
            "allow" | "deny" => subcommands(&[c, "help"])
                .into_iter()
                .map(|s| vec![c.clone(), s])
                .collect(),
            _ => vec![vec![c.clone()]],
        };
        for leaf in leaves {
            let p: Vec<&str> = leaf.iter().map(String::as_str).collect();
            if !covered(&p, &good) {
                missing.push(format!("{p:?} has no valid row"));
            }
            // Commands that take no value have nothing to get wrong but
            // an unknown option.
            let takes_values = !matches!(p.as_slice(), ["status"] | [_, "list"] | [_, "clear"]);
            if takes_values && !covered(&p, &bad_args) {
                missing.push(format!("{p:?} has no bad-argument row"));
            }
        }
    }
    assert!(missing.is_empty(), "{missing:?}");
}
