//! The dispatch routines: IRP_MJ_CREATE / CLEANUP / CLOSE (nothing to do:
//! the device keeps no per-handle state) and IRP_MJ_DEVICE_CONTROL, which
//! routes each code to its handler with an [`Io`] view of the one
//! METHOD_BUFFERED system buffer and completes the IRP with the handler's
//! result: the reply's size, or a [`Refusal`] (its NTSTATUS, and an ETW
//! ControlRejected event naming the field).

use gate_ioctl::Wire;
use gate_ksys::*;

use crate::state::Driver;

/// A refused request: the status to complete with and what to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The IRP's final status.
    pub status: NTSTATUS,
    /// The refused field (`version`, `input_length`, `rate_milli`, ...).
    pub field: &'static str,
    /// The refused value.
    pub value: u64,
    /// Why.
    pub reason: &'static str,
}

impl Refusal {
    /// A bad value: STATUS_INVALID_PARAMETER.
    pub fn invalid(field: &'static str, value: u64, reason: &'static str) -> Refusal {
        Refusal {
            status: STATUS_INVALID_PARAMETER,
            field,
            value,
            reason,
        }
    }
}

impl From<gate_ioctl::Invalid> for Refusal {
    fn from(e: gate_ioctl::Invalid) -> Refusal {
        let status = if e.field == "version" {
            STATUS_NOT_SUPPORTED
        } else {
            STATUS_INVALID_PARAMETER
        };
        Refusal {
            status,
            field: e.field,
            value: e.value,
            reason: e.expected,
        }
    }
}

/// One IOCTL's buffer and caller. The input and the output share `buf`
/// (METHOD_BUFFERED): handlers take a copy of the input with
/// [`Io::request`] / [`Io::input_copy`] before writing with [`Io::reply`].
pub struct Io {
    buf: *mut u8,
    in_len: usize,
    out_len: usize,
    /// The caller's process id.
    pub pid: u32,
    /// The IOCTL code.
    pub code: u32,
}

impl Io {
    /// Input length in bytes.
    pub fn in_len(&self) -> usize {
        self.in_len
    }

    /// A copy of the request: exactly `T::SIZE` bytes, the right version,
    /// only `allowed_flags`.
    pub fn request<T: Wire>(&self, allowed_flags: u32) -> Result<T, Refusal> {
        if self.in_len != T::SIZE {
            return Err(Refusal {
                status: STATUS_INFO_LENGTH_MISMATCH,
                field: "input_length",
                value: self.in_len as u64,
                reason: "the size of the request struct",
            });
        }
        let mut v = T::zeroed();
        // SAFETY: `buf` holds at least `in_len` = SIZE input bytes (the I/O
        // manager's system buffer); `v` is a Wire type (any bytes valid).
        unsafe {
            core::ptr::copy_nonoverlapping(self.buf, (&mut v as *mut T).cast::<u8>(), T::SIZE)
        };
        let head = v.as_bytes();
        let word = |i: usize| {
            let mut w = [0u8; 4];
            if let Some(b) = head.get(i..i.saturating_add(4)) {
                w.copy_from_slice(b);
            }
            u32::from_ne_bytes(w)
        };
        gate_ioctl::check_header(word(0), word(4), allowed_flags)?;
        Ok(v)
    }

    /// A copy of the whole input (fallible allocation).
    pub fn input_copy(&self) -> Result<alloc::vec::Vec<u8>, Refusal> {
        let mut v = alloc::vec::Vec::new();
        v.try_reserve_exact(self.in_len).map_err(|_| Refusal {
            status: STATUS_INSUFFICIENT_RESOURCES,
            field: "input_length",
            value: self.in_len as u64,
            reason: "no memory to copy the request",
        })?;
        if self.in_len > 0 && !self.buf.is_null() {
            // SAFETY: the system buffer holds `in_len` input bytes.
            let input = unsafe { core::slice::from_raw_parts(self.buf, self.in_len) };
            // Reserved for `in_len` bytes above.
            for b in input {
                crate::pool::push_reserved(&mut v, *b);
            }
        }
        Ok(v)
    }

    /// Checks there is room for a `T` reply (call before changing anything).
    pub fn need_output<T: Wire>(&self) -> Result<(), Refusal> {
        self.need_output_bytes(T::SIZE)
    }

    /// Refuses an output buffer shorter than `len` bytes (an older,
    /// shorter version of a reply).
    pub fn need_output_bytes(&self, len: usize) -> Result<(), Refusal> {
        if self.out_len < len || self.buf.is_null() {
            return Err(Refusal {
                status: STATUS_BUFFER_TOO_SMALL,
                field: "output_length",
                value: self.out_len as u64,
                reason: "at least the size of the reply struct",
            });
        }
        Ok(())
    }

