//! Real pages through the relay: HTTP/1.0 GETs from the client namespace
//! to the gate, each from one of the page clients' own source addresses,
//! on a fixed schedule; every body is compared byte for byte with the page
//! the demo generated, and nginx's access log must show each fetch with
//! the client's real address (from the PROXY header the relay sent).

use super::scenario::PagePlan;
use super::topology::{AccessLine, Page, GATE_ADDR};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

/// One fetch's outcome.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Fetch {
    pub client: Ipv4Addr,
    pub path: String,
    /// "ok", "refused", "timed_out", "short", "wrong_bytes", "http_<status>", "error: ..."
    pub outcome: String,
    pub bytes: u64,
    /// Raw bytes written (the request) and read (headers and body).
    pub sent: u64,
    pub received: u64,
    /// From the intended start to the last byte, µs.
    pub latency_us: u64,
    /// First differing byte offset when the body was wrong.
    pub first_bad_byte: Option<u64>,
    /// Intended start, s from the load's start.
    pub intended_s: f64,
}

impl Fetch {
    pub fn connected(&self) -> bool {
        self.outcome != "refused" && self.outcome != "timed_out"
    }
    pub fn ok(&self) -> bool {
        self.outcome == "ok"
    }
}

/// Splits an HTTP response into status and body (after the blank line).
fn split_response(buf: &[u8]) -> Option<(u16, usize, Option<usize>)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(buf.get(..end)?).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let len = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok());
    Some((status, end + 4, len))
}

/// How a fetch knows the response ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadTo {
    /// The server's close (EOF): the relay must pass nginx's FIN on.
    Eof,
    /// The headers and `Content-Length` bytes, then the client closes (a
    /// relay that cannot half-close, as under Wine, where WskDisconnect is
    /// a stub, ends when the client does).
    ContentLength,
}

