#!/usr/bin/env python3
"""Per-instruction Ir from a callgrind file (--dump-instr=yes), joined with objdump of one function."""
import sys, re, subprocess, collections
path, binary, sym, ops = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
cost = collections.Counter()
def pos(tok, prev):
    if tok == '*': return prev
    if tok.startswith('+'): return prev + int(tok[1:], 0)
    if tok.startswith('-'): return prev - int(tok[1:], 0)
    return int(tok, 0)
addr = 0; line = 0; skip = False
for l in open(path):
    if l.startswith('calls='):
        skip = True; continue
    if not l or not (l[0] in '+-*0123456789'):
        continue
    parts = l.split()
    a = pos(parts[0], addr); ln = pos(parts[1], line) if len(parts) > 1 else line
    addr, line = a, ln
    if skip:
        skip = False; continue
    if len(parts) > 2:
        cost[a] += int(parts[2])
dis = subprocess.run(['objdump', '-d', '--no-show-raw-insn', '-C', binary], capture_output=True, text=True).stdout
out = False; total = 0
for l in dis.splitlines():
    if l.endswith('>:'):
        out = sym in l
        if out: print(l)
        continue
    if out:
        m = re.match(r'\s*([0-9a-f]+):\s*(.*)', l)
        if m:
            a = int(m.group(1), 16); c = cost.get(a, 0) / ops
            total += c
            if c >= 0.5: print(f"{c:6.2f}  {m.group(1)}  {m.group(2)}")
print("total", total)
