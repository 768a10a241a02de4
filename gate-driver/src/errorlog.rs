//! The System event log: an I/O error log entry when the driver refuses to
//! start, so an operator sees why in Event Viewer (Windows Logs > System,
//! source = the service name) without a trace session or a debugger.
//!
//! An entry is an `IO_ERROR_LOG_PACKET` from IoAllocateErrorLogEntry with
//! the message code ([`code`]) and insertion strings after it; the Event Log
//! service formats the code's text from the message table linked into
//! gate.sys (`res/gate.mc`, compiled by build.rs), which install.cmd
//! registers as EventMessageFile under
//! `HKLM\SYSTEM\CurrentControlSet\Services\EventLog\System\<service>`.
//! `%1` is the driver's name (filled in by the I/O manager); `%2`.. are the
//! strings written here.
//!
//! Limits (wdm.h): an entry is at most `ERROR_LOG_MAXIMUM_SIZE` (240) bytes
//! including the 48-byte packet, so the strings share 192 bytes (96 UTF-16
//! units with their NULs); longer strings are cut (at a character
//! boundary, ending in `...`). IoAllocateErrorLogEntry may return NULL (no
//! memory, or Wine's stub): then nothing is written. Callable at IRQL <=
//! DISPATCH_LEVEL; no allocation of our own, no panics.

use core::sync::atomic::{AtomicPtr, Ordering};
use gate_ksys::{
    IoAllocateErrorLogEntry, IoWriteErrorLogEntry, DRIVER_OBJECT, ERROR_LOG_MAXIMUM_SIZE,
    IO_ERROR_LOG_PACKET, NTSTATUS, STATUS_INVALID_PARAMETER,
};

/// Message codes of `res/gate.mc` (windmc -c: severity Error, customer
/// bit, facility 0x100). A unit test checks them against the .mc file.
pub mod code {
    use gate_ksys::NTSTATUS;

    /// GATE_CONFIG_REFUSED: `%2` value name, `%3` the value, `%4` why.
    pub const CONFIG_REFUSED: NTSTATUS = 0xE100_0001_u32 as NTSTATUS;
}

/// The driver object entries are written for (set by DriverEntry).
static DRIVER: AtomicPtr<DRIVER_OBJECT> = AtomicPtr::new(core::ptr::null_mut());

/// Records the driver object later entries are written for. DriverEntry
/// calls it first; `driver` stays valid while DriverEntry runs and until
/// the driver unloads.
pub fn set_driver(driver: *mut DRIVER_OBJECT) {
    DRIVER.store(driver, Ordering::Release);
}

/// Size of the packet head (the strings start here).
const PACKET: usize = core::mem::size_of::<IO_ERROR_LOG_PACKET>();
/// UTF-16 units available for all strings and their NULs.
const STRING_UNITS: usize = (ERROR_LOG_MAXIMUM_SIZE - PACKET) / 2;

/// Writes "the driver did not start: registry value `name` (`value`) is
/// refused: `why`" to the System log. Returns whether an entry was queued.
pub fn config_refused(name: &str, value: &str, why: &str) -> bool {
    write(
        code::CONFIG_REFUSED,
        STATUS_INVALID_PARAMETER,
        // The name matters most; the value is usually short.
        &[(name, 40), (value, 24), (why, STRING_UNITS)],
    )
}

/// Units `s` takes when cut to at most `max` units (NUL not included).
fn cut_len(s: &str, max: usize) -> usize {
    let mut units = 0usize;
    for c in s.chars() {
        let n = c.len_utf16();
        if units.saturating_add(n) > max {
            return cut_point(s, max);
        }
        units = units.saturating_add(n);
    }
    units
}

/// Units of `s` kept before a `...` when it does not fit in `max`.
fn cut_point(s: &str, max: usize) -> usize {
    let room = max.saturating_sub(3);
    let mut units = 0usize;
    for c in s.chars() {
        let n = c.len_utf16();
        if units.saturating_add(n) > room {
            break;
        }
        units = units.saturating_add(n);
    }
    units.saturating_add(3).min(max)
}

/// Encodes `s` cut to `len` units (ending in `...` when cut) plus a NUL
/// into `out`; returns the units written.
fn encode(s: &str, len: usize, out: &mut [u16]) -> usize {
    let full: usize = s.chars().map(char::len_utf16).sum();
    let (keep, dots) = if full <= len {
        (len, 0)
    } else {
        (len.saturating_sub(3), 3)
    };
    let mut at = 0usize;
    let mut buf = [0u16; 2];
    for c in s.chars() {
        let units = c.encode_utf16(&mut buf);
        if at.saturating_add(units.len()) > keep {
            break;
        }
        for u in units.iter() {
            if let Some(slot) = out.get_mut(at) {
                *slot = *u;
            }
            at = at.saturating_add(1);
        }
    }
    for _ in 0..dots {
        if let Some(slot) = out.get_mut(at) {
            *slot = u16::from(b'.');
        }
        at = at.saturating_add(1);
    }
    if let Some(slot) = out.get_mut(at) {
        *slot = 0;
    }
    at.saturating_add(1)
}

/// Lays `strings` out NUL-terminated one after another in `units`, each
/// cut to its own cap and all together to `STRING_UNITS`; returns (units
/// used, strings laid out).
fn layout(strings: &[(&str, usize)], units: &mut [u16; STRING_UNITS]) -> (usize, u16) {
    let mut used = 0usize;
    let mut count = 0u16;
    for (s, cap) in strings {
        // Room left for this string's text (its NUL and one NUL per later
        // string are reserved).
        let later = strings.len().saturating_sub(usize::from(count) + 1);
        let room = STRING_UNITS
            .saturating_sub(used)
            .saturating_sub(1)
            .saturating_sub(later);
        let len = cut_len(s, (*cap).min(room));
        let Some(out) = units.get_mut(used..) else {
            break;
        };
        used = used.saturating_add(encode(s, len, out));
        count = count.saturating_add(1);
    }
    (used, count)
}

