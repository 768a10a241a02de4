//! Raw SYNs for `kind = "syn-flood"` groups (what hping3 `-S` does): an
//! IPv4 + TCP SYN built with etherparse, from a spoofed source address, sent
//! on a raw socket (`IPPROTO_RAW`, the header is ours); answers are read from
//! a raw `IPPROTO_TCP` socket that sees every TCP segment the namespace
//! receives. The attempt is found again without a table: its slot index is
//! the SYN's sequence number (the answer acknowledges it + 1), and the slot
//! remembers the SYN's source address and port. The source port counts up
//! with every SYN sent (as hping3's does), so consecutive SYNs are distinct
//! connections to the target. A SYN-ACK counts as accepted, an RST as
//! refused, silence until the group's patience as timed out.
//!
//! Spoofed SYNs may only go into namespaces gate-load made ([`check_allowed`]):
//! a SYN-ACK to a source that is not local to the client namespace goes
//! nowhere, which is what a spoofed flood does to a real server.

use anyhow::{bail, Context, Result};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// First source port of raw SYNs; the run's SYN count picks one above it.
pub const FIRST_PORT: u16 = 1024;
/// Source ports in use: FIRST_PORT .. FIRST_PORT + PORTS.
pub const PORTS: u32 = 64_000;

/// The source port of the run's SYN number `n` (counting from 0): any
/// [`PORTS`] consecutive SYNs have distinct ports, so a source's SYNs never
/// repeat a 4-tuple the target may still hold half-open (the slot's
/// generation would: slots are reused, and two slots of one generation
/// gave one source the same port, which a target sees as a retransmission).
pub fn source_port(n: u32) -> u16 {
    FIRST_PORT + (n % PORTS) as u16
}

/// Refuses raw SYNs unless this process runs inside a namespace made by
/// `gate-load topology up` (or the tests' `gl-` namespaces): the target guard
/// of spoofed traffic, with no override.
pub fn check_allowed(target: SocketAddr) -> Result<()> {
    if !target.is_ipv4() {
        bail!("syn-flood: target {target} is IPv6; raw SYNs are IPv4 only");
    }
    match crate::topology::in_own_namespace() {
        Some(_) => Ok(()),
        None => bail!(
            "syn-flood: refusing to send spoofed SYNs to {target}: this process does not run \
             inside a namespace made by `gate-load topology up` (ip netns exec gl-NAME-c ...). \
             Spoofed floods run only there; --allow-any-target does not apply"
        ),
    }
}

/// The two raw sockets and a packet buffer.
pub struct RawSyn {
    send: Socket,
    recv: Socket,
    target: SocketAddrV4,
    dst: SockAddr,
    pkt: Vec<u8>,
    rbuf: Vec<u8>,
}

/// A TCP answer from the target to one of our SYNs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Slot index (the acknowledged sequence number - 1).
    pub slot: u32,
    /// Our spoofed source address and port it answered.
    pub to: Ipv4Addr,
    pub to_port: u16,
    /// SYN-ACK (true) or RST (false).
    pub syn_ack: bool,
}

impl RawSyn {
    /// Opens the raw sockets (needs CAP_NET_RAW).
    pub fn new(target: SocketAddr) -> Result<Self> {
        let SocketAddr::V4(target) = target else {
            bail!("syn-flood: target {target} is IPv6; raw SYNs are IPv4 only");
        };
        let raw = |proto: i32, what: &str| {
            Socket::new(
                Domain::IPV4,
                Type::RAW.nonblocking().cloexec(),
                Some(Protocol::from(proto)),
            )
            .with_context(|| {
                format!("syn-flood: opening the raw {what} socket (needs root or CAP_NET_RAW)")
            })
        };
        let send = raw(libc::IPPROTO_RAW, "send")?;
        let recv = raw(libc::IPPROTO_TCP, "receive")?;
        // Room for a burst of answers between two reads (best effort).
        let _ = recv.set_recv_buffer_size(8 << 20);
        Ok(RawSyn {
            send,
            recv,
            target,
            dst: SockAddr::from(SocketAddr::V4(target)),
            pkt: Vec::with_capacity(64),
            rbuf: vec![0u8; 2048],
        })
    }

