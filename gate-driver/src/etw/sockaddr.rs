//! Windows SOCKADDR bytes for the `SockAddr` event fields, built from an
//! address and port (or copied from a SOCKADDR the stack handed us).
//!
//! `SOCKADDR_IN`: family u16 LE (AF_INET = 2), port u16 BE, 4 address
//! bytes, 8 zero bytes (16 bytes). `SOCKADDR_IN6`: family (AF_INET6 = 23),
//! port BE, flow info u32, 16 address bytes, scope id u32 LE (28 bytes).

use core::net::{IpAddr, SocketAddr};

/// Windows `AF_INET`.
pub const AF_INET: u16 = 2;
/// Windows `AF_INET6`.
pub const AF_INET6: u16 = 23;
/// `sizeof(SOCKADDR_IN)`.
pub const SOCKADDR_IN_LEN: usize = 16;
/// `sizeof(SOCKADDR_IN6)`.
pub const SOCKADDR_IN6_LEN: usize = 28;

/// A SOCKADDR_IN or SOCKADDR_IN6, by value (no borrow of the stack's buffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockAddrBuf {
    bytes: [u8; SOCKADDR_IN6_LEN],
    len: u8,
}

impl SockAddrBuf {
    /// No address (an empty field: "unknown").
    pub const EMPTY: SockAddrBuf = SockAddrBuf {
        bytes: [0; SOCKADDR_IN6_LEN],
        len: 0,
    };

    /// `SOCKADDR_IN` for an IPv4 address and port (host order).
    pub fn v4(ip: [u8; 4], port: u16) -> SockAddrBuf {
        let mut bytes = [0u8; SOCKADDR_IN6_LEN];
        let [f0, f1] = AF_INET.to_le_bytes();
        let [p0, p1] = port.to_be_bytes();
        let [a, b, c, d] = ip;
        let head = [f0, f1, p0, p1, a, b, c, d];
        for (dst, src) in bytes.iter_mut().zip(head) {
            *dst = src;
        }
        SockAddrBuf {
            bytes,
            len: SOCKADDR_IN_LEN as u8,
        }
    }

    /// `SOCKADDR_IN6` for an IPv6 address, port (host order) and scope id.
    pub fn v6(ip: [u8; 16], port: u16, scope_id: u32) -> SockAddrBuf {
        let mut bytes = [0u8; SOCKADDR_IN6_LEN];
        let [f0, f1] = AF_INET6.to_le_bytes();
        let [p0, p1] = port.to_be_bytes();
        let head = [f0, f1, p0, p1, 0, 0, 0, 0];
        let tail = scope_id.to_le_bytes();
        let src = head.iter().chain(ip.iter()).chain(tail.iter());
        for (dst, s) in bytes.iter_mut().zip(src) {
            *dst = *s;
        }
        SockAddrBuf {
            bytes,
            len: SOCKADDR_IN6_LEN as u8,
        }
    }

    /// From a `core::net` socket address.
    pub fn from_socket_addr(a: SocketAddr) -> SockAddrBuf {
        match a {
            SocketAddr::V4(v4) => SockAddrBuf::v4(v4.ip().octets(), v4.port()),
            SocketAddr::V6(v6) => SockAddrBuf::v6(v6.ip().octets(), v6.port(), v6.scope_id()),
        }
    }

    /// From an address and port.
    pub fn from_ip(ip: IpAddr, port: u16) -> SockAddrBuf {
        SockAddrBuf::from_socket_addr(SocketAddr::new(ip, port))
    }

    /// Copies raw SOCKADDR bytes (as WSK hands them over): the family
    /// selects the length. `None` for another family or too few bytes.
    pub fn from_raw(raw: &[u8]) -> Option<SockAddrBuf> {
        let family = u16::from_le_bytes([*raw.first()?, *raw.get(1)?]);
        let len = match family {
            AF_INET => SOCKADDR_IN_LEN,
            AF_INET6 => SOCKADDR_IN6_LEN,
            _ => return None,
        };
        let src = raw.get(..len)?;
        let mut bytes = [0u8; SOCKADDR_IN6_LEN];
        for (d, s) in bytes.iter_mut().zip(src) {
            *d = *s;
        }
        Some(SockAddrBuf {
            bytes,
            len: len as u8,
        })
    }

    /// The SOCKADDR bytes (16 or 28, or 0 for [`SockAddrBuf::EMPTY`]).
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)]
mod tests {
    use super::*;

    #[test]
    fn v4_layout() {
        let s = SockAddrBuf::v4([192, 0, 2, 1], 443);
        assert_eq!(
            s.as_bytes(),
            &[2, 0, 1, 187, 192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn v6_layout() {
        let ip: core::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        let s = SockAddrBuf::v6(ip.octets(), 8080, 7);
        let b = s.as_bytes();
        assert_eq!(b.len(), 28);
        assert_eq!(&b[..4], &[23, 0, 0x1f, 0x90]);
        assert_eq!(&b[4..8], &[0, 0, 0, 0]);
        assert_eq!(&b[8..24], &ip.octets());
        assert_eq!(&b[24..], &[7, 0, 0, 0]);
    }

    #[test]
    fn from_raw_uses_family_length_and_rejects_others() {
        let s = SockAddrBuf::v4([127, 0, 0, 1], 1);
        let mut raw = [0u8; 40];
        raw[..16].copy_from_slice(s.as_bytes());
        raw[20] = 9; // beyond SOCKADDR_IN: not copied
        assert_eq!(SockAddrBuf::from_raw(&raw), Some(s));
        assert_eq!(SockAddrBuf::from_raw(&[5, 0, 0, 0]), None);
        assert_eq!(SockAddrBuf::from_raw(&[23, 0, 0]), None);
        assert_eq!(SockAddrBuf::EMPTY.as_bytes(), &[] as &[u8]);
    }
}
