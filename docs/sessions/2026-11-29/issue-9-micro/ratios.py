#!/usr/bin/env python3
"""Per case: criterion's median time of old and new in each round, the round's
new/old ratio, and the median ratio over rounds (target/criterion/decide)."""
import json, os, re, statistics
base = 'target/criterion/decide'
print(f"{'case':<10} {'old ns':>8} {'new ns':>8} {'new/old (median of rounds)':>27}  per round")
for c in sorted(os.listdir(base)):
    d = os.path.join(base, c)
    if not os.path.isdir(d) or c == 'report':
        continue
    t = {}
    for sub in os.listdir(d):
        m = re.fullmatch(r'(old|new)_r(\d+)', sub)
        if m:
            e = json.load(open(os.path.join(d, sub, 'new', 'estimates.json')))
            t[(m.group(1), int(m.group(2)))] = e['median']['point_estimate']
    rounds = sorted({r for (_, r) in t if ('old', r) in t and ('new', r) in t})
    if not rounds:
        continue
    ratios = [t[('new', r)] / t[('old', r)] for r in rounds]
    o = statistics.median(t[('old', r)] for r in rounds)
    n = statistics.median(t[('new', r)] for r in rounds)
    print(f"{c:<10} {o:8.2f} {n:8.2f} {statistics.median(ratios):27.3f}  " + " ".join(f"{x:.3f}" for x in ratios))
