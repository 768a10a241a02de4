#!/usr/bin/env python3
"""new/old ratios of criterion's median estimates under target/criterion/decide."""
import json, os
base = 'target/criterion/decide'
cases = sorted(d for d in os.listdir(base) if os.path.isdir(os.path.join(base, d, 'old')))
print(f"{'case':<12} {'old ns':>8} {'new ns':>8} {'new/old':>8}")
for c in cases:
    v = {}
    for side in ('old', 'new'):
        e = json.load(open(os.path.join(base, c, side, 'new', 'estimates.json')))
        v[side] = e['median']['point_estimate']
    print(f"{c:<12} {v['old']:8.2f} {v['new']:8.2f} {v['new']/v['old']:8.3f}")
