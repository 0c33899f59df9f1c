#!/usr/bin/env bash
# Everything this project claims about CUDA, in one command, on a GPU machine without internet.
#
#   lab/scripts/gpu_check.sh [--wheels DIR] [--out DIR] [--only STEP,...] [--step-timeout S] [--cpu] [--dry-run]
#                        [--no-install]
#   lab/scripts/gpu_check.sh --download-wheels DIR     # on a machine with internet: fill DIR first
#
# The GPU machine needs CUDA PyTorch, Lightning, torchmetrics and TensorBoard installed, MNIST's four
# IDX files under $DIGITS_DATA_DIR/MNIST/raw, and this checkout. The script installs the project
# without dependencies plus whatever else is missing from --wheels DIR (pip --no-index), then runs, quickest
# first (a lent GPU is held for minutes; a late step that runs out of time should cost the least):
#   1. train.py experiment=fast_gpu (train), timed command to exit, its test accuracy against 99.0 %
#   1b. the same with compile=reduce-overhead (train_graphs): the step captured as CUDA graphs
#   2. evaluate.py device=cuda on that run's best checkpoint (evaluate)
#   3. benchmark_losses.py and 4. compare_losses.py with devices=[cpu,cuda]
#   5. every CUDA test case (tests: pytest -m gpu, the cases tests/conftest.py marks; a CUDA case skipped on a GPU machine is a failure)
# and writes one report, gpu_check.md + gpu_check.json, into --out (default outputs/gpu_check/<time>).
# A failing step does not stop the others; the exit code is 1 when any step failed.
# --cpu runs the same steps on the CPU with the smallest settings (to test this script without a GPU);
# --only runs the named steps alone; --step-timeout stops a step after S seconds (exit 124 in the report).
# --dry-run prints the steps' commands and runs nothing.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"  # the checkout: lab/scripts/ is two down
PYTHON="${PYTHON:-python}"
WHEELS="" OUT="" CPU=0 DRY=0 INSTALL=1 DOWNLOAD="" ONLY="" STEP_TIMEOUT=0
# What the project imports beyond the GPU machine's CUDA stack: distribution name per module.
NEEDED="hydra:hydra-core omegaconf:omegaconf yaml:pyyaml rich:rich matplotlib:matplotlib PIL:pillow
torchvision:torchvision pytest:pytest hypothesis:hypothesis lightning:lightning torchmetrics:torchmetrics
tensorboard:tensorboard expecttest:expecttest"

while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) WHEELS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --only) ONLY=",$2,"; shift 2 ;;
    --step-timeout) STEP_TIMEOUT="$2"; shift 2 ;;
    --cpu) CPU=1; shift ;;
    --dry-run) DRY=1; shift ;;
    --no-install) INSTALL=0; shift ;;
    --download-wheels) DOWNLOAD="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
cd "$ROOT"

if [ -n "$DOWNLOAD" ]; then
  # pip wheel, not pip download: antlr4-python3-runtime (hydra's parser) is published as an sdist only.
  # torchvision is left out: it must match the GPU machine's torch and CUDA build; add that wheel by hand.
  "$PYTHON" -m pip wheel -w "$DOWNLOAD" "hydra-core>=1.3,<1.4" pyyaml rich matplotlib pillow pytest hypothesis \
    expecttest
  exit $?
fi

OUT="${OUT:-outputs/gpu_check/$(date +%Y-%m-%d_%H-%M-%S)}"
if [ "$CPU" = 1 ]; then
  DEVICES="[cpu]" DEVICE=cpu
  COMPARE_EXTRA="dtypes=[float32] training.steps=5 naive_logit_std=[1] pytorch_suite=false"
  BENCH_EXTRA="repeats=3 warmup=1 sizes=[[256,10]]"
  TRAIN_EXTRA="trainer.accelerator=cpu data.device=cpu trainer.precision=32-true debug=limit logger=none"
  GRAPHS=default  # CUDA graphs need a GPU: the CPU mode compiles without them