    /// Output buffer length in bytes.
    pub fn out_len(&self) -> usize {
        self.out_len
    }

    /// Writes the reply; returns its size (IoStatus.Information).
    pub fn reply<T: Wire>(&self, r: &T) -> Result<usize, Refusal> {
        self.reply_prefix(r, T::SIZE)
    }

    /// Writes the first `len` bytes of the reply (an older version that
    /// is a prefix of `T`); returns `len` (IoStatus.Information).
    pub fn reply_prefix<T: Wire>(&self, r: &T, len: usize) -> Result<usize, Refusal> {
        self.need_output_bytes(len)?;
        let Some(bytes) = r.as_bytes().get(..len) else {
            return Err(Refusal {
                status: STATUS_BUFFER_TOO_SMALL,
                field: "output_length",
                value: len as u64,
                reason: "at most the size of the reply struct",
            });
        };
        // SAFETY: the buffer has at least `out_len` >= `len` bytes; the
        // input was copied out before any reply is written.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), self.buf, len) };
        Ok(len)
    }
}

fn complete(irp: *mut IRP, status: NTSTATUS, information: usize) -> NTSTATUS {
    // SAFETY: the IRP dispatched to us; completed once, here.
    unsafe {
        (*irp).IoStatus.Status = status;
        (*irp).IoStatus.Information = information;
        IofCompleteRequest(irp, IO_NO_INCREMENT);
    }
    status
}

/// IRP_MJ_CREATE, IRP_MJ_CLEANUP, IRP_MJ_CLOSE: success (access is
/// decided by the I/O manager from the device's DACL).
///
/// # Safety
/// Called by the I/O manager with a valid IRP.
pub unsafe extern "system" fn create_close(_dev: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    complete(irp, STATUS_SUCCESS, 0)
}

/// The name of a code (for events).
pub fn code_name(code: u32) -> &'static str {
    gate_ioctl::ALL_CODES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("unknown", |(_, n)| n)
}

/// IRP_MJ_DEVICE_CONTROL.
///
/// # Safety
/// Called by the I/O manager (PASSIVE_LEVEL, caller's thread) with a valid
/// METHOD_BUFFERED IRP.
pub unsafe extern "system" fn device_control(_dev: *mut DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: a valid IRP with its current stack location.
    let (code, in_len, out_len, buf) = unsafe {
        let sp = IoGetCurrentIrpStackLocation(irp);
        (
            ioctl_code(sp),
            ioctl_input_length(sp) as usize,
            ioctl_output_length(sp) as usize,
            (*irp).AssociatedIrp.cast::<u8>(),
        )
    };
    // SAFETY: no preconditions; the caller's process id.
    let pid = unsafe { PsGetCurrentProcessId() } as usize as u32;
    let io = Io {
        buf,
        in_len,
        out_len,
        pid,
        code,
    };
    let r = match crate::entry::running() {
        None => Err(Refusal {
            status: STATUS_DEVICE_NOT_READY,
            field: "device",
            value: 0,
            reason: "the gate is not running",
        }),
        Some(d) => match d.rundown.enter() {
            None => Err(Refusal {
                status: STATUS_DEVICE_NOT_READY,
                field: "device",
                value: 0,
                reason: "the gate is stopping",
            }),
            Some(_guard) => route(d, &io),
        },
    };
    match r {
        Ok(n) => complete(irp, STATUS_SUCCESS, n),
        Err(f) => {
            crate::telemetry::control_rejected(code_name(code), &f, pid);
            complete(irp, f.status, 0)
        }
    }
}

fn route(d: &Driver, io: &Io) -> Result<usize, Refusal> {
    use gate_ioctl::*;
    if method_of(io.code) != METHOD_BUFFERED {
        return Err(Refusal {
            status: STATUS_INVALID_DEVICE_REQUEST,
            field: "code",
            value: u64::from(io.code),
            reason: "a METHOD_BUFFERED gate control code",
        });
    }
    match io.code {
        IOCTL_GATE_STATUS => super::read::status(d, io),
        IOCTL_GATE_QUERY => super::read::query(d, io),
        IOCTL_GATE_TOP => super::read::top(d, io),
        IOCTL_GATE_LIST_GET => super::read::list_get(d, io),
        IOCTL_GATE_SET => super::change::set(d, io),
        IOCTL_GATE_LIST_CHANGE => super::change::list_change(d, io),
        IOCTL_GATE_BAN => super::change::ban(d, io),
        IOCTL_GATE_UNBAN => super::change::unban(d, io),
        IOCTL_GATE_RESET => super::change::reset(d, io),
        c => Err(Refusal {
            status: STATUS_INVALID_DEVICE_REQUEST,
            field: "code",
            value: u64::from(c),
            reason: "a gate control code",
        }),
    }
}
