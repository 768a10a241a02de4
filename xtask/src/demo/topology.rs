//! The demo's network and its backend: three namespaces it makes and
//! removes, and nginx (Debian's, not ours) serving a generated site.
//!
//! ```text
//!  gl-demo-c (clients)          gl-demo-s (the gate)             gl-demo-b (backend)
//!  sources 10.77.128.0/18  ---  10.77.0.1:8080 gate-sim   ---    10.78.0.2:8081 nginx
//!  10.77.0.2                    10.78.0.1  (relay, PROXY v1)     (listen ... proxy_protocol)
//! ```
//!
//! The clients cannot reach the backend (no route, no forwarding): every
//! byte they get from nginx went through the gate's relay. The client and
//! gate namespaces are load-tests' topology (its library); the backend
//! namespace and its link are added here.

use anyhow::{bail, Context, Result};
use load_tests::topology::{sh, Topology};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// load-tests topology names: namespaces gl-NAME-c, gl-NAME-s and the
/// backend's gl-NAME-b (the root demo's, and the Wine demo's, so that the
/// two never remove each other's namespaces).
pub const NAME: &str = "demo";
pub const WINE_NAME: &str = "demow";
/// Source addresses in the client namespace (10.77.128.0/18).
pub const ADDRESSES: u32 = 16_000;
/// The gate's address on the backend link, and the backend's.
pub const GATE_BACKEND_SIDE: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
pub const BACKEND_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 78, 0, 2), 8081);
/// The gate's listening address (load-tests' server address).
pub const GATE_ADDR: SocketAddrV4 = SocketAddrV4::new(load_tests::topology::SERVER_ADDR, 8080);

/// The three namespaces; removed on drop.
pub struct Net {
    pub topo: Topology,
    backend_ns: String,
}

impl Net {
    /// Makes the namespaces of topology `name` (replacing leftovers of an
    /// earlier run).
    pub fn up(name: &str) -> Result<Net> {
        let backend_ns = format!("gl-{name}-b");
        let _ = sh(&["ip", "netns", "del", &backend_ns]);
        let topo = Topology::up(name, ADDRESSES).context("client and gate namespaces")?;
        let net = Net { topo, backend_ns };
        let (s, b_ns) = (net.topo.server_ns(), net.backend_ns.as_str());
        let gate_if = format!("gl{name}b0");
        let be_if = format!("gl{name}b1");
        sh(&["ip", "netns", "add", b_ns])?;
        sh(&[
            "ip", "link", "add", &gate_if, "netns", &s, "type", "veth", "peer", "name", &be_if,
            "netns", b_ns,
        ])?;
        let g = format!("{GATE_BACKEND_SIDE}/24");
        let b = format!("{}/24", BACKEND_ADDR.ip());
        sh(&["ip", "-n", &s, "addr", "add", &g, "dev", &gate_if])?;
        sh(&["ip", "-n", b_ns, "addr", "add", &b, "dev", &be_if])?;
        sh(&["ip", "-n", &s, "link", "set", &gate_if, "up"])?;
        sh(&["ip", "-n", b_ns, "link", "set", &be_if, "up"])?;
        sh(&["ip", "-n", b_ns, "link", "set", "lo", "up"])?;
        Ok(net)
    }

    pub fn backend_ns(&self) -> &str {
        &self.backend_ns
    }

    /// One line naming the namespaces and what runs where (`gate_note`:
    /// what runs in the gate's).
    pub fn describe(&self, gate_note: &str, nginx_pid: u32) -> String {
        format!(
            "namespaces: clients {} (sources {}), gate {} ({}{gate_note}), backend {} (nginx {} pid {nginx_pid}, PROXY protocol on)",
            self.client_ns(),
            self.topo.sources_cidr(),
            self.gate_ns(),
            GATE_ADDR,
            self.backend_ns(),
            BACKEND_ADDR,
        )
    }

    pub fn client_ns(&self) -> String {
        self.topo.client_ns()
    }

    pub fn gate_ns(&self) -> String {
        self.topo.server_ns()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.backend_ns]);
        let _ = self.topo.down();
    }
}

/// One page of the generated site.
#[derive(Clone, Debug)]
pub struct Page {
    /// URL path, e.g. "/pages/64k.bin".
    pub path: String,
    pub body: Vec<u8>,
}