else
  DEVICES="[cpu,cuda]" DEVICE=cuda COMPARE_EXTRA="training.accelerator=gpu" BENCH_EXTRA="" TRAIN_EXTRA=""
  GRAPHS=reduce-overhead
fi

# name|command: one line per step, run in this order.
STEPS="train|$PYTHON scripts/train.py experiment=fast_gpu trainer.enable_progress_bar=false hydra.run.dir=$OUT/train $TRAIN_EXTRA
train_graphs|$PYTHON scripts/train.py experiment=fast_gpu compile=$GRAPHS trainer.enable_progress_bar=false hydra.run.dir=$OUT/train_graphs $TRAIN_EXTRA
evaluate|$PYTHON scripts/evaluate.py ckpt_path=$OUT/train device=$DEVICE hydra.run.dir=$OUT/evaluate
benchmark_losses|$PYTHON lab/scripts/benchmark_losses.py devices=$DEVICES hydra.run.dir=$OUT/benchmark_losses $BENCH_EXTRA
compare_losses|$PYTHON lab/scripts/compare_losses.py devices=$DEVICES hydra.run.dir=$OUT/compare_losses $COMPARE_EXTRA
tests|$PYTHON -m pytest tests -q -m gpu -rs -p no:randomly -p no:cacheprovider --junitxml=$OUT/tests/junit.xml"
if [ -n "$ONLY" ]; then
  STEPS="$(while IFS="|" read -r name command; do
    case "$ONLY" in *",$name,"*) echo "$name|$command" ;; esac
  done <<< "$STEPS")"
fi

if [ "$DRY" = 1 ]; then
  echo "$STEPS"
  exit 0
fi

if [ -z "${DIGITS_DATA_DIR:-}" ] || [ ! -f "$DIGITS_DATA_DIR/MNIST/raw/t10k-images-idx3-ubyte" ]; then
  echo "gpu_check.sh: MNIST not found: set DIGITS_DATA_DIR to a folder with MNIST/raw/ (the four IDX files)" >&2
  exit 2
fi
mkdir -p "$OUT/tests"
export CUBLAS_WORKSPACE_CONFIG=:4096:8  # deterministic cuBLAS, for compare_losses' whole trainings

if [ "$INSTALL" = 1 ]; then
  "$PYTHON" -m pip install --no-deps --no-build-isolation -e . -e lab || exit 2
  missing=""
  for pair in $NEEDED; do
    "$PYTHON" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('${pair%%:*}') is None)" \
      || missing="$missing ${pair##*:}"
  done
  if [ -n "$missing" ]; then
    if [ -z "$WHEELS" ]; then
      echo "gpu_check.sh: missing$missing; bring their wheels (lab/scripts/gpu_check.sh --download-wheels DIR" \
           "on a machine with internet) and pass --wheels DIR" >&2
      exit 2
    fi
    "$PYTHON" -m pip install --no-index --find-links "$WHEELS" $missing || exit 2
  fi
fi

printf "step\texit\tseconds\tcommand\n" > "$OUT/steps.tsv"
failed=0
while IFS="|" read -r name command; do
  echo "== $name: $command"
  start=$(date +%s.%N)
  timeout "$STEP_TIMEOUT" $command > "$OUT/$name.log" 2>&1  # a timeout of 0 (the default) is none
  code=$?
  # without a GPU no CUDA case is collected: pytest's "no tests" (5) is the expected answer there
  [ "$name" = tests ] && [ "$DEVICE" = cpu ] && [ "$code" = 5 ] && code=0
  seconds=$(awk "BEGIN {print $(date +%s.%N) - $start}")
  printf "%s\t%s\t%s\t%s\n" "$name" "$code" "$seconds" "$command" >> "$OUT/steps.tsv"
  [ "$code" = 0 ] || { failed=1; echo "   failed ($code), see $OUT/$name.log"; }
done <<< "$STEPS"

"$PYTHON" -m digits_lab.gpu_check "$OUT" --device "$DEVICE" || failed=1
echo "report: $OUT/gpu_check.md"
exit $failed