    /// The receive socket's descriptor (for epoll).
    pub fn recv_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.recv.as_raw_fd()
    }

    /// Sends one SYN from `src:port` with sequence number `seq`.
    pub fn send_syn(&mut self, src: Ipv4Addr, port: u16, seq: u32) -> std::io::Result<()> {
        self.pkt.clear();
        let b = etherparse::PacketBuilder::ipv4(src.octets(), self.target.ip().octets(), 64)
            .tcp(port, self.target.port(), seq, 64_240)
            .syn();
        b.write(&mut self.pkt, &[])
            .map_err(|e| std::io::Error::other(format!("building SYN: {e}")))?;
        self.send.send_to(&self.pkt, &self.dst).map(|_| ())
    }

    /// Reads the next answer from the target (None: nothing more to read
    /// now). Segments from elsewhere, or that are neither SYN-ACK nor RST,
    /// are skipped.
    pub fn next_answer(&mut self) -> std::io::Result<Option<Answer>> {
        loop {
            let n = match (&self.recv).read(&mut self.rbuf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if let Some(a) = parse_answer(self.rbuf.get(..n).unwrap_or_default(), self.target) {
                return Ok(Some(a));
            }
        }
    }
}

/// Parses an IPv4 packet as the target's answer to one of our SYNs.
pub fn parse_answer(packet: &[u8], target: SocketAddrV4) -> Option<Answer> {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let p = SlicedPacket::from_ip(packet).ok()?;
    let Some(NetSlice::Ipv4(ip)) = p.net else {
        return None;
    };
    let Some(TransportSlice::Tcp(tcp)) = p.transport else {
        return None;
    };
    let h = ip.header();
    if h.source_addr() != *target.ip() || tcp.source_port() != target.port() {
        return None;
    }
    let syn_ack = tcp.syn() && tcp.ack();
    if !syn_ack && !tcp.rst() {
        return None;
    }
    Some(Answer {
        slot: tcp.acknowledgment_number().wrapping_sub(1),
        to: h.destination_addr(),
        to_port: tcp.destination_port(),
        syn_ack,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, f: &str, ack: u32) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ipv4(src, dst, 64).tcp(sport, dport, 99, 1000);
        let b = match f {
            "synack" => b.syn().ack(ack),
            "rst" => b.rst().ack(ack),
            _ => b.ack(ack),
        };
        let mut v = Vec::new();
        b.write(&mut v, &[]).unwrap();
        v
    }

    #[test]
    fn answers_are_matched_to_their_syn() {
        let t = SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 1), 8080);
        let a = parse_answer(
            &packet([10, 77, 0, 1], 8080, [10, 77, 128, 9], 1030, "synack", 43),
            t,
        )
        .unwrap();
        assert_eq!(
            a,
            Answer {
                slot: 42,
                to: Ipv4Addr::new(10, 77, 128, 9),
                to_port: 1030,
                syn_ack: true
            }
        );
        let a = parse_answer(
            &packet([10, 77, 0, 1], 8080, [10, 77, 128, 9], 1030, "rst", 1),
            t,
        )
        .unwrap();
        assert!(!a.syn_ack && a.slot == 0);
        // Another port, another host, or a plain ACK: not an answer.
        assert!(parse_answer(
            &packet([10, 77, 0, 1], 8081, [1, 1, 1, 1], 1, "synack", 1),
            t
        )
        .is_none());
        assert!(parse_answer(
            &packet([10, 77, 0, 2], 8080, [1, 1, 1, 1], 1, "synack", 1),
            t
        )
        .is_none());
        assert!(
            parse_answer(&packet([10, 77, 0, 1], 8080, [1, 1, 1, 1], 1, "ack", 1), t).is_none()
        );
    }

    #[test]
    fn a_syn_is_a_valid_ipv4_tcp_syn() {
        let b = etherparse::PacketBuilder::ipv4([10, 77, 128, 1], [10, 77, 0, 1], 64)
            .tcp(source_port(5), 8080, 7, 64_240)
            .syn();
        let mut v = Vec::new();
        b.write(&mut v, &[]).unwrap();
        let p = etherparse::SlicedPacket::from_ip(&v).unwrap();
        let Some(etherparse::TransportSlice::Tcp(tcp)) = p.transport else {
            panic!("no TCP")
        };
        assert!(tcp.syn() && !tcp.ack());
        assert_eq!((tcp.source_port(), tcp.sequence_number()), (1029, 7));
    }
}
