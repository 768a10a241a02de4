//! Keys: the remote address aggregated by prefix.
//!
//! One token bucket is kept per key. A key is the remote address with its
//! host bits cleared: IPv4 /32 and IPv6 /64 by default (one IPv6 /64 is
//! what a single host or home line usually gets), both configurable. An
//! IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack socket
//! reports) counts as the IPv4 address.
//!
//! The key exposes its family, prefix length and bytes so the driver can
//! log it without depending on `core::net` formatting.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Address family of a key, with its stable telemetry value.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 (also IPv4-mapped IPv6).
    V4 = 4,
    /// IPv6.
    V6 = 6,
}

/// A remote address aggregated by prefix: the unit that owns a token bucket.
///
/// `bytes` holds the network address with host bits zero; an IPv4 key uses
/// `bytes[0..4]` and leaves the other twelve zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    family: Family,
    prefix_len: u8,
    bytes: [u8; 16],
}

impl Key {
    /// The key of `addr` with the given prefix lengths (values above the
    /// family's width are treated as the full width).
    #[inline]
    pub fn new(addr: IpAddr, ipv4_prefix: u8, ipv6_prefix: u8) -> Key {
        Prefixes::new(ipv4_prefix, ipv6_prefix).key(addr)
    }

    /// Address family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// Prefix length in bits (8..=32 for IPv4, 48..=128 for IPv6 under a valid config).
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Network address bytes, big-endian; IPv4 in the first four.
    pub fn bytes(&self) -> [u8; 16] {
        self.bytes
    }

    /// The network address as a `core::net` address.
    pub fn network(&self) -> IpAddr {
        match self.family {
            Family::V4 => {
                let [a, b, c, d, ..] = self.bytes;
                IpAddr::V4(Ipv4Addr::new(a, b, c, d))
            }
            Family::V6 => IpAddr::V6(Ipv6Addr::from(self.bytes)),
        }
    }
}

/// Prefix lengths with their masks computed once (what a gate keeps, so
/// that making a key costs no mask arithmetic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Prefixes {
    v4_len: u8,
    v6_len: u8,
    v4_mask: u32,
    v6_mask: u128,
}

impl Prefixes {
    /// For prefix lengths as [`Key::new`] takes them (clamped to the
    /// family's width).
    pub(crate) fn new(ipv4_prefix: u8, ipv6_prefix: u8) -> Prefixes {
        let v4_len = ipv4_prefix.min(32);
        let v6_len = ipv6_prefix.min(128);
        Prefixes {
            v4_len,
            v6_len,
            v4_mask: v4_mask(v4_len),
            v6_mask: v6_mask(v6_len),
        }
    }

    /// The key of `addr`.
    #[inline]
    pub(crate) fn key(&self, addr: IpAddr) -> Key {
        match canonical(addr) {
            IpAddr::V4(a) => {
                let bits = u32::from(a) & self.v4_mask;
                let mut bytes = [0u8; 16];
                let [b0, b1, b2, b3] = bits.to_be_bytes();
                bytes[0] = b0;
                bytes[1] = b1;
                bytes[2] = b2;
                bytes[3] = b3;
                Key {
                    family: Family::V4,
                    prefix_len: self.v4_len,
                    bytes,
                }
            }
            IpAddr::V6(a) => Key {
                family: Family::V6,
                prefix_len: self.v6_len,
                bytes: (u128::from(a) & self.v6_mask).to_be_bytes(),
            },
        }
    }
}

/// `addr` with an IPv4-mapped IPv6 address turned into IPv4.
#[inline]
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(a),
        },
        v4 => v4,
    }
}

/// Network mask of an IPv4 prefix length (0..=32).
#[inline]
pub(crate) fn v4_mask(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32u32.saturating_sub(u32::from(len)))
        .unwrap_or(0)
}

/// Network mask of an IPv6 prefix length (0..=128).
#[inline]
pub(crate) fn v6_mask(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128u32.saturating_sub(u32::from(len)))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_prefix_clears_host_bits() {
        let k = Key::new("192.0.2.77".parse().unwrap(), 24, 64);
        assert_eq!(k.family(), Family::V4);
        assert_eq!(k.prefix_len(), 24);
        assert_eq!(&k.bytes()[..4], &[192, 0, 2, 0]);
        assert_eq!(&k.bytes()[4..], &[0u8; 12]);
        assert_eq!(k.network(), "192.0.2.0".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn ipv6_default_is_slash_64() {
        let a = Key::new("2001:db8:1:2:aaaa::1".parse().unwrap(), 32, 64);
        let b = Key::new("2001:db8:1:2:ffff::9".parse().unwrap(), 32, 64);
        let c = Key::new("2001:db8:1:3::1".parse().unwrap(), 32, 64);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.network(), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn mapped_ipv6_is_ipv4() {
        let m = Key::new("::ffff:198.51.100.7".parse().unwrap(), 32, 64);
        let v = Key::new("198.51.100.7".parse().unwrap(), 32, 64);
        assert_eq!(m, v);
        assert_eq!(m.family(), Family::V4);
    }

    #[test]
    fn masks() {
        assert_eq!(v4_mask(0), 0);
        assert_eq!(v4_mask(8), 0xff00_0000);
        assert_eq!(v4_mask(32), u32::MAX);
        assert_eq!(v6_mask(128), u128::MAX);
        assert_eq!(v6_mask(64), u128::MAX << 64);
    }
}
