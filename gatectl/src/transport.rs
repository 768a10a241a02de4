//! How gatectl reaches the driver: the control device through
//! DeviceIoControl on Windows, the Linux front's control socket (the same
//! codes and bytes, framed by gate-ioctl's `ChannelRequest`/`ChannelReply`)
//! on Linux. Both give back the request's final NTSTATUS and the output.

use std::fmt;

/// What went wrong reaching the driver. Each names the path; [`exit_code`]
/// gives gatectl's exit code.
///
/// [`exit_code`]: TransportError::exit_code
#[derive(Debug)]
pub enum TransportError {
    /// The device or socket does not exist: the driver is not loaded (or
    /// no Linux front serves this path).
    NotFound(String),
    /// The path exists but is not a socket (Linux: a wrong `--device`).
    #[cfg_attr(not(unix), allow(dead_code))] // the Linux socket only
    NotSocket(String),
    /// A socket nobody listens on (ECONNREFUSED): left behind by a Linux
    /// front that is gone.
    #[cfg_attr(not(unix), allow(dead_code))] // the Linux socket only
    Refused(String),
    /// Opening the device or socket was refused.
    AccessDenied(String),
    /// The driver or Linux front went away during the request (the channel
    /// closed under us).
    #[cfg_attr(not(unix), allow(dead_code))] // the Linux socket only
    Closed(String),
    /// No answer within `--timeout` (the Linux socket: a gate whose
    /// control handler is stuck). The path and the wait.
    #[cfg_attr(not(unix), allow(dead_code))] // the Linux socket only
    TimedOut(String, std::time::Duration),
    /// Any other I/O error.
    Io(String),
}

