//! The PROXY protocol header (HAProxy, "The PROXY protocol", versions 1
//! and 2; <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>):
//! sent to the backend before any client byte, so the backend sees the
//! client's real address. Pure and allocation-free: it writes into a
//! caller's buffer.
//!
//! Address families follow what HAProxy itself sends: both ends IPv4 ->
//! `TCP4` / `\x11`; both IPv6 -> `TCP6` / `\x21`; one of each -> the IPv4
//! one as an IPv4-mapped IPv6 address, `TCP6` / `\x21`. IPv4-mapped IPv6
//! addresses (an IPv4 client on a dual-stack listener) were already turned
//! into IPv4 by [`crate::addr::from_sockaddr`]. An unknown address gives
//! `PROXY UNKNOWN\r\n` (v1) or the `UNSPEC` family with no address (v2).

use core::fmt::Write;
use core::net::{IpAddr, Ipv6Addr, SocketAddr};

/// Longest v1 header (the spec's bound: 107 bytes with CRLF).
pub const V1_MAX: usize = 107;
/// Longest v2 header this module writes (16-byte header + 36 bytes of IPv6 addresses).
pub const V2_MAX: usize = 52;
/// The v2 signature (12 bytes).
pub const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// Which header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// Human-readable text (`PROXY TCP4 ...\r\n`).
    V1,
    /// Binary.
    V2,
}

impl Version {
    /// The `ProxyProtocol` registry value: 0 = none, 1 = v1, 2 = v2.
    pub fn from_config(v: u8) -> Option<Version> {
        match v {
            1 => Some(Version::V1),
            2 => Some(Version::V2),
            _ => None,
        }
    }
}

/// The pair of addresses in the family the header uses (see module docs).
fn family(src: SocketAddr, dst: SocketAddr) -> (IpAddr, IpAddr) {
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (IpAddr::V4(a), IpAddr::V4(b)),
        (a, b) => (IpAddr::V6(as_v6(a)), IpAddr::V6(as_v6(b))),
    }
}

