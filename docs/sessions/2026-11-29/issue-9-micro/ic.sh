#!/bin/sh
# instructions per decision: (I(N)-I(0))/N for each side and case
N=${N:-200000}
for k in ${CASES:-0 1 2 3}; do
  for side in old new; do
    a=$(valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null ./target/release/micro one $side $k 0 2>&1 | grep 'I *refs' | tr -d ',' | awk '{print $NF}')
    b=$(valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null ./target/release/micro one $side $k $N 2>&1 | grep 'I *refs' | tr -d ',' | awk '{print $NF}')
    echo "case $k $side $(echo "scale=1; ($b-$a)/$N" | bc)"
  done
done
