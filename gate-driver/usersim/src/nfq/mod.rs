//! NFQUEUE front (Linux only, cargo feature `nfq`): real TCP SYNs, queued
//! by an `iptables-nft ... --syn -j NFQUEUE --queue-balance A:B` rule,
//! become [`Sim::connect`] requests, and the driver's answer becomes the
//! packet's verdict before any SYN-ACK is sent:
//! - Accept → `NF_ACCEPT`: the kernel completes the handshake.
//! - Reject (or no listener) → by default `NF_REPEAT` with the reject mark
//!   ([`RejectMode::Reset`]): the packet goes through the hook again and a
//!   rule matching the mark answers it with a TCP reset, so a refused
//!   client sees "connection refused" at once, as user-mode conditional
//!   accept on Windows answers; [`RejectMode::Drop`] drops it instead (the
//!   client retransmits). A packet coming back with the mark (no reset rule
//!   installed) is dropped, never looped.
//! - Pend → the SYN is held until WskInspectComplete (accepted or rejected
//!   then), while retransmitted SYNs of the same connection (same sequence
//!   number) are dropped. A SYN of the same 4-tuple with another sequence
//!   number is a new connection: the held request gets WskAbortEvent (as
//!   when a client resets a pended connection), its SYN is dropped, and the
//!   new SYN is a new request ([`NfqStats::superseded`]).
//!
//! One thread per queue ([`FrontConfig::queues`]; spread SYNs over them with
//! `--queue-balance`), each sleeping in `poll(2)` on its queue and a wake-up
//! descriptor: packets are received in batches ([`netlink::BATCH`] per
//! `recvmmsg`), verdicts are sent in batches, and a held SYN is released as
//! soon as the driver resolves its request (the provider signals the wake-up
//! descriptor), with no polling. The netlink socket gets a large receive
//! buffer; packets the kernel could not queue are counted
//! ([`NfqStats::queue_dropped`], [`NfqStats::user_dropped`], from
//! `/proc/net/netfilter/nfnetlink_queue`). Fail-open
//! (`NFQA_CFG_F_FAIL_OPEN`: accept packets when the queue is full) is off by
//! default ([`FrontConfig::fail_open`]); the rule's `--queue-bypass` decides
//! what happens while no program is bound.
//!
//! Put the simulation in real-time mode ([`Sim::set_real_time`]) first.
//! Use network namespaces the test creates ([`enter_netns`]).

pub mod netlink;

use crate::wsk::RequestState;
use crate::{Request, Sim};
use netlink::{Packet, Queue, Verdict};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// What a rejected SYN gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectMode {
    /// `NF_REPEAT` with this mark: a rule matching it (installed before
    /// the NFQUEUE rule) answers with a TCP reset, e.g.
    /// `-p tcp --syn -m mark --mark M -j REJECT --reject-with tcp-reset`.
    Reset { mark: u32 },
    /// `NF_DROP`: the client retransmits its SYN.
    Drop,
}

/// The default reject mark (any value the namespace does not use).
pub const DEFAULT_REJECT_MARK: u32 = 0x6761_7465; // "gate"

/// How the front binds its queues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontConfig {
    /// Queue numbers, one thread each (the rule's `--queue-balance` range).
    pub queues: Vec<u16>,
    /// Netlink socket receive buffer, bytes (default 64 MiB).
    pub rcvbuf: usize,
    /// Packets the kernel queues per queue before dropping (or, with
    /// fail-open, accepting) more (default 65536).
    pub queue_maxlen: u32,
    /// `NFQA_CFG_F_FAIL_OPEN`: when a queue is full, accept packets without
    /// a decision instead of dropping them. Off by default: an anti-DoS
    /// gate that opens under load is no gate.
    pub fail_open: bool,
    pub reject: RejectMode,
    /// Handshake fidelity: with Some(t), an accepted request is held
    /// (`Accepted`) until the real handshake completes on a real listener
    /// ([`crate::wsk::real::Acceptor`]) and is then delivered with the real
    /// socket behind it; if it does not complete within t (a spoofed source
    /// never answers the SYN-ACK), the driver gets WskAbortEvent. With None,
    /// an accepted request is delivered at once, with no real socket.
    pub handshake_timeout: Option<Duration>,
}

