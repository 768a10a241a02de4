//! The decision lag of a post-accept gate, measured from outside: a probe
//! client on the deny list connects a few times a second; the host's stack
//! completes the handshake at once, and the gate closes the connection as
//! soon as it has accepted and decided it. The time from the completed
//! handshake to that close is how far the gate's decisions run behind the
//! traffic at that moment (its accept backlog plus the decision). The model
//! replays each attempt at its intended time plus this lag.

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

/// One probe.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Sample {
    /// Seconds from the start of the load when the probe was due.
    pub at_s: f64,
    /// Handshake to the gate's close, ms (None: no handshake, or no close
    /// within the patience).
    pub lag_ms: Option<f64>,
}

/// How long a probe waits for the gate's close.
const PATIENCE: Duration = Duration::from_secs(5);

fn probe(src: Ipv4Addr, target: SocketAddrV4) -> Option<f64> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).ok()?;
    s.bind(&SockAddr::from(SocketAddrV4::new(src, 0))).ok()?;
    s.connect_timeout(
        &SockAddr::from(SocketAddr::V4(target)),
        Duration::from_millis(700),
    )
    .ok()?;
    let connected = Instant::now();
    let mut t: TcpStream = s.into();
    t.set_read_timeout(Some(PATIENCE)).ok()?;
    let mut b = [0u8; 64];
    // EOF (FIN) or a reset both mean the gate closed it; a timeout does not.
    match t.read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        _ => return None,
    }
    Some(connected.elapsed().as_secs_f64() * 1000.0)
}

/// Probes from `src` every `every_s` from `t0` until `until_s` (on the
/// calling thread, which must be in the client namespace).
pub fn run(
    src: Ipv4Addr,
    target: SocketAddrV4,
    every_s: f64,
    until_s: f64,
    t0: Instant,
) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut k = 0u32;
    loop {
        let at_s = f64::from(k) * every_s;
        k += 1;
        if at_s > until_s {
            return out;
        }
        let due = t0 + Duration::from_secs_f64(at_s);
        // Behind (a slow probe): skip to the next slot.
        if Instant::now().saturating_duration_since(due) > Duration::from_secs_f64(every_s) {
            continue;
        }
        if super::interrupt::sleep_until(due).is_err() {
            return out;
        }
        out.push(Sample {
            at_s,
            lag_ms: probe(src, target),
        });
    }
}

/// The lag at `t` (s), linear between the samples around it, flat beyond
/// them; failed probes are skipped (0 without any sample).
pub fn lag_at(samples: &[Sample], t: f64) -> f64 {
    let pts: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|s| Some((s.at_s, s.lag_ms? / 1000.0)))
        .collect();
    let Some(first) = pts.first() else { return 0.0 };
    if t <= first.0 {
        return first.1;
    }
    for w in pts.windows(2) {
        let ((t0, l0), (t1, l1)) = (w[0], w[1]);
        if t <= t1 {
            return if t1 > t0 {
                l0 + (l1 - l0) * (t - t0) / (t1 - t0)
            } else {
                l1
            };
        }
    }
    pts.last().map_or(0.0, |p| p.1)
}

/// (p50, p99, max) of the lags in ms, and the number of failed probes.
pub fn summary(samples: &[Sample]) -> (f64, f64, f64, usize) {
    let mut v: Vec<f64> = samples.iter().filter_map(|s| s.lag_ms).collect();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| -> f64 {
        if v.is_empty() {
            return 0.0;
        }
        let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        v[i]
    };
    (at(0.5), at(0.99), at(1.0), samples.len() - v.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_interpolated_between_probes_and_flat_outside() {
        let s = vec![
            Sample {
                at_s: 1.0,
                lag_ms: Some(100.0),
            },
            Sample {
                at_s: 2.0,
                lag_ms: None,
            },
            Sample {
                at_s: 3.0,
                lag_ms: Some(300.0),
            },
        ];
        assert_eq!(lag_at(&s, 0.0), 0.1);
        assert!((lag_at(&s, 2.0) - 0.2).abs() < 1e-12);
        assert_eq!(lag_at(&s, 9.0), 0.3);
        assert_eq!(lag_at(&[], 1.0), 0.0);
        let (p50, _, max, failed) = summary(&s);
        assert_eq!((p50, max, failed), (100.0, 300.0, 1));
    }
}
