//! One NFQUEUE queue over a raw `NETLINK_NETFILTER` socket: bind with a
//! copy range, queue length and flags; receive packets in batches
//! (`recvmmsg`, up to [`BATCH`] datagrams per call); send verdicts in
//! batches (several `NFQNL_MSG_VERDICT` messages in one datagram, which
//! nfnetlink processes in order).
//!
//! Why not the `nfq` crate: nfq 0.2 hides its socket (no `SO_RCVBUF`, no
//! `poll` with a wake-up descriptor, so a held SYN could only be released
//! by polling) and sends one datagram per verdict. The wire format is
//! small and stable: `linux/netfilter/nfnetlink_queue.h`, `linux/netlink.h`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_CFG_MASK: u16 = 4;
const NFQA_CFG_FLAGS: u16 = 5;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_CFG_CMD_UNBIND: u8 = 2;
const NFQNL_COPY_PACKET: u8 = 2;
/// `NFQA_CFG_F_FAIL_OPEN`: accept packets when the queue is full instead
/// of dropping them.
pub const NFQA_CFG_F_FAIL_OPEN: u32 = 1;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_MARK: u16 = 3;
const NFQA_PAYLOAD: u16 = 10;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const NLMSG_HDRLEN: usize = 16;
const NFGEN_HDRLEN: usize = 4;

/// Datagrams received per `recvmmsg` call, at most.
pub const BATCH: usize = 64;
/// Bytes of each packet copied to user space (IPv6 + TCP headers with
/// options fit).
pub const COPY_RANGE: u32 = 128;
const DGRAM: usize = 512;

/// What to do with a queued packet (`NF_DROP`, `NF_ACCEPT`, `NF_REPEAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Drop,
    Accept,
    /// Send the packet through the hook again with this mark set (a rule
    /// matching the mark answers it, e.g. with a TCP reset).
    RepeatWithMark(u32),
}

/// One queued packet: its id and the first [`COPY_RANGE`] bytes.
#[derive(Clone, Debug)]
pub struct Packet {
    pub id: u32,
    /// The packet's mark, when it has one.
    pub mark: Option<u32>,
    pub payload: Vec<u8>,
}

/// A bound NFQUEUE queue.
pub struct Queue {
    fd: OwnedFd,
    num: u16,
    seq: u32,
    verdicts: Vec<u8>,
    pending: usize,
    rx: Vec<[u8; DGRAM]>,
    /// Packets that arrived while waiting for a configuration ACK.
    stash: Vec<Packet>,
    /// ENOBUFS seen on receive: the socket buffer overflowed and the
    /// kernel dropped packets (also counted in /proc as user_dropped).
    pub enobufs: u64,
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn put_attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    buf.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(align4(buf.len()), 0);
}

/// Appends one nfnetlink message (header, nfgenmsg, attributes from `f`).
fn put_msg(
    buf: &mut Vec<u8>,
    msg: u16,
    flags: u16,
    seq: u32,
    queue: u16,
    f: impl FnOnce(&mut Vec<u8>),
) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]); // length, patched below
    buf.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | msg).to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&[libc::AF_UNSPEC as u8, 0]);
    buf.extend_from_slice(&queue.to_be_bytes());
    f(buf);
    let len = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

fn os_err<T>(r: libc::c_int, v: T) -> io::Result<T> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(v)
    }
}

