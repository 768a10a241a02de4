//! Owned UTF-16 strings for the kernel's `UNICODE_STRING` arguments, in
//! one pool block each (built fallibly, never grown).

use gate_ksys::UNICODE_STRING;

use crate::pool::{NoMemory, PoolVec};

/// An owned UTF-16 string (no NUL needed; lengths are counted).
pub struct WideString(PoolVec<u16>);

impl WideString {
    /// From a Rust string.
    pub fn from_text(s: &str) -> Result<WideString, NoMemory> {
        Self::concat(&[], s)
    }

    /// A copy of a kernel UNICODE_STRING followed by `suffix` (e.g. the
    /// driver's registry path and `\Parameters`).
    ///
    /// # Safety
    /// `us` must be NULL or a valid UNICODE_STRING whose buffer holds
    /// `Length` bytes.
    pub unsafe fn from_unicode_and(
        us: *const UNICODE_STRING,
        suffix: &str,
    ) -> Result<WideString, NoMemory> {
        let head: &[u16] = if us.is_null() {
            &[]
        } else {
            // SAFETY: per the caller, `us` is valid.
            let us = unsafe { &*us };
            if us.Buffer.is_null() {
                &[]
            } else {
                // SAFETY: per the caller, the buffer holds `Length` bytes.
                unsafe { core::slice::from_raw_parts(us.Buffer, usize::from(us.Length / 2)) }
            }
        };
        Self::concat(head, suffix)
    }

    fn concat(head: &[u16], tail: &str) -> Result<WideString, NoMemory> {
        let n = head.len().saturating_add(tail.encode_utf16().count());
        let mut v = PoolVec::with_capacity(n)?;
        for u in head.iter().copied().chain(tail.encode_utf16()) {
            // Cannot fail: exactly `n` units were reserved.
            let _ = v.push(u);
        }
        Ok(WideString(v))
    }

    /// The UTF-16 units.
    pub fn units(&self) -> &[u16] {
        &self.0
    }

    /// A UNICODE_STRING describing this string (valid while `self` is
    /// neither dropped nor changed). Strings over 32767 characters are cut.
    pub fn as_unicode(&self) -> UNICODE_STRING {
        let bytes = u16::try_from(self.0.len().saturating_mul(2)).unwrap_or(0xFFFE);
        UNICODE_STRING {
            Length: bytes,
            MaximumLength: bytes,
            Buffer: self.0.as_ptr().cast_mut(),
        }
    }
}