impl FrontConfig {
    /// Queues `first..=last` with the defaults.
    pub fn queues(first: u16, last: u16) -> FrontConfig {
        FrontConfig {
            queues: (first..=last.max(first)).collect(),
            rcvbuf: 64 << 20,
            queue_maxlen: 65_536,
            fail_open: false,
            reject: RejectMode::Reset {
                mark: DEFAULT_REJECT_MARK,
            },
            handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
        }
    }
}

/// How long an accepted request waits for its handshake by default
/// (Windows gives up on a SYN-ACK after 2 retransmissions, ~9 s; a shorter
/// wait keeps the accepted-but-unfinished set of a spoofed flood small).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// Counters of a front, updated live (read them with [`Counters::snapshot`]).
#[derive(Debug, Default)]
pub struct Counters {
    syns: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    pended: AtomicU64,
    duplicates: AtomicU64,
    superseded: AtomicU64,
    other: AtomicU64,
    looped: AtomicU64,
    retransmits: AtomicU64,
    unserved: AtomicU64,
    batches: AtomicU64,
    enobufs: AtomicU64,
    queue_dropped: AtomicU64,
    user_dropped: AtomicU64,
}

/// Counters of one [`serve`] run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NfqStats {
    /// Distinct connection requests (first SYN of a 4-tuple in flight).
    pub syns: u64,
    pub accepted: u64,
    /// Requests refused (reset or dropped, per [`RejectMode`]).
    pub rejected: u64,
    /// Requests the driver pended (held SYNs).
    pub pended: u64,
    /// Retransmitted SYNs (same sequence number) dropped while their
    /// request was held.
    pub duplicates: u64,
    /// Held (pended) requests superseded by a SYN of the same 4-tuple with
    /// another sequence number (a new connection, RFC 9293 3.4): the held
    /// request got WskAbortEvent, its SYN was dropped, and the new SYN was
    /// decided as a new request (counted in `syns`).
    pub superseded: u64,
    /// Packets that were not a TCP SYN (accepted untouched).
    pub other: u64,
    /// Packets that came back with the reject mark (no reset rule): dropped.
    pub looped: u64,
    /// SYNs of an accepted request still waiting for its handshake with
    /// the same sequence number (a client's retransmission): accepted
    /// without a new request. (A SYN of that 4-tuple with another sequence
    /// number is a new connection: a new request, and the waiting one gets
    /// WskAbortEvent — see [`crate::wsk::real::syn_arrived`].)
    pub retransmits: u64,
    /// `recvmmsg` calls that returned packets.
    pub batches: u64,
    /// ENOBUFS on receive (the socket buffer overflowed).
    pub enobufs: u64,
    /// SYNs the kernel dropped because a queue was full.
    pub queue_dropped: u64,
    /// SYNs the kernel dropped because the netlink socket buffer was full.
    pub user_dropped: u64,
    /// SYNs still queued when the front stopped after draining for 2 s
    /// (dropped when the queue is unbound, or accepted with fail-open).
    pub unserved: u64,
}

impl NfqStats {
    /// Packets lost before the driver saw them.
    pub fn lost(&self) -> u64 {
        self.queue_dropped + self.user_dropped + self.unserved
    }
}

impl Counters {
    pub fn snapshot(&self) -> NfqStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NfqStats {
            syns: l(&self.syns),
            accepted: l(&self.accepted),
            rejected: l(&self.rejected),
            pended: l(&self.pended),
            duplicates: l(&self.duplicates),
            superseded: l(&self.superseded),
            other: l(&self.other),
            looped: l(&self.looped),
            retransmits: l(&self.retransmits),
            batches: l(&self.batches),
            enobufs: l(&self.enobufs),
            queue_dropped: l(&self.queue_dropped),
            user_dropped: l(&self.user_dropped),
            unserved: l(&self.unserved),
        }
    }
}

fn inc(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// A TCP SYN as the front sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syn {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// Its sequence number (the client's ISN): a retransmission repeats
    /// it, a new connection on the same 4-tuple has another.
    pub isn: u32,
}

