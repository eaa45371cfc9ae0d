#!/usr/bin/env bash
# The GPU campaign's rows, offline, within a time budget on one GPU: see bench/campaign.py.
#
#   bash bench/gpu_campaign.sh --out DIR                # on the GPU machine, from the repo root
#   bash bench/gpu_campaign.sh --out DIR --budget 600   # the whole campaign's seconds (480)
#   bash bench/gpu_campaign.sh --dry-run --out DIR      # every step tiny, on the CPU (CI)
#
# Every option (--budget, --limit, --only, ...) goes through to python -m bench.campaign.
#
# Needs .whl/ (bash bench/wheels.sh .whl) for Optuna unless the interpreter has it, and
# .gl/cifar10-subset.tgz (python -m bench.subset) for the search. PYTHON picks the
# interpreter (default python3). Exit codes: 0 every step ok, 1 a step failed, 2 usage.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
# Never the network: pip only ever reads .whl/ (--no-index), and nothing else downloads.
export PIP_NO_INDEX=1
exec "$python" -m bench.campaign --python "$python" "$@"
