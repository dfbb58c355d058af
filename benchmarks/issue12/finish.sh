#!/bin/bash
set -e
cd /work/wt-research2
export PATH=/work/main/.venv/bin:$PATH PYTHONPATH=$PWD OMP_NUM_THREADS=1
P=benchmarks/issue12/research_params.yaml
t0=$(date +%s); tick() { echo "TIME $1 $(( $(date +%s) - t0 ))s"; t0=$(date +%s); }
emogan stats synth --params $P --flows data/research/flows/synth_s001_s010.zarr --out data/research/metrics/stats_synth.json; tick stats
emogan normalize synth --params $P --flows data/research/flows/synth_s001_s010.zarr --stats data/research/metrics/stats_synth.json --out data/research/stores/synth.zarr; tick normalize
benchmarks/issue12/probes.sh
