#!/usr/bin/env bash
# The GPU path in one short run (< 8 minutes on one H200; docs/hardware.md#device-check):
#   1. install from the lock: scripts/setup-venv.sh, or, on a machine that cannot reach a
#      package registry, the archive scripts/device-site.sh packed from the lock
#      (CLNAS_DEVICE_SITE=ARCHIVE; the image's own CUDA torch then runs); a failure is reported
#   2. the GPU-marked tests (pytest -m gpu)
#   3. benchmarks/proxy_throughput.py --device cuda: mobilenet_v2 and clcnet_a (BENCH_MODELS
#      to change), then 1, 2 and 4 concurrent trials of mobilenet_v2_cifar100 on the one GPU
#   4. one proxy epoch of every CIFAR zoo model on CUDA with AMP (synthetic data)
#   5. a synthetic study whose 4 trials share the GPU (gpus_per_trial 0.25)
#   6. one `clnas train` epoch with one GPU worker (channelnet_v3: 5-D weights, conv head)
#   7. only when named in STEPS: torch.compile of the proxy step (mobilenet_v2_cifar100),
#      compile time and img/s against eager, the figures that decide whether compiling pays
# Every figure goes into one file, DIR/device-check.txt (DIR: $1, else $OUT, else
# ./device-check); each step's full output into DIR/logs.tar.gz (logs/NAME.log). Exit status:
# the number of failed steps (0: all passed); 100 when nothing usable could be installed.
# STEPS="name ..." runs only the named steps (install always runs; compile-probe only when
# named). CLNAS_CHECK_DEVICE=cpu rehearses every step on a machine without a GPU (same code
# path, small sizes, no GPU figures) before device time is spent. The work directory (a temp
# dir: unpacked site, data, Ray's files, the study database) is removed at the end.
#
#   scripts/device-check.sh [DIR]
#   CLNAS_DEVICE_SITE=.devsite/site.tar.gz scripts/device-check.sh [DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
case "${CLNAS_CHECK_DEVICE:-cuda}" in
  cuda | cpu) ;;
  *) echo "CLNAS_CHECK_DEVICE must be cuda or cpu, not '$CLNAS_CHECK_DEVICE'" >&2; exit 100 ;;
esac
dir="$(mkdir -p "${1:-${OUT:-device-check}}" && cd "${1:-${OUT:-device-check}}" && pwd)"
work=$(mktemp -d "${TMPDIR:-/tmp}/clnas-device-check.XXXXXX")
logs="$work/logs"
mkdir -p "$logs"
report="$dir/device-check.txt"
py="$repo/.venv/bin/python"
failed=0
dev="${CLNAS_CHECK_DEVICE:-cuda}"
if [ "$dev" = cuda ]; then gpus_trial=0.25 gpus_worker=1 cpus_worker=4 n_train=768 seconds=5 amp=True
else gpus_trial=0 gpus_worker=0 cpus_worker=1 n_train=300 seconds=2 amp=False; fi
n_val=$((n_train / 6))
: >"$report"
# the step logs travel as one archive beside the report, however the run ends
trap 'tar -C "$work" -czf "$dir/logs.tar.gz" logs 2>/dev/null; rm -rf "$work"' EXIT

say() { echo "$*" | tee -a "$report"; }

# a step NAME.part belongs to step NAME
wanted() {
  [ "$1" = install ] && return 0
  [ -z "${STEPS:-}" ] && [ "$1" != compile-probe ] && return 0
  [[ " ${STEPS:-} " == *" ${1%%.*} "* ]]
}

# step NAME TIMEOUT_S CMD...: run with a time limit, log everything, keep the tail in the report
step() {
  local name="$1" limit="$2" start rc
  shift 2
  wanted "$name" || return 0
  say ""
  say "== $name ($(date -u +%H:%M:%S) UTC, limit ${limit}s)"
  start=$(date +%s)
  timeout -k 10 "$limit" "$@" >"$logs/$name.log" 2>&1
  rc=$?
  grep -E '^(RESULT|FIGURE) ' "$logs/$name.log" | sed -E 's/^(RESULT|FIGURE) //' >>"$report"
  tail -n 40 "$logs/$name.log" | grep -vE '^(RESULT|FIGURE) ' | tail -n 25 >"$logs/$name.tail"
  if [ "$rc" -eq 0 ]; then
    say "-- $name: PASS in $(($(date +%s) - start)) s"
  else
    failed=$((failed + 1))
    [ "$rc" -eq 124 ] && say "-- $name: TIMED OUT after ${limit}s" || say "-- $name: FAIL (exit $rc)"
    sed 's/^/   | /' "$logs/$name.tail" >>"$report"
  fi
}

