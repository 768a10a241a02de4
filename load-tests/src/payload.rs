//! The payload exchanges after a handshake, for testing a relaying gate:
//! their wire format, the byte pattern both ends send and check, and the
//! server side that `gate-load listen --mode echo|rr|sink` runs.
//!
//! - **request-response** (`rr`): the client sends a request of
//!   `request_bytes`, starting with an [`HEADER_BYTES`]-byte header: the
//!   request's total length and the wanted response length, each a
//!   big-endian u32; the rest of the request is the [`pattern`]. The server
//!   reads the whole request and answers with `response_bytes` of the
//!   pattern, then waits for the next request or the client's close.
//! - **echo**: the client sends `request_bytes` of the pattern and reads them
//!   back, checking every byte; any echo server works.
//! - **bulk**: the client sends `request_bytes` of the pattern as one stream
//!   and half-closes; the server (`sink`) reads to the end and closes, so the
//!   client's transfer time ends when every byte was read by the server.

use crate::sys::{Epoll, EV_IN, EV_OUT};
use anyhow::{Context, Result};
use socket2::Socket;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;

/// Length of the request-response header: request length, response length
/// (big-endian u32 each).
pub const HEADER_BYTES: u64 = 8;

/// Period of the byte pattern (a prime, so it never lines up with buffer
/// sizes: a shifted or repeated chunk shows as a mismatch).
pub const PATTERN_PERIOD: usize = 251;

/// The pattern byte at stream offset `i`.
pub fn pattern(i: u64) -> u8 {
    ((i % PATTERN_PERIOD as u64) * 7 + 13) as u8 % PATTERN_PERIOD as u8
}

/// A buffer of the pattern starting at offset 0, long enough that
/// `&buf[off % PATTERN_PERIOD..][..len]` serves any `len <= CHUNK`.
pub fn pattern_buffer() -> Vec<u8> {
    (0..(CHUNK + PATTERN_PERIOD) as u64).map(pattern).collect()
}

/// Largest single read or write.
pub const CHUNK: usize = 64 * 1024;

/// Encodes the request-response header.
pub fn header(request_bytes: u64, response_bytes: u64) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&(request_bytes as u32).to_be_bytes());
    h[4..].copy_from_slice(&(response_bytes as u32).to_be_bytes());
    h
}

/// Index of the first byte of `buf` (stream offset `off`) that differs from
/// the pattern.
pub fn first_mismatch(buf: &[u8], off: u64) -> Option<usize> {
    buf.iter()
        .enumerate()
        .position(|(i, &b)| b != pattern(off + i as u64))
}

/// What a listener does with an accepted connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ServeMode {
    /// Close at once (or after `--hold-ms`).
    Close,
    /// Echo every byte back until the client closes.
    Echo,
    /// Answer request-response requests (see the module docs).
    Rr,
    /// Read and discard until the client closes, then close (bulk).
    Sink,
}

/// One served connection of a data mode.
pub(crate) struct Conn {
    sock: Socket,
    /// Echo: bytes read but not yet written back.
    pending: Vec<u8>,
    pending_off: usize,
    /// Request-response: header bytes read so far.
    hdr: [u8; 8],
    hdr_len: usize,
    /// Request-response: request bytes still to read after the header.
    req_left: u64,
    /// Request-response: response bytes written so far and wanted.
    resp_off: u64,
    resp_len: u64,
    /// Whether EPOLLOUT is in the interest set.
    want_out: bool,
}

impl Conn {
    pub(crate) fn new(sock: Socket) -> Self {
        Conn {
            sock,
            pending: Vec::new(),
            pending_off: 0,
            hdr: [0; 8],
            hdr_len: 0,
            req_left: 0,
            resp_off: 0,
            resp_len: 0,
            want_out: false,
        }
    }

    pub(crate) fn fd(&self) -> i32 {
        self.sock.as_raw_fd()
    }
}

/// Result of serving one readiness event.
pub(crate) enum Step {
    /// Keep the connection.
    Keep,
    /// Close it (the peer closed, reset, or broke the protocol).
    Close,
}

/// Serves one readiness event of `c` in `mode`; `buf` is scratch space and
/// `pat` a [`pattern_buffer`].
pub(crate) fn serve_event(
    ep: &Epoll,
    token: u64,
    c: &mut Conn,
    mode: ServeMode,
    buf: &mut [u8],
    pat: &[u8],
) -> Result<Step> {
    let step = match mode {
        ServeMode::Close => Step::Close,
        ServeMode::Sink => loop {
            match c.sock.read(buf) {
                Ok(0) => break Step::Close,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break Step::Keep,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break Step::Close,
            }
        },
        ServeMode::Echo => serve_echo(c, buf),
        ServeMode::Rr => serve_rr(c, buf, pat),
    };
    if let Step::Keep = step {
        let want_out = match mode {
            ServeMode::Echo => c.pending_off < c.pending.len(),
            ServeMode::Rr => c.resp_off < c.resp_len,
            _ => false,
        };
        if want_out != c.want_out {
            c.want_out = want_out;
            // While output is pending, stop reading (back-pressure).
            let flags = if want_out { EV_OUT } else { EV_IN };
            ep.modify(c.fd(), flags, token).context("epoll modify")?;
        }
    }
    Ok(step)
}

