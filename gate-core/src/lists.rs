//! Allow and deny lists: CIDR ranges, IPv4 and IPv6.
//!
//! Each list is built once at start into two sorted arrays of merged,
//! non-overlapping address ranges (IPv4 as `u32`, IPv6 as `u128`); a lookup
//! is one binary search, so its cost grows with log2 of the list size and
//! it never allocates. Sizes are bounded by [`MAX_LIST_ENTRIES`].
//! Matching uses the full remote address (not the aggregated key), with an
//! IPv4-mapped IPv6 address treated as IPv4 (so is a mapped CIDR).

use alloc::vec::Vec;
use core::fmt;
use core::net::IpAddr;

use crate::key::{canonical, v4_mask, v6_mask};

/// Most entries a list may have.
pub const MAX_LIST_ENTRIES: usize = 4096;

/// An address range given as network address and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix_len: u8,
}

/// A CIDR that could not be built or parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CidrError {
    /// The prefix length is larger than the family's width.
    PrefixTooLong {
        /// The length given.
        prefix_len: u8,
        /// The family's width (32 or 128).
        max: u8,
    },
    /// The text is not `address` or `address/len`.
    Syntax,
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::PrefixTooLong { prefix_len, max } => {
                write!(f, "prefix length {prefix_len} is longer than {max}")
            }
            CidrError::Syntax => f.write_str("not an address or address/prefix-length"),
        }
    }
}

impl Cidr {
    /// A CIDR, stored as its network address (host bits of `addr` cleared).
    /// An IPv4-mapped IPv6 address with prefix >= 96 becomes the IPv4 CIDR.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Cidr, CidrError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(CidrError::PrefixTooLong { prefix_len, max });
        }
        let (addr, prefix_len) = match (addr, canonical(addr)) {
            (IpAddr::V6(_), v4 @ IpAddr::V4(_)) if prefix_len >= 96 => {
                (v4, prefix_len.saturating_sub(96))
            }
            _ => (addr, prefix_len),
        };
        // Stored as its network address (host bits cleared), as `ip route`
        // and nftables show a prefix: `10.0.0.1/8` and `10.0.0.0/8` are one
        // entry, so a list entry can be removed by either spelling.
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & v4_mask(prefix_len)).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & v6_mask(prefix_len)).into()),
        };
        Ok(Cidr { addr, prefix_len })
    }

    /// Parses `"192.0.2.0/24"`, `"2001:db8::/32"` or a bare address (full length).
    pub fn parse(s: &str) -> Result<Cidr, CidrError> {
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| CidrError::Syntax)?)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| CidrError::Syntax)?;
        let len = len.unwrap_or(if addr.is_ipv4() { 32 } else { 128 });
        Cidr::new(addr, len)
    }

    /// The network address (host bits cleared).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// A built list: merged sorted ranges per family.
#[derive(Debug, Default)]
pub(crate) struct CidrSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

/// Allocation failed while building a list.
#[derive(Debug)]
pub(crate) struct ListAllocError;

impl CidrSet {
    /// Builds the set (allocates once per family; never on lookup).
    pub(crate) fn build(cidrs: &[Cidr]) -> Result<CidrSet, ListAllocError> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let n4 = cidrs.iter().filter(|c| c.addr.is_ipv4()).count();
        v4.try_reserve_exact(n4).map_err(|_| ListAllocError)?;
        v6.try_reserve_exact(cidrs.len().saturating_sub(n4))
            .map_err(|_| ListAllocError)?;
        for c in cidrs {
            match c.addr {
                IpAddr::V4(a) => {
                    let m = v4_mask(c.prefix_len);
                    let lo = u32::from(a) & m;
                    v4.push((lo, lo | !m));
                }
                IpAddr::V6(a) => {
                    let m = v6_mask(c.prefix_len);
                    let lo = u128::from(a) & m;
                    v6.push((lo, lo | !m));
                }
            }
        }
        Ok(CidrSet {
            v4: merge(v4),
            v6: merge(v6),
        })
    }

    /// Whether `addr` (canonicalized) falls in a range.
    #[inline]
    pub(crate) fn contains(&self, addr: IpAddr) -> bool {
        match canonical(addr) {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Bytes allocated.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.v4
            .capacity()
            .saturating_mul(core::mem::size_of::<(u32, u32)>())
            .saturating_add(
                self.v6
                    .capacity()
                    .saturating_mul(core::mem::size_of::<(u128, u128)>()),
            )
    }
}

/// Sorts and merges overlapping or adjacent ranges, in place.
fn merge<T: Ord + Copy + Step>(mut v: Vec<(T, T)>) -> Vec<(T, T)> {
    v.sort_unstable();
    let mut out = 0usize;
    for i in 0..v.len() {
        let Some(&(lo, hi)) = v.get(i) else { break };
        let prev = out.checked_sub(1).and_then(|p| v.get_mut(p));
        match prev {
            Some(p) if lo <= p.1.next_or_max() => {
                if hi > p.1 {
                    p.1 = hi;
                }
            }
            _ => {
                if let Some(slot) = v.get_mut(out) {
                    *slot = (lo, hi);
                }
                out = out.saturating_add(1);
            }
        }
    }
    v.truncate(out);
    v
}

