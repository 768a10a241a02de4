#!/bin/sh
# Relay benchmark (issue 12), root: in a namespace made and removed here,
# Debian's nginx serves small.txt and 200m.bin on 127.0.0.1:9000, HAProxy
# (TCP mode) fronts it on :9100 and gate-sim (release, --BackendAddress) on
# :8080; bench/relay.py measures short request/response connections/s and
# one bulk stream's MB/s against each, one after the other, and the ratios
# of the gate to HAProxy are printed. With PERF=1, `perf record -g` samples
# gate-sim during its run (PERF_ARGS: other perf record options, e.g.
# "--call-graph dwarf -F 499") and the report goes to $OUT/perf.txt.
# GATE_SIM=path runs that gate-sim binary instead of this tree's release
# build (e.g. an older build, for a before/after comparison).
# Every process started here is stopped by its PID.
# Usage: gate-sim/bench/relay.sh [CONNECTIONS] [THREADS] [OUTDIR]
set -eu
N=${1:-3000}
TH=${2:-4}
OUT=${3:-/tmp/gate-relay-bench}
mkdir -p "$OUT/www" "$OUT/tmp"
cargo build --release -q -p gate-sim --bin gate-sim
T=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release
GS_BIN=${GATE_SIM:-$T/gate-sim}
BENCH=$(dirname "$0")/relay.py
NS=grb$$
[ -f "$OUT/www/small.txt" ] || printf 'hello\n' > "$OUT/www/small.txt"
[ -f "$OUT/www/200m.bin" ] || head -c 200000000 /dev/urandom > "$OUT/www/200m.bin"
cat > "$OUT/nginx.conf" <<EOF
daemon off;
pid $OUT/nginx.pid;
error_log $OUT/nginx.err;
worker_processes 1;
events {}
http {
  access_log off;
  client_body_temp_path $OUT/tmp; proxy_temp_path $OUT/tmp; fastcgi_temp_path $OUT/tmp;
  uwsgi_temp_path $OUT/tmp; scgi_temp_path $OUT/tmp;
  server { listen 127.0.0.1:9000; root $OUT/www; }
}
EOF
cat > "$OUT/haproxy.cfg" <<EOF
global
  maxconn 4000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend f
  bind 127.0.0.1:9100
  default_backend b
backend b
  server s1 127.0.0.1:9000
EOF
cleanup() {
    for p in ${PF:-} ${GS:-} ${HA:-} ${NG:-}; do kill "$p" 2>/dev/null || true; done
    sleep 1
    ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
ip netns add "$NS"
ip -n "$NS" link set lo up
ip netns exec "$NS" nginx -c "$OUT/nginx.conf" &
NG=$!
ip netns exec "$NS" haproxy -f "$OUT/haproxy.cfg" >"$OUT/haproxy.out" 2>&1 &
HA=$!
sleep 1
run() { ip netns exec "$NS" python3 "$BENCH" "127.0.0.1:$1" "$N" "$TH" | tee -a "$OUT/results.txt"; }
: > "$OUT/results.txt"
run 9000
run 9100
"$GS_BIN" --netns "$NS" --ListenAddress 127.0.0.1 --ListenPort 8080 \
    --BackendAddress 127.0.0.1:9000 --RateMilliPerSecond 100000000 --Burst 100000 \
    --MaxConnections 4096 >"$OUT/gate-sim.out" 2>"$OUT/gate-sim.err" &
GS=$!
sleep 1
# CPU time (user+system, clock ticks) and context switches of every
# gate-sim thread, before and after its run: where the time goes by thread.
threads() {
    for t in /proc/$GS/task/*; do
        printf '%s %s %s %s\n' "${t##*/}" "$(cat "$t/comm")" \
            "$(awk '{print $14 + $15}' "$t/stat")" \
            "$(awk '/ctxt_switches/ {n += $2} END {print n}' "$t/status")"
    done
}
threads > "$OUT/threads.before"
if [ "${PERF:-0}" = 1 ]; then
    perf record ${PERF_ARGS:--g} -o "$OUT/perf.data" -p "$GS" >"$OUT/perf.log" 2>&1 &
    PF=$!
    sleep 1
fi
run 8080
if [ -n "${PF:-}" ]; then
    kill -INT "$PF"; wait "$PF" || true
    PF=
    perf report -i "$OUT/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null | head -150 > "$OUT/perf.txt"
    perf report -i "$OUT/perf.data" --children --sort symbol --stdio -g none 2>/dev/null | head -120 > "$OUT/perf-children.txt"
fi
threads > "$OUT/threads.after"
echo "gate-sim threads during its run (tid name cpu-ms context-switches):" | tee -a "$OUT/results.txt"
awk -v hz="$(getconf CLK_TCK)" 'NR == FNR { c[$1] = $3; x[$1] = $4; next }
    { printf "  %s %s %d %d\n", $1, $2, ($3 - c[$1]) * 1000 / hz, $4 - x[$1] }' \
    "$OUT/threads.before" "$OUT/threads.after" | tee -a "$OUT/results.txt"
kill -INT "$GS"; wait "$GS" || true
GS=
tail -5 "$OUT/gate-sim.err"
awk '
  { for (i = 1; i <= NF; i++) { if ($i == "connections/s") c[NR] = $(i-1); if ($i == "MB/s") m[NR] = $(i-1) } }
  END { printf "gate/HAProxy: %.2fx connections/s, %.2fx MB/s; HAProxy/direct: %.2fx, %.2fx\n",
        c[3] / c[2], m[3] / m[2], c[2] / c[1], m[2] / m[1] }' "$OUT/results.txt" | tee -a "$OUT/results.txt"
