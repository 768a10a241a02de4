#!/bin/sh
# gate-sim under `hping3 -S --flood --rand-source`, beside an nftables meter
# with the same per-source limit, in the namespaces of `gate-load topology`
# (made and removed here; hping3 runs only between them and is stopped by
# its PID). Root. Usage: gate-sim/bench/flood.sh [SECONDS] [OUTDIR]
# For each front it prints: SYNs hping3 sent, SYNs that reached the front,
# lost (front) SYNs, the fair client's accepted ratio and p50/p99 latency
# (4 addresses at 2/s each, within the 5/s limit), and for gate-sim its
# decisions per CPU-second and RSS after warm-up vs at the end.
# With tcpdump installed it also captures the fair client's SYN and SYN-ACK
# in the server namespace and prints their p50/p99 apart: the part of the
# fair client's latency spent on the server side (from the SYN's arrival at
# the server's interface to its SYN-ACK: the kernel's receive path, NFQUEUE,
# the front's decision), the rest being the client's own scheduling.
# Environment: GATE_SIM_ARGS (extra gate-sim flags, e.g. "--nice 0"),
# SKIP_NFT=1 (gate-sim only). The load average is printed before and after.
set -eu
SECS=${1:-60}
OUT=${2:-/tmp/gate-sim-bench}
PORT=8080
mkdir -p "$OUT"
cargo build --release -q -p gate-sim -p load-tests --bin gate-sim --bin gate-load
T=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release
NAME=gsb$$
"$T/gate-load" topology up --name "$NAME" --addresses 16 >/dev/null
SNS=gl-$NAME-s
CNS=gl-$NAME-c
cleanup() {
    [ -n "${HP:-}" ] && kill -INT "$HP" 2>/dev/null || true
    [ -n "${GS:-}" ] && kill -INT "$GS" 2>/dev/null || true
    [ -n "${LS:-}" ] && kill "$LS" 2>/dev/null || true
    sleep 1
    ip netns exec "$SNS" nft delete table inet gsbench 2>/dev/null || true
    "$T/gate-load" topology down --name "$NAME" >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

FAIR_S=$((SECS - 10))
cat > "$OUT/fair.toml" <<TOML
name = "fair"
target = "10.77.0.1:$PORT"
connect_timeout_ms = 3000
close = "rst"
[[group]]
name = "fair"
sources = "10.77.128.1-10.77.128.4"
rate_per_source = 2
duration_s = $FAIR_S
start_s = 5
TOML

# The server side of the fair client's latency: SYN in -> SYN-ACK out, per
# connection, from a tcpdump text listing (ms: n p50 p90 p99 max).
server_side() {
    tcpdump -r "$1" -tt -n 2>/dev/null | awk '
      { for (i = 2; i < NF && $i != "IP"; i++) ; src = $(i+1); dst = $(i+3); sub(/:$/, "", dst) }
      / Flags \[S\],/  { if (!(src in s)) s[src] = $1 }
      / Flags \[S\.\],/ { if (dst in s) { print ($1 - s[dst]) * 1000; delete s[dst] } }' |
      sort -n | awk '{v[NR]=$1} END { if (NR) printf "n=%d p50=%.2f p90=%.2f p99=%.2f max=%.2f ms\n", NR, v[int(NR*0.5)+1], v[int(NR*0.9)+1], v[int(NR*0.99)+1], v[NR]; else print "n=0" }'
}

# One flood with the fair client beside it; $1 names the run.
flood() {
    TD=
    if command -v tcpdump >/dev/null; then
        ip netns exec "$SNS" tcpdump -i any -n -B 16384 -w "$OUT/$1.pcap" \
            "tcp port $PORT and net 10.77.128.0/30 and tcp[tcpflags] & tcp-syn != 0" 2>/dev/null &
        TD=$!
    fi
    ip netns exec "$CNS" hping3 -S --flood --rand-source -p $PORT 10.77.0.1 >"$OUT/$1.hping" 2>&1 &
    HP=$!
    ip netns exec "$CNS" "$T/gate-load" run --scenario "$OUT/fair.toml" --quiet --json "$OUT/$1.fair.json" >"$OUT/$1.fair" 2>&1 &
    FC=$!
    sleep "$SECS"
    kill -INT "$HP"; wait "$HP" || true; HP=
    wait "$FC" || true
    if [ -n "$TD" ]; then
        kill -INT "$TD"; wait "$TD" || true
        echo "$1: fair client, server side (SYN in -> SYN-ACK out): $(server_side "$OUT/$1.pcap")"
    fi
    SENT=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' "$OUT/$1.hping")
    echo "$1: hping3 sent $SENT SYNs in ${SECS} s"
    # gate-load's tables: counts (attempted accepted refused timed out closed
    # other accepted%) and latency (count p50 p90 p99 p99.9 max, ms).
    grep -E '^\| fair ' "$OUT/$1.fair" | sed "s/^/$1: fair client /" || true
}

# --- gate-sim ---
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# shellcheck disable=SC2086
"$T/gate-sim" --netns "$SNS" --queues 0:1 --RateMilliPerSecond 5000 --Burst 10 \
    --stats-interval-ms 5000 ${GATE_SIM_ARGS:-} >"$OUT/gate-sim.out" 2>"$OUT/gate-sim.err" &
GS=$!
i=0; until grep -qx ready "$OUT/gate-sim.out" 2>/dev/null; do sleep 0.1; i=$((i+1)); [ $i -lt 200 ]; done
flood gate-sim
sleep 2
CLK=$(getconf CLK_TCK)
CPU=$(awk -v c="$CLK" '{printf "%.2f", ($14+$15)/c}' /proc/$GS/stat)
kill -INT "$GS"; wait "$GS" || true; GS=
grep -E '^(rules|nfq|real|memory|leaks|violations):' "$OUT/gate-sim.out" | sed 's/^/gate-sim: /'
DEC=$(sed -n 's/^nfq: syns=\([0-9]*\) .*/\1/p' "$OUT/gate-sim.out")
LOST=$(sed -n 's/^nfq: .* lost=\([0-9]*\) .*/\1/p' "$OUT/gate-sim.out")
echo "gate-sim: decided $DEC, lost $LOST ($(awk -v l="$LOST" -v d="$DEC" 'BEGIN{printf "%.3f", 100*l/(l+d+0.000001)}') %), CPU ${CPU} s, decisions per CPU-second $(awk -v d="$DEC" -v c="$CPU" 'BEGIN{printf "%.0f", d/(c+0.000001)}')"
RSS=$(sed -n 's/^stats: t=\([0-9.]*\)s .*rss_kib=\([0-9]*\).*/\1 \2/p' "$OUT/gate-sim.err")
echo "$RSS" | awk 'NR==2{w=$2} {m=($2>m)?$2:m; last=$2} END{printf "gate-sim: RSS after warm-up (t=10 s) %d KiB, max after %d KiB, at the end %d KiB (max/warm-up %.3f)\n", w, m, last, m/(w+0.000001)}'

echo "load average after gate-sim: $(cut -d' ' -f1-3 /proc/loadavg)"
[ -n "${SKIP_NFT:-}" ] && exit 0

# --- nftables meter, same per-source limit, real listener ---
ip netns exec "$SNS" nft -f - <<NFT
table inet gsbench {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport $PORT tcp flags & (syn | ack) == syn meter m4 size 65535 { ip saddr timeout 10s limit rate over 5/second burst 10 packets } counter reject with tcp reset
    tcp dport $PORT tcp flags & (syn | ack) == syn counter
  }
}
NFT
ip netns exec "$SNS" "$T/gate-load" listen --addr 10.77.0.1:$PORT >/dev/null 2>&1 &
LS=$!
sleep 0.5
flood nft-meter
ip netns exec "$SNS" nft list table inet gsbench | grep counter | sed 's/^ */nft-meter: rule /'
kill "$LS"; wait "$LS" 2>/dev/null || true; LS=
echo "load average after the nftables meter: $(cut -d' ' -f1-3 /proc/loadavg)"
