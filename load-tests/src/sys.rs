//! Thin, safe wrappers over the Linux calls the generator needs and the
//! standard library or socket2 do not offer: epoll with nanosecond timeouts
//! (`epoll_pwait2`), `IP_BIND_ADDRESS_NO_PORT`, thread CPU usage, CPU
//! affinity and the open-file limit. Every `unsafe` block is here.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// An epoll instance that reports readiness by a caller-chosen `u64` token.
pub struct Epoll {
    fd: OwnedFd,
    /// Whether `epoll_pwait2` works here (kernel >= 5.11); else `epoll_wait`.
    pwait2: bool,
}

/// One readiness report.
#[derive(Clone, Copy, Debug, Default)]
pub struct Event {
    pub token: u64,
    pub flags: u32,
}

pub const EV_IN: u32 = libc::EPOLLIN as u32;
pub const EV_OUT: u32 = libc::EPOLLOUT as u32;
pub const EV_ERR: u32 = libc::EPOLLERR as u32;
pub const EV_HUP: u32 = libc::EPOLLHUP as u32;
pub const EV_RDHUP: u32 = libc::EPOLLRDHUP as u32;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl Epoll {
    pub fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers; the result is checked.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut ep = Epoll { fd, pwait2: true };
        let mut probe = [libc::epoll_event { events: 0, u64: 0 }; 1];
        if ep.raw_wait(&mut probe, Some(Duration::ZERO)).is_err() {
            ep.pwait2 = false;
        }
        Ok(ep)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, flags: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: flags,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    /// Watches `fd` for `flags` (level-triggered), reporting `token`.
    pub fn add(&self, fd: RawFd, flags: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, flags, token)
    }

    /// Changes what `fd` is watched for.
    pub fn modify(&self, fd: RawFd, flags: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, flags, token)
    }

    fn raw_wait(
        &self,
        buf: &mut [libc::epoll_event],
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        let max = libc::c_int::try_from(buf.len()).unwrap_or(libc::c_int::MAX);
        let n = if self.pwait2 {
            let ts = timeout.map(|d| libc::timespec {
                tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: libc::c_long::from(d.subsec_nanos()),
            });
            let tsp = ts
                .as_ref()
                .map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: `buf` holds `max` writable events; `tsp` is null or
            // points at a live timespec; a null sigmask means "unchanged".
            unsafe {
                libc::epoll_pwait2(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr(),
                    max,
                    tsp,
                    std::ptr::null(),
                )
            }
        } else {
            let ms = match timeout {
                None => -1,
                Some(d) => {
                    let ms = d.as_nanos().div_ceil(1_000_000);
                    libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
                }
            };
            // SAFETY: `buf` holds `max` writable events.
            unsafe { libc::epoll_wait(self.fd.as_raw_fd(), buf.as_mut_ptr(), max, ms) }
        };
        match cvt(n) {
            Ok(n) => Ok(usize::try_from(n).unwrap_or(0)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Waits up to `timeout` (None: forever) and fills `out`; returns how many.
    pub fn wait(
        &self,
        scratch: &mut Vec<libc::epoll_event>,
        out: &mut Vec<Event>,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        if scratch.is_empty() {
            scratch.resize(1024, libc::epoll_event { events: 0, u64: 0 });
        }
        let n = self.raw_wait(scratch, timeout)?;
        out.clear();
        for ev in scratch.iter().take(n) {
            out.push(Event {
                token: ev.u64,
                flags: ev.events,
            });
        }
        Ok(n)
    }
}

/// Sets `IP_BIND_ADDRESS_NO_PORT` so that bind() to a source address defers
/// the port choice to connect(), where the full 4-tuple is known.
pub fn set_bind_address_no_port(fd: RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: the option value points at a live c_int of the stated size.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// User and system CPU time of a thread or process, from getrusage.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTimes {
    pub user: Duration,
    pub system: Duration,
}

fn rusage(who: libc::c_int) -> io::Result<CpuTimes> {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a live, writable rusage.
    cvt(unsafe { libc::getrusage(who, &mut ru) })?;
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    Ok(CpuTimes {
        user: tv(ru.ru_utime),
        system: tv(ru.ru_stime),
    })
}

/// CPU time of the calling thread.
pub fn thread_cpu() -> io::Result<CpuTimes> {
    rusage(libc::RUSAGE_THREAD)
}

/// CPU time of the whole process.
pub fn process_cpu() -> io::Result<CpuTimes> {
    rusage(libc::RUSAGE_SELF)
}

/// Pins the calling thread to one CPU.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET only writes inside `set`; `cpu` is bounded by the caller
    // to the machine's CPU count, far below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a live cpu_set_t of the size passed; pid 0 = this thread.
    cvt(unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) })?;
    Ok(())
}

/// Raises the soft open-file limit to the hard limit; returns the new limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a live, writable rlimit.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) })?;
    rl.rlim_cur = rl.rlim_max;
    // SAFETY: `rl` is a valid rlimit value.
    cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) })?;
    Ok(rl.rlim_cur)
}

/// Whether the process runs as root (effective uid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
