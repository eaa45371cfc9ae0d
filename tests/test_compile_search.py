"""A search whose trials compile (``--job-env COMPILE=1``): the trial, a local process, trains
with torch.compile, ends, and the study records it COMPLETE.

The trial trains what tests/job/test_compile.py's compiled run trains, so whichever of the two
runs second reads the graph from inductor's cache instead of compiling it again.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from job.contract import METRICS_JSON
from tests.conftest import REPO
from tests.job.test_compile import SMALL, same_dropout_env
from tests.search.helpers import clean_env, load, search_args

pytestmark = pytest.mark.slow


def test_a_compiled_trial_completes(archives: dict[str, Path], tmp_path: Path) -> None:
    output = tmp_path / "search"
    # BATCH_SIZE is the search's to set: its first trial takes the tutorial's, SMALL's.
    job = {k: v for k, v in SMALL.items() if k != "BATCH_SIZE"} | {"COMPILE": "1"}
    args = search_args(output, archives["fastai"], trials=1, job=job)
    env = same_dropout_env(tmp_path / "site", clean_env(OMP_NUM_THREADS="1"))
    # A trial that hung at its exit would time out here.
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (trial,) = load(output).trials
    assert trial.state.name == "COMPLETE" and trial.user_attrs["exit_code"] == 0
    metrics = json.loads((Path(trial.user_attrs["output_dir"]) / METRICS_JSON).read_text())
    assert metrics["compiled_graphs"] == 1
    assert trial.value == pytest.approx(metrics["val_acc"])