/// The TCP SYN (SYN set, ACK clear) in an IPv4 or IPv6 packet (possibly
/// cut at the copy range); None for anything else. Parsed with etherparse
/// (IPv6 extension headers included).
pub fn parse_syn(packet: &[u8]) -> Option<Syn> {
    use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};
    let p = LaxSlicedPacket::from_ip(packet).ok()?;
    let (src, dst): (IpAddr, IpAddr) = match p.net? {
        LaxNetSlice::Ipv4(v4) => {
            let h = v4.header();
            (h.source_addr().into(), h.destination_addr().into())
        }
        LaxNetSlice::Ipv6(v6) => {
            let h = v6.header();
            (h.source_addr().into(), h.destination_addr().into())
        }
        LaxNetSlice::Arp(_) => return None,
    };
    let TransportSlice::Tcp(tcp) = p.transport? else {
        return None;
    };
    if !tcp.syn() || tcp.ack() {
        return None;
    }
    Some(Syn {
        src: SocketAddr::new(src, tcp.source_port()),
        dst: SocketAddr::new(dst, tcp.destination_port()),
        isn: tcp.sequence_number(),
    })
}

/// The verdict for a request: Some(accept?) once decided, None while held.
pub fn decision(state: RequestState) -> Option<bool> {
    match state {
        RequestState::Inspecting | RequestState::Pended => None,
        RequestState::Accepted | RequestState::Established => Some(true),
        RequestState::NoListener
        | RequestState::Rejected
        | RequestState::AcceptRefused
        | RequestState::CompletedReject
        | RequestState::Aborted
        | RequestState::Dropped
        | RequestState::Retired => Some(false),
    }
}

/// Moves the calling thread into the network namespace `name` (made with
/// `ip netns add name`): sockets it opens afterwards live there.
pub fn enter_netns(name: &str) -> io::Result<()> {
    let f = std::fs::File::open(format!("/var/run/netns/{name}"))?;
    // SAFETY: setns on a valid namespace fd affects only this thread.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Wake-up descriptors of the running queue threads, and which thread
/// holds which pended request (so the provider's resolution wakes only it).
struct Wakeups {
    fds: Vec<i32>,
    held: HashMap<(usize, u32), usize>,
    /// Room reserved in `held` (see [`crate::churn::Room`]).
    held_room: crate::churn::Room,
    resolved: Vec<Vec<(usize, u32)>>,
}

static WAKE: RwLock<Option<Mutex<Wakeups>>> = RwLock::new(None);

fn signal(fd: i32) {
    let one: u64 = 1;
    // SAFETY: write(2) of 8 bytes to an eventfd (async-signal-safe).
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// The provider's hook: a request changed state; if a queue thread holds
/// its SYN, hand it the key and wake it.
fn on_resolved(rk: (usize, u32)) {
    let g = WAKE.read().unwrap_or_else(|e| e.into_inner());
    let Some(w) = g.as_ref() else { return };
    let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = w.held.remove(&rk) {
        if let Some(v) = w.resolved.get_mut(i) {
            v.push(rk);
        }
        if let Some(&fd) = w.fds.get(i) {
            signal(fd);
        }
    }
}

/// Wakes every queue thread at once (e.g. after setting the stop flag);
/// without it they notice the flag within 200 ms. It takes locks without
/// waiting (`try_lock`), so it never blocks, but it is not meant for a
/// signal handler: set the flag there and call this from a thread.
pub fn wake_all() {
    if let Ok(g) = WAKE.try_read() {
        if let Some(w) = g.as_ref() {
            if let Ok(w) = w.try_lock() {
                for &fd in &w.fds {
                    signal(fd);
                }
            }
        }
    }
}

/// Serves the queues of `cfg` until `stop` is set (checked at least every
/// 200 ms; call [`wake_all`] to stop at once), feeding SYNs to the
/// simulation and applying the driver's decisions. Counters are live in
/// `counters`. Call it from a thread inside the network namespace whose
/// rules queue the SYNs: the queue threads it starts inherit it.
pub fn serve(
    sim: &Sim,
    cfg: &FrontConfig,
    stop: &AtomicBool,
    counters: &Counters,
) -> io::Result<NfqStats> {
    if cfg.queues.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no queue to serve",
        ));
    }
    let mut queues = Vec::new();
    let mut fds = Vec::new();
    for &n in &cfg.queues {
        let q = Queue::bind(n, cfg.rcvbuf, cfg.queue_maxlen, cfg.fail_open)
            .map_err(|e| io::Error::new(e.kind(), format!("binding NFQUEUE {n}: {e}")))?;
        // SAFETY: eventfd(2); the descriptor is owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
        queues.push(q);
    }
    *WAKE.write().unwrap_or_else(|e| e.into_inner()) = Some(Mutex::new(Wakeups {
        fds: fds.iter().map(|f| f.as_raw_fd()).collect(),
        held: HashMap::new(),
        held_room: crate::churn::Room::default(),
        resolved: vec![Vec::new(); queues.len()],
    }));
    crate::wsk::history::set_resolve_hook(Some(on_resolved));
    let result = std::thread::scope(|s| {
        let handles: Vec<_> = queues
            .into_iter()
            .zip(fds.iter())
            .enumerate()
            .map(|(i, (q, wfd))| {
                let wfd = wfd.as_raw_fd();
                s.spawn(move || serve_queue(sim, cfg, q, i, wfd, stop, counters))
            })
            .collect();
        let mut first_err = None;
        for h in handles {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    stop.store(true, Ordering::SeqCst);
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(io::Error::other("a queue thread panicked"));
                }
            }
        }
        first_err
    });
    crate::wsk::history::set_resolve_hook(None);
    *WAKE.write().unwrap_or_else(|e| e.into_inner()) = None;
    match result {
        Some(e) => Err(e),
        None => Ok(counters.snapshot()),
    }
}

