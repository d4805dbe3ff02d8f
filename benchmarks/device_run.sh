#!/usr/bin/env bash
# The accelerator benchmarks of the throughput issue as one prepared run (GPU machine).
#
#   bash benchmarks/device_run.sh PHASE [OUT_DIR]
#
# PHASE a: chest192 train and cft_seg in float32 and bfloat16 (MFU against the device's dense
#          TF32 / BF16 peak), one steps.py run each;
# PHASE b: morphomnist, synth_chest and chest64 steps and the input pipeline;
# PHASE c: the host input share (`train_input_share` per stage: can the input keep up?) of the
#          default synth_chest pipeline with fewer steps per stage.
# Each phase is meant for one 10-minute device command (every run has its own timeout).
# Results: OUT_DIR/steps.jsonl, OUT_DIR/input.jsonl, OUT_DIR/input_share.json and
# OUT_DIR/log.txt (OUT_DIR defaults to $OUT, else benchmarks/results); append the JSON lines
# to benchmarks/results/<device>.jsonl afterwards. The device's copy of the tree has no .git:
# pass the commit, e.g. `SEGCFT_COMMIT=$(git rev-parse --short HEAD)` before the command.
# A session's device time (15 minutes, starts included) holds phase a and one more at most.
#
# Packages the device image lacks (grain, tensorflow-datasets, ml-collections, ...) travel as
# wheels in .whl/ (git-ignored; how to fetch them: benchmarks/README.md, "Accelerator").
set -u -o pipefail
PHASE=${1:?usage: bash benchmarks/device_run.sh a|b|c [OUT_DIR]}
OUT_DIR=${2:-${OUT:-benchmarks/results}}
mkdir -p "$OUT_DIR"
LOG=$OUT_DIR/log.txt
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
case "$GPU" in  # dense peaks from the vendors' data sheets, TFLOP/s
  *H100*|*H200*) TF32=494.7; BF16=989.4 ;;
  *A100*) TF32=156; BF16=312 ;;
  *) TF32=0; BF16=0 ;;
esac
echo "device: ${GPU:-none}; peaks TF32 $TF32, BF16 $BF16 TFLOP/s" | tee -a "$LOG"
python3 -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())" \
  2>&1 | tee -a "$LOG"

filter() { grep --line-buffered -v '^[IW][0-9]' | tee -a "$LOG"; }
status() { echo "exit status $1: $2" | tee -a "$LOG"; }  # 124: its timeout ran out

steps() {  # steps TIMEOUT ARGS...: one steps.py run, its lines in the log
  local limit=$1 peak=$TF32; shift
  case " $* " in *bfloat16*) peak=$BF16 ;; esac
  if [ "$peak" != 0 ]; then set -- "$@" --peak_tflops="$peak"; fi
  timeout "$limit" python3 benchmarks/steps.py "$@" --out="$OUT_DIR/steps.jsonl" 2>&1 | filter
  status "${PIPESTATUS[0]}" "steps.py $*"
}

case "$PHASE" in
  a)
    for step in train cft_seg; do
      for dtype in float32 bfloat16; do
        steps 150 --config=chest192 --only=$step --steps=10 --warmup=2 --compute_dtype=$dtype
      done
    done
    ;;
  b)
    steps 150 --config=morphomnist --steps=20 --warmup=3
    steps 150 --config=synth_chest --steps=20 --warmup=3
    steps 150 --config=chest64 --only=train,counterfactual,cft_seg --steps=20 --warmup=3
    timeout 90 python3 benchmarks/input.py --config=configs/synth_chest.py \
      --workdir=/tmp/input_bench --out="$OUT_DIR/input.jsonl" 2>&1 | filter
    status "${PIPESTATUS[0]}" input.py
    ;;
  c)
    rm -rf /tmp/pipeline && timeout 450 python3 -m segcft_jax.main \
      --config=configs/synth_chest.py --workdir=/tmp/pipeline \
      --stages=data,segmentor,pgm,hvae,cft_seg --config.segmentor.num_steps=300 \
      --config.hvae.num_steps=300 --config.cft_seg.num_steps=100 2>&1 | filter | tail -3
    status "${PIPESTATUS[0]}" "pipeline"
    python3 - "$OUT_DIR/input_share.json" <<'EOF' 2>&1 | tee -a "$LOG"
import json, os, sys
shares = {}
for stage in ("segmentor", "pgm", "hvae", "cft_seg"):
  path = os.path.join("/tmp/pipeline", stage, "summary.json")
  if os.path.exists(path):
    s = json.load(open(path))
    shares[stage] = {k: s.get(k) for k in ("train_input_share", "train_img_per_s")}
json.dump(shares, open(sys.argv[1], "w"), indent=1)
print(shares)
EOF
    ;;
  *) echo "unknown phase $PHASE (a, b or c)"; exit 2 ;;
esac
