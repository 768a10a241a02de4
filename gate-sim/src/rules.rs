//! The NFQUEUE rules gate-sim installs in the namespace it serves, and
//! removes at exit: one chain per port (`gate-sim-<port>`) for IPv4
//! (iptables-nft) and IPv6 (ip6tables-nft), jumped to from INPUT for SYNs
//! to the port:
//!
//! ```text
//! -p tcp --syn -m mark --mark M -j REJECT --reject-with tcp-reset   (refused SYNs, sent back by NF_REPEAT)
//! -p tcp --syn -j NFQUEUE --queue-balance A:B [--queue-bypass]      (every other SYN to gate-sim)
//! ```
//!
//! Commands run as `ip netns exec NS ...`: never in the host's namespace.

use anyhow::{bail, Context, Result};
use std::process::Command;

/// Installed rules; removed on drop.
pub struct Rules {
    netns: String,
    port: u16,
    installed: Vec<&'static str>,
}

fn chain(port: u16) -> String {
    format!("gate-sim-{port}")
}

fn run(netns: &str, tool: &str, args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, tool, "-w"])
        .args(args)
        .output()
        .with_context(|| format!("running ip netns exec {netns} {tool}"))?;
    if !out.status.success() {
        bail!(
            "ip netns exec {netns} {tool} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The rule arguments for one family, in order.
pub fn rule_args(
    port: u16,
    queues: (u16, u16),
    mark: Option<u32>,
    bypass: bool,
) -> Vec<Vec<String>> {
    let c = chain(port);
    let mut v = vec![vec!["-N".to_string(), c.clone()]];
    if let Some(m) = mark {
        v.push(
            format!("-A {c} -p tcp --syn -m mark --mark {m:#x} -j REJECT --reject-with tcp-reset")
                .split(' ')
                .map(str::to_string)
                .collect(),
        );
    }
    let mut q: Vec<String> = format!("-A {c} -p tcp --syn -j NFQUEUE")
        .split(' ')
        .map(str::to_string)
        .collect();
    if queues.0 == queues.1 {
        q.extend(["--queue-num".to_string(), queues.0.to_string()]);
    } else {
        q.extend([
            "--queue-balance".to_string(),
            format!("{}:{}", queues.0, queues.1),
        ]);
    }
    if bypass {
        q.push("--queue-bypass".to_string());
    }
    v.push(q);
    v.push(
        format!("-I INPUT 1 -p tcp --dport {port} --syn -j {c}")
            .split(' ')
            .map(str::to_string)
            .collect(),
    );
    v
}

impl Rules {
    /// Installs the rules in `netns` (removing leftovers of an earlier run
    /// first). `mark`: the reject mark (None: refused SYNs are dropped).
    pub fn install(
        netns: &str,
        port: u16,
        queues: (u16, u16),
        mark: Option<u32>,
        bypass: bool,
    ) -> Result<Rules> {
        let mut r = Rules {
            netns: netns.to_string(),
            port,
            installed: Vec::new(),
        };
        for tool in ["iptables-nft", "ip6tables-nft"] {
            remove_one(netns, tool, port);
            for a in rule_args(port, queues, mark, bypass) {
                let a: Vec<&str> = a.iter().map(String::as_str).collect();
                run(netns, tool, &a)?;
            }
            r.installed.push(tool);
        }
        Ok(r)
    }
}

impl Rules {
    /// Packets that took the jump to gate-sim's chain so far (IPv4 and IPv6
    /// together): every SYN that reached INPUT for the port. A refused SYN
    /// sent back with NF_REPEAT passes twice.
    pub fn packets(&self) -> Result<u64> {
        let c = chain(self.port);
        let mut total = 0;
        for tool in &self.installed {
            let out = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.netns,
                    tool,
                    "-w",
                    "-L",
                    "INPUT",
                    "-v",
                    "-x",
                    "-n",
                ])
                .output()
                .with_context(|| format!("running {tool} -L INPUT"))?;
            total += parse_jump_packets(&String::from_utf8_lossy(&out.stdout), &c);
        }
        Ok(total)
    }
}

/// The packet count of the rule jumping to `chain` in `iptables -L -v -x -n`
/// output.
pub fn parse_jump_packets(listing: &str, chain: &str) -> u64 {
    listing
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some(chain))
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Removes the chain of `port` and its jump (errors ignored: it may not
/// exist).
fn remove_one(netns: &str, tool: &str, port: u16) {
    let c = chain(port);
    let p = port.to_string();
    let _ = run(
        netns,
        tool,
        &["-D", "INPUT", "-p", "tcp", "--dport", &p, "--syn", "-j", &c],
    );
    let _ = run(netns, tool, &["-F", &c]);
    let _ = run(netns, tool, &["-X", &c]);
}

impl Drop for Rules {
    fn drop(&mut self) {
        for tool in self.installed.drain(..) {
            remove_one(&self.netns, tool, self.port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_packets_are_read_from_the_listing() {
        let l = "Chain INPUT (policy ACCEPT 0 packets, 0 bytes)\n    pkts      bytes target     prot opt in     out     source               destination\n  145310  5812400 gate-sim-8080  6    --  *      *       0.0.0.0/0            0.0.0.0/0            tcp dpt:8080 flags:0x17/0x02\n";
        assert_eq!(parse_jump_packets(l, "gate-sim-8080"), 145_310);
        assert_eq!(parse_jump_packets(l, "gate-sim-80"), 0);
    }

    #[test]
    fn rules_reject_marked_syns_before_queueing() {
        let r = rule_args(8080, (0, 1), Some(0x67617465), false);
        let lines: Vec<String> = r.iter().map(|a| a.join(" ")).collect();
        assert_eq!(
            lines,
            vec![
                "-N gate-sim-8080",
                "-A gate-sim-8080 -p tcp --syn -m mark --mark 0x67617465 -j REJECT --reject-with tcp-reset",
                "-A gate-sim-8080 -p tcp --syn -j NFQUEUE --queue-balance 0:1",
                "-I INPUT 1 -p tcp --dport 8080 --syn -j gate-sim-8080",
            ]
        );
        let r = rule_args(80, (3, 3), None, true);
        assert_eq!(
            r[1].join(" "),
            "-A gate-sim-80 -p tcp --syn -j NFQUEUE --queue-num 3 --queue-bypass"
        );
    }
}