/// Reads a response from `t` as `to` says.
fn read_response(t: &mut TcpStream, to: ReadTo, buf: &mut Vec<u8>) -> std::io::Result<()> {
    if to == ReadTo::Eof {
        return t.read_to_end(buf).map(|_| ());
    }
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        if let Some((_, at, Some(len))) = split_response(buf) {
            if buf.len() >= at + len {
                return Ok(());
            }
        }
        let n = t.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

/// One GET of `page` from `src`; `intended` is when it was due.
pub fn fetch(src: Ipv4Addr, page: &Page, intended: Instant, to: ReadTo) -> Fetch {
    let mut f = Fetch {
        client: src,
        path: page.path.clone(),
        outcome: String::new(),
        bytes: 0,
        sent: 0,
        received: 0,
        latency_us: 0,
        first_bad_byte: None,
        intended_s: 0.0,
    };
    let mut sent = 0u64;
    let r = (|| -> std::io::Result<Vec<u8>> {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        s.bind(&SockAddr::from(SocketAddrV4::new(src, 0)))?;
        s.connect_timeout(
            &SockAddr::from(SocketAddr::V4(GATE_ADDR)),
            Duration::from_millis(700),
        )?;
        let mut t: TcpStream = s.into();
        t.set_read_timeout(Some(Duration::from_secs(5)))?;
        let req = format!(
            "GET {} HTTP/1.0\r\nHost: gate-demo\r\nUser-Agent: gate-demo\r\n\r\n",
            page.path
        );
        t.write_all(req.as_bytes())?;
        sent = req.len() as u64;
        let mut buf = Vec::with_capacity(page.body.len() + 512);
        read_response(&mut t, to, &mut buf)?;
        Ok(buf)
    })();
    f.latency_us = intended.elapsed().as_micros() as u64;
    f.sent = sent;
    match r {
        Err(e) => {
            f.outcome = match e.kind() {
                std::io::ErrorKind::ConnectionRefused => "refused".into(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "timed_out".into(),
                _ => format!("error: {e}"),
            }
        }
        Ok(buf) => {
            f.bytes = buf.len() as u64;
            f.received = buf.len() as u64;
            f.outcome = match split_response(&buf) {
                None => "short".into(),
                Some((200, at, len)) => {
                    let body = buf.get(at..).unwrap_or_default();
                    f.bytes = body.len() as u64;
                    if let Some(i) = body.iter().zip(&page.body).position(|(a, b)| a != b) {
                        f.first_bad_byte = Some(i as u64);
                        "wrong_bytes".into()
                    } else if body.len() != page.body.len() || len != Some(page.body.len()) {
                        f.first_bad_byte = Some(body.len().min(page.body.len()) as u64);
                        "short".into()
                    } else {
                        "ok".into()
                    }
                }
                Some((st, _, _)) => format!("http_{st}"),
            };
        }
    }
    f
}

/// Runs the plan from `t0` (on the calling thread, which must be in the
/// client namespace): pages in turn, each fetch at its intended time.
pub fn run(plan: &PagePlan, site: &[Page], t0: Instant, to: ReadTo) -> Vec<Fetch> {
    let mut out = Vec::new();
    for (k, (t, c)) in plan.schedule().into_iter().enumerate() {
        let due = t0 + Duration::from_secs_f64(t);
        if super::interrupt::sleep_until(due).is_err() {
            break;
        }
        let (Some(src), Some(page)) = (plan.clients.get(c), site.get(k % site.len().max(1))) else {
            continue;
        };
        let mut f = fetch(*src, page, due, to);
        f.intended_s = t;
        out.push(f);
    }
    out
}

/// What the pages came to.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PagesSummary {
    pub attempts: u64,
    pub connected: u64,
    pub refused: u64,
    pub timed_out: u64,
    pub verified: u64,
    pub failed: u64,
    pub bytes_verified: u64,
    /// Raw bytes the page clients sent and received on connected fetches.
    pub sent: u64,
    pub received: u64,
    /// Fetches that nginx logged with the client's own address as the
    /// PROXY-protocol address, and with the relay's address as the peer.
    pub proxy_addr_matched: u64,
    pub proxy_addr_missing: u64,
    pub latency_ms: Percentiles,
    /// The first [`BAD_LISTED`] wrong or short pages, each as "PATH from
    /// CLIENT: first wrong byte at OFFSET" (or "short: ...").
    pub bad: Vec<String>,
}

/// How many wrong or short pages [`PagesSummary::bad`] names.
pub const BAD_LISTED: usize = 5;

impl Fetch {
    /// This fetch as a wrong page, naming it: `None` if it is not one.
    pub fn wrong(&self) -> Option<String> {
        let at = self
            .first_bad_byte
            .map_or("?".to_string(), |b| b.to_string());
        match self.outcome.as_str() {
            "wrong_bytes" => Some(format!(
                "{} from {} at {:.2} s: first wrong byte at offset {at} (of {} read)",
                self.path, self.client, self.intended_s, self.bytes
            )),
            "short" => Some(format!(
                "{} from {} at {:.2} s: short, {} bytes of the body read, the first missing at offset {at}",
                self.path, self.client, self.intended_s, self.bytes
            )),
            o if self.connected() && !self.ok() => Some(format!(
                "{} from {} at {:.2} s: {o}",
                self.path, self.client, self.intended_s
            )),
            _ => None,
        }
    }
}

/// Latency percentiles, ms.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `us` (µs) in ms.
    pub fn of(us: &mut [u64]) -> Percentiles {
        us.sort_unstable();
        let at = |q: f64| -> f64 {
            if us.is_empty() {
                return 0.0;
            }
            let i = ((q * us.len() as f64).ceil() as usize).clamp(1, us.len()) - 1;
            us[i] as f64 / 1000.0
        };
        Percentiles {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// Counts the fetches and matches each verified one with an access-log
/// line carrying its client's address and path.
pub fn summarize(fetches: &[Fetch], log: &[AccessLine], relay_addr: Ipv4Addr) -> PagesSummary {
    let mut s = PagesSummary {
        attempts: fetches.len() as u64,
        ..PagesSummary::default()
    };
    let mut lines: Vec<Option<&AccessLine>> = log.iter().map(Some).collect();
    let mut lat = Vec::new();
    for f in fetches {
        s.sent += f.sent;
        s.received += f.received;
        match f.outcome.as_str() {
            "refused" => s.refused += 1,
            "timed_out" => s.timed_out += 1,
            _ => s.connected += 1,
        }
        if f.ok() {
            s.verified += 1;
            s.bytes_verified += f.bytes;
            lat.push(f.latency_us);
            let want = format!("GET {} HTTP/1.0", f.path);
            let hit = lines.iter_mut().find(|l| {
                l.is_some_and(|l| {
                    l.proxy_addr == f.client.to_string()
                        && l.remote_addr == relay_addr.to_string()
                        && l.request == want
                        && l.status == 200
                })
            });
            match hit {
                Some(slot) => {
                    *slot = None;
                    s.proxy_addr_matched += 1;
                }
                None => s.proxy_addr_missing += 1,
            }
        } else if f.connected() {
            s.failed += 1;
            if s.bad.len() < BAD_LISTED {
                s.bad.extend(f.wrong());
            }
        }
    }
    s.latency_ms = Percentiles::of(&mut lat);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_split_into_status_and_body() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX: y\r\n\r\nabc";
        assert_eq!(split_response(r), Some((200, r.len() - 3, Some(3))));
        assert_eq!(
            split_response(b"HTTP/1.1 404 Not Found\r\n\r\n").unwrap().0,
            404
        );
        assert_eq!(split_response(b"HTTP/1.1 200 OK\r\n"), None);
    }

    #[test]
    fn fetches_match_log_lines_once_each() {
        let f = |c: [u8; 4], outcome: &str| Fetch {
            client: Ipv4Addr::from(c),
            path: "/index.html".into(),
            outcome: outcome.into(),
            bytes: 10,
            sent: 60,
            received: 100,
            latency_us: 1000,
            first_bad_byte: None,
            intended_s: 0.0,
        };
        let mut wrong = f([10, 77, 133, 4], "wrong_bytes");
        wrong.path = "/pages/64k.bin".into();
        wrong.first_bad_byte = Some(1000);
        wrong.intended_s = 4.5;
        let fetches = vec![
            f([10, 77, 133, 1], "ok"),
            f([10, 77, 133, 1], "ok"),
            f([10, 77, 133, 2], "ok"),
            f([10, 77, 133, 3], "refused"),
            wrong,
        ];
        let line = |a: &str| AccessLine {
            proxy_addr: a.into(),
            remote_addr: "10.78.0.1".into(),
            request: "GET /index.html HTTP/1.0".into(),
            status: 200,
            bytes: 10,
        };
        // One line for .1 (the second fetch has none), one for .2 with a
        // wrong PROXY address.
        let log = vec![line("10.77.133.1"), line("10.78.0.1")];
        let s = summarize(&fetches, &log, Ipv4Addr::new(10, 78, 0, 1));
        assert_eq!((s.attempts, s.connected, s.refused), (5, 4, 1));
        assert_eq!((s.verified, s.failed, s.bytes_verified), (3, 1, 30));
        assert_eq!((s.proxy_addr_matched, s.proxy_addr_missing), (1, 2));
        // The wrong page is named: path, client, offset.
        assert_eq!(
            s.bad,
            ["/pages/64k.bin from 10.77.133.4 at 4.50 s: first wrong byte at offset 1000 (of 10 read)"]
        );
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).map(|x| x * 1000).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
    }
}