say "clnas device check, $(date -u '+%Y-%m-%d %H:%M UTC'), $(hostname), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/gpu: /' | tee -a "$report"
say "cpu: $(nproc) cores"

# 1. Install. With network: .venv from requirements.lock (torch 2.13.0; on Linux x86-64 PyPI
# serves its CUDA build). Without: the archive packed from the lock by scripts/device-site.sh,
# on the machine's own python3 and CUDA torch (the report names both).
if [ -n "${CLNAS_DEVICE_SITE:-}" ]; then
  site="$work/site"
  step install 120 bash -c "mkdir -p '$site' && tar -C '$site' -xzf '$CLNAS_DEVICE_SITE'"
  py=$(command -v python3)
  export PYTHONPATH="$site:$repo${PYTHONPATH:+:$PYTHONPATH}"
  say "install: locked packages from $CLNAS_DEVICE_SITE on $py (the image's torch)"
else
  step install 240 scripts/setup-venv.sh
fi
if [ "$failed" -ne 0 ]; then
  say "!! install FAILED (no network or no wheel cache? scripts/device-site.sh packs an archive): see logs/install.log in $dir/logs.tar.gz"
fi
if ! "$py" -c "import sys, torch; sys.exit(0 if '$dev' == 'cpu' or torch.cuda.is_available() else 1)" 2>/dev/null; then
  say "!! no usable environment: $py cannot import a torch that sees CUDA; stopping"
  exit 100
fi
[ "$dev" = cuda ] || say "!! CLNAS_CHECK_DEVICE=$dev: a rehearsal of the steps, not a GPU check"
"$py" -c 'import sys, torch; c = torch.cuda.is_available(); print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, *(["bf16", torch.cuda.is_bf16_supported(), torch.cuda.get_device_name()] if c else ["no GPU"]))' | tee -a "$report"
clnas=("$py" -m service.cli)

# 2. GPU-marked tests
step pytest-gpu 90 "$py" -m pytest -m gpu -q -p no:cacheprovider tests/workers/test_device_gpu.py

# 3. The benchmark on CUDA at the proxy's batch: project step against the plain loop for
# mobilenet_v2 and clcnet_a (BENCH_MODELS="name ..." to change), then 1, 2 and 4 concurrent
# trials of mobilenet_v2_cifar100
[ "$dev" = cuda ] && bench=() || bench=(--rounds 1 --warmup 0)
bench+=(--models ${BENCH_MODELS:-mobilenet_v2_cifar100 clcnet_a_cifar100})
step benchmark-cuda 240 bash -c "set -o pipefail; '$py' benchmarks/proxy_throughput.py --device $dev --batch 256 --rounds 8 --warmup 3 --seconds $seconds ${bench[*]} | sed -u 's/^/FIGURE /'"

# 4. One proxy epoch of every CIFAR zoo model on CUDA with AMP
step proxy-zoo-epoch 200 "$py" - "$work/data" "$dev" "$n_train" "$amp" <<'EOF'
import logging, sys, time
from search_space import load_arch, zoo_names
from workers.data import write_cifar100_archive
from workers.proxy import ProxyRecipe, train_proxy

logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
root, dev, n, amp = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "True"
write_cifar100_archive(f"{root}/synthetic", n_train=n, n_test=100, seed=0)
recipe = ProxyRecipe(epochs=1, batch_size=256, val_size=n // 6, latency_repeats=0, device=dev,
                     amp=amp)
print(f"FIGURE proxy epoch on {dev}, AMP {amp}, batch 256, {n - n // 6} synthetic train images (first"
      " epoch: cuDNN autotuning included):")
print(f"FIGURE {'model':32s} {'img/s':>8s} {'total s':>8s} {'val_loss':>8s}")
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