/// Applies `accept` to a request's SYN; with handshake fidelity, an
/// accepted request starts waiting for its handshake first (before the
/// verdict lets the SYN through).
fn apply(
    q: &mut Queue,
    cfg: &FrontConfig,
    c: &Counters,
    id: u32,
    accept: bool,
    req: Option<(Request, Syn)>,
) -> io::Result<()> {
    if let (true, Some(t), Some((req, syn))) = (accept, cfg.handshake_timeout, req) {
        if req.state() == RequestState::Accepted {
            crate::wsk::real::expect_handshake(req.key(), syn.src, syn.dst, Some(syn.isn), t);
        }
    }
    if accept {
        inc(&c.accepted);
        return q.verdict(id, Verdict::Accept);
    }
    inc(&c.rejected);
    q.verdict(
        id,
        match cfg.reject {
            RejectMode::Reset { mark } => Verdict::RepeatWithMark(mark),
            RejectMode::Drop => Verdict::Drop,
        },
    )
}

/// Adds `now - then` to a /proc counter delta.
fn proc_delta(base: &mut netlink::ProcCounters, now: netlink::ProcCounters, c: &Counters) {
    let dq = now.queue_dropped.saturating_sub(base.queue_dropped);
    let du = now.user_dropped.saturating_sub(base.user_dropped);
    c.queue_dropped.fetch_add(dq, Ordering::Relaxed);
    c.user_dropped.fetch_add(du, Ordering::Relaxed);
    *base = now;
}

