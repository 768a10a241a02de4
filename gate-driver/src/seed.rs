//! The per-start random seed of gate-core's keyed hash (SipHash), so an
//! attacker cannot predict which addresses collide in the table.
//!
//! Sources, mixed together: RDSEED and RDRAND (each only when CPUID says
//! the CPU has it; 4 draws each, a failed draw is skipped), the interrupt
//! time (100 ns resolution since boot), and the address of a stack
//! variable (randomised by kernel ASLR). The mix is SplitMix64 over the
//! running state, which spreads every input bit across both seed words.
//! Without RDSEED/RDRAND (old CPUs, some hypervisors) the seed rests on the
//! timer and ASLR only: weaker, still different every start.

/// What went into a seed (for the debug message).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sources {
    /// RDSEED draws that succeeded.
    pub rdseed: u32,
    /// RDRAND draws that succeeded.
    pub rdrand: u32,
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mixes `v` into the state.
fn absorb(state: &mut u64, v: u64) {
    *state ^= v;
    let _ = splitmix(state);
}

/// A fresh seed for this start.
pub fn new_seed(now: u64) -> ([u64; 2], Sources) {
    let mut state = 0x6A7E_5EED_0000_0001u64;
    let mut sources = Sources::default();
    hardware(&mut state, &mut sources);
    absorb(&mut state, now);
    let local = 0u8;
    absorb(&mut state, core::ptr::addr_of!(local) as u64);
    let a = splitmix(&mut state);
    let b = splitmix(&mut state);
    ([a, b], sources)
}

#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)] // CPUID is `unsafe` before Rust 1.87 (the MSRV is 1.85)
fn hardware(state: &mut u64, sources: &mut Sources) {
    use core::arch::x86_64::__cpuid;
    // SAFETY: CPUID exists on every x86_64 CPU.
    let leaf0 = unsafe { __cpuid(0) };
    // SAFETY: as above.
    let leaf1 = unsafe { __cpuid(1) };
    let has_rdrand = leaf1.ecx & (1 << 30) != 0;
    let has_rdseed = if leaf0.eax >= 7 {
        // SAFETY: leaf 7 exists (max leaf >= 7).
        let leaf7 = unsafe { core::arch::x86_64::__cpuid_count(7, 0) };
        leaf7.ebx & (1 << 18) != 0
    } else {
        false
    };
    for _ in 0..4 {
        if has_rdseed {
            // SAFETY: CPUID reported RDSEED.
            if let Some(v) = unsafe { rdseed() } {
                absorb(state, v);
                sources.rdseed = sources.rdseed.saturating_add(1);
            }
        }
        if has_rdrand {
            // SAFETY: CPUID reported RDRAND.
            if let Some(v) = unsafe { rdrand() } {
                absorb(state, v);
                sources.rdrand = sources.rdrand.saturating_add(1);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "rdseed")]
#[allow(unused_unsafe)] // the intrinsic is `unsafe` before Rust 1.87
unsafe fn rdseed() -> Option<u64> {
    let mut v = 0u64;
    // SAFETY: the caller checked CPUID for RDSEED; `v` is a valid out-pointer.
    let ok = unsafe { core::arch::x86_64::_rdseed64_step(&mut v) };
    (ok == 1).then_some(v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "rdrand")]
#[allow(unused_unsafe)] // the intrinsic is `unsafe` before Rust 1.87
unsafe fn rdrand() -> Option<u64> {
    let mut v = 0u64;
    // SAFETY: the caller checked CPUID for RDRAND; `v` is a valid out-pointer.
    let ok = unsafe { core::arch::x86_64::_rdrand64_step(&mut v) };
    (ok == 1).then_some(v)
}

#[cfg(not(target_arch = "x86_64"))]
fn hardware(_state: &mut u64, _sources: &mut Sources) {}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_between_starts_and_words() {
        let (a, _) = new_seed(1);
        let (b, _) = new_seed(1);
        let (c, _) = new_seed(2);
        assert_ne!(a[0], a[1]);
        assert_ne!(a, c);
        // With RDRAND/RDSEED present (any x86_64 CI machine), even the same
        // clock reading gives different seeds.
        let (_, s) = new_seed(0);
        if s.rdrand + s.rdseed > 0 {
            assert_ne!(a, b);
        }
    }
}
