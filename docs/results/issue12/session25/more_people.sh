#!/bin/bash
# Issue #12, session 25: does G_F's frame-to-frame gap (pitch above all) close with more people to learn from?
# 12 more synthetic people (S013-S024: synth's seed and settings, synth.first_subject 13; person n's stream is
# seeded by n, so S001-S012 are synth's own people) made into a store the way dvc.yaml makes synth's, then the demo
# recipe trained on validation fold 3 of the tuning split with synth's 5 training people plus 11 of them (S013-S023;
# S024 sits in fold 3, which every store must have, and is never evaluated), at the baseline's step count
# (train.small.steps_per_epoch 131 = what 5 people give an epoch, x 8 epochs), judged by the Flow-CNN of
# benchmarks/issue12/val_neutral.sh's folder on synth's validation rows (the same rows and judge as its `full`).
# Run from the project folder after `make demo` and `benchmarks/issue12/val_neutral.sh DIR`:
#   docs/results/issue12/session25/more_people.sh DIR SEED     (scored by benchmarks/issue12/per_pose.py and neutral_rows.py)
# LONG=1: session 10's long recipe (16 epochs, lr_gamma 0.85; same 131 steps an epoch), runs named more_long_sSEED;
# PEOPLE=5 trains on synth's 5 alone (runs long_sSEED: the long recipe's reference on the same judge).
# FACE=1 (session 26): G_F also reads the non-frontal face (train.small.nets.gf.face: grey); runs named face_more_sSEED
# (face_more_long_sSEED with LONG=1).
# XLONG=1 (session 27): twice the long recipe (32 epochs, lr_gamma 0.92: the last epoch's rate 0.92^31 = 0.075 of the
# first, where 0.85^15 = 0.087 and 0.7^7 = 0.082 end); runs named more_xlong_sSEED.
set -e
W=${1:?usage: more_people.sh DIR SEED}; s=${2:?usage: more_people.sh DIR SEED}
H=$(dirname "$0"); M=$W/more; D=$M/data
export PATH=$PWD/.venv/bin:$PATH OMP_NUM_THREADS=1
mkdir -p "$M"
sed 's/^  first_subject: 1 /  first_subject: 13 /' params.yaml > "$M/params_more.yaml"
sed 's/^    steps_per_epoch: 230$/    steps_per_epoch: 131/' params.yaml > "$M/params_spe131.yaml"
recipe() {   # recipe EPOCHS LR_GAMMA OUT: params_spe131.yaml with train.small.epochs and lr_gamma replaced
  python - "$M/params_spe131.yaml" "$3" "$1" "$2" <<'PY'
import sys
src, out, epochs, gamma = sys.argv[1:]
s = open(src).read()
k = s.index("\n  small:\n")
head, small = s[:k], s[k:]
for a, b in (("\n    epochs: 8\n", f"\n    epochs: {epochs}\n"), ("\n    lr_gamma: 0.7\n", f"\n    lr_gamma: {gamma}\n")):
    assert a in small, a
    small = small.replace(a, b, 1)
open(out, "w").write(head + small)
PY
}
recipe 16 0.85 "$M/params_long131.yaml"    # LONG=1
recipe 32 0.92 "$M/params_xlong131.yaml"   # XLONG=1
sed 's/^      gf: {name: gf, ngf: 16, max_ch: 128, n_down: 3, n_res_enc: 1, n_res_dec: 2, output: gated}$/      gf: {name: gf, ngf: 16, max_ch: 128, n_down: 3, n_res_enc: 1, n_res_dec: 2, output: gated, face: grey}/' \
  "$M/params_spe131.yaml" > "$M/params_face131.yaml"
sed 's/^      gf: {name: gf, ngf: 16, max_ch: 128, n_down: 3, n_res_enc: 1, n_res_dec: 2, output: gated}$/      gf: {name: gf, ngf: 16, max_ch: 128, n_down: 3, n_res_enc: 1, n_res_dec: 2, output: gated, face: grey}/' \
  "$M/params_long131.yaml" > "$M/params_face_long131.yaml"
grep -q 'face: grey}$' "$M/params_face131.yaml" && grep -q 'face: grey}$' "$M/params_face_long131.yaml"
grep -q '^  first_subject: 13 ' "$M/params_more.yaml" && grep -q '^    steps_per_epoch: 131$' "$M/params_spe131.yaml"
if [ ! -d "$D/stores/synth_more.zarr" ]; then   # ~5 min on 2 cores; two seeds at once share it: run one first
  P=$M/params_more.yaml
  emogan synth --out $D/synth_more --params $P --overwrite
  emogan manifest $D/synth_more --format emotiongan --dataset synth_more --out $D/synth_more.csv --params $P
  emogan crop $D/synth_more.csv --out $D/crops/synth_more --params $P
  emogan flow $D/crops/synth_more --out $D/flows/synth_more.zarr --params $P --no-progress
  emogan normalize $D/flows/synth_more.zarr --out $D/stores/synth_more.zarr --params $P
fi
P=$M/params_spe131.yaml; v=more_s$s
[ "$LONG" = 1 ] && { P=$M/params_long131.yaml; v=more_long_s$s; }
[ "$XLONG" = 1 ] && { P=$M/params_xlong131.yaml; v=more_xlong_s$s; }
EXTRA="$D/stores/synth_more.zarr --folds-file $H/synth_more_val_folds.csv"
[ "$PEOPLE" = 5 ] && { EXTRA=""; v=${v#more_}; }
if [ "$FACE" = 1 ]; then P=$M/params_face131.yaml; [ "$LONG" = 1 ] && P=$M/params_face_long131.yaml; v=face_$v; fi
emogan train data/stores/synth.zarr --fold 3 --config small --folds-file $W/synth_tuning.csv $EXTRA \
  --efer own --efer-path $W/efer3 --out $W/gan_$v --params $P --seed $s > $W/train_$v.log 2>&1
emogan evaluate $W/gan_$v data/stores/synth.zarr --fold 3 --flowcnn $W/flowcnn3 \
  --landmark data/baselines/synth_landmark.npz --folds-file $W/synth_tuning.csv --out $W/eval_$v \
  --params $P > $W/evaluate_$v.log 2>&1
echo DONE $v
