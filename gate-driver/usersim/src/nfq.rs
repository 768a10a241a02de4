//! NFQUEUE front (Linux only, cargo feature `nfq`): real TCP SYNs, queued
//! by an `iptables-nft ... --syn -j NFQUEUE` rule, become
//! [`Sim::connect`] requests, and the driver's answer becomes the packet's
//! verdict before any SYN-ACK is sent: Accept → the kernel completes the
//! handshake; Reject (or no listener) → the SYN is dropped and the client
//! retransmits; Pend → the SYN is held until WskInspectComplete (accept or
//! drop then), while retransmitted SYNs of the same connection are dropped.
//!
//! Put the simulation in real-time mode ([`Sim::set_real_time`]) first.
//! Use network namespaces the test creates ([`enter_netns`]).

use crate::wsk::RequestState;
use crate::{Request, Sim};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Counters of one [`serve`] run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NfqStats {
    /// Distinct connection requests (first SYN of a 4-tuple in flight).
    pub syns: u64,
    pub accepted: u64,
    pub dropped: u64,
    /// Requests the driver pended (held SYNs).
    pub pended: u64,
    /// Retransmitted SYNs dropped while their request was held.
    pub duplicates: u64,
    /// Packets that were not a TCP SYN (accepted untouched).
    pub other: u64,
}

/// Source and destination of a TCP SYN (SYN set, ACK clear) in an IPv4 or
/// IPv6 packet; None for anything else.
pub fn parse_syn(packet: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    let version = packet.first()? >> 4;
    let (src, dst, tcp) = match version {
        4 => {
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            if packet.len() < 20 || ihl < 20 || *packet.get(9)? != 6 {
                return None;
            }
            let s = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
            let d = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
            (IpAddr::V4(s), IpAddr::V4(d), packet.get(ihl..)?)
        }
        6 => {
            // Extension headers are not followed: a SYN carries none in practice.
            if packet.len() < 40 || packet[6] != 6 {
                return None;
            }
            let s: [u8; 16] = packet[8..24].try_into().ok()?;
            let d: [u8; 16] = packet[24..40].try_into().ok()?;
            (
                IpAddr::V6(Ipv6Addr::from(s)),
                IpAddr::V6(Ipv6Addr::from(d)),
                &packet[40..],
            )
        }
        _ => return None,
    };
    if tcp.len() < 20 {
        return None;
    }
    let flags = tcp[13];
    let (syn, ack) = (flags & 0x02 != 0, flags & 0x10 != 0);
    if !syn || ack {
        return None;
    }
    let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
    let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
    Some((SocketAddr::new(src, sport), SocketAddr::new(dst, dport)))
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

/// Serves NFQUEUE `queue_num` until `stop` is set, feeding SYNs to the
/// simulation and applying the driver's decisions.
pub fn serve(sim: &Sim, queue_num: u16, stop: &AtomicBool) -> io::Result<NfqStats> {
    let mut q = nfq::Queue::open()?;
    q.bind(queue_num)?;
    q.set_nonblocking(true);
    let mut stats = NfqStats::default();
    let mut held: HashMap<(SocketAddr, SocketAddr), (Request, nfq::Message)> = HashMap::new();
    while !stop.load(Ordering::SeqCst) {
        match q.recv() {
            Ok(mut msg) => {
                let Some((src, dst)) = parse_syn(msg.get_payload()) else {
                    stats.other += 1;
                    msg.set_verdict(nfq::Verdict::Accept);
                    q.verdict(msg)?;
                    continue;
                };
                if held.contains_key(&(src, dst)) {
                    stats.duplicates += 1;
                    msg.set_verdict(nfq::Verdict::Drop);
                    q.verdict(msg)?;
                    continue;
                }
                stats.syns += 1;
                let req = sim.connect(src, dst);
                match decision(req.state()) {
                    Some(accept) => {
                        apply(&mut q, msg, accept, &mut stats)?;
                    }
                    None => {
                        stats.pended += 1;
                        held.insert((src, dst), (req, msg));
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let done: Vec<(SocketAddr, SocketAddr)> = held
                    .iter()
                    .filter(|(_, (r, _))| decision(r.state()).is_some())
                    .map(|(k, _)| *k)
                    .collect();
                for k in done {
                    if let Some((r, msg)) = held.remove(&k) {
                        let accept = decision(r.state()).unwrap_or(false);
                        apply(&mut q, msg, accept, &mut stats)?;
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
    for (_, (_, msg)) in held.drain() {
        apply(&mut q, msg, false, &mut stats)?;
    }
    q.unbind(queue_num)?;
    Ok(stats)
}

fn apply(
    q: &mut nfq::Queue,
    mut msg: nfq::Message,
    accept: bool,
    stats: &mut NfqStats,
) -> io::Result<()> {
    if accept {
        stats.accepted += 1;
        msg.set_verdict(nfq::Verdict::Accept);
    } else {
        stats.dropped += 1;
        msg.set_verdict(nfq::Verdict::Drop);
    }
    q.verdict(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_syn(flags: u8) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&8080u16.to_be_bytes());
        p[33] = flags;
        p
    }

    #[test]
    fn parses_syn_and_ignores_others() {
        let (s, d) = parse_syn(&v4_syn(0x02)).unwrap();
        assert_eq!(
            (s, d),
            (
                "10.0.0.1:40000".parse().unwrap(),
                "10.0.0.2:8080".parse().unwrap()
            )
        );
        assert_eq!(parse_syn(&v4_syn(0x12)), None, "SYN-ACK");
        assert_eq!(parse_syn(&v4_syn(0x10)), None, "ACK");
        assert_eq!(parse_syn(&[0x45, 0, 0]), None, "truncated");
        let mut p6 = vec![0u8; 60];
        p6[0] = 0x60;
        p6[6] = 6;
        p6[23] = 1;
        p6[39] = 2;
        p6[40..42].copy_from_slice(&1234u16.to_be_bytes());
        p6[42..44].copy_from_slice(&443u16.to_be_bytes());
        p6[53] = 0x02;
        let (s, d) = parse_syn(&p6).unwrap();
        assert_eq!(
            (s, d),
            ("[::1]:1234".parse().unwrap(), "[::2]:443".parse().unwrap())
        );
    }

    #[test]
    fn decisions() {
        assert_eq!(decision(RequestState::Pended), None);
        assert_eq!(decision(RequestState::Established), Some(true));
        assert_eq!(decision(RequestState::Rejected), Some(false));
        assert_eq!(decision(RequestState::NoListener), Some(false));
    }
}
