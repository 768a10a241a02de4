//! `dbg_print!`: formats into a stack buffer (no allocation, so usable at
//! any IRQL <= DISPATCH_LEVEL) and passes it to DbgPrintEx as one `%s`.
//! Text longer than the buffer is cut.

use core::fmt::{self, Write};

/// Bytes of text per message (the kernel's own DbgPrint limit is 512);
/// the buffer adds the line break and the NUL.
const MAX_TEXT: usize = 255;

/// A NUL-terminated, truncating text buffer.
pub struct Line {
    buf: [u8; MAX_TEXT + 2],
    len: usize,
}

impl Line {
    /// An empty line.
    pub const fn new() -> Line {
        Line {
            buf: [0; MAX_TEXT + 2],
            len: 0,
        }
    }

    /// The text so far (without the NUL).
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

impl Default for Line {
    fn default() -> Self {
        Line::new()
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            // Keep the last byte for the NUL; a NUL inside the text would
            // cut it short, so it is replaced.
            if self.len >= MAX_TEXT {
                break;
            }
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = if b == 0 { b'?' } else { b };
                self.len = self.len.saturating_add(1);
            }
        }
        Ok(())
    }
}

/// Prints `args` at `level` (a DPFLTR_*_LEVEL) under DPFLTR_IHVDRIVER_ID.
pub fn print(level: u32, args: fmt::Arguments<'_>) {
    let mut line = Line::new();
    let _ = line.write_fmt(args);
    // The kernel adds no line break; the buffer keeps room for it and the NUL.
    if let Some(nl) = line.buf.get_mut(line.len) {
        *nl = b'\n';
    }
    let end = line.len.saturating_add(1);
    if let Some(z) = line.buf.get_mut(end) {
        *z = 0;
    }
    // SAFETY: the format is a NUL-terminated "%s" and `line.buf` is
    // NUL-terminated (text <= MAX_TEXT bytes, then '\n', then 0); DbgPrintEx reads
    // both only during the call and may be called at IRQL <= DIRQL.
    unsafe {
        gate_ksys::DbgPrintEx(
            gate_ksys::DPFLTR_IHVDRIVER_ID,
            level,
            c"%s".as_ptr().cast(),
            line.buf.as_ptr(),
        );
    }
}

/// `dbg_print!(level, "fmt", args...)`.
#[macro_export]
macro_rules! dbg_print {
    ($level:expr, $($arg:tt)*) => {
        $crate::kernel::dbg::print($level, format_args!($($arg)*))
    };
}