impl TransportError {
    /// gatectl's exit code: 3 the gate is not reachable there, stopped or
    /// did not answer in time,
    /// 4 access denied, 6 other I/O.
    pub fn exit_code(&self) -> u8 {
        match self {
            TransportError::NotFound(_)
            | TransportError::NotSocket(_)
            | TransportError::Refused(_)
            | TransportError::Closed(_)
            | TransportError::TimedOut(..) => 3,
            TransportError::AccessDenied(_) => 4,
            TransportError::Io(_) => 6,
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::NotFound(p) if cfg!(windows) => {
                write!(f, "the gate is not running: {p} does not exist (driver not loaded?)")
            }
            TransportError::NotFound(p) => write!(
                f,
                "the gate is not running: {p} does not exist (no gate-sim serving --control {p}?)"
            ),
            TransportError::NotSocket(p) => {
                write!(f, "{p} is not a socket (is --device or $GATE_CONTROL right?)")
            }
            TransportError::Refused(p) => write!(
                f,
                "the gate is not running: {p}: connection refused (a stale socket: the gate-sim that made it is gone)"
            ),
            TransportError::AccessDenied(p) if cfg!(windows) => write!(
                f,
                "access denied opening {p} (the control device admits SYSTEM and Administrators only: run elevated)"
            ),
            TransportError::AccessDenied(p) => write!(
                f,
                "access denied opening {p} (the control socket is mode 0600, owned by the user that runs gate-sim, normally root)"
            ),
            TransportError::Closed(p) => {
                write!(f, "the gate stopped (control channel {p} closed)")
            }
            TransportError::TimedOut(p, d) => write!(
                f,
                "the gate did not answer within {} on {p} (its control handler is stuck or the machine is overloaded; --timeout sets the wait)",
                humantime::format_duration(*d)
            ),
            TransportError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

/// A completed request: final NTSTATUS and the output bytes.
pub struct Reply {
    pub status: i32,
    pub output: Vec<u8>,
}

/// A connection to the driver.
pub trait Transport {
    /// Sends one IOCTL.
    fn ioctl(&mut self, code: u32, input: &[u8], out_len: usize) -> Result<Reply, TransportError>;
}

/// The default path: `\\.\TcpFrontGate` on Windows, the control socket on Linux.
pub fn default_path() -> String {
    if cfg!(windows) {
        gate_ioctl::USER_PATH.to_string()
    } else {
        std::env::var("GATE_CONTROL").unwrap_or_else(|_| "/run/gate/control.sock".to_string())
    }
}

/// Opens `path` with `access` (FILE_READ_ACCESS | FILE_WRITE_ACCESS bits);
/// `timeout`: the longest wait for each read or write on the Linux socket
/// (unused on Windows, where the driver answers every DeviceIoControl at
/// once).
pub fn open(
    path: &str,
    access: u32,
    timeout: std::time::Duration,
) -> Result<Box<dyn Transport>, TransportError> {
    #[cfg(windows)]
    {
        let _ = timeout;
        Ok(Box::new(windows::Device::open(path, access)?))
    }
    #[cfg(unix)]
    {
        Ok(Box::new(unix::Socket::open(path, access, timeout)?))
    }
}

#[cfg(unix)]
mod unix {
    use super::*;
    use gate_ioctl::{ChannelReply, ChannelRequest, Wire, CHANNEL_MAX};
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    use std::io::ErrorKind;
    use std::os::unix::fs::FileTypeExt;

    pub struct Socket {
        s: UnixStream,
        access: u32,
        path: String,
        timeout: std::time::Duration,
    }

    /// Why connecting to `path` failed (`e` is connect's error; the path's
    /// file type tells a wrong path from a stale socket, since Linux
    /// answers ECONNREFUSED for both).
    pub(super) fn connect_error(path: &str, e: &std::io::Error) -> TransportError {
        let p = path.to_string();
        match std::fs::metadata(path) {
            Err(m) if m.kind() == ErrorKind::NotFound => return TransportError::NotFound(p),
            Ok(m) if !m.file_type().is_socket() => return TransportError::NotSocket(p),
            _ => {}
        }
        match e.kind() {
            ErrorKind::NotFound => TransportError::NotFound(p),
            ErrorKind::ConnectionRefused => TransportError::Refused(p),
            ErrorKind::PermissionDenied => TransportError::AccessDenied(p),
            _ => TransportError::Io(format!("{path}: {e}")),
        }
    }

    impl Socket {
        pub fn open(
            path: &str,
            access: u32,
            timeout: std::time::Duration,
        ) -> Result<Socket, TransportError> {
            match UnixStream::connect(path) {
                Ok(s) => {
                    s.set_read_timeout(Some(timeout))
                        .and_then(|()| s.set_write_timeout(Some(timeout)))
                        .map_err(|e| TransportError::Io(format!("{path}: {e}")))?;
                    Ok(Socket {
                        s,
                        access,
                        path: path.to_string(),
                        timeout,
                    })
                }
                Err(e) => Err(connect_error(path, &e)),
            }
        }
    }

    impl Transport for Socket {
        fn ioctl(
            &mut self,
            code: u32,
            input: &[u8],
            out_len: usize,
        ) -> Result<Reply, TransportError> {
            // The peer closing the channel mid-request means the gate stopped.
            let io = |e: std::io::Error| match e.kind() {
                ErrorKind::BrokenPipe
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::UnexpectedEof => TransportError::Closed(self.path.clone()),
                // SO_RCVTIMEO / SO_SNDTIMEO ran out.
                ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                    TransportError::TimedOut(self.path.clone(), self.timeout)
                }
                _ => TransportError::Io(format!("{}: {e}", self.path)),
            };
            let req = ChannelRequest {
                code,
                access: self.access,
                in_len: u32::try_from(input.len()).unwrap_or(u32::MAX),
                out_len: u32::try_from(out_len).unwrap_or(u32::MAX),
            };
            self.s.write_all(req.as_bytes()).map_err(io)?;
            self.s.write_all(input).map_err(io)?;
            let mut head = [0u8; ChannelReply::SIZE];
            self.s.read_exact(&mut head).map_err(io)?;
            let rep = ChannelReply::from_bytes(&head)
                .ok_or_else(|| TransportError::Io("short reply".into()))?;
            if rep.information > u64::from(CHANNEL_MAX) {
                return Err(TransportError::Io(format!(
                    "reply of {} bytes",
                    rep.information
                )));
            }
            let mut output = vec![0u8; rep.information as usize];
            self.s.read_exact(&mut output).map_err(io)?;
            Ok(Reply {
                status: rep.status,
                output,
            })
        }
    }
}

#[cfg(windows)]
mod windows {
    use super::*;
    use std::ffi::c_void;

    type Handle = *mut c_void;
    const INVALID_HANDLE_VALUE: Handle = -1isize as Handle;
    const GENERIC_READ: u32 = 0x8000_0000;
    const GENERIC_WRITE: u32 = 0x4000_0000;
    const OPEN_EXISTING: u32 = 3;
    const ERROR_FILE_NOT_FOUND: u32 = 2;
    const ERROR_PATH_NOT_FOUND: u32 = 3;
    const ERROR_ACCESS_DENIED: u32 = 5;

    #[link(name = "kernel32")]
    extern "system" {
        fn CreateFileW(
            name: *const u16,
            access: u32,
            share: u32,
            security: *mut c_void,
            disposition: u32,
            flags: u32,
            template: Handle,
        ) -> Handle;
        fn DeviceIoControl(
            device: Handle,
            code: u32,
            input: *const c_void,
            in_len: u32,
            output: *mut c_void,
            out_len: u32,
            returned: *mut u32,
            overlapped: *mut c_void,
        ) -> i32;
        fn GetLastError() -> u32;
        fn CloseHandle(h: Handle) -> i32;
    }

    pub struct Device(Handle);

    impl Drop for Device {
        fn drop(&mut self) {
            // SAFETY: a handle from CreateFileW, closed once.
            unsafe { CloseHandle(self.0) };
        }
    }

    /// The NTSTATUS a Win32 error from DeviceIoControl stands for (the
    /// driver's statuses, as RtlNtStatusToDosError maps them).
    fn status_of(err: u32) -> i32 {
        use gate_ioctl::status::*;
        match err {
            5 => STATUS_ACCESS_DENIED,
            87 => STATUS_INVALID_PARAMETER,
            1 => STATUS_INVALID_DEVICE_REQUEST,
            24 => STATUS_INFO_LENGTH_MISMATCH,
            122 => STATUS_BUFFER_TOO_SMALL,
            50 => STATUS_NOT_SUPPORTED,
            170 => STATUS_DEVICE_BUSY,
            1450 => STATUS_INSUFFICIENT_RESOURCES,
            21 => STATUS_DEVICE_NOT_READY,
            1816 | 112 => STATUS_QUOTA_EXCEEDED,
            1016 => STATUS_REGISTRY_IO_FAILED,
            e => (0xC007_0000u32 | (e & 0xFFFF)) as i32,
        }
    }

    impl Device {
        pub fn open(path: &str, access: u32) -> Result<Device, TransportError> {
            let name: Vec<u16> = path.encode_utf16().chain([0]).collect();
            let mut want = 0;
            if access & gate_ioctl::FILE_READ_ACCESS != 0 {
                want |= GENERIC_READ;
            }
            if access & gate_ioctl::FILE_WRITE_ACCESS != 0 {
                want |= GENERIC_WRITE;
            }
            // SAFETY: a NUL-terminated name; no security attributes or template.
            let h = unsafe {
                CreateFileW(
                    name.as_ptr(),
                    want,
                    3,
                    std::ptr::null_mut(),
                    OPEN_EXISTING,
                    0,
                    std::ptr::null_mut(),
                )
            };
            if h == INVALID_HANDLE_VALUE {
                // SAFETY: no preconditions.
                let e = unsafe { GetLastError() };
                return Err(match e {
                    ERROR_FILE_NOT_FOUND | ERROR_PATH_NOT_FOUND => {
                        TransportError::NotFound(path.to_string())
                    }
                    ERROR_ACCESS_DENIED => TransportError::AccessDenied(path.to_string()),
                    e => TransportError::Io(format!("CreateFile({path}): Win32 error {e}")),
                });
            }
            Ok(Device(h))
        }
    }

    impl Transport for Device {
        fn ioctl(
            &mut self,
            code: u32,
            input: &[u8],
            out_len: usize,
        ) -> Result<Reply, TransportError> {
            let mut output = vec![0u8; out_len];
            let mut returned = 0u32;
            // SAFETY: buffers valid for their lengths; synchronous call.
            let ok = unsafe {
                DeviceIoControl(
                    self.0,
                    code,
                    input.as_ptr().cast(),
                    input.len() as u32,
                    output.as_mut_ptr().cast(),
                    out_len as u32,
                    &mut returned,
                    std::ptr::null_mut(),
                )
            };
            if ok == 0 {
                // SAFETY: no preconditions.
                let e = unsafe { GetLastError() };
                return Ok(Reply {
                    status: status_of(e),
                    output: Vec::new(),
                });
            }
            output.truncate(returned as usize);
            Ok(Reply { status: 0, output })
        }
    }
}
