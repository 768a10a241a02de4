//! The open-loop generator: one thread, one epoll instance, nonblocking
//! connect(). Attempts start on a fixed schedule whatever the target does;
//! each attempt's latency runs from its intended start (wrk2's
//! coordinated-omission correction). Connect deadlines are FIFO queues (every
//! attempt has the same patience), so no timer wheel is needed; slots and
//! queues are reused, so the steady state allocates nothing.

use crate::payload::{self, CHUNK, HEADER_BYTES, PATTERN_PERIOD};
use crate::report::{
    GroupReport, Outcome, PayloadMode, PayloadReport, Report, RunInfo, FORMAT, MAX_LATENCY_US,
};
use crate::scenario::{CloseMode, GroupKind, PayloadSpec, Scenario};
use crate::synflood::{self, RawSyn};
use crate::sys::{self, Epoll, Event, EV_ERR, EV_HUP, EV_IN, EV_OUT, EV_RDHUP};
use anyhow::{bail, Context, Result};
use socket2::{Domain, SockAddr, Socket, Type};
use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Options of one run beyond the scenario.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub target: SocketAddr,
    /// Print a progress line each second (only if stderr is a terminal).
    pub progress: bool,
    /// Most attempts in flight; further starts wait (and count as late).
    pub max_in_flight: usize,
    /// Pin the generator thread to this CPU.
    pub pin_cpu: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    Connecting,
    Confirming,
    /// Handshake done, payload exchange under way.
    Exchanging,
    /// A raw SYN is out, no answer yet.
    SynSent,
}

struct Slot {
    sock: Option<Socket>,
    state: State,
    gen: u32,
    group: u32,
    intended_ns: u64,
    started_ns: u64,
    handshake_ns: u64,
    /// Payload: bytes sent and received, first response byte's time (0:
    /// none yet), whether the request is all sent.
    sent: u64,
    recvd: u64,
    first_byte_ns: u64,
    out_done: bool,
    /// Syn-flood: the SYN's spoofed source and port.
    syn_src: Ipv4Addr,
    syn_port: u16,
}

/// Epoll token of the raw answer socket.
const RAW_TOKEN: u64 = u64::MAX;

/// What one round of payload I/O came to.
enum Io {
    Pending,
    Done,
    Failed(&'static str),
    Errno(i32),
}

/// Attempts started this many ns late count as late.
const LATE_NS: u64 = 1_000_000;
/// Most attempts started per loop turn, so completions are reaped in between.
const LAUNCH_BATCH: usize = 256;

struct Engine<'a> {
    sc: &'a Scenario,
    target: SockAddr,
    v6: bool,
    ep: Epoll,
    slots: Vec<Slot>,
    free: Vec<u32>,
    connect_q: VecDeque<(u64, u32, u32)>,
    confirm_q: VecDeque<(u64, u32, u32)>,
    /// Payload deadlines (handshake time + payload timeout: FIFO, since
    /// handshakes are handled in time order).
    io_q: VecDeque<(u64, u32, u32)>,
    payload: Option<PayloadSpec>,
    /// The pattern (see [`payload::pattern_buffer`]) and a read buffer.
    pat: Vec<u8>,
    rbuf: Vec<u8>,
    hdr: [u8; 8],
    /// Raw sockets, when a group is a syn-flood.
    raw: Option<RawSyn>,
    groups: Vec<GroupReport>,
    in_flight: usize,
    t0: Instant,
    max_lag_ns: u64,
    late: u64,
    /// Raw SYNs sent so far: picks each SYN's source port, so consecutive
    /// SYNs never share a 4-tuple (see [`synflood::source_port`]).
    syns_sent: u32,
    done: u64,
    fast: FastPath,
}

/// Whether to check for a handshake completed inside connect() (one
/// getpeername call) before registering with epoll. Worth it on loopback and
/// local links, where it nearly always hits; measured in windows of
/// [`FAST_WINDOW`] tries and switched off for [`FAST_OFF`] attempts when
/// fewer than half hit.
#[derive(Default)]
struct FastPath {
    tries: u32,
    hits: u32,
    off_for: u32,
}

const FAST_WINDOW: u32 = 256;
const FAST_OFF: u32 = 16_384;

