#!/usr/bin/env python3
"""Relay benchmark (issue 12): short HTTP/1.0 request/response connections
per second and one bulk stream's MB/s against a target address. Run it
against the backend directly, HAProxy in TCP mode and the gate (gate-sim
--BackendAddress) in the same namespace, one after the other, and compare
the ratios (the machine is shared: absolute figures are noise).

usage: relay.py HOST:PORT [connections] [threads] [bulk-path]
"""
import socket, sys, threading, time

def one(addr, path=b"/small.txt"):
    s = socket.create_connection(addr, timeout=10)
    s.sendall(b"GET " + path + b" HTTP/1.0\r\nHost: x\r\n\r\n")
    n = 0
    while True:
        b = s.recv(1 << 16)
        if not b:
            break
        n += len(b)
    s.close()
    return n

def main():
    host, port = sys.argv[1].rsplit(":", 1)
    addr = (host, int(port))
    total = int(sys.argv[2]) if len(sys.argv) > 2 else 4000
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    bulk = (sys.argv[4] if len(sys.argv) > 4 else "/200m.bin").encode()
    errors = [0]
    def worker(k):
        for _ in range(k):
            try:
                if one(addr) <= 0:
                    errors[0] += 1
            except OSError:
                errors[0] += 1
    t0 = time.monotonic()
    ts = [threading.Thread(target=worker, args=(total // threads,)) for _ in range(threads)]
    for t in ts: t.start()
    for t in ts: t.join()
    dt = time.monotonic() - t0
    done = (total // threads) * threads
    t0 = time.monotonic()
    n = one(addr, bulk)
    bt = time.monotonic() - t0
    print(f"{sys.argv[1]}: {done / dt:.0f} connections/s ({done} in {dt:.2f} s, {errors[0]} errors); "
          f"bulk {n / bt / 1e6:.0f} MB/s ({n} bytes in {bt:.2f} s)")

main()
