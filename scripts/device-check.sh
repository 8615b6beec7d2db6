#!/usr/bin/env bash
# The GPU path in one short run (< 8 minutes on one H200; docs/hardware.md#device-check):
#   1. install from the lock (scripts/setup-venv.sh); a failure is reported, not hidden
#   2. the GPU-marked tests (pytest -m gpu)
#   3. one proxy epoch of every CIFAR zoo model on CUDA with AMP (synthetic data)
#   4. a synthetic study whose 4 trials share the GPU (gpus_per_trial 0.25)
#   5. one `clnas train` epoch with one GPU worker (channelnet_v3: 5-D weights, conv head)
#   6. benchmarks/proxy_throughput.py --device cuda
# Every figure goes into one file, DIR/device-check.txt (DIR: $1, else $OUT, else
# ./device-check); each step's full output into DIR/logs/. Exit status: the number of failed
# steps (0: all passed); 100 when nothing usable could be installed.
#
#   scripts/device-check.sh [DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
dir="$(mkdir -p "${1:-${OUT:-device-check}}" && cd "${1:-${OUT:-device-check}}" && pwd)"
mkdir -p "$dir/logs" "$dir/work"
report="$dir/device-check.txt"
py=.venv/bin/python
failed=0
: >"$report"

say() { echo "$*" | tee -a "$report"; }

# step NAME TIMEOUT_S CMD...: run with a time limit, log everything, keep the tail in the report
step() {
  local name="$1" limit="$2" start rc
  shift 2
  say ""
  say "== $name ($(date -u +%H:%M:%S) UTC, limit ${limit}s)"
  start=$(date +%s)
  timeout "$limit" "$@" >"$dir/logs/$name.log" 2>&1
  rc=$?
  grep -E '^(RESULT|FIGURE) ' "$dir/logs/$name.log" | sed -E 's/^(RESULT|FIGURE) //' >>"$report"
  tail -n 40 "$dir/logs/$name.log" | grep -vE '^(RESULT|FIGURE) ' | tail -n 25 >"$dir/logs/$name.tail"
  if [ "$rc" -eq 0 ]; then
    say "-- $name: PASS in $(($(date +%s) - start)) s"
  else
    failed=$((failed + 1))
    [ "$rc" -eq 124 ] && say "-- $name: TIMED OUT after ${limit}s" || say "-- $name: FAIL (exit $rc)"
    sed 's/^/   | /' "$dir/logs/$name.tail" >>"$report"
  fi
}

say "clnas device check, $(date -u '+%Y-%m-%d %H:%M UTC'), $(hostname), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/gpu: /' | tee -a "$report"

# 1. Install. The lock pins torch 2.13.0; on Linux x86-64 PyPI serves the CUDA build of it. A
# machine without network access cannot install: say so plainly, then go on only if an
# existing .venv already has a CUDA torch (the report says which one ran).
step install 240 scripts/setup-venv.sh
if [ "$failed" -ne 0 ]; then
  say "!! install from requirements.lock FAILED (no network or no wheel cache?): see logs/install.log"
fi
if ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  say "!! no usable environment: $py cannot import a torch that sees CUDA; stopping"
  exit 100
fi
"$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "bf16", torch.cuda.is_bf16_supported(), torch.cuda.get_device_name())' | tee -a "$report"

# 2. GPU-marked tests
step pytest-gpu 180 "$py" -m pytest -m gpu -q -p no:cacheprovider

# 3. One proxy epoch of every CIFAR zoo model on CUDA with AMP
step proxy-zoo-epoch 180 "$py" - "$dir/work/data" <<'EOF'
import logging, sys, time
from search_space import load_arch, zoo_names
from workers.data import write_cifar100_archive
from workers.proxy import ProxyRecipe, train_proxy

logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
root = sys.argv[1]
write_cifar100_archive(f"{root}/synthetic", n_train=6000, n_test=100, seed=0)
recipe = ProxyRecipe(epochs=1, batch_size=256, val_size=1000, latency_repeats=0, device="cuda",
                     amp=True)
