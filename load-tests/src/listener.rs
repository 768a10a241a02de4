//! A plain TCP listener that accepts and closes (or holds for a while) every
//! connection, or serves the payload modes (echo, request-response, sink;
//! see [`crate::payload`]): the target of tests and benchmarks, and the
//! backend behind peers such as HAProxy.

use crate::payload::{self, Conn, ServeMode, Step};
use crate::sys::{Epoll, EV_IN};
use anyhow::{Context, Result};
use socket2::{Domain, SockAddr, Socket, Type};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A listening socket with a large backlog.
pub fn bind(addr: SocketAddr) -> Result<Socket> {
    let dom = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let s = Socket::new(dom, Type::STREAM.nonblocking().cloexec(), None)?;
    s.set_reuse_address(true)?;
    s.bind(&SockAddr::from(addr))
        .with_context(|| format!("binding listener to {addr}"))?;
    s.listen(4096)?;
    Ok(s)
}

/// Accepts until `stop` is set (or `until` passes); accepted connections are
/// closed at once (`hold` zero) or kept open for `hold`. Returns the count.
pub fn serve(
    sock: &Socket,
    hold: Duration,
    stop: &AtomicBool,
    accepted: &AtomicU64,
    until: Option<Instant>,
) -> Result<u64> {
    serve_mode(sock, ServeMode::Close, hold, stop, accepted, until)
}

/// Like [`serve`], serving each connection in `mode` (`hold` applies to
/// [`ServeMode::Close`] only).
pub fn serve_mode(
    sock: &Socket,
    mode: ServeMode,
    hold: Duration,
    stop: &AtomicBool,
    accepted: &AtomicU64,
    until: Option<Instant>,
) -> Result<u64> {
    let ep = Epoll::new()?;
    ep.add(sock.as_raw_fd(), EV_IN, 0)?;
    let mut held: VecDeque<(Instant, Socket)> = VecDeque::new();
    // Data modes: connection slots (token = index + 1) and free indices.
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut buf = vec![0u8; payload::CHUNK];
    let pat = if mode == ServeMode::Close {
        Vec::new()
    } else {
        payload::pattern_buffer()
    };
    let mut scratch = Vec::new();
    let mut events = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if until.is_some_and(|u| now >= u) {
            break;
        }
        while held.front().is_some_and(|(t, _)| *t <= now) {
            held.pop_front();
        }
        let mut timeout = Duration::from_millis(50);
        if let Some((t, _)) = held.front() {
            timeout = timeout.min(t.saturating_duration_since(now));
        }
        ep.wait(&mut scratch, &mut events, Some(timeout))?;
        for ev in &events {
            if ev.token == 0 {
                continue;
            }
            let idx = usize::try_from(ev.token - 1).unwrap_or(usize::MAX);
            let Some(slot) = conns.get_mut(idx) else {
                continue;
            };
            let Some(c) = slot.as_mut() else { continue };
            if let Step::Close = payload::serve_event(&ep, ev.token, c, mode, &mut buf, &pat)? {
                // Dropping the socket closes it and leaves the epoll set.
                *slot = None;
                free.push(idx);
            }
        }
        if !events.iter().any(|e| e.token == 0) {
            continue;
        }
        loop {
            match sock.accept() {
                Ok((c, _)) => {
                    n += 1;
                    accepted.fetch_add(1, Ordering::Relaxed);
                    if mode != ServeMode::Close {
                        c.set_nonblocking(true)?;
                        let idx = free.pop().unwrap_or_else(|| {
                            conns.push(None);
                            conns.len() - 1
                        });
                        ep.add(c.as_raw_fd(), EV_IN, idx as u64 + 1)?;
                        if let Some(slot) = conns.get_mut(idx) {
                            *slot = Some(Conn::new(c));
                        }
                    } else if !hold.is_zero() {
                        held.push_back((Instant::now() + hold, c));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ECONNABORTED) | Some(libc::EINTR) | Some(libc::EPROTO)
                    ) => {}
                Err(e) => return Err(e).context("accept"),
            }
        }
    }
    Ok(n)
}

/// A listener on its own thread, stopped and joined on drop.
pub struct Background {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    pub accepted: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<Result<u64>>>,
}

impl Background {
    /// Binds `addr` (port 0 picks one) and serves on a new thread, pinned to
    /// `cpu` if given.
    pub fn start(addr: SocketAddr, hold: Duration, cpu: Option<usize>) -> Result<Self> {
        Self::start_mode(addr, ServeMode::Close, hold, cpu)
    }

    /// Like [`Background::start`], serving connections in `mode`.
    pub fn start_mode(
        addr: SocketAddr,
        mode: ServeMode,
        hold: Duration,
        cpu: Option<usize>,
    ) -> Result<Self> {
        let sock = bind(addr)?;
        let addr = sock
            .local_addr()?
            .as_socket()
            .context("listener address is not IP")?;
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let (s2, a2) = (stop.clone(), accepted.clone());
        let thread = std::thread::Builder::new()
            .name("gate-load-listener".into())
            .spawn(move || {
                if let Some(c) = cpu {
                    let _ = crate::sys::pin_to_cpu(c);
                }
                serve_mode(&sock, mode, hold, &s2, &a2, None)
            })?;
        Ok(Background {
            addr,
            stop,
            accepted,
            thread: Some(thread),
        })
    }

    /// Stops the listener and returns how many connections it accepted.
    pub fn stop(mut self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => anyhow::bail!("listener thread panicked"),
            None => Ok(0),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