/// Deterministic, position-dependent bytes (a misplaced or dropped byte
/// shows): xorshift of the page's seed and offset.
fn page_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The site: an HTML index and binary pages of 1 KiB, 64 KiB and 1 MiB.
pub fn site() -> Vec<Page> {
    let mut pages = vec![Page {
        path: "/index.html".into(),
        body: b"<!doctype html>\n<title>gate demo</title>\n<h1>Served by nginx behind the gate</h1>\n<p>Every byte of this page crossed the gate's relay.</p>\n".to_vec(),
    }];
    for (i, (name, len)) in [("1k", 1024), ("64k", 64 << 10), ("1m", 1 << 20)]
        .into_iter()
        .enumerate()
    {
        pages.push(Page {
            path: format!("/pages/{name}.bin"),
            body: page_bytes(0x6a7e_0000 + i as u64, len),
        });
    }
    pages
}

/// nginx serving the site in the backend namespace, stopped on drop.
pub struct Nginx {
    child: Child,
    netns: String,
    pub access_log: PathBuf,
    /// The worker processes' PIDs seen so far (children of the master),
    /// stopped by PID too: a worker outlives a master killed from outside.
    workers: Vec<i32>,
}

/// The PIDs of `parent`'s children (`/proc/*/stat`, field 4).
fn children_of(parent: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) state ppid ...": comm may hold spaces, so after ')'.
        let ppid: i32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == parent).then_some(pid)
    })
    .collect()
}

/// Whether `pid` is still an nginx worker (not a reused PID).
fn is_nginx_worker(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).starts_with("nginx: worker process"))
        .unwrap_or(false)
}

/// The nginx configuration: PROXY protocol on the listener, the client's
/// real address ($proxy_protocol_addr) and the relay's ($remote_addr) in
/// the access log. `header_timeout_s`: nginx's `client_header_timeout`
/// (its default is 60 s).
pub fn nginx_conf(dir: &Path, header_timeout_s: u32) -> String {
    let d = dir.display();
    format!(
        r#"# Written by cargo xtask demo.
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    log_format demo '$proxy_protocol_addr $remote_addr "$request" $status $body_bytes_sent';
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    types {{ text/html html; application/octet-stream bin; }}
    server {{
        listen {BACKEND_ADDR} proxy_protocol;
        root {d}/site;
        access_log {d}/access.log demo;
        keepalive_timeout 0;
        client_header_timeout {header_timeout_s}s;
    }}
}}
"#
    )
}