impl Queue {
    /// Opens a netfilter netlink socket with a receive buffer of
    /// `rcvbuf` bytes (`SO_RCVBUFFORCE` as root, else capped by
    /// net.core.rmem_max) and binds queue `num`: packets copied up to
    /// [`COPY_RANGE`] bytes, at most `maxlen` packets waiting in the
    /// kernel, `fail_open` sets `NFQA_CFG_F_FAIL_OPEN`.
    pub fn bind(num: u16, rcvbuf: usize, maxlen: u32, fail_open: bool) -> io::Result<Queue> {
        // SAFETY: plain socket(2).
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        let fd = os_err(fd, fd)?;
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: all-zero is a valid sockaddr_nl (kernel assigns the port id).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: bind(2) with a sockaddr_nl of its size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        os_err(r, ())?;
        let size = libc::c_int::try_from(rcvbuf).unwrap_or(libc::c_int::MAX);
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: setsockopt(2) with an int option.
            let r = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    4,
                )
            };
            if r == 0 {
                break;
            }
        }
        let mut q = Queue {
            fd,
            num,
            seq: 0,
            verdicts: Vec::with_capacity(BATCH * 40),
            pending: 0,
            rx: vec![[0u8; DGRAM]; BATCH],
            stash: Vec::new(),
            enobufs: 0,
        };
        q.config(|b| put_attr(b, NFQA_CFG_CMD, &[NFQNL_CFG_CMD_BIND, 0, 0, 0]))?;
        q.config(|b| {
            let mut p = COPY_RANGE.to_be_bytes().to_vec();
            p.push(NFQNL_COPY_PACKET);
            put_attr(b, NFQA_CFG_PARAMS, &p);
        })?;
        q.config(|b| put_attr(b, NFQA_CFG_QUEUE_MAXLEN, &maxlen.to_be_bytes()))?;
        let flags = if fail_open { NFQA_CFG_F_FAIL_OPEN } else { 0 };
        q.config(|b| {
            put_attr(b, NFQA_CFG_FLAGS, &flags.to_be_bytes());
            put_attr(b, NFQA_CFG_MASK, &NFQA_CFG_F_FAIL_OPEN.to_be_bytes());
        })?;
        Ok(q)
    }

    /// The queue number.
    pub fn num(&self) -> u16 {
        self.num
    }

    /// Sends a configuration message and waits for its ACK.
    fn config(&mut self, f: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut b = Vec::with_capacity(64);
        put_msg(&mut b, NFQNL_MSG_CONFIG, NLM_F_ACK, seq, self.num, f);
        self.send(&b)?;
        loop {
            let mut buf = [0u8; 8192];
            // SAFETY: recv(2) into a local buffer of its size.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ENOBUFS) {
                    self.enobufs += 1;
                    continue;
                }
                return Err(e);
            }
            let mut acked = None;
            let mut stash = Vec::new();
            parse(&buf[..n as usize], &mut stash, &mut |s, err| {
                if s == seq {
                    acked = Some(err);
                }
            });
            self.stash.extend(stash);
            if let Some(err) = acked {
                return if err == 0 {
                    Ok(())
                } else {
                    Err(io::Error::from_raw_os_error(-err))
                };
            }
        }
    }

    fn send(&self, b: &[u8]) -> io::Result<()> {
        // SAFETY: all-zero sockaddr_nl addresses the kernel (pid 0).
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: sendto(2) of our buffer to the kernel.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                b.as_ptr().cast(),
                b.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives the packets waiting (up to [`BATCH`] datagrams, without
    /// blocking) into `out`; returns how many were added.
    pub fn recv_batch(&mut self, out: &mut Vec<Packet>) -> io::Result<usize> {
        let before = out.len();
        out.append(&mut self.stash);
        // On the stack: no allocation per batch.
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        for (v, b) in iov.iter_mut().zip(self.rx.iter_mut()) {
            v.iov_base = b.as_mut_ptr().cast();
            v.iov_len = DGRAM;
        }
        // SAFETY: all-zero is a valid mmsghdr; its iovec is set below.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: recvmmsg(2) into BATCH buffers of DGRAM bytes each.
        let n = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) => Ok(out.len() - before),
                Some(libc::ENOBUFS) => {
                    self.enobufs += 1;
                    Ok(out.len() - before)
                }
                Some(libc::EINTR) => Ok(out.len() - before),
                _ => Err(e),
            };
        }
        for (i, m) in msgs.iter().take(n as usize).enumerate() {
            let len = (m.msg_len as usize).min(DGRAM);
            parse(&self.rx[i][..len], out, &mut |_, _| {});
        }
        Ok(out.len() - before)
    }

    /// Queues a verdict for packet `id` (sent by [`Queue::flush`], or when
    /// the batch is full).
    pub fn verdict(&mut self, id: u32, v: Verdict) -> io::Result<()> {
        let (code, mark) = match v {
            Verdict::Drop => (0u32, None),
            Verdict::Accept => (1, None),
            Verdict::RepeatWithMark(m) => (4, Some(m)),
        };
        put_msg(&mut self.verdicts, NFQNL_MSG_VERDICT, 0, 0, self.num, |b| {
            let mut h = code.to_be_bytes().to_vec();
            h.extend_from_slice(&id.to_be_bytes());
            put_attr(b, NFQA_VERDICT_HDR, &h);
            if let Some(m) = mark {
                put_attr(b, NFQA_MARK, &m.to_be_bytes());
            }
        });
        self.pending += 1;
        if self.pending >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends the queued verdicts in one datagram.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.pending == 0 {
            return Ok(());
        }
        let r = self.send(&self.verdicts);
        self.verdicts.clear();
        self.pending = 0;
        r
    }

    /// Unbinds the queue (packets then follow the rule's bypass choice).
    pub fn unbind(mut self) -> io::Result<()> {
        self.flush()?;
        self.config(|b| put_attr(b, NFQA_CFG_CMD, &[NFQNL_CFG_CMD_UNBIND, 0, 0, 0]))
    }
}

impl AsRawFd for Queue {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Walks the netlink messages of one datagram: packets go to `out`, ACKs
/// and errors to `ack(seq, -errno)`.
fn parse(mut b: &[u8], out: &mut Vec<Packet>, ack: &mut dyn FnMut(u32, i32)) {
    while b.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            return;
        }
        let ty = u16::from_ne_bytes([b[4], b[5]]);
        let seq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
        let body = &b[NLMSG_HDRLEN..len];
        if ty == NLMSG_ERROR && body.len() >= 4 {
            ack(
                seq,
                i32::from_ne_bytes([body[0], body[1], body[2], body[3]]),
            );
        } else if ty == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET && body.len() >= NFGEN_HDRLEN {
            if let Some(p) = parse_packet(&body[NFGEN_HDRLEN..]) {
                out.push(p);
            }
        }
        b = &b[align4(len).min(b.len())..];
    }
}