fn as_v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// A `fmt::Write` into a fixed slice (fails when full).
struct Cursor<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(core::fmt::Error)?;
        let dst = self.out.get_mut(self.len..end).ok_or(core::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Writes the header for a client `src` that connected to `dst` (the
/// gate's own address) into `out`; returns its length, or `None` if `out`
/// is too small ([`V1_MAX`] / [`V2_MAX`] always suffice).
pub fn encode(
    version: Version,
    src: Option<SocketAddr>,
    dst: Option<SocketAddr>,
    out: &mut [u8],
) -> Option<usize> {
    match version {
        Version::V1 => v1(src, dst, out),
        Version::V2 => v2(src, dst, out),
    }
}

fn v1(src: Option<SocketAddr>, dst: Option<SocketAddr>, out: &mut [u8]) -> Option<usize> {
    let mut c = Cursor { out, len: 0 };
    match (src, dst) {
        (Some(s), Some(d)) => {
            let (a, b) = family(s, d);
            let proto = if a.is_ipv4() { "TCP4" } else { "TCP6" };
            write!(
                c,
                "PROXY {} {} {} {} {}\r\n",
                proto,
                a,
                b,
                s.port(),
                d.port()
            )
            .ok()?;
        }
        _ => c.write_str("PROXY UNKNOWN\r\n").ok()?,
    }
    Some(c.len)
}

fn v2(src: Option<SocketAddr>, dst: Option<SocketAddr>, out: &mut [u8]) -> Option<usize> {
    let mut buf = [0u8; V2_MAX];
    let mut n = 0usize;
    let mut put = |bytes: &[u8]| -> Option<()> {
        let end = n.checked_add(bytes.len())?;
        buf.get_mut(n..end)?.copy_from_slice(bytes);
        n = end;
        Some(())
    };
    put(&V2_SIGNATURE)?;
    // Version 2, command PROXY.
    put(&[0x21])?;
    match (src, dst) {
        (Some(s), Some(d)) => match family(s, d) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                put(&[0x11])?;
                put(&12u16.to_be_bytes())?;
                put(&a.octets())?;
                put(&b.octets())?;
                put(&s.port().to_be_bytes())?;
                put(&d.port().to_be_bytes())?;
            }
            (a, b) => {
                put(&[0x21])?;
                put(&36u16.to_be_bytes())?;
                put(&as_v6(a).octets())?;
                put(&as_v6(b).octets())?;
                put(&s.port().to_be_bytes())?;
                put(&d.port().to_be_bytes())?;
            }
        },
        _ => {
            // AF_UNSPEC, no address block: the receiver uses the real
            // connection's endpoints (spec section 2.2).
            put(&[0x00])?;
            put(&0u16.to_be_bytes())?;
        }
    }
    out.get_mut(..n)?.copy_from_slice(buf.get(..n)?);
    Some(n)
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn sa(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    fn enc(v: Version, s: &str, d: &str) -> Vec<u8> {
        let mut out = [0u8; 128];
        let n = encode(v, sa(s), sa(d), &mut out).unwrap();
        out[..n].to_vec()
    }

    #[test]
    fn v1_ipv4_ipv6_and_mixed() {
        assert_eq!(
            enc(Version::V1, "192.0.2.7:40000", "198.51.100.1:8080"),
            b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 8080\r\n"
        );
        assert_eq!(
            enc(Version::V1, "[2001:db8::7]:1234", "[2001:db8::1]:443"),
            b"PROXY TCP6 2001:db8::7 2001:db8::1 1234 443\r\n"
        );
        // One end IPv4, the other IPv6: the IPv4 one is sent v4-mapped.
        assert_eq!(
            enc(Version::V1, "10.1.2.3:5", "[2001:db8::1]:443"),
            b"PROXY TCP6 ::ffff:10.1.2.3 2001:db8::1 5 443\r\n"
        );
        let mut out = [0u8; 32];
        let n = encode(Version::V1, None, sa("10.0.0.1:1"), &mut out).unwrap();
        assert_eq!(&out[..n], b"PROXY UNKNOWN\r\n");
    }

    #[test]
    fn v1_longest_header_fits_the_spec_bound() {
        let s = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535";
        let d = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd]:65535";
        let h = enc(Version::V1, s, d);
        assert_eq!(h.len(), 104);
        assert!(h.len() <= V1_MAX);
        let mut small = [0u8; 103];
        assert_eq!(encode(Version::V1, sa(s), sa(d), &mut small), None);
    }

    #[test]
    fn v2_ipv4_byte_exact() {
        let h = enc(Version::V2, "192.0.2.7:40000", "198.51.100.1:8080");
        let mut want = V2_SIGNATURE.to_vec();
        want.extend([0x21, 0x11, 0x00, 0x0C]);
        want.extend([192, 0, 2, 7, 198, 51, 100, 1]);
        want.extend([0x9C, 0x40, 0x1F, 0x90]);
        assert_eq!(h, want);
    }

    #[test]
    fn v2_ipv6_and_mixed_byte_exact() {
        let h = enc(Version::V2, "[2001:db8::7]:1234", "[2001:db8::1]:443");
        let mut want = V2_SIGNATURE.to_vec();
        want.extend([0x21, 0x21, 0x00, 0x24]);
        want.extend([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
        want.extend([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend([0x04, 0xD2, 0x01, 0xBB]);
        assert_eq!(h, want);
        assert_eq!(h.len(), V2_MAX);
        let m = enc(Version::V2, "10.1.2.3:5", "[2001:db8::1]:443");
        let mut want = V2_SIGNATURE.to_vec();
        want.extend([0x21, 0x21, 0x00, 0x24]);
        want.extend([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3]);
        want.extend([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend([0x00, 0x05, 0x01, 0xBB]);
        assert_eq!(m, want);
        let mut out = [0u8; 16];
        assert_eq!(encode(Version::V2, None, None, &mut out), Some(16));
        assert_eq!(&out[12..], &[0x21, 0x00, 0x00, 0x00]);
        assert_eq!(encode(Version::V2, None, None, &mut out[..15]), None);
    }
}