impl Nginx {
    /// Writes the site and the configuration under `dir` and starts nginx
    /// (in the foreground, so the process we hold is its master) in the
    /// backend namespace `netns` with `client_header_timeout` =
    /// `header_timeout_s`; waits until it answers on its port.
    pub fn start(dir: &Path, pages: &[Page], netns: &str, header_timeout_s: u32) -> Result<Nginx> {
        let site = dir.join("site");
        for p in pages {
            let f = site.join(p.path.trim_start_matches('/'));
            if let Some(parent) = f.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&f, &p.body).with_context(|| format!("writing {}", f.display()))?;
        }
        std::fs::create_dir_all(dir.join("tmp"))?;
        // nginx's workers run as an unprivileged user: the site must be readable.
        sh(&["chmod", "-R", "a+rX", &dir.display().to_string()])?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, nginx_conf(dir, header_timeout_s))?;
        let test = Command::new("ip")
            .args(["netns", "exec", netns, "nginx", "-t", "-q", "-c"])
            .arg(&conf)
            .output()
            .context("running nginx -t")?;
        if !test.status.success() {
            bail!(
                "nginx refused the demo's configuration {}: {}",
                conf.display(),
                String::from_utf8_lossy(&test.stderr).trim()
            );
        }
        let log = std::fs::File::create(dir.join("nginx.stderr"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", netns, "nginx", "-c"])
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting nginx")?;
        let mut n = Nginx {
            child,
            netns: netns.to_string(),
            access_log: dir.join("access.log"),
            workers: Vec::new(),
        };
        // Ready when its port answers (from the gate's side of the link).
        let t = Instant::now();
        while !n.listening() {
            super::interrupt::check()?;
            if t.elapsed() > Duration::from_secs(10) {
                bail!(
                    "nginx did not listen on {BACKEND_ADDR} within 10 s (see {})",
                    dir.join("error.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        n.note_workers();
        Ok(n)
    }

    /// Records the master's current workers.
    fn note_workers(&mut self) {
        for w in children_of(self.child.id() as i32) {
            if !self.workers.contains(&w) {
                self.workers.push(w);
            }
        }
    }

    /// The workers seen that are still running.
    pub fn workers_left(&self) -> Vec<i32> {
        self.workers
            .iter()
            .copied()
            .filter(|&w| is_nginx_worker(w))
            .collect()
    }

    fn listening(&self) -> bool {
        sh(&["ip", "netns", "exec", &self.netns, "ss", "-Htln"])
            .map(|o| o.contains(&BACKEND_ADDR.to_string()))
            .unwrap_or(false)
    }

    /// The master's process id (`ip netns exec` execs nginx in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The access log's lines: (client address from the PROXY header,
    /// peer address, request, status, body bytes).
    pub fn access_lines(&self) -> Result<Vec<AccessLine>> {
        let text = std::fs::read_to_string(&self.access_log).unwrap_or_default();
        Ok(text.lines().filter_map(AccessLine::parse).collect())
    }

    /// Stops nginx by its PIDs: the master (SIGQUIT: graceful, it waits
    /// for its workers; SIGKILL after 5 s), then any worker it left (one
    /// whose master was killed from outside keeps serving): SIGQUIT, then
    /// SIGKILL after 2 s. Returns the workers still running after that
    /// (none, normally).
    pub fn stop(&mut self) -> Vec<i32> {
        if let Ok(None) = self.child.try_wait() {
            self.note_workers();
            let pid = self.child.id() as i32;
            // SAFETY: kill(2) on our own child's PID.
            unsafe { libc::kill(pid, libc::SIGQUIT) };
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        for (sig, wait) in [(libc::SIGQUIT, 2000), (libc::SIGKILL, 500)] {
            let left = self.workers_left();
            if left.is_empty() {
                break;
            }
            for w in left {
                // SAFETY: kill(2) on a PID just checked to be one of our
                // nginx's workers.
                unsafe { libc::kill(w, sig) };
            }
            let t = Instant::now();
            while !self.workers_left().is_empty() && t.elapsed() < Duration::from_millis(wait) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.workers_left()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// One access-log line (format `demo` above).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLine {
    pub proxy_addr: String,
    pub remote_addr: String,
    pub request: String,
    pub status: u16,
    pub bytes: u64,
}

impl AccessLine {
    pub fn parse(line: &str) -> Option<AccessLine> {
        let (proxy_addr, rest) = line.split_once(' ')?;
        let (remote_addr, rest) = rest.split_once(' ')?;
        let rest = rest.strip_prefix('"')?;
        let (request, rest) = rest.split_once("\" ")?;
        let mut it = rest.split_whitespace();
        Some(AccessLine {
            proxy_addr: proxy_addr.to_string(),
            remote_addr: remote_addr.to_string(),
            request: request.to_string(),
            status: it.next()?.parse().ok()?,
            bytes: it.next()?.parse().ok()?,
        })
    }
}

/// The backend as the driver's `BackendAddress` value.
pub fn backend_value() -> String {
    SocketAddr::V4(BACKEND_ADDR).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_lines_parse_and_bad_ones_are_skipped() {
        let l = AccessLine::parse(r#"10.77.133.1 10.78.0.1 "GET /pages/1k.bin HTTP/1.0" 200 1024"#)
            .unwrap();
        assert_eq!(l.proxy_addr, "10.77.133.1");
        assert_eq!(l.remote_addr, "10.78.0.1");
        assert_eq!(l.request, "GET /pages/1k.bin HTTP/1.0");
        assert_eq!((l.status, l.bytes), (200, 1024));
        assert!(AccessLine::parse("garbage").is_none());
    }

    #[test]
    fn pages_are_distinct_and_sized() {
        let s = site();
        assert_eq!(s.len(), 4);
        assert_eq!(s[3].body.len(), 1 << 20);
        assert_ne!(s[1].body[..1024], s[2].body[..1024]);
        let conf = nginx_conf(Path::new("/tmp/x"), 60);
        assert!(
            conf.contains("listen 10.78.0.2:8081 proxy_protocol;"),
            "{conf}"
        );
    }
}