fn parse_packet(mut a: &[u8]) -> Option<Packet> {
    let mut id = None;
    let mut mark = None;
    let mut payload = Vec::new();
    while a.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([a[0], a[1]]));
        let ty = u16::from_ne_bytes([a[2], a[3]]) & 0x3fff;
        if len < 4 || len > a.len() {
            break;
        }
        let data = &a[4..len];
        match ty {
            NFQA_PACKET_HDR if data.len() >= 4 => {
                id = Some(u32::from_be_bytes([data[0], data[1], data[2], data[3]]));
            }
            NFQA_MARK if data.len() >= 4 => {
                mark = Some(u32::from_be_bytes([data[0], data[1], data[2], data[3]]));
            }
            NFQA_PAYLOAD => payload = data.to_vec(),
            _ => {}
        }
        a = &a[align4(len).min(a.len())..];
    }
    Some(Packet {
        id: id?,
        mark,
        payload,
    })
}

/// Drop counters of one queue from `/proc/net/netfilter/nfnetlink_queue`
/// (of the calling thread's network namespace).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcCounters {
    /// Packets waiting in the kernel now.
    pub waiting: u64,
    /// Dropped because the queue was full (`queue_dropped`; with fail-open
    /// they are accepted instead and not counted here).
    pub queue_dropped: u64,
    /// Dropped because the netlink socket buffer was full (`user_dropped`).
    pub user_dropped: u64,
}

/// Reads the counters of queue `num`; None when it is not bound.
pub fn proc_counters(num: u16) -> Option<ProcCounters> {
    let text = std::fs::read_to_string("/proc/net/netfilter/nfnetlink_queue").ok()?;
    parse_proc(&text, num)
}

/// Parses the /proc table: queue, portid, waiting, copy mode, copy range,
/// queue_dropped, user_dropped, id sequence, 1.
pub fn parse_proc(text: &str, num: u16) -> Option<ProcCounters> {
    text.lines().find_map(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        (f.len() >= 7 && f[0] == u64::from(num)).then(|| ProcCounters {
            waiting: f[2],
            queue_dropped: f[5],
            user_dropped: f[6],
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_messages_have_the_kernel_layout() {
        let mut b = Vec::new();
        put_msg(&mut b, NFQNL_MSG_VERDICT, 0, 7, 3, |b| {
            put_attr(b, NFQA_VERDICT_HDR, &[0, 0, 0, 1, 0, 0, 0, 9]);
            put_attr(b, NFQA_MARK, &5u32.to_be_bytes());
        });
        assert_eq!(b.len(), 16 + 4 + 12 + 8);
        assert_eq!(
            u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize,
            b.len()
        );
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), 0x0301);
        assert_eq!(&b[18..20], &3u16.to_be_bytes(), "queue number, big-endian");
    }

    #[test]
    fn packets_and_acks_are_parsed() {
        let mut b = Vec::new();
        put_msg(&mut b, NFQNL_MSG_PACKET, 0, 0, 1, |b| {
            put_attr(b, NFQA_PACKET_HDR, &[0, 0, 1, 2, 8, 0, 1]);
            put_attr(b, NFQA_PAYLOAD, &[0x45, 1, 2]);
        });
        // An ACK: NLMSG_ERROR with error 0 for seq 9.
        let mut e = vec![0u8; 16 + 4 + 16];
        e[0..4].copy_from_slice(&36u32.to_ne_bytes());
        e[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        e[8..12].copy_from_slice(&9u32.to_ne_bytes());
        b.extend_from_slice(&e);
        let mut out = Vec::new();
        let mut acks = Vec::new();
        parse(&b, &mut out, &mut |s, err| acks.push((s, err)));
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].id, out[0].payload.clone()),
            (0x0102, vec![0x45, 1, 2])
        );
        assert_eq!(acks, vec![(9, 0)]);
        // Truncated input is ignored, not a panic.
        parse(&b[..10], &mut out, &mut |_, _| {});
        parse(&b[..20], &mut out, &mut |_, _| {});
    }

    #[test]
    fn proc_table_is_parsed_by_queue() {
        let t = "    0  12345     3 2   128     7    11 99  1\n    1  12346     0 2   128     0     0  5  1\n";
        assert_eq!(
            parse_proc(t, 0),
            Some(ProcCounters {
                waiting: 3,
                queue_dropped: 7,
                user_dropped: 11
            })
        );
        assert_eq!(parse_proc(t, 1).unwrap().queue_dropped, 0);
        assert_eq!(parse_proc(t, 2), None);
    }
}
