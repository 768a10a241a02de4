//! The ETW provider-name hash (the GUID EventSource, TraceLoggingProvider.h
//! and `wpr`/`tracelog`'s `*Name` syntax derive from a provider name), and
//! GUID text.

use gate_ksys::types::GUID;
use sha1::{Digest, Sha1};

/// The fixed namespace ETW hashes before the name.
const NAMESPACE: [u8; 16] = [
    0x48, 0x2C, 0x2D, 0xB2, 0xC3, 0x90, 0x47, 0xC8, 0x87, 0xF8, 0x1A, 0x15, 0xBF, 0xC1, 0x30, 0xFB,
];

/// SHA-1 over the namespace and the upper-cased name in UTF-16BE; the first
/// 16 bytes, version nibble set to 5, read as a GUID in Windows byte order.
pub fn guid_from_name(name: &str) -> GUID {
    let mut h = Sha1::new();
    h.update(NAMESPACE);
    for unit in name.to_uppercase().encode_utf16() {
        h.update(unit.to_be_bytes());
    }
    let digest = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[7] = (b[7] & 0x0F) | 0x50;
    GUID {
        Data1: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        Data2: u16::from_le_bytes([b[4], b[5]]),
        Data3: u16::from_le_bytes([b[6], b[7]]),
        Data4: [b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]],
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lower case.
pub fn format_guid(g: &GUID) -> String {
    let d = g.Data4;
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        g.Data1, g.Data2, g.Data3, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
    )
}

/// Parses a GUID with or without braces, any case.
pub fn parse_guid(s: &str) -> Result<GUID, String> {
    let t = s.trim().trim_start_matches('{').trim_end_matches('}');
    let parts: Vec<&str> = t.split('-').collect();
    let bad = || format!("{s:?} is not a GUID");
    let [a, b, c, d, e] = parts.as_slice() else {
        return Err(bad());
    };
    if a.len() != 8 || b.len() != 4 || c.len() != 4 || d.len() != 4 || e.len() != 12 {
        return Err(bad());
    }
    let hex = |x: &str| u64::from_str_radix(x, 16).map_err(|_| bad());
    let tail = format!("{d}{e}");
    let mut data4 = [0u8; 8];
    for (i, slot) in data4.iter_mut().enumerate() {
        *slot = hex(&tail[2 * i..2 * i + 2])? as u8;
    }
    Ok(GUID {
        Data1: hex(a)? as u32,
        Data2: hex(b)? as u16,
        Data3: hex(c)? as u16,
        Data4: data4,
    })
}
