//! Owned UTF-16 strings for the kernel's `UNICODE_STRING` arguments.

use alloc::vec::Vec;

use gate_ksys::UNICODE_STRING;

/// An owned UTF-16 string (no NUL needed; lengths are counted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WideString(pub Vec<u16>);

impl WideString {
    /// From a Rust string.
    pub fn from_text(s: &str) -> WideString {
        WideString(s.encode_utf16().collect())
    }

    /// A copy of a kernel UNICODE_STRING.
    ///
    /// # Safety
    /// `us` must be NULL or a valid UNICODE_STRING whose buffer holds
    /// `Length` bytes.
    pub unsafe fn from_unicode(us: *const UNICODE_STRING) -> WideString {
        if us.is_null() {
            return WideString::default();
        }
        // SAFETY: per the caller, `us` is valid.
        let us = unsafe { &*us };
        if us.Buffer.is_null() {
            return WideString::default();
        }
        let n = usize::from(us.Length / 2);
        // SAFETY: per the caller, the buffer holds `Length` bytes.
        let s = unsafe { core::slice::from_raw_parts(us.Buffer, n) };
        WideString(s.to_vec())
    }

    /// Appends a Rust string.
    pub fn push_str(&mut self, s: &str) {
        self.0.extend(s.encode_utf16());
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
