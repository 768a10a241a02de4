//! `Gate::tracked_keys` is a counter kept as keys are placed (no scan):
//! it always equals a scan of every slot, whatever the decisions, table
//! size, shards and full-table policy.

use gate_core::{Config, FullTablePolicy, Gate};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn occupancy_counter_equals_a_scan(
        shards_log in 0u32..4,
        policy in 0u8..3,
        keys in proptest::collection::vec((any::<u32>(), any::<bool>(), 0u64..5_000_000), 1..600),
    ) {
        let cfg = Config {
            capacity: 1024,
            shards: 1 << shards_log,
            full_table: FullTablePolicy::from_u8(policy).unwrap(),
            ..Config::default()
        };
        let g: Gate = Gate::new(&cfg, [1, 2]).unwrap();
        let local = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let mut now = 1_000_000u64;
        for (bits, v6, dt) in keys {
            now += dt;
            let remote = if v6 {
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, (bits >> 16) as u16, bits as u16, 0, 0, 0, 1))
            } else {
                IpAddr::V4(Ipv4Addr::from(bits))
            };
            g.decide(remote, local, now);
        }
        prop_assert_eq!(g.tracked_keys(), g.tracked_keys_scan());
    }
}
