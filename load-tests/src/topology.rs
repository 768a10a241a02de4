//! Network namespaces for load runs: `topology up` makes a client namespace
//! holding N source addresses and a server namespace, joined by a veth pair;
//! `topology down` removes them. Names carry the project prefix `gl-`. Also
//! the target check: the tool only connects to loopback or from inside a
//! namespace it made, unless told `--allow-any-target`.

use anyhow::{bail, Context, Result};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

/// Prefix of every namespace this tool makes.
pub const PREFIX: &str = "gl-";
/// Server address inside the server namespace.
pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// Client's own veth address.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// Most source addresses a client namespace holds (10.77.128.0/17).
pub const MAX_ADDRESSES: u32 = 32766;

/// Runs a command, failing with its text and stderr.
pub fn sh(args: &[&str]) -> Result<String> {
    let (cmd, rest) = args.split_first().context("empty command")?;
    let out = Command::new(cmd)
        .args(rest)
        .output()
        .with_context(|| format!("running {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Checks a topology name: 1..=12 of [a-z0-9] (interface names are short).
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 12
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        bail!("topology name {name:?} must be 1 to 12 characters of a-z and 0-9");
    }
    Ok(())
}

/// A client/server namespace pair.
#[derive(Clone, Debug)]
pub struct Topology {
    pub name: String,
    pub addresses: u32,
}

impl Topology {
    pub fn client_ns(&self) -> String {
        format!("{PREFIX}{}-c", self.name)
    }
    pub fn server_ns(&self) -> String {
        format!("{PREFIX}{}-s", self.name)
    }
    fn client_if(&self) -> String {
        format!("gl{}c", self.name)
    }
    fn server_if(&self) -> String {
        format!("gl{}s", self.name)
    }
    /// The client's source addresses as a CIDR block (local route on lo).
    pub fn sources_cidr(&self) -> String {
        // Smallest block whose host addresses (less network and broadcast)
        // cover the requested count.
        let mut host_bits = 2u32;
        while (1u32 << host_bits) - 2 < self.addresses {
            host_bits += 1;
        }
        format!("10.77.128.0/{}", 32 - host_bits)
    }

    /// Creates both namespaces (replacing any of the same name).
    pub fn up(name: &str, addresses: u32) -> Result<Self> {
        check_name(name)?;
        if addresses == 0 || addresses > MAX_ADDRESSES {
            bail!("addresses = {addresses} must be 1..={MAX_ADDRESSES}");
        }
        let t = Topology {
            name: name.to_string(),
            addresses,
        };
        t.down()?;
        let (c, s) = (t.client_ns(), t.server_ns());
        let (ci, si) = (t.client_if(), t.server_if());
        let res = (|| -> Result<()> {
            sh(&["ip", "netns", "add", &s])?;
            sh(&["ip", "netns", "add", &c])?;
            sh(&[
                "ip", "link", "add", &ci, "netns", &c, "type", "veth", "peer", "name", &si,
                "netns", &s,
            ])?;
            // A /24 on the link; the sources are routed via the client's
            // link address, so the server keeps one neighbour entry, not one
            // per source (the neighbour table is small and shared).
            let srv = format!("{SERVER_ADDR}/24");
            let cli = format!("{CLIENT_ADDR}/24");
            sh(&["ip", "-n", &s, "addr", "add", &srv, "dev", &si])?;
            sh(&["ip", "-n", &c, "addr", "add", &cli, "dev", &ci])?;
            for (ns, ifn) in [(&s, &si), (&c, &ci)] {
                sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
                sh(&["ip", "-n", ns, "link", "set", ifn, "up"])?;
            }
            let cidr = t.sources_cidr();
            sh(&[
                "ip", "-n", &c, "route", "add", "local", &cidr, "dev", "lo", "table", "local",
            ])?;
            let via = CLIENT_ADDR.to_string();
            sh(&["ip", "-n", &s, "route", "add", &cidr, "via", &via])?;
            Ok(())
        })();
        if let Err(e) = res {
            let _ = t.down();
            return Err(e);
        }
        Ok(t)
    }

    /// Removes both namespaces; absent ones are fine.
    pub fn down(&self) -> Result<()> {
        check_name(&self.name)?;
        for ns in [self.client_ns(), self.server_ns()] {
            if std::path::Path::new("/run/netns").join(&ns).exists() {
                sh(&["ip", "netns", "del", &ns])?;
            }
        }
        Ok(())
    }
}

/// Removes the namespaces on drop (for tests and the peers harness).
pub struct Guard(pub Topology);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.down();
    }
}

/// A single namespace with loopback up, deleted on drop.
pub struct NetnsGuard {
    pub name: String,
}

impl NetnsGuard {
    pub fn new(name: &str) -> Result<Self> {
        let name = format!("{PREFIX}{name}");
        let p = std::path::Path::new("/run/netns").join(&name);
        if p.exists() {
            sh(&["ip", "netns", "del", &name])?;
        }
        sh(&["ip", "netns", "add", &name])?;
        let g = NetnsGuard { name };
        sh(&["ip", "-n", &g.name, "link", "set", "lo", "up"])?;
        Ok(g)
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.name]);
    }
}

/// Runs `f` on a new thread that has entered namespace `ns` (by name under
/// /run/netns). Sockets it makes belong to that namespace.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<std::thread::JoinHandle<Result<T>>> {
    let path = std::path::Path::new("/run/netns").join(ns);
    let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    Ok(std::thread::spawn(move || {
        // SAFETY: `file` is an open namespace file for the whole call;
        // setns only changes the calling thread's network namespace.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if r != 0 {
            return Err(std::io::Error::last_os_error()).context("setns");
        }
        f()
    }))
}

/// Inode of the current thread's network namespace.
fn current_netns_inode() -> Option<u64> {
    std::fs::metadata("/proc/thread-self/ns/net")
        .ok()
        .map(|m| m.ino())
}

/// Whether we run inside a namespace this tool made (name starts `gl-`).
pub fn in_own_namespace() -> Option<String> {
    let cur = current_netns_inode()?;
    let dir = std::fs::read_dir("/run/netns").ok()?;
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(PREFIX) && std::fs::metadata(e.path()).ok()?.ino() == cur {
            return Some(name);
        }
    }
    None
}

/// Refuses targets outside loopback unless we run inside one of our own
/// namespaces or the user said `--allow-any-target`.
pub fn check_target(target: SocketAddr, allow_any: bool) -> Result<()> {
    let loopback = match target.ip() {
        IpAddr::V4(a) => a.is_loopback(),
        IpAddr::V6(a) => a.is_loopback(),
    };
    if loopback || allow_any || in_own_namespace().is_some() {
        return Ok(());
    }
    bail!(
        "refusing target {target}: it is not a loopback address and this process does not run \
         inside a namespace made by `gate-load topology up`. Load tests may only hit machines \
         you own: pass --allow-any-target to confirm that {target} is yours"
    )
}