/// Writes as much of `data` as the socket takes; `Err` on a broken peer.
fn write_some(sock: &mut Socket, data: &[u8]) -> std::result::Result<usize, ()> {
    let mut n = 0;
    while n < data.len() {
        match sock.write(&data[n..]) {
            Ok(0) => return Err(()),
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(()),
        }
    }
    Ok(n)
}

fn serve_echo(c: &mut Conn, buf: &mut [u8]) -> Step {
    loop {
        if c.pending_off < c.pending.len() {
            let Ok(n) = write_some(&mut c.sock, &c.pending[c.pending_off..]) else {
                return Step::Close;
            };
            c.pending_off += n;
            if c.pending_off < c.pending.len() {
                return Step::Keep;
            }
            c.pending.clear();
            c.pending_off = 0;
        }
        match c.sock.read(buf) {
            Ok(0) => return Step::Close,
            Ok(n) => {
                let data = buf.get(..n).unwrap_or_default();
                let Ok(w) = write_some(&mut c.sock, data) else {
                    return Step::Close;
                };
                if w < n {
                    c.pending
                        .extend_from_slice(data.get(w..).unwrap_or_default());
                    c.pending_off = 0;
                    return Step::Keep;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Keep,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Step::Close,
        }
    }
}

fn serve_rr(c: &mut Conn, buf: &mut [u8], pat: &[u8]) -> Step {
    loop {
        if c.resp_off < c.resp_len {
            let start = (c.resp_off % PATTERN_PERIOD as u64) as usize;
            let len = (c.resp_len - c.resp_off).min(CHUNK as u64) as usize;
            let Some(chunk) = pat.get(start..start + len) else {
                return Step::Close;
            };
            let Ok(n) = write_some(&mut c.sock, chunk) else {
                return Step::Close;
            };
            c.resp_off += n as u64;
            if n < len {
                return Step::Keep;
            }
            continue;
        }
        // Read the header, then the rest of the request.
        let want = if c.hdr_len < 8 {
            8 - c.hdr_len
        } else {
            c.req_left.min(buf.len() as u64) as usize
        };
        let Some(dst) = buf.get_mut(..want.max(1)) else {
            return Step::Close;
        };
        match c.sock.read(dst) {
            Ok(0) => return Step::Close,
            Ok(n) => {
                if c.hdr_len < 8 {
                    c.hdr[c.hdr_len..c.hdr_len + n].copy_from_slice(&dst[..n]);
                    c.hdr_len += n;
                    if c.hdr_len == 8 {
                        let req =
                            u64::from(u32::from_be_bytes([c.hdr[0], c.hdr[1], c.hdr[2], c.hdr[3]]));
                        let resp =
                            u64::from(u32::from_be_bytes([c.hdr[4], c.hdr[5], c.hdr[6], c.hdr[7]]));
                        if req < HEADER_BYTES {
                            return Step::Close;
                        }
                        c.req_left = req - HEADER_BYTES;
                        c.resp_len = resp;
                        c.resp_off = 0;
                    }
                } else {
                    c.req_left -= n as u64;
                }
                if c.hdr_len == 8 && c.req_left == 0 {
                    // The whole request is in: answer it, then expect the next.
                    c.hdr_len = 0;
                    if c.resp_len == 0 {
                        continue;
                    }
                    // resp_off < resp_len now: the loop writes the response.
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Keep,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Step::Close,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_buffer_matches_the_pattern_at_any_offset() {
        let b = pattern_buffer();
        for off in [0u64, 1, 250, 251, 1_000_003] {
            let s = (off % PATTERN_PERIOD as u64) as usize;
            assert_eq!(first_mismatch(&b[s..s + CHUNK], off), None, "{off}");
        }
        // A chunk shifted by one byte is caught at once.
        assert_eq!(first_mismatch(&b[1..100], 0), Some(0));
    }

    #[test]
    fn header_round_trip() {
        let h = header(4096, 1 << 20);
        assert_eq!(u32::from_be_bytes([h[0], h[1], h[2], h[3]]), 4096);
        assert_eq!(u32::from_be_bytes([h[4], h[5], h[6], h[7]]), 1 << 20);
    }
}