print("FIGURE proxy epoch on CUDA, AMP, batch 256, 5000 synthetic train images:")
print(f"FIGURE {'model':32s} {'img/s':>8s} {'epoch s':>8s} {'val_loss':>8s}")
failed = []
for name in [n for n in zoo_names() if load_arch(n).resolution == 32]:
    t0 = time.perf_counter()
    try:
        r = train_proxy(name, recipe, root, dataset="synthetic")
    except Exception as exc:  # keep going: the report lists every model that fails
        failed.append(name)
        print(f"FIGURE {name:32s} FAILED: {type(exc).__name__}: {exc}"[:300])
        continue
    m = r.history[-1]
    print(f"FIGURE {name:32s} {m['images_per_s']:8.0f} {time.perf_counter() - t0:8.1f} "
          f"{m['val_loss']:8.3f}", flush=True)
sys.exit(len(failed))
EOF

# 4. A synthetic study: 4 trials at once on the one GPU
cat >"$dir/work/study.json" <<EOF
{"format": "clnas.study/1", "name": "device-check", "space": "default", "dataset": "synthetic",
 "data_dir": "$dir/work/data", "objectives": ["accuracy", "madds"],
 "proxy": {"epochs": 2, "batch_size": 128, "val_size": 500, "max_train_images": 4000,
           "latency_repeats": 0, "device": "cuda"},
 "search": {"sampler": "random", "n_trials": 8, "max_concurrent": 4, "cpus_per_trial": 2,
            "gpus_per_trial": 0.25, "scheduler": "fifo", "seed": 0, "max_failures": 0}}
EOF
step study-4-per-gpu 150 .venv/bin/clnas search "$dir/work/study.json" \
  --db "sqlite:///$dir/work/study.db" --results-dir "$dir/work/ray" --json
"$py" - "$dir/work/study.db" >>"$report" 2>/dev/null <<'EOF'
import sys, optuna
study = optuna.load_study(study_name="device-check", storage=f"sqlite:///{sys.argv[1]}")
states = [t.state.name for t in study.trials]
ips = [c[-1]["images_per_s"] for t in study.trials if (c := t.user_attrs.get("curve"))]
print(f"study trials: {len(states)}, {states.count('COMPLETE')} complete, "
      f"{states.count('FAIL')} failed; per-trial img/s (last epoch): "
      + ", ".join(f"{x:.0f}" for x in ips))
EOF

# 5. One `clnas train` epoch on one GPU worker
step train-1-gpu 150 bash -c "
  '$py' -c 'from workers.full.synthetic import write_synthetic_imagenet as w; w(\"$dir/work/imagenet\", num_classes=10, train_per_class=32, val_per_class=8, min_side=160, max_side=256)' &&
  .venv/bin/clnas train channelnet_v3 --data '$dir/work/imagenet' --recipe clcnet --workers 1 \
    --gpus-per-worker 1 --cpus-per-worker 4 --epochs 1 --batch-size 64 --out '$dir/work/train' --json &&
  '$py' -c 'import json; m = json.load(open(\"$dir/work/train/metrics.json\")); h = m[\"history\"][-1]; print(\"FIGURE clnas train channelnet_v3, 1 GPU worker, 1 epoch (synthetic):\", {k: h[k] for k in (\"images_per_s\", \"epoch_s\", \"train_loss\") if k in h})'
"

# 6. The benchmark on CUDA: one trial per CIFAR zoo model, then 1, 2 and 4 concurrent trials
step benchmark-cuda 240 bash -c "'$py' benchmarks/proxy_throughput.py --device cuda --rounds 20 --warmup 5 --seconds 10 | sed 's/^/FIGURE /'"

say ""
say "device check: $failed failed step(s); report $report, logs $dir/logs/"
exit "$failed"