fn errno_name(code: i32) -> String {
    match code {
        libc::ECONNREFUSED => "ECONNREFUSED".into(),
        libc::ETIMEDOUT => "ETIMEDOUT".into(),
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL".into(),
        libc::EADDRINUSE => "EADDRINUSE".into(),
        libc::ENETUNREACH => "ENETUNREACH".into(),
        libc::EHOSTUNREACH => "EHOSTUNREACH".into(),
        libc::ECONNRESET => "ECONNRESET".into(),
        libc::EMFILE => "EMFILE".into(),
        libc::ENFILE => "ENFILE".into(),
        libc::ENOBUFS => "ENOBUFS".into(),
        libc::EPERM => "EPERM".into(),
        libc::EACCES => "EACCES".into(),
        libc::EINVAL => "EINVAL".into(),
        c => format!("errno {c}"),
    }
}

impl Engine<'_> {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn record(&mut self, group: u32, outcome: Outcome, intended_ns: u64, now_ns: u64) {
        self.done += 1;
        let Some(g) = self.groups.get_mut(group as usize) else {
            return;
        };
        g.counts.bump(outcome);
        let us = (now_ns.saturating_sub(intended_ns) / 1000).clamp(1, MAX_LATENCY_US);
        if let Some(h) = g.latency_us.get_mut(outcome.name()) {
            h.0.saturating_record(us);
        }
        let sec = usize::try_from(intended_ns / 1_000_000_000).unwrap_or(usize::MAX);
        g.ensure_second(sec);
        if let Some(b) = g.per_second.get_mut(sec) {
            b[outcome.index()] += 1;
        }
        if outcome == Outcome::Accepted {
            if let Some(h) = g.per_second_latency_us.get_mut(sec) {
                h.0.saturating_record(us);
            }
        }
    }

    fn record_error(&mut self, group: u32, code: i32, intended_ns: u64, now_ns: u64) {
        let outcome = match code {
            libc::ECONNREFUSED => Outcome::Refused,
            _ => Outcome::Other,
        };
        if outcome == Outcome::Other {
            if let Some(g) = self.groups.get_mut(group as usize) {
                *g.errors.entry(errno_name(code)).or_insert(0) += 1;
            }
        }
        self.record(group, outcome, intended_ns, now_ns);
    }

    fn open(&self, src: IpAddr) -> std::io::Result<Socket> {
        let dom = if self.v6 { Domain::IPV6 } else { Domain::IPV4 };
        let s = Socket::new(dom, Type::STREAM.nonblocking().cloexec(), None)?;
        if self.sc.close == CloseMode::Rst {
            s.set_linger(Some(Duration::ZERO))?;
        }
        // Defer the port choice to connect(); the option is an IPPROTO_IP one
        // that IPv6 sockets accept too on current kernels (best effort there).
        match sys::set_bind_address_no_port(s.as_raw_fd()) {
            Err(e) if !self.v6 => return Err(e),
            _ => {}
        }
        s.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
        Ok(s)
    }

    fn fast_path_worth(&mut self) -> bool {
        if !self.sc.confirm.is_zero() || self.payload.is_some() {
            return false;
        }
        if self.fast.off_for > 0 {
            self.fast.off_for -= 1;
            return false;
        }
        true
    }

    fn fast_path_result(&mut self, hit: bool) {
        self.fast.tries += 1;
        self.fast.hits += u32::from(hit);
        if self.fast.tries >= FAST_WINDOW {
            if self.fast.hits * 2 < self.fast.tries {
                self.fast.off_for = FAST_OFF;
            }
            self.fast.tries = 0;
            self.fast.hits = 0;
        }
    }

    /// Records an attempt whose handshake completed within connect().
    fn accepted_at_once(&mut self, g: u32, intended: u64, started: u64, done: u64) {
        if let Some(gr) = self.groups.get_mut(g as usize) {
            let us = (done.saturating_sub(started) / 1000).clamp(1, MAX_LATENCY_US);
            gr.service_us.0.saturating_record(us);
        }
        self.record(g, Outcome::Accepted, intended, done);
    }

    /// Starts attempt `i` of group `g`.
    fn launch(&mut self, g: u32, i: u64) {
        let Some(group) = self.sc.groups.get(g as usize) else {
            return;
        };
        if group.kind == GroupKind::SynFlood {
            self.launch_syn(g, i);
            return;
        }
        let intended = group.intended_ns(i);
        let src = group.source(i);
        let now = self.now_ns();
        let lag = now.saturating_sub(intended);
        self.max_lag_ns = self.max_lag_ns.max(lag);
        if lag > LATE_NS {
            self.late += 1;
        }
        let sock = match self.open(src) {
            Ok(s) => s,
            Err(e) => {
                self.record_error(g, e.raw_os_error().unwrap_or(0), intended, now);
                return;
            }
        };
        match sock.connect(&self.target) {
            Ok(()) if self.sc.confirm.is_zero() && self.payload.is_none() => {
                let done = self.now_ns();
                self.accepted_at_once(g, intended, now, done);
                return;
            }
            // Connected at once but a confirm window or a payload is due:
            // epoll reports the connection writable at once.
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                if self.fast_path_worth() {
                    // On loopback and local links the handshake often completes
                    // inside connect(): a connected peer address proves it,
                    // saving the epoll registration and wake-up.
                    let hit = sock.peer_addr().is_ok();
                    self.fast_path_result(hit);
                    if hit {
                        let done = self.now_ns();
                        self.accepted_at_once(g, intended, now, done);
                        return;
                    }
                }
            }
            Err(e) => {
                let now = self.now_ns();
                self.record_error(g, e.raw_os_error().unwrap_or(0), intended, now);
                return;
            }
        }
        let idx = self.alloc_slot();
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return;
        };
        slot.gen = slot.gen.wrapping_add(1);
        let token = (u64::from(slot.gen) << 32) | u64::from(idx);
        if let Err(e) = self.ep.add(sock.as_raw_fd(), EV_OUT, token) {
            self.free.push(idx);
            self.record_error(g, e.raw_os_error().unwrap_or(0), intended, now);
            return;
        }
        slot.sock = Some(sock);
        slot.state = State::Connecting;
        slot.group = g;
        slot.intended_ns = intended;
        slot.started_ns = now;
        slot.sent = 0;
        slot.recvd = 0;
        slot.first_byte_ns = 0;
        slot.out_done = false;
        let deadline = now + u64::try_from(self.sc.connect_timeout.as_nanos()).unwrap_or(u64::MAX);
        self.connect_q.push_back((deadline, idx, slot.gen));
        self.in_flight += 1;
    }

    /// A free slot's index (a new slot when none is free).
    fn alloc_slot(&mut self) -> u32 {
        match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    sock: None,
                    state: State::Free,
                    gen: 0,
                    group: 0,
                    intended_ns: 0,
                    started_ns: 0,
                    handshake_ns: 0,
                    sent: 0,
                    recvd: 0,
                    first_byte_ns: 0,
                    out_done: false,
                    syn_src: Ipv4Addr::UNSPECIFIED,
                    syn_port: 0,
                });
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        }
    }

    /// Sends attempt `i` of syn-flood group `g` as a raw SYN.
    fn launch_syn(&mut self, g: u32, i: u64) {
        let Some(group) = self.sc.groups.get(g as usize) else {
            return;
        };
        let intended = group.intended_ns(i);
        let IpAddr::V4(src) = group.source(i) else {
            return;
        };
        let now = self.now_ns();
        let lag = now.saturating_sub(intended);
        self.max_lag_ns = self.max_lag_ns.max(lag);
        if lag > LATE_NS {
            self.late += 1;
        }
        let idx = self.alloc_slot();
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return;
        };
        slot.gen = slot.gen.wrapping_add(1);
        let port = synflood::source_port(self.syns_sent);
        self.syns_sent = self.syns_sent.wrapping_add(1);
        let Some(raw) = self.raw.as_mut() else {
            self.free.push(idx);
            return;
        };
        if let Err(e) = raw.send_syn(src, port, idx) {
            self.free.push(idx);
            self.record_error(g, e.raw_os_error().unwrap_or(libc::EIO), intended, now);
            return;
        }
        slot.state = State::SynSent;
        slot.group = g;
        slot.intended_ns = intended;
        slot.started_ns = now;
        slot.syn_src = src;
        slot.syn_port = port;
        let deadline = now + u64::try_from(self.sc.connect_timeout.as_nanos()).unwrap_or(u64::MAX);
        self.connect_q.push_back((deadline, idx, slot.gen));
        self.in_flight += 1;
    }

    /// Reads the target's answers to raw SYNs (at most [`LAUNCH_BATCH`] per
    /// call: the socket is level-triggered, so the rest wait for the next
    /// turn and due starts are not held up).
    fn on_raw(&mut self, now: u64) {
        for _ in 0..LAUNCH_BATCH {
            let Some(raw) = self.raw.as_mut() else {
                return;
            };
            let a = match raw.next_answer() {
                Ok(Some(a)) => a,
                Ok(None) | Err(_) => return,
            };
            let Some(slot) = self.slots.get_mut(a.slot as usize) else {
                continue;
            };
            if slot.state != State::SynSent || slot.syn_src != a.to || slot.syn_port != a.to_port {
                // A late or repeated answer to an attempt already ended.
                continue;
            }
            slot.handshake_ns = now;
            let outcome = if a.syn_ack {
                Outcome::Accepted
            } else {
                Outcome::Refused
            };
            self.finish(a.slot, outcome, None, now);
        }
    }

    /// Ends the attempt in slot `idx` with `outcome`.
    fn finish(&mut self, idx: u32, outcome: Outcome, errno: Option<i32>, now: u64) {
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return;
        };
        slot.state = State::Free;
        // Dropping the socket closes it (RST with SO_LINGER 0) and removes it
        // from the epoll set.
        slot.sock = None;
        let (g, intended, started, hs) = (
            slot.group,
            slot.intended_ns,
            slot.started_ns,
            slot.handshake_ns,
        );
        self.free.push(idx);
        self.in_flight -= 1;
        if outcome == Outcome::Accepted {
            if let Some(gr) = self.groups.get_mut(g as usize) {
                let us = (hs.saturating_sub(started) / 1000).clamp(1, MAX_LATENCY_US);
                gr.service_us.0.saturating_record(us);
            }
        }
        // Latency is the handshake's (or the give-up time), not the confirm wait.
        let at = if outcome == Outcome::Accepted || outcome == Outcome::Closed {
            hs
        } else {
            now
        };
        match errno {
            Some(code) => self.record_error(g, code, intended, at),
            None => self.record(g, outcome, intended, at),
        }
    }

    fn on_event(&mut self, ev: Event, now: u64) {
        if ev.token == RAW_TOKEN {
            self.on_raw(now);
            return;
        }
        let idx = (ev.token & 0xffff_ffff) as u32;
        let gen = (ev.token >> 32) as u32;
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return;
        };
        if slot.gen != gen || slot.state == State::Free {
            return;
        }
        match slot.state {
            State::Connecting => {
                // EPOLLOUT alone means connected; only an error or hang-up
                // needs SO_ERROR (one syscall saved per connection).
                let err = if ev.flags & (EV_ERR | EV_HUP) == 0 {
                    0
                } else {
                    match slot.sock.as_ref().map(|s| s.take_error()) {
                        Some(Ok(None)) => 0,
                        Some(Ok(Some(e))) => e.raw_os_error().unwrap_or(libc::EIO),
                        Some(Err(e)) => e.raw_os_error().unwrap_or(libc::EIO),
                        None => libc::EIO,
                    }
                };
                slot.handshake_ns = now;
                if err == libc::ECONNRESET || err == libc::EPIPE {
                    // An RST in SYN_SENT reads as ECONNREFUSED; a reset seen
                    // here came after the handshake: a post-accept rejection.
                    self.finish(idx, Outcome::Closed, None, now);
                } else if err != 0 {
                    self.finish(idx, Outcome::Other, Some(err), now);
                } else if self.payload.is_some() {
                    self.start_exchange(idx, ev.token, now);
                } else if self.sc.confirm.is_zero() {
                    self.finish(idx, Outcome::Accepted, None, now);
                } else {
                    let fd = slot.sock.as_ref().map(|s| s.as_raw_fd());
                    slot.state = State::Confirming;
                    let token = ev.token;
                    let ok =
                        fd.is_some_and(|fd| self.ep.modify(fd, EV_IN | EV_RDHUP, token).is_ok());
                    if !ok {
                        self.finish(idx, Outcome::Other, Some(libc::EIO), now);
                        return;
                    }
                    let dl = now + u64::try_from(self.sc.confirm.as_nanos()).unwrap_or(u64::MAX);
                    self.confirm_q.push_back((dl, idx, gen));
                }
            }
            State::Confirming => {
                if ev.flags & (EV_RDHUP | EV_HUP | EV_ERR) != 0 {
                    self.finish(idx, Outcome::Closed, None, now);
                } else {
                    // The server sent data: it kept the connection.
                    self.finish(idx, Outcome::Accepted, None, now);
                }
            }
            State::Exchanging => self.exchange(idx, ev.token, now),
            State::Free | State::SynSent => {}
        }
    }

    /// The handshake of slot `idx` completed and a payload is due: records
    /// the accepted outcome (latency to the handshake) and starts sending.
    fn start_exchange(&mut self, idx: u32, token: u64, now: u64) {
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return;
        };
        let (g, intended, started) = (slot.group, slot.intended_ns, slot.started_ns);
        slot.state = State::Exchanging;
        let fd = slot.sock.as_ref().map(|s| s.as_raw_fd());
        if let Some(gr) = self.groups.get_mut(g as usize) {
            let us = (now.saturating_sub(started) / 1000).clamp(1, MAX_LATENCY_US);
            gr.service_us.0.saturating_record(us);
        }
        self.record(g, Outcome::Accepted, intended, now);
        let ok = fd.is_some_and(|fd| self.ep.modify(fd, EV_IN | EV_OUT | EV_RDHUP, token).is_ok());
        if !ok {
            self.end_exchange(idx, Io::Failed("epoll"), now);
            return;
        }
        let timeout = self.payload.as_ref().map(|p| p.timeout).unwrap_or_default();
        let dl = now + u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        let gen = (token >> 32) as u32;
        self.io_q.push_back((dl, idx, gen));
        self.exchange(idx, token, now);
    }

    /// Moves slot `idx`'s payload on as far as the socket allows.
    fn exchange(&mut self, idx: u32, token: u64, now: u64) {
        let Some(spec) = self.payload.as_ref() else {
            return;
        };
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return;
        };
        let io = payload_io(
            slot,
            spec,
            &self.hdr,
            &self.pat,
            &mut self.rbuf,
            &self.ep,
            token,
            self.t0,
        );
        // The clock again for the end: `now` is when this batch of events
        // was taken, and a read loop may have moved many bytes since.
        let now = now.max(self.now_ns());
        if !matches!(io, Io::Pending) {
            self.end_exchange(idx, io, now);
        }
    }

    /// Ends slot `idx`'s exchange with `end` (done, or why it failed):
    /// records it and frees the slot.
    fn end_exchange(&mut self, idx: u32, end: Io, now: u64) {
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return;
        };
        slot.state = State::Free;
        slot.sock = None;
        let (g, hs, first, sent, recvd) = (
            slot.group,
            slot.handshake_ns,
            slot.first_byte_ns,
            slot.sent,
            slot.recvd,
        );
        self.free.push(idx);
        self.in_flight -= 1;
        let Some(p) = self
            .groups
            .get_mut(g as usize)
            .and_then(|g| g.payload.as_mut())
        else {
            return;
        };
        p.bytes_sent += sent;
        p.bytes_received += recvd;
        let cause = match end {
            Io::Done | Io::Pending => {
                p.completed += 1;
                if first != 0 {
                    let us = (first.saturating_sub(hs) / 1000).clamp(1, MAX_LATENCY_US);
                    p.ttfb_us.0.saturating_record(us);
                }
                let ns = now.saturating_sub(hs);
                p.transfer_us
                    .0
                    .saturating_record((ns / 1000).clamp(1, MAX_LATENCY_US));
                p.transfer_s_sum += ns as f64 / 1e9;
                return;
            }
            Io::Failed(cause) => cause,
            Io::Errno(libc::ECONNRESET | libc::EPIPE) => "reset",
            Io::Errno(code) => {
                // Rare: the name is built only for an errno without a cause.
                *p.failed.entry(errno_name(code)).or_insert(0) += 1;
                return;
            }
        };
        // Counted without allocating once the cause has been seen.
        if let Some(c) = p.failed.get_mut(cause) {
            *c += 1;
        } else {
            p.failed.insert(cause.to_string(), 1);
        }
    }

    fn expire(&mut self, now: u64) {
        while let Some(&(dl, idx, gen)) = self.connect_q.front() {
            if dl > now {
                break;
            }
            self.connect_q.pop_front();
            if let Some(s) = self.slots.get(idx as usize) {
                if s.gen == gen && (s.state == State::Connecting || s.state == State::SynSent) {
                    self.finish(idx, Outcome::TimedOut, None, now);
                }
            }
        }
        while let Some(&(dl, idx, gen)) = self.io_q.front() {
            if dl > now {
                break;
            }
            self.io_q.pop_front();
            if let Some(s) = self.slots.get(idx as usize) {
                if s.gen == gen && s.state == State::Exchanging {
                    self.end_exchange(idx, Io::Failed("timed_out"), now);
                }
            }
        }
        while let Some(&(dl, idx, gen)) = self.confirm_q.front() {
            if dl > now {
                break;
            }
            self.confirm_q.pop_front();
            if let Some(s) = self.slots.get(idx as usize) {
                if s.gen == gen && s.state == State::Confirming {
                    self.finish(idx, Outcome::Accepted, None, now);
                }
            }
        }
    }
}

