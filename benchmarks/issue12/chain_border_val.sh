#!/bin/bash
# Issue #12, session 19: `evaluate.chain_border` on VALIDATION (tuning split, fold 3): one run trained by
# val_neutral.sh evaluated once per band width, each through a params copy that differs in that line only.
# Run from the project folder after `make demo` and val_neutral.sh (its OUT_DIR holds the folds file and judges):
#   benchmarks/issue12/chain_border_val.sh OUT_DIR RUN_NAME        e.g. /work/val19 full_s0
# BORDERS="0.0 0.0625" overrides the widths. Each evaluation goes to OUT_DIR/eval_RUN_NAME_cbWIDTH; the
# neutral->apex summary is printed by neutral_rows.py (EPE per pose: rows.csv's epe_emotiongan / epe_zero).
set -e
W=${1:?usage: chain_border_val.sh OUT_DIR RUN_NAME}; v=${2:?usage: chain_border_val.sh OUT_DIR RUN_NAME}
export PATH=$PWD/.venv/bin:$PATH
names=()
for b in ${BORDERS:-0.0 0.03125 0.0625 0.09375 0.125}; do
  p=$W/params_cb$b.yaml
  python - "$b" "$p" <<'PY'
import re, sys
b, out = sys.argv[1], sys.argv[2]
s = open("params.yaml").read()
k = s.index("\nevaluate:\n")
head, tail = s[:k], s[k:]
tail, n = re.subn(r"\n  chain_border: [0-9.]+", f"\n  chain_border: {b}", tail, count=1)
assert n == 1, "params.yaml has no evaluate.chain_border"
open(out, "w").write(head + tail)
PY
  ln -sfn "gan_$v" "$W/gan_${v}_cb$b"      # neutral_rows.py reads OUT_DIR/eval_NAME beside OUT_DIR/gan_NAME
  emogan evaluate "$W/gan_$v" data/stores/synth.zarr --fold 3 --flowcnn "$W/flowcnn3" \
    --landmark data/baselines/synth_landmark.npz --folds-file "$W/synth_tuning.csv" --out "$W/eval_${v}_cb$b" \
    --params "$p" > "$W/eval_${v}_cb$b.log" 2>&1
  names+=("${v}_cb$b")
done
PYTHONPATH=$PWD python benchmarks/issue12/neutral_rows.py "$W" "${names[@]}"
for n in "${names[@]}"; do
  python - "$W/eval_$n/rows.csv" "$n" <<'PY'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["strategy"] == "neutral_apex"]
out = []
for name, poses in (("large", {"yaw", "pitch", "roll", "diagonal"}), ("nothing", {"nothing"}), ("tx", {"tx"})):
    rr = [r for r in rows if r["pose"] in poses]
    e, z = (sum(float(r[c]) for r in rr) for c in ("epe_emotiongan", "epe_zero"))
    out.append(f"{name} EPE {e / z:.2f}x")
print(sys.argv[2], "neutral->apex:", ", ".join(out))
PY
done
