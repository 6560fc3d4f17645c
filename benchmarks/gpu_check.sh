#!/usr/bin/env bash
# GPU check of tune-digits at AudioMNIST size on one CUDA GPU, without Ray (about 3-4 minutes on an H100).
#
#   bash benchmarks/gpu_check.sh              # CUDA: epoch times, samples/s, GPU memory, final-eight estimate
#   bash benchmarks/gpu_check.sh --dry-run    # no GPU: the same steps on the CPU with tiny sizes
#   bash benchmarks/gpu_check.sh --json /tmp/gpu.json --compile-other    # extra options go to gpu_check.py
#
# 1. generates an AudioMNIST-shaped corpus (60 speakers x 50 clips, 48 kHz) with
#    scripts/make_fullsize_corpus.py from ../shared/data/fsdd/recordings, or from the bundled
#    demo corpus where that folder is absent; in a temporary folder, removed at the end;
# 2. runs python -m benchmarks.gpu_check on it, which repeats the rows in memory to 30,000 clips and
#    times tune_digits.train's Trainer (train.device=cuda, bf16 autocast), see its docstring.
# Needs torch, torchaudio, timm, OpenCV, soundfile, numpy and pyyaml; PYTHON picks the interpreter.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${PYTHON:-}" ]]; then
    PY="$PYTHON"
elif [[ -x "$REPO/.venv/bin/python" ]]; then
    PY="$REPO/.venv/bin/python"
else
    PY="$(command -v python3 || command -v python)"
fi

SPEAKERS=60
PER_SPEAKER=50
for arg in "$@"; do
    if [[ "$arg" == "--dry-run" ]]; then
        SPEAKERS=6
        PER_SPEAKER=20
    fi
done

SOURCE="$REPO/../shared/data/fsdd/recordings"
if [[ ! -d "$SOURCE" ]]; then
    SOURCE="$REPO/tune_digits/demo_data/recordings"
fi
CPUS="$(nproc 2>/dev/null || echo 2)"
PROCS=$(( CPUS < 2 ? 1 : (CPUS > 12 ? 12 : CPUS) ))

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tune-digits-gpu-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export TUNE_DIGITS_CACHE="$WORK/cache"
export WANDB_MODE=disabled WANDB_SILENT=true

cd "$REPO"
echo "corpus: $SPEAKERS speakers x $PER_SPEAKER clips from $SOURCE ($PROCS processes)"
"$PY" scripts/make_fullsize_corpus.py --source "$SOURCE" --out "$WORK/corpus" \
    --speakers "$SPEAKERS" --per-speaker "$PER_SPEAKER" --processes "$PROCS"
"$PY" -m benchmarks.gpu_check --data "$WORK/corpus" "$@"