/// Builds and queues one entry with `strings` (each with its own unit cap;
/// together they never exceed the entry's room).
fn write(error_code: NTSTATUS, final_status: NTSTATUS, strings: &[(&str, usize)]) -> bool {
    let driver = DRIVER.load(Ordering::Acquire);
    if driver.is_null() {
        return false;
    }
    // Lay out the strings on the stack first: the entry size must be known
    // before it is allocated.
    let mut units = [0u16; STRING_UNITS];
    let (used, count) = layout(strings, &mut units);
    let size = PACKET.saturating_add(used.saturating_mul(2));
    let Ok(entry_size) = u8::try_from(size) else {
        return false;
    };
    if size > ERROR_LOG_MAXIMUM_SIZE {
        return false;
    }
    // SAFETY: `driver` is the driver object DriverEntry was given (valid
    // until unload); the size is within ERROR_LOG_MAXIMUM_SIZE.
    let entry = unsafe { IoAllocateErrorLogEntry(driver.cast(), entry_size) };
    if entry.is_null() {
        return false;
    }
    let packet = IO_ERROR_LOG_PACKET {
        NumberOfStrings: count,
        StringOffset: PACKET as u16,
        ErrorCode: error_code,
        FinalStatus: final_status,
        ..IO_ERROR_LOG_PACKET::default()
    };
    // SAFETY: the entry is `size` writable bytes (the I/O manager
    // allocated it for us, zeroed); the packet head and `used` UTF-16 units
    // fill exactly `size` bytes; after IoWriteErrorLogEntry the entry is no
    // longer ours and is not touched again.
    unsafe {
        core::ptr::write_unaligned(entry.cast::<IO_ERROR_LOG_PACKET>(), packet);
        core::ptr::copy_nonoverlapping(
            units.as_ptr().cast::<u8>(),
            entry.cast::<u8>().add(PACKET),
            used.saturating_mul(2),
        );
        IoWriteErrorLogEntry(entry);
    }
    true
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)]
mod tests {
    use super::*;
    use std::string::{String, ToString};
    use std::vec;
    use std::vec::Vec;

    /// `code` equals what windmc -c computes from res/gate.mc: severity
    /// Error (3 << 30), customer bit (1 << 29), facility << 16, id.
    #[test]
    fn codes_match_the_message_file() {
        let mc = include_str!("../res/gate.mc");
        let facility = mc
            .lines()
            .find_map(|l| l.trim().strip_prefix("FacilityNames=(Gate="))
            .and_then(|r| r.split(':').next())
            .and_then(|h| u32::from_str_radix(h.trim_start_matches("0x"), 16).ok())
            .expect("Gate facility in gate.mc");
        let mut id = None;
        let mut found = Vec::new();
        for l in mc.lines() {
            if let Some(v) = l.strip_prefix("MessageId=0x") {
                id = u32::from_str_radix(v.trim(), 16).ok();
            }
            if let Some(sym) = l.strip_prefix("SymbolicName=") {
                let code = (3u32 << 30) | (1 << 29) | (facility << 16) | id.expect("MessageId");
                found.push((sym.trim().to_string(), code));
            }
        }
        assert_eq!(
            found,
            vec![(
                "GATE_CONFIG_REFUSED".to_string(),
                code::CONFIG_REFUSED as u32
            )]
        );
    }

    fn decode(units: &[u16]) -> Vec<String> {
        units
            .split(|u| *u == 0)
            .map(String::from_utf16_lossy)
            .collect()
    }

    #[test]
    fn strings_are_cut_at_character_boundaries_with_dots() {
        let mut out = [0xFFFFu16; 64];
        let s = "ab\u{1F600}cdef";
        // Fits: written whole, then a NUL.
        let n = encode(s, cut_len(s, 20), &mut out);
        assert_eq!(n, 9);
        assert_eq!(decode(&out[..n - 1]), vec![s.to_string()]);
        // Cut to 6 units: "ab" + "..." (the emoji's pair does not fit in 3).
        let len = cut_len(s, 6);
        assert!(len <= 6);
        let n = encode(s, len, &mut out);
        assert_eq!(String::from_utf16(&out[..n - 1]).unwrap(), "ab...");
    }

    #[test]
    fn any_strings_fit_the_entry() {
        // Property: whatever the inputs, the laid-out strings fit in
        // STRING_UNITS and each is NUL-terminated (three NULs).
        let long = "x".repeat(500);
        let wide = "\u{1F600}".repeat(200);
        for (a, b, c) in [
            (long.as_str(), long.as_str(), long.as_str()),
            (wide.as_str(), "", wide.as_str()),
            ("", "", ""),
            ("ListenPort", "0", "1..=65535"),
        ] {
            let mut units = [0u16; STRING_UNITS];
            let (used, count) = layout(&[(a, 40), (b, 24), (c, STRING_UNITS)], &mut units);
            assert_eq!(count, 3);
            let texts = decode(&units[..used - 1]);
            assert!(a.starts_with(texts[0].trim_end_matches('.')), "{texts:?}");
            assert!(used <= STRING_UNITS);
            assert_eq!(units[..used].iter().filter(|u| **u == 0).count(), 3);
        }
    }
}
