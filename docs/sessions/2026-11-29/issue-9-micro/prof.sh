#!/bin/sh
# prof.sh side case -> asm.side.case (per-instruction Ir per decision in Gate::decide)
side=$1; k=$2
valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file=cg.$side.$k ./target/release/micro one $side $k 200000 >/dev/null 2>&1
if [ $side = old ]; then sym='gate_core_old::gate::Gate<L>::decide>'; else sym='gate_core::gate::Gate<L>::decide>'; fi
python3 tools/cgasm.py cg.$side.$k target/release/micro "$sym" 200000 > asm.$side.$k
tail -n1 asm.$side.$k
