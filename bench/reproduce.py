"""The reproduce figure: ``python -m bench.reproduce`` (``make reproduce``), the full recipe.

``python -m job`` as a subprocess on the archive ``DATA_URL`` names with all 50,000/10,000
images, ``MODEL_WIDTH=1``, 8 epochs, ``SEED=0``, every other variable the job's default; its
final val_acc beside the tutorial's published 0.9050–0.9059. A job variable already in the
environment wins, and the run then says it is *not* the full recipe (docs/benchmarks.md,
"Reproducing the tutorial's accuracy"). Exit code: the job's own; 2 for a bad option.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.paths import OUTPUT, REPO, command_parser, data_url
from bench.runs import timed
from job.contract import METRICS_JSON, VARIABLE_NAMES, VARIABLES, default
from testkit.jobrun import JOB, events

DEFAULT_OUTPUT = OUTPUT / "reproduce"
TUTORIAL_VAL_ACC = (0.9050, 0.9059)
"""The tutorial's published final val_acc over its runs (Jovian 05b-cifar10-resnet)."""

RECIPE = {"TRAIN_LIMIT": "0", "TEST_LIMIT": "0", "MODEL_WIDTH": "1", "EPOCHS": "8", "SEED": "0"}
"""The full recipe's sizes; every other variable keeps the job's default (the tutorial's)."""

_NOT_RECIPE = {v.name for v in VARIABLES if not v.fingerprint} | {"DATA_SHA256", "PRECISION"}
"""Variables that say where and how fast a run happens, not what it trains: those outside the
checkpoint's fingerprint (DATA_DIR, DEVICE, COMPILE, …), the archive's checksum, PRECISION."""


def job_env(
    environ: Mapping[str, str], data_url: str, output: Path
) -> tuple[dict[str, str], dict[str, str]]:
    """The job's environment, and the changes to the recipe that ``environ`` asks for.

    The recipe, ``DATA_URL`` and ``OUTPUT_DIR`` are the base; a job variable already in
    ``environ`` replaces them (``DATA_URL`` and ``OUTPUT_DIR`` come from the arguments, whose
    defaults read the environment). A variable that changes what is trained to something other
    than the recipe is returned as an override.
    """
    base = {**RECIPE, "DATA_URL": data_url, "OUTPUT_DIR": str(output)}
    given = {k: environ[k] for k in VARIABLE_NAMES - {"DATA_URL", "OUTPUT_DIR"} if k in environ}
    recipe = {k: v for k, v in given.items() if k not in _NOT_RECIPE}
    overrides = {k: v for k, v in recipe.items() if not _same(v, RECIPE.get(k, default(k)))}
    return {**environ, **base, **given, "PYTHONUNBUFFERED": "1"}, overrides


def _same(a: str, b: str) -> bool:
    # "1" and "1.0" are the same MODEL_WIDTH; "Adam" and "adam" the same OPTIMIZER.
    try:
        return float(a) == float(b)
    except ValueError:
        return a.strip().lower() == b.strip().lower()


def _parser() -> argparse.ArgumentParser:
    p = command_parser("python -m bench.reproduce", __doc__)
    # Their defaults come from DATA_URL and OUTPUT_DIR in the environment where they are set.
    url = "the CIFAR-10 archive's http(s):// or file:// URL (downloaded once into DATA_DIR)"
    p.add_argument("--data-url", default=data_url(), help=url)
    output = Path(os.environ.get("OUTPUT_DIR") or DEFAULT_OUTPUT)
    p.add_argument("--output", type=Path, default=output, help="OUTPUT_DIR; a rerun resumes there")
    p.add_argument("--fresh", action="store_true", help="remove --output first (no resume)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job, stream its progress, print the comparison; return the job's exit code."""
    args = _parser().parse_args(argv)
    env, overrides = job_env(os.environ, args.data_url, args.output.resolve())
    if args.fresh:
        shutil.rmtree(args.output, ignore_errors=True)
    what = "the full recipe" if not overrides else "NOT the full recipe"
    shown = ", ".join(f"{k}={v}" for k, v in sorted(overrides.items()))
    why = f" ({shown} from the environment)" if shown else ""
    precision = env.get("PRECISION", default("PRECISION"))
    where = f"DATA_URL={env['DATA_URL']}, PRECISION={precision}, output {args.output}"
    print(f"reproduce: {what}{why}; {where}", file=sys.stderr, flush=True)
    # stderr (the job's per-epoch progress) goes straight to the terminal; stdout is events.
    proc, wall = timed(
        subprocess.run, list(JOB), env=env, cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    done = next((e for e in events(proc.stdout) if e.get("event") == "done"), None)
    if proc.returncode != 0 or done is None:
        message = f"reproduce: the job exited {proc.returncode}; see its message above."
        print(message, file=sys.stderr)
        return proc.returncode or 1
    metrics = json.loads((args.output / METRICS_JSON).read_text())
    low, high = TUTORIAL_VAL_ACC
    print(f"{'':24}{'val_acc':>9}")
    print(f"{'tutorial (published)':24}{f'{low:.4f}–{high:.4f}':>13}")
    print(f"{'this run':24}{done['val_acc']:>9.4f}")
    print(
        f"{what}: {metrics['epochs']} epochs, {metrics['n_train']:,}/{metrics['n_test']:,} "
        f"images, {metrics['precision']} on {metrics['device_name']}, training "
        f"{metrics['train_seconds']:.1f} s, wall {wall:.1f} s"
        + (f"; resumed after epoch {metrics['resumed_from']}" if metrics["resumed_from"] else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
