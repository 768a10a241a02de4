//! Sets of source addresses: written as CIDR blocks, `first-last` ranges or
//! single addresses, held as a few ranges and indexed without allocation.

use anyhow::{bail, Context, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A contiguous run of addresses of one family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrRange {
    pub v6: bool,
    pub first: u128,
    pub len: u128,
}

/// An ordered set of source addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddrSet {
    pub ranges: Vec<AddrRange>,
}

fn to_u128(a: IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

fn from_u128(v6: bool, v: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(v))
    } else {
        IpAddr::V4(Ipv4Addr::from(u32::try_from(v).unwrap_or(u32::MAX)))
    }
}

/// Parses one item: `10.0.0.0/24`, `10.0.0.5-10.0.0.9` or `10.0.0.5`.
///
/// A CIDR block yields its host addresses: for IPv4 prefixes shorter than
/// /31 the network and broadcast addresses are left out, for IPv6 prefixes
/// shorter than /127 the all-zero (subnet-router) address is left out.
pub fn parse_range(s: &str) -> Result<AddrRange> {
    let s = s.trim();
    if let Some((addr, len)) = s.split_once('/') {
        let addr: IpAddr = addr
            .parse()
            .with_context(|| format!("bad address {addr:?} in CIDR {s:?}"))?;
        let (v6, base) = to_u128(addr);
        let bits: u32 = if v6 { 128 } else { 32 };
        let plen: u32 = len
            .parse()
            .ok()
            .filter(|p| *p <= bits)
            .with_context(|| format!("bad prefix length {len:?} in CIDR {s:?} (0..={bits})"))?;
        let host_bits = bits - plen;
        if host_bits >= 64 {
            bail!("CIDR {s:?} is too large: at most 2^63 addresses per block");
        }
        let size: u128 = 1u128 << host_bits;
        let net = base & !(size - 1);
        if net != base {
            bail!(
                "CIDR {s:?} has host bits set (network is {})",
                from_u128(v6, net)
            );
        }
        let (first, len) = match (v6, host_bits) {
            (false, 0..=1) | (true, 0..=1) => (net, size),
            (false, _) => (net + 1, size - 2),
            (true, _) => (net + 1, size - 1),
        };
        return Ok(AddrRange { v6, first, len });
    }
    if let Some((a, b)) = s.split_once('-') {
        let a: IpAddr = a
            .trim()
            .parse()
            .with_context(|| format!("bad first address {a:?} in range {s:?}"))?;
        let b: IpAddr = b
            .trim()
            .parse()
            .with_context(|| format!("bad last address {b:?} in range {s:?}"))?;
        let (va, fa) = to_u128(a);
        let (vb, fb) = to_u128(b);
        if va != vb {
            bail!("range {s:?} mixes IPv4 and IPv6");
        }
        if fb < fa {
            bail!("range {s:?} ends before it starts");
        }
        return Ok(AddrRange {
            v6: va,
            first: fa,
            len: fb - fa + 1,
        });
    }
    let a: IpAddr = s
        .parse()
        .with_context(|| format!("bad address {s:?} (expected an address, CIDR or a-b range)"))?;
    let (v6, first) = to_u128(a);
    Ok(AddrRange { v6, first, len: 1 })
}

impl AddrSet {
    /// Parses a list of items (see [`parse_range`]).
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Self> {
        let mut ranges = Vec::new();
        for it in items {
            ranges.push(parse_range(it.as_ref())?);
        }
        if ranges.is_empty() {
            bail!("empty address list");
        }
        Ok(AddrSet { ranges })
    }

    /// Number of addresses (saturating).
    pub fn len(&self) -> u64 {
        let total: u128 = self.ranges.iter().map(|r| r.len).sum();
        u64::try_from(total).unwrap_or(u64::MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th address, wrapping around the set.
    pub fn nth(&self, i: u64) -> IpAddr {
        let total: u128 = self.ranges.iter().map(|r| r.len).sum();
        let mut i = u128::from(i) % total.max(1);
        for r in &self.ranges {
            if i < r.len {
                return from_u128(r.v6, r.first + i);
            }
            i -= r.len;
        }
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }

    /// Whether any address is IPv6 / IPv4.
    pub fn has_family(&self, v6: bool) -> bool {
        self.ranges.iter().any(|r| r.v6 == v6)
    }
}

/// The key of an address under a prefix length (address with host bits cleared).
pub fn prefix_key(a: IpAddr, v4_prefix: u8, v6_prefix: u8) -> (bool, u128) {
    let (v6, v) = to_u128(a);
    let (bits, plen) = if v6 {
        (128u32, u32::from(v6_prefix))
    } else {
        (32u32, u32::from(v4_prefix))
    };
    let host = bits.saturating_sub(plen);
    let mask = if host >= 128 {
        0
    } else {
        !((1u128 << host) - 1)
    };
    (v6, v & mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_excludes_network_and_broadcast() {
        let s = AddrSet::parse(&["127.1.0.0/28"]).unwrap();
        assert_eq!(s.len(), 14);
        assert_eq!(s.nth(0), "127.1.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(s.nth(13), "127.1.0.14".parse::<IpAddr>().unwrap());
        assert_eq!(s.nth(14), "127.1.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn ranges_and_singles_concatenate() {
        let s = AddrSet::parse(&["127.0.0.5-127.0.0.6", "::1"]).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s.nth(2), "::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn bad_items_name_the_value() {
        let e = AddrSet::parse(&["127.1.0.1/28"]).unwrap_err().to_string();
        assert!(e.contains("127.1.0.1/28"), "{e}");
        let e = AddrSet::parse(&["10.0.0.300"]).unwrap_err().to_string();
        assert!(e.contains("10.0.0.300"), "{e}");
        let e = AddrSet::parse(&["10.0.0.0/40"]).unwrap_err().to_string();
        assert!(e.contains("\"40\""), "{e}");
    }

    #[test]
    fn prefix_keys() {
        let a: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(prefix_key(a, 24, 64), (false, 0x0a01_0200));
        assert_eq!(prefix_key(a, 0, 64), (false, 0));
    }
}
