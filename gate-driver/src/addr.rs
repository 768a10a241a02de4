//! SOCKADDR <-> `core::net` conversion. WSK lends its SOCKADDR buffers for
//! one call only, so they are read into plain values at once. IPv4-mapped
//! IPv6 addresses (what a dual-stack listener reports for IPv4 clients)
//! become IPv4, so an IPv4 client has one identity however it arrives.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use gate_ksys::{AF_INET, AF_INET6, SOCKADDR, SOCKADDR_IN, SOCKADDR_IN6};

/// Reads a SOCKADDR_IN or SOCKADDR_IN6; `None` for NULL or another family.
///
/// # Safety
/// `sa` must be NULL or point at a SOCKADDR of its family's full size
/// (16 bytes for AF_INET, 28 for AF_INET6), valid for this call.
pub unsafe fn from_sockaddr(sa: *const SOCKADDR) -> Option<SocketAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: non-NULL and valid per the caller; the family is the first field.
    let family = unsafe { (*sa).sa_family };
    match family {
        AF_INET => {
            // SAFETY: AF_INET: the caller guarantees a full SOCKADDR_IN;
            // read_unaligned because WSK's buffer alignment is not promised.
            let v4 = unsafe { sa.cast::<SOCKADDR_IN>().read_unaligned() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(v4.sin_addr),
                u16::from_be(v4.sin_port),
            )))
        }
        AF_INET6 => {
            // SAFETY: AF_INET6: the caller guarantees a full SOCKADDR_IN6.
            let v6 = unsafe { sa.cast::<SOCKADDR_IN6>().read_unaligned() };
            let ip = Ipv6Addr::from(v6.sin6_addr);
            let port = u16::from_be(v6.sin6_port);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    u32::from_be(v6.sin6_flowinfo),
                    v6.sin6_scope_id,
                )),
            })
        }
        _ => None,
    }
}

/// A SOCKADDR_IN or SOCKADDR_IN6 for `ip:port`, in a buffer large enough
/// for either (what WskBind takes).
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct SockAddrStorage {
    bytes: [u8; 28],
}

impl SockAddrStorage {
    /// Builds the SOCKADDR for `addr`.
    pub fn new(addr: SocketAddr) -> SockAddrStorage {
        let mut s = SockAddrStorage { bytes: [0; 28] };
        match addr {
            SocketAddr::V4(v4) => {
                let sa = SOCKADDR_IN {
                    sin_family: AF_INET,
                    sin_port: v4.port().to_be(),
                    sin_addr: v4.ip().octets(),
                    sin_zero: [0; 8],
                };
                // SAFETY: SOCKADDR_IN is 16 bytes, the buffer 28; unaligned write.
                unsafe {
                    s.bytes
                        .as_mut_ptr()
                        .cast::<SOCKADDR_IN>()
                        .write_unaligned(sa)
                };
            }
            SocketAddr::V6(v6) => {
                let sa = SOCKADDR_IN6 {
                    sin6_family: AF_INET6,
                    sin6_port: v6.port().to_be(),
                    sin6_flowinfo: v6.flowinfo().to_be(),
                    sin6_addr: v6.ip().octets(),
                    sin6_scope_id: v6.scope_id(),
                };
                // SAFETY: SOCKADDR_IN6 is 28 bytes, exactly the buffer.
                unsafe {
                    s.bytes
                        .as_mut_ptr()
                        .cast::<SOCKADDR_IN6>()
                        .write_unaligned(sa)
                };
            }
        }
        s
    }

    /// The SOCKADDR pointer for WSK (valid while `self` lives).
    pub fn as_ptr(&self) -> *const SOCKADDR {
        self.bytes.as_ptr().cast()
    }
}

/// Where the listener binds: the configured address, or `[::]` (dual-stack).
pub fn listen_addr(address: Option<IpAddr>, port: u16) -> SocketAddr {
    match address {
        Some(ip) => SocketAddr::new(ip, port),
        None => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
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
    fn round_trips_and_maps_v4_in_v6() {
        let cases: [SocketAddr; 3] = [
            "192.0.2.7:443".parse().unwrap(),
            "[2001:db8::1]:8080".parse().unwrap(),
            "[::1]:1".parse().unwrap(),
        ];
        for a in cases {
            let s = SockAddrStorage::new(a);
            // SAFETY: built just above, full size.
            assert_eq!(unsafe { from_sockaddr(s.as_ptr()) }, Some(a));
        }
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:99".parse().unwrap();
        let s = SockAddrStorage::new(mapped);
        // SAFETY: as above.
        let got = unsafe { from_sockaddr(s.as_ptr()) };
        assert_eq!(got, Some("10.1.2.3:99".parse().unwrap()));
        // SAFETY: NULL is allowed.
        assert_eq!(unsafe { from_sockaddr(core::ptr::null()) }, None);
        let mut bad = SockAddrStorage::new(a_v4());
        bad.bytes[0] = 99;
        // SAFETY: full-size buffer, unknown family.
        assert_eq!(unsafe { from_sockaddr(bad.as_ptr()) }, None);
    }

    fn a_v4() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }
}