/// Outcome of [`run`]: the report and the generator thread's CPU time.
pub struct RunResult {
    pub report: Report,
    pub cpu: sys::CpuTimes,
    pub wall: Duration,
}

/// Runs the scenario against `opts.target`, on the calling thread.
pub fn run(sc: &Scenario, opts: &RunOptions) -> Result<RunResult> {
    let v6 = opts.target.is_ipv6();
    for g in &sc.groups {
        if g.sources.has_family(!v6) {
            bail!(
                "group {:?}: sources include {} addresses but the target {} is {}",
                g.name,
                if v6 { "IPv4" } else { "IPv6" },
                opts.target,
                if v6 { "IPv6" } else { "IPv4" }
            );
        }
    }
    let raw = if sc.groups.iter().any(|g| g.kind == GroupKind::SynFlood) {
        synflood::check_allowed(opts.target)?;
        Some(RawSyn::new(opts.target)?)
    } else {
        None
    };
    if let Some(cpu) = opts.pin_cpu {
        sys::pin_to_cpu(cpu).with_context(|| format!("pinning to CPU {cpu}"))?;
    }
    // Each attempt in flight holds a descriptor: stay under the limit.
    let nofile = sys::raise_nofile_limit().unwrap_or(1024);
    let max_in_flight = opts
        .max_in_flight
        .min(usize::try_from(nofile.saturating_sub(64)).unwrap_or(usize::MAX))
        .max(1);
    let seconds = usize::try_from(sc.last_due().as_secs()).unwrap_or(0) + 1;
    let groups = sc
        .groups
        .iter()
        .map(|g| {
            let mut r = GroupReport::new(&g.name, g.count, seconds);
            r.payload = sc
                .payload
                .as_ref()
                .map(|p| PayloadReport::new(p.mode, p.request_bytes, p.response_bytes));
            r
        })
        .collect();
    let expected_in_flight = sc
        .groups
        .iter()
        .map(|g| g.rate * (sc.connect_timeout + sc.confirm).as_secs_f64())
        .sum::<f64>()
        .min(max_in_flight as f64) as usize;
    let mut e = Engine {
        sc,
        target: SockAddr::from(opts.target),
        v6,
        ep: Epoll::new().context("epoll_create1")?,
        slots: Vec::with_capacity(expected_in_flight + 16),
        free: Vec::with_capacity(expected_in_flight + 16),
        connect_q: VecDeque::with_capacity(expected_in_flight + 16),
        confirm_q: VecDeque::with_capacity(expected_in_flight + 16),
        io_q: VecDeque::with_capacity(if sc.payload.is_some() {
            expected_in_flight + 16
        } else {
            0
        }),
        payload: sc.payload.clone(),
        pat: if sc.payload.is_some() {
            payload::pattern_buffer()
        } else {
            Vec::new()
        },
        rbuf: if sc.payload.is_some() {
            vec![0u8; CHUNK]
        } else {
            Vec::new()
        },
        hdr: sc
            .payload
            .as_ref()
            .map(|p| payload::header(p.request_bytes, p.response_bytes))
            .unwrap_or_default(),
        raw,
        groups,
        in_flight: 0,
        t0: Instant::now() + Duration::from_millis(5),
        max_lag_ns: 0,
        late: 0,
        syns_sent: 0,
        done: 0,
        fast: FastPath::default(),
    };
    let started_unix_ms = u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(0)
        + 5;
    // The schedule starts at t0: wait for it, or the first attempts would
    // start early and show a latency of zero.
    if let Some(fd) = e.raw.as_ref().map(|r| r.recv_fd()) {
        e.ep.add(fd, EV_IN, RAW_TOKEN)
            .context("epoll add raw socket")?;
    }
    std::thread::sleep(e.t0.saturating_duration_since(Instant::now()));
    let cpu0 = sys::thread_cpu()?;
    let n = sc.groups.len();
    let mut next = vec![0u64; n];
    let mut due: Vec<u64> = sc.groups.iter().map(|g| g.intended_ns(0)).collect();
    let total = sc.total_attempts();
    let mut launched = 0u64;
    let mut scratch = Vec::new();
    let mut events = Vec::with_capacity(1024);
    let show = opts.progress && std::io::stderr().is_terminal();
    let mut bar = show.then(|| {
        crate::progress::Progress::new(
            total,
            sc.last_due(),
            sc.connect_timeout
                + sc.confirm
                + sc.payload.as_ref().map(|p| p.timeout).unwrap_or_default(),
        )
    });
    let mut next_progress = 0u64;
    // Hard stop (a guard against bugs, not a limit on slow runs): once all
    // attempts have started, every one ends within its patience plus the
    // confirm window.
    let io_timeout = sc.payload.as_ref().map(|p| p.timeout).unwrap_or_default();
    let grace = u64::try_from(
        (sc.connect_timeout + sc.confirm + io_timeout + Duration::from_secs(5)).as_nanos(),
    )
    .unwrap_or(u64::MAX);
    let mut hard_stop = u64::MAX;
    loop {
        let now = e.now_ns();
        // Start every attempt that is due (bounded per turn).
        let mut started = 0usize;
        let mut backlog = false;
        for g in 0..n {
            while next[g] < sc.groups[g].count && due[g] <= now {
                if e.in_flight >= max_in_flight {
                    // Wait for a completion or a deadline, not a spin.
                    break;
                }
                if started >= LAUNCH_BATCH {
                    backlog = true;
                    break;
                }
                e.launch(g as u32, next[g]);
                next[g] += 1;
                due[g] = sc.groups[g].intended_ns(next[g]);
                started += 1;
                launched += 1;
            }
        }
        let now = e.now_ns();
        e.expire(now);
        if launched == total {
            if e.in_flight == 0 {
                break;
            }
            if hard_stop == u64::MAX {
                hard_stop = now.saturating_add(grace);
            }
        }
        if now > hard_stop {
            bail!(
                "run did not finish by its hard stop ({} in flight)",
                e.in_flight
            );
        }
        if let Some(p) = bar.as_mut().filter(|_| now >= next_progress) {
            next_progress = now + crate::progress::REFRESH_NS;
            p.update(
                now,
                launched,
                e.in_flight,
                &total_counts(&e.groups),
                e.max_lag_ns,
            );
        }
        // Sleep until the next start, the next deadline, or an event.
        let mut wake = u64::MAX;
        if backlog {
            wake = now;
        } else if e.in_flight < max_in_flight {
            for g in 0..n {
                if next[g] < sc.groups[g].count {
                    wake = wake.min(due[g]);
                }
            }
        }
        if let Some(&(dl, _, _)) = e.connect_q.front() {
            wake = wake.min(dl);
        }
        if let Some(&(dl, _, _)) = e.confirm_q.front() {
            wake = wake.min(dl);
        }
        if let Some(&(dl, _, _)) = e.io_q.front() {
            wake = wake.min(dl);
        }
        if bar.is_some() {
            wake = wake.min(next_progress);
        }
        let timeout = Duration::from_nanos(wake.saturating_sub(now).min(1_000_000_000));
        e.ep.wait(&mut scratch, &mut events, Some(timeout))
            .context("epoll_wait")?;
        if !events.is_empty() {
            let now = e.now_ns();
            for ev in &events {
                e.on_event(*ev, now);
            }
        }
    }
    if let Some(p) = bar {
        p.finish(launched, &total_counts(&e.groups), e.max_lag_ns);
    }
    let cpu1 = sys::thread_cpu()?;
    let wall = e.t0.elapsed();
    let cpu = sys::CpuTimes {
        user: cpu1.user.saturating_sub(cpu0.user),
        system: cpu1.system.saturating_sub(cpu0.system),
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let report = Report {
        format: FORMAT.to_string(),
        scenario: sc.name.clone(),
        target: opts.target.to_string(),
        runs: vec![RunInfo {
            host,
            started_unix_ms,
            wall_s: wall.as_secs_f64(),
            max_lag_us: e.max_lag_ns / 1000,
            late_attempts: e.late,
            cpu_user_s: cpu.user.as_secs_f64(),
            cpu_system_s: cpu.system.as_secs_f64(),
        }],
        groups: e.groups,
    };
    Ok(RunResult { report, cpu, wall })
}

/// One round of payload I/O on `slot`: writes the request as far as the
/// socket takes it (header first for request-response; then half-closes for
/// bulk), then reads and checks what arrived against the pattern.
#[allow(clippy::too_many_arguments)]
fn payload_io(
    slot: &mut Slot,
    spec: &PayloadSpec,
    hdr: &[u8; 8],
    pat: &[u8],
    rbuf: &mut [u8],
    ep: &Epoll,
    token: u64,
    t0: Instant,
) -> Io {
    use std::io::{ErrorKind, Read};
    let Some(sock) = slot.sock.as_mut() else {
        return Io::Failed("closed_early");
    };
    while slot.sent < spec.request_bytes {
        let data: &[u8] = if spec.mode == PayloadMode::RequestResponse && slot.sent < HEADER_BYTES {
            hdr.get(slot.sent as usize..).unwrap_or_default()
        } else {
            let start = (slot.sent % PATTERN_PERIOD as u64) as usize;
            let len = (spec.request_bytes - slot.sent).min(CHUNK as u64) as usize;
            pat.get(start..start + len).unwrap_or_default()
        };
        match sock.write(data) {
            Ok(0) => return Io::Failed("closed_early"),
            Ok(n) => slot.sent += n as u64,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Io::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }
    if slot.sent >= spec.request_bytes && !slot.out_done {
        slot.out_done = true;
        if spec.mode == PayloadMode::Bulk {
            if let Err(e) = sock.shutdown(std::net::Shutdown::Write) {
                return Io::Errno(e.raw_os_error().unwrap_or(libc::EIO));
            }
        }
        // Nothing more to write: stop asking for writability.
        if ep
            .modify(sock.as_raw_fd(), EV_IN | EV_RDHUP, token)
            .is_err()
        {
            return Io::Failed("epoll");
        }
    }
    loop {
        match sock.read(rbuf) {
            Ok(0) => {
                return if spec.mode == PayloadMode::Bulk && slot.out_done {
                    Io::Done
                } else {
                    Io::Failed("closed_early")
                };
            }
            Ok(n) => {
                if slot.first_byte_ns == 0 {
                    // Read the clock at the first byte itself.
                    let now = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    slot.first_byte_ns = now.max(1);
                }
                let got = rbuf.get(..n).unwrap_or_default();
                if spec.mode == PayloadMode::Bulk
                    || payload::first_mismatch(got, slot.recvd).is_some()
                {
                    // A sink sends nothing; echo and responses are the pattern.
                    return Io::Failed("mismatch");
                }
                slot.recvd += n as u64;
                if slot.recvd > spec.response_bytes {
                    return Io::Failed("mismatch");
                }
                if slot.recvd == spec.response_bytes && slot.out_done {
                    return Io::Done;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Io::Pending,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Io::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }
}

/// Outcome counts of all groups together.
fn total_counts(groups: &[GroupReport]) -> crate::report::Counts {
    let mut c = crate::report::Counts::default();
    for g in groups {
        c.accepted += g.counts.accepted;
        c.refused += g.counts.refused;
        c.timed_out += g.counts.timed_out;
        c.closed += g.counts.closed;
        c.other += g.counts.other;
    }
    c
}
