#!/bin/bash
set -e
cd "$(dirname "$0")/../.."   # the project folder
export PATH=$PWD/.venv/bin:$PATH PYTHONPATH=$PWD OMP_NUM_THREADS=1
P=benchmarks/issue12/research_params.yaml
t0=$(date +%s); tick() { echo "TIME $1 $(( $(date +%s) - t0 ))s"; t0=$(date +%s); }
emogan stats data/research/flows/synth_s001_s010.zarr --params $P --out data/research/metrics/stats_synth.json; tick stats
emogan normalize data/research/flows/synth_s001_s010.zarr --params $P --stats data/research/metrics/stats_synth.json --out data/research/stores/synth.zarr; tick normalize
benchmarks/issue12/probes.sh