# 5. A synthetic study: 4 trials at once on the one GPU
cat >"$work/study.json" <<EOF
{"format": "clnas.study/1", "name": "device-check", "space": "default", "dataset": "synthetic",
 "data_dir": "$work/data", "objectives": ["accuracy", "madds"],
 "proxy": {"epochs": 2, "batch_size": 128, "val_size": $n_val, "max_train_images": $((n_train - n_val)),
           "latency_repeats": 0, "device": "$dev"},
 "search": {"sampler": "random", "n_trials": 8, "max_concurrent": 4, "cpus_per_trial": 2,
            "gpus_per_trial": $gpus_trial, "scheduler": "fifo", "seed": 0, "max_failures": 0}}
EOF
if wanted study-4-per-gpu && [ ! -d "$work/data/synthetic" ]; then
  "$py" -c "from workers.data import write_cifar100_archive as w; w('$work/data/synthetic', n_train=$n_train, n_test=100, seed=0)"
fi
step study-4-per-gpu 120 "${clnas[@]}" search "$work/study.json" \
  --db "sqlite:///$work/study.db" --results-dir "$work/ray" --json
step study-4-per-gpu.trials 60 "$py" - "$work/study.db" <<'EOF'
import sys, optuna
study = optuna.load_study(study_name="device-check", storage=f"sqlite:///{sys.argv[1]}")
states = [t.state.name for t in study.trials]
ips = [c[-1]["images_per_s"] for t in study.trials if (c := t.user_attrs.get("curve"))]
print(f"FIGURE study trials: {len(states)}, {states.count('COMPLETE')} complete, "
      f"{states.count('FAIL')} failed; per-trial img/s (last epoch): "
      + ", ".join(f"{x:.0f}" for x in ips))
sys.exit(0 if states and states.count("COMPLETE") == len(states) else 1)
EOF

# 6. One `clnas train` epoch on one GPU worker
step train-1-gpu 240 bash -c "
  '$py' -c 'from workers.full.synthetic import write_synthetic_imagenet as w; w(\"$work/imagenet\", num_classes=10, train_per_class=32, val_per_class=8, min_side=160, max_side=256)' &&
  '$py' -m service.cli train channelnet_v3 --data '$work/imagenet' --recipe clcnet --workers 1 \
    --gpus-per-worker $gpus_worker --cpus-per-worker $cpus_worker --epochs 1 --batch-size 64 --out '$work/train' --json &&
  '$py' -c 'import json; m = json.load(open(\"$work/train/metrics.json\")); h = m[\"history\"][-1]; print(\"FIGURE clnas train channelnet_v3, 1 GPU worker, 1 epoch (synthetic):\", {k: h[k] for k in (\"images_per_s\", \"epoch_s\", \"train_loss\") if k in h})'
"

# 7. torch.compile of the proxy step: does it pay over a whole proxy?
step compile-probe 150 "$py" - "$dev" "$seconds" <<'EOF'
import sys, time, torch
from torch import nn
from search_space import build_model, load_arch
from workers.device import configure_cuda, train_step
from workers.proxy import ProxyRecipe, make_optimizer, plan_for

dev, seconds = torch.device(sys.argv[1]), float(sys.argv[2])
configure_cuda(dev)
recipe = ProxyRecipe(device=dev.type)
x = torch.randn(recipe.batch_size, 3, 32, 32, device=dev)
y = torch.randint(100, (recipe.batch_size,), device=dev)

def sync() -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()

def rate(compiled: bool) -> tuple[float, float]:
    torch.manual_seed(0)
    model = build_model(load_arch("mobilenet_v2_cifar100").with_changes(num_classes=100))
    plan = plan_for(model, recipe, dev)
    model = plan.prepare(model).train()
    opt, scaler = make_optimizer(model, recipe), plan.grad_scaler()
    run = torch.compile(model) if compiled else model
    loss = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    t0 = time.perf_counter()
    for _ in range(3):
        train_step(run, x, y, loss, opt, scaler, plan)
    sync()
    first = time.perf_counter() - t0
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        train_step(run, x, y, loss, opt, scaler, plan)
        n += 1
    sync()
    return first, n * recipe.batch_size / (time.perf_counter() - t0)

print(f"FIGURE torch.compile probe, mobilenet_v2_cifar100, proxy step, batch {recipe.batch_size}:")
for label, compiled in [("eager", False), ("compiled", True)]:
    first, ips = rate(compiled)
    print(f"FIGURE   {label:10s} first 3 steps {first:7.1f} s, then {ips:8.0f} img/s", flush=True)
EOF

say ""
say "device check: $failed failed step(s); report $report, step logs $dir/logs.tar.gz"
exit "$failed"
