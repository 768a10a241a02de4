//! NAT64 prefixes: IPv6 addresses that stand for an IPv4 client.
//!
//! Behind a NAT64 front (RFC 6146), every IPv4 client reaches the gate as
//! an IPv6 address made of a NAT64 prefix and the client's IPv4 address
//! (RFC 6052 section 2.2: the well-known prefix `64:ff9b::/96`, or a
//! network-specific prefix of length 32, 40, 48, 56, 64 or 96). Keyed by
//! the usual IPv6 /64, all of them would share one bucket. With the prefix
//! listed in [`crate::Config::nat64_prefixes`] (empty, i.e. off, by
//! default), such an address is keyed as its embedded IPv4 address (by
//! `ipv4_prefix`, like any IPv4 client), and the allow and deny lists are
//! matched against both the IPv6 address and the embedded IPv4 address.
//!
//! Extraction follows RFC 6052's table: the 32 IPv4 bits follow the prefix,
//! skipping bits 64..72 (the "u" octet), which must be zero for prefixes
//! shorter than 96; an address of the prefix whose u octet is not zero is
//! not a valid IPv4-embedded address and is treated as plain IPv6.
//! A lookup compares the address with at most [`MAX_NAT64_PREFIXES`]
//! prefixes and never allocates.

use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr};

use crate::key::v6_mask;
use crate::lists::Cidr;

/// Most NAT64 prefixes a configuration may list.
pub const MAX_NAT64_PREFIXES: usize = 16;

/// The prefix lengths RFC 6052 allows.
pub const NAT64_PREFIX_LENGTHS: [u8; 6] = [32, 40, 48, 56, 64, 96];

/// The RFC 6052 well-known prefix, `64:ff9b::/96`.
pub const WELL_KNOWN_PREFIX: &str = "64:ff9b::/96";

/// What a NAT64 prefix must be (the refusal's text when
/// [`is_valid_prefix`] is false; the driver reports it with the entry).
pub const PREFIX_EXPECTED: &str =
    "IPv6 prefixes of length 32, 40, 48, 56, 64 or 96 (RFC 6052), e.g. 64:ff9b::/96";

/// Whether `c` may be listed as a NAT64 prefix: an IPv6 CIDR of one of
/// the RFC 6052 lengths ([`NAT64_PREFIX_LENGTHS`]).
pub fn is_valid_prefix(c: &Cidr) -> bool {
    c.addr().is_ipv6() && NAT64_PREFIX_LENGTHS.contains(&c.prefix_len())
}

/// One prefix, built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Prefix {
    net: u128,
    mask: u128,
    len: u8,
}

/// Bytes one configured prefix takes in a built gate.
pub(crate) const PREFIX_BYTES: usize = core::mem::size_of::<Prefix>();

/// The configured prefixes.
#[derive(Debug, Default)]
pub(crate) struct Nat64 {
    prefixes: Vec<Prefix>,
}

/// Allocation failed while building the prefixes.
#[derive(Debug)]
pub(crate) struct Nat64AllocError;

impl Nat64 {
    /// Builds from validated prefixes (others are skipped).
    pub(crate) fn build(cidrs: &[Cidr]) -> Result<Nat64, Nat64AllocError> {
        let mut prefixes = Vec::new();
        prefixes
            .try_reserve_exact(cidrs.len())
            .map_err(|_| Nat64AllocError)?;
        for c in cidrs.iter().filter(|c| is_valid_prefix(c)) {
            if let IpAddr::V6(a) = c.addr() {
                let mask = v6_mask(c.prefix_len());
                prefixes.push(Prefix {
                    net: u128::from(a) & mask,
                    mask,
                    len: c.prefix_len(),
                });
            }
        }
        Ok(Nat64 { prefixes })
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }

    /// The IPv4 address embedded in `addr`, if `addr` is IPv6 inside one of
    /// the prefixes (and a valid RFC 6052 address of it).
    #[inline]
    pub(crate) fn embedded(&self, addr: IpAddr) -> Option<Ipv4Addr> {
        let IpAddr::V6(a) = addr else { return None };
        let bits = u128::from(a);
        let p = self.prefixes.iter().find(|p| bits & p.mask == p.net)?;
        extract(bits, p.len)
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.prefixes.capacity().saturating_mul(PREFIX_BYTES)
    }
}

/// RFC 6052 section 2.2: the IPv4 address in an IPv6 address of a prefix of
/// length `len`; `None` for another length or a non-zero u octet.
pub fn extract(bits: u128, len: u8) -> Option<Ipv4Addr> {
    let b = bits.to_be_bytes();
    let u = b.get(8).copied().unwrap_or(0);
    let pick = |i: [usize; 4]| {
        let [x, y, z, w] = i.map(|j| b.get(j).copied().unwrap_or(0));
        Some(Ipv4Addr::new(x, y, z, w))
    };
    if len != 96 && u != 0 {
        return None;
    }
    match len {
        32 => pick([4, 5, 6, 7]),
        40 => pick([5, 6, 7, 9]),
        48 => pick([6, 7, 9, 10]),
        56 => pick([7, 9, 10, 11]),
        64 => pick([9, 10, 11, 12]),
        96 => pick([12, 13, 14, 15]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> u128 {
        u128::from(s.parse::<core::net::Ipv6Addr>().unwrap())
    }

    /// RFC 6052 section 2.4's table: 192.0.2.33 under each prefix length.
    #[test]
    fn rfc6052_examples() {
        let want = Ipv4Addr::new(192, 0, 2, 33);
        for (s, len) in [
            ("2001:db8:c000:221::", 32),
            ("2001:db8:1c0:2:21::", 40),
            ("2001:db8:122:c000:2:2100::", 48),
            ("2001:db8:122:3c0:0:221::", 56),
            ("2001:db8:122:344:c0:2:2100:0", 64),
            ("2001:db8:122:344::192.0.2.33", 96),
            ("64:ff9b::192.0.2.33", 96),
        ] {
            assert_eq!(extract(v6(s), len), Some(want), "{s}/{len}");
        }
    }

    #[test]
    fn nonzero_u_octet_is_not_embedded() {
        assert_eq!(extract(v6("2001:db8:c000:221:100::"), 32), None);
        assert!(extract(v6("64:ff9b::100:0:c000:221"), 96).is_some());
    }

    #[test]
    fn only_listed_prefixes_map() {
        let n = Nat64::build(&[Cidr::parse(WELL_KNOWN_PREFIX).unwrap()]).unwrap();
        let a: IpAddr = "64:ff9b::198.51.100.7".parse().unwrap();
        assert_eq!(n.embedded(a), Some(Ipv4Addr::new(198, 51, 100, 7)));
        assert_eq!(n.embedded("64:ff9c::1".parse().unwrap()), None);
        assert_eq!(n.embedded("198.51.100.7".parse().unwrap()), None);
        assert!(Nat64::build(&[]).unwrap().is_empty());
    }

    #[test]
    fn valid_prefix_lengths() {
        for (s, ok) in [
            ("64:ff9b::/96", true),
            ("2001:db8::/32", true),
            ("2001:db8::/33", false),
            ("2001:db8::/128", false),
            ("192.0.2.0/24", false),
        ] {
            assert_eq!(is_valid_prefix(&Cidr::parse(s).unwrap()), ok, "{s}");
        }
    }
}