/// `x + 1`, saturating (for merging adjacent ranges).
trait Step {
    fn next_or_max(self) -> Self;
}
impl Step for u32 {
    fn next_or_max(self) -> Self {
        self.saturating_add(1)
    }
}
impl Step for u128 {
    fn next_or_max(self) -> Self {
        self.saturating_add(1)
    }
}

#[inline]
fn find<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    let i = ranges.partition_point(|r| r.0 <= x);
    match i.checked_sub(1).and_then(|j| ranges.get(j)) {
        Some(&(_, hi)) => x <= hi,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_errors() {
        assert_eq!(Cidr::parse("192.0.2.0/24").unwrap().prefix_len(), 24);
        assert_eq!(Cidr::parse("2001:db8::1").unwrap().prefix_len(), 128);
        assert_eq!(
            Cidr::parse("192.0.2.0/33"),
            Err(CidrError::PrefixTooLong {
                prefix_len: 33,
                max: 32
            })
        );
        assert_eq!(Cidr::parse("nope/8"), Err(CidrError::Syntax));
        assert_eq!(Cidr::parse("10.0.0.0/x"), Err(CidrError::Syntax));
        let m = Cidr::parse("::ffff:10.0.0.0/104").unwrap();
        assert_eq!(m.addr(), ip("10.0.0.0"));
        assert_eq!(m.prefix_len(), 8);
    }

    /// Regression (newcomer review, 2026-11-29): `allow add 10.0.0.1/8` was
    /// stored with its host bits, so `allow remove 10.0.0.0/8` found nothing
    /// and the two spellings counted as two entries.
    #[test]
    fn host_bits_are_cleared_so_every_spelling_is_one_entry() {
        let a = Cidr::parse("10.0.0.1/8").unwrap();
        assert_eq!(a, Cidr::parse("10.0.0.0/8").unwrap());
        assert_eq!(a.addr(), ip("10.0.0.0"));
        assert_eq!(alloc::format!("{a}"), "10.0.0.0/8");
        let b = Cidr::parse("2001:db8::1:2/64").unwrap();
        assert_eq!(b, Cidr::parse("2001:db8::/64").unwrap());
        let m = Cidr::parse("::ffff:10.1.2.3/104").unwrap();
        assert_eq!(m, Cidr::parse("10.0.0.0/8").unwrap());
        assert_eq!(Cidr::parse("10.1.2.3/0").unwrap().addr(), ip("0.0.0.0"));
        assert_eq!(Cidr::parse("10.1.2.3").unwrap().addr(), ip("10.1.2.3"));
    }

    proptest::proptest! {
        /// The kind: any spelling of a prefix (any host bits) is the same
        /// entry as its network address, and covers exactly the same set.
        #[test]
        fn any_spelling_is_its_network(a in proptest::prelude::any::<u32>(), len in 0u8..=32, probe in proptest::prelude::any::<u32>()) {
            let given = Cidr::new(IpAddr::V4(a.into()), len).unwrap();
            let net = Cidr::new(IpAddr::V4((a & v4_mask(len)).into()), len).unwrap();
            proptest::prop_assert_eq!(given, net);
            let (s1, s2) = (CidrSet::build(&[given]).unwrap(), CidrSet::build(&[net]).unwrap());
            let p = IpAddr::V4(probe.into());
            proptest::prop_assert_eq!(s1.contains(p), s2.contains(p));
        }

        #[test]
        fn any_v6_spelling_is_its_network(a in proptest::prelude::any::<u128>(), len in 0u8..=128) {
            let given = Cidr::new(IpAddr::V6(a.into()), len).unwrap();
            let net = Cidr::new(IpAddr::V6((a & v6_mask(len)).into()), len).unwrap();
            proptest::prop_assert_eq!(given, net);
        }
    }

    #[test]
    fn lookup_v4_v6_and_mapped() {
        let set = CidrSet::build(&[
            Cidr::parse("10.0.0.0/8").unwrap(),
            Cidr::parse("192.0.2.128/25").unwrap(),
            Cidr::parse("2001:db8::/32").unwrap(),
        ])
        .unwrap();
        assert!(set.contains(ip("10.255.1.1")));
        assert!(!set.contains(ip("11.0.0.0")));
        assert!(set.contains(ip("192.0.2.128")));
        assert!(set.contains(ip("192.0.2.255")));
        assert!(!set.contains(ip("192.0.2.127")));
        assert!(set.contains(ip("::ffff:10.1.2.3")));
        assert!(set.contains(ip("2001:db8:ffff::1")));
        assert!(!set.contains(ip("2001:db9::1")));
        assert!(!CidrSet::build(&[]).unwrap().contains(ip("1.2.3.4")));
    }

    #[test]
    fn merges_overlaps_and_adjacent() {
        let set = CidrSet::build(&[
            Cidr::parse("10.0.0.0/9").unwrap(),
            Cidr::parse("10.128.0.0/9").unwrap(),
            Cidr::parse("10.1.0.0/16").unwrap(),
            Cidr::parse("0.0.0.0/0").unwrap(),
        ])
        .unwrap();
        assert_eq!(set.v4, alloc::vec![(0, u32::MAX)]);
        let set = CidrSet::build(&[
            Cidr::parse("10.0.0.0/9").unwrap(),
            Cidr::parse("10.128.0.0/9").unwrap(),
        ])
        .unwrap();
        assert_eq!(set.v4.len(), 1);
        assert!(set.contains(ip("10.200.0.1")));
    }
}