fn serve_queue(
    sim: &Sim,
    cfg: &FrontConfig,
    mut q: Queue,
    index: usize,
    wake_fd: i32,
    stop: &AtomicBool,
    c: &Counters,
) -> io::Result<()> {
    let num = q.num();
    let read_proc = || {
        std::fs::read_to_string("/proc/thread-self/net/netfilter/nfnetlink_queue")
            .ok()
            .and_then(|t| netlink::parse_proc(&t, num))
            .unwrap_or_default()
    };
    let mut proc_base = read_proc();
    let mut proc_at = Instant::now();
    let mut held: HashMap<(SocketAddr, SocketAddr), (Request, u32, u32)> = HashMap::new();
    let mut by_key: HashMap<(usize, u32), (SocketAddr, SocketAddr)> = HashMap::new();
    // `held` and `by_key` always hold the same requests: one room for both,
    // so a flood of pends at a steady count never doubles them.
    let mut held_room = crate::churn::Room::default();
    let mut pkts: Vec<Packet> = Vec::with_capacity(netlink::BATCH);
    let reject_mark = match cfg.reject {
        RejectMode::Reset { mark } => Some(mark),
        RejectMode::Drop => None,
    };
    let mut enobufs_seen = 0;
    // After `stop`, the queue is drained (every SYN still queued is decided)
    // for at most DRAIN, then what is left is counted as unserved.
    const DRAIN: Duration = Duration::from_secs(2);
    let mut stopping: Option<Instant> = None;
    let mut got = 0usize;
    loop {
        if stopping.is_none() && stop.load(Ordering::SeqCst) {
            stopping = Some(Instant::now());
        }
        if let Some(t) = stopping {
            if (got == 0 && read_proc().waiting == 0) || t.elapsed() >= DRAIN {
                break;
            }
        }
        got = 0;
        let mut fds = [
            libc::pollfd {
                fd: q.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: wake_fd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll(2) on two valid descriptors.
        let r = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                2,
                if stopping.is_some() { 10 } else { 200 },
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if fds[1].revents != 0 {
            let mut v: u64 = 0;
            // SAFETY: read(2) of the eventfd counter.
            unsafe { libc::read(wake_fd, (&mut v as *mut u64).cast(), 8) };
            let resolved = {
                let g = WAKE.read().unwrap_or_else(|e| e.into_inner());
                g.as_ref()
                    .map(|w| {
                        let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
                        w.resolved
                            .get_mut(index)
                            .map(std::mem::take)
                            .unwrap_or_default()
                    })
                    .unwrap_or_default()
            };
            for rk in resolved {
                let Some(t) = by_key.get(&rk).copied() else {
                    continue;
                };
                let Some((req, _, _)) = held.get(&t) else {
                    continue;
                };
                if let Some(accept) = decision(req.state()) {
                    by_key.remove(&rk);
                    if let Some((req, id, isn)) = held.remove(&t) {
                        let syn = Syn {
                            src: t.0,
                            dst: t.1,
                            isn,
                        };
                        apply(&mut q, cfg, c, id, accept, Some((req, syn)))?;
                    }
                } else {
                    // Still unresolved (e.g. Pended -> Inspecting race):
                    // ask to be woken again.
                    hold_again(rk, index);
                }
            }
        }
        if fds[0].revents != 0 {
            // Drain what is waiting, a batch at a time, deciding as we go.
            loop {
                pkts.clear();
                let n = q.recv_batch(&mut pkts)?;
                if n == 0 {
                    break;
                }
                got += n;
                inc(&c.batches);
                for p in pkts.drain(..) {
                    let Some(syn) = parse_syn(&p.payload) else {
                        inc(&c.other);
                        q.verdict(p.id, Verdict::Accept)?;
                        continue;
                    };
                    if reject_mark.is_some() && p.mark == reject_mark {
                        // Came back from NF_REPEAT: no reset rule matched.
                        inc(&c.looped);
                        q.verdict(p.id, Verdict::Drop)?;
                        continue;
                    }
                    let (src, dst) = (syn.src, syn.dst);
                    if let Some(&(_, _, isn)) = held.get(&(src, dst)) {
                        if isn == syn.isn {
                            inc(&c.duplicates);
                            q.verdict(p.id, Verdict::Drop)?;
                            continue;
                        }
                        // Another sequence number: a new connection on the
                        // 4-tuple of a held (pended) request, whose client
                        // gave it up. That request is superseded as the
                        // stack would end it: WskAbortEvent now (a late
                        // WskInspectComplete for it stays legal), its SYN
                        // dropped; this SYN is decided as a new request.
                        if let Some((old, old_id, _)) = held.remove(&(src, dst)) {
                            by_key.remove(&old.key());
                            inc(&c.superseded);
                            // Err: it was resolved meanwhile (rejected, or
                            // finished otherwise): nothing left to abort.
                            let _ = old.abort();
                            q.verdict(old_id, Verdict::Drop)?;
                        }
                    }
                    if cfg.handshake_timeout.is_some()
                        && crate::wsk::real::syn_arrived(src, dst, syn.isn)
                    {
                        inc(&c.retransmits);
                        q.verdict(p.id, Verdict::Accept)?;
                        continue;
                    }
                    inc(&c.syns);
                    let req = if cfg.handshake_timeout.is_some() {
                        sim.connect_held(src, dst)
                    } else {
                        sim.connect(src, dst)
                    };
                    match decision(req.state()) {
                        Some(accept) => apply(&mut q, cfg, c, p.id, accept, Some((req, syn)))?,
                        None => {
                            inc(&c.pended);
                            let rk = req.key();
                            if let Some(n) = held_room.before_insert(held.len()) {
                                held.reserve(n);
                                by_key.reserve(n);
                            }
                            held.insert((src, dst), (req, p.id, syn.isn));
                            by_key.insert(rk, (src, dst));
                            hold_again(rk, index);
                            // Resolved between connect and registration?
                            if decision(req.state()).is_some() {
                                on_resolved(rk);
                            }
                        }
                    }
                }
                if n < netlink::BATCH {
                    break;
                }
            }
            q.flush()?;
        }
        q.flush()?;
        if q.enobufs != enobufs_seen {
            c.enobufs
                .fetch_add(q.enobufs - enobufs_seen, Ordering::Relaxed);
            enobufs_seen = q.enobufs;
        }
        if proc_at.elapsed() >= Duration::from_millis(250) {
            proc_delta(&mut proc_base, read_proc(), c);
            proc_at = Instant::now();
        }
    }
    for (_, (_, id, _)) in held.drain() {
        apply(&mut q, cfg, c, id, false, None)?;
    }
    q.flush()?;
    let left = read_proc();
    c.unserved.fetch_add(left.waiting, Ordering::Relaxed);
    proc_delta(&mut proc_base, left, c);
    q.unbind()
}

/// Registers (again) that queue thread `index` holds request `rk`.
fn hold_again(rk: (usize, u32), index: usize) {
    let g = WAKE.read().unwrap_or_else(|e| e.into_inner());
    if let Some(w) = g.as_ref() {
        let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
        let len = w.held.len();
        if let Some(n) = w.held_room.before_insert(len) {
            w.held.reserve(n);
        }
        w.held.insert(rk, index);
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    use etherparse::PacketBuilder;

    fn v4(syn: bool, ack: bool) -> Vec<u8> {
        let mut b = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).tcp(40000, 8080, 1, 1024);
        if syn {
            b = b.syn();
        }
        if ack {
            b = b.ack(7);
        }
        let mut out = Vec::new();
        b.write(&mut out, &[]).unwrap();
        out
    }

    #[test]
    fn parses_syn_and_ignores_others() {
        let syn = parse_syn(&v4(true, false)).unwrap();
        assert_eq!(
            syn,
            Syn {
                src: "10.0.0.1:40000".parse().unwrap(),
                dst: "10.0.0.2:8080".parse().unwrap(),
                isn: 1,
            }
        );
        assert_eq!(parse_syn(&v4(true, true)), None, "SYN-ACK");
        assert_eq!(parse_syn(&v4(false, true)), None, "ACK");
        assert_eq!(parse_syn(&[0x45, 0, 0]), None, "truncated");
        assert_eq!(parse_syn(&v4(true, false)[..30]), None, "TCP header cut");
        let mut p6 = Vec::new();
        let mut a = [0u8; 16];
        a[15] = 1;
        let mut b = [0u8; 16];
        b[15] = 2;
        PacketBuilder::ipv6(a, b, 64)
            .tcp(1234, 443, 0xDEAD_BEEF, 1024)
            .syn()
            .write(&mut p6, &[])
            .unwrap();
        let syn = parse_syn(&p6).unwrap();
        assert_eq!(
            (syn.src, syn.dst, syn.isn),
            (
                "[::1]:1234".parse().unwrap(),
                "[::2]:443".parse().unwrap(),
                0xDEAD_BEEF
            )
        );
        // A SYN carrying data, cut at the copy range, still parses.
        let mut big = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 8080, 1, 1024)
            .syn()
            .write(&mut big, &[7u8; 400])
            .unwrap();
        assert!(parse_syn(&big[..netlink::COPY_RANGE as usize]).is_some());
    }

    #[test]
    fn decisions() {
        assert_eq!(decision(RequestState::Pended), None);
        assert_eq!(decision(RequestState::Established), Some(true));
        assert_eq!(decision(RequestState::Rejected), Some(false));
        assert_eq!(decision(RequestState::NoListener), Some(false));
    }
}
