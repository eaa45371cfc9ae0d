"""COMPILE=1 end to end on the CPU (torch.compile with inductor): the run ends as soon as its
outputs are written, trains what the eager run trains, and compiles its training step once.

One compiled and one eager run of the same small configuration, each a real ``python -m job``,
their dropout masks drawn alike (:func:`same_dropout_env`). inductor caches what it compiled in
``TORCHINDUCTOR_CACHE_DIR`` (by default a folder in /tmp shared by the user's processes), so
only the first compile of a graph on a machine pays in full.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from job.contract import HISTORY_JSON, METRICS_JSON
from tests.conftest import job_env, start_job

pytestmark = pytest.mark.slow

SMALL = {
    "DEVICE": "cpu",
    "MODEL_WIDTH": "0.125",
    "TRAIN_LIMIT": "256",
    "TEST_LIMIT": "128",
    "BATCH_SIZE": "400",
    "EPOCHS": "2",
    "PRECISION": "fp32",
}
"""The compiled runs' settings here and in tests/test_compile_search.py (whose first trial is
the tutorial's BATCH_SIZE=400): one graph, compiled by whichever runs first, read from
inductor's cache by the other. One batch of 256 an epoch: no smaller last batch."""

_EXIT_SECONDS = 30
"""How long a run may take from its ``done`` event to its exit: writing is over by then."""

_LOSS_RTOL = 1e-3
"""Losses of the compiled and the eager run agree within this relative tolerance. inductor
fuses and reorders the float sums (convolutions, BatchNorm statistics, the loss), so the two
runs differ in the last bits of each step, and Adam's steps at the one-cycle peak grow those
differences; a wrong graph (a missed BatchNorm update, a stale parameter) moves a loss by far
more."""

_ACC_ATOL = 2 / 128
"""val_acc may differ by two of the 128 test images: an image whose top two logits were as
close as the losses' differences flips."""

_SAME_DROPOUT = "import torch._inductor.config\ntorch._inductor.config.fallback_random = True\n"


def same_dropout_env(folder: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` with a ``sitecustomize`` on PYTHONPATH that makes each Python process draw a
    compiled graph's dropout masks from torch's generator, as an eager run draws them:
    inductor otherwise draws them from a generator of its own, and compiled and eager runs
    would train on other masks (a seed's difference, not a tolerance's)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_SAME_DROPOUT)
    path = os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH")]))
    return {**env, "PYTHONPATH": path}


def _run(archive: Path, root: Path, compiled: bool) -> tuple[int, float, Path]:
    """Run the job; return its exit code, the seconds from ``done`` to its exit, OUTPUT_DIR."""
    env = job_env(root, DATA_URL=archive.as_uri(), COMPILE=int(compiled), **SMALL)
    proc = start_job(same_dropout_env(root / "site", env), stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    done_at = None
    try:
        for line in proc.stdout:  # the events, as the job writes them
            if json.loads(line)["event"] == "done":
                done_at = time.perf_counter()
                break  # a run that hangs after done keeps stdout open: wait for it below
        code = proc.wait(timeout=_EXIT_SECONDS)
    finally:
        proc.kill()
        proc.wait()
    assert done_at is not None, "the run wrote no done event"
    return code, time.perf_counter() - done_at, root / "output"


@pytest.fixture(scope="module")
def runs(archives: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("compile")
    return {
        kind: _run(archives["fastai"], root / kind, kind == "compiled")
        for kind in ("compiled", "eager")
    }


def _read(output: Path, name: str) -> Any:
    return json.loads((output / name).read_text())


def test_a_compiled_run_exits_as_soon_as_its_outputs_are_written(runs: dict) -> None:
    code, after_done, _ = runs["compiled"]
    assert code == 0 and after_done < _EXIT_SECONDS


def test_a_compiled_run_trains_what_the_eager_run_trains(runs: dict) -> None:
    compiled, eager = (_read(runs[kind][2], HISTORY_JSON) for kind in ("compiled", "eager"))
    assert [h["epoch"] for h in compiled] == [h["epoch"] for h in eager] == [0, 1, 2]
    for c, e in zip(compiled, eager, strict=True):
        assert c["val_loss"] == pytest.approx(e["val_loss"], rel=_LOSS_RTOL)
        assert c["val_acc"] == pytest.approx(e["val_acc"], abs=_ACC_ATOL)
        if "train_loss" in e:
            assert c["train_loss"] == pytest.approx(e["train_loss"], rel=_LOSS_RTOL)
        if "lrs" in e:
            assert c["lrs"] == e["lrs"]


def test_the_training_step_compiles_once_in_two_epochs_and_evaluations(runs: dict) -> None:
    # One graph in all: the second epoch reused the first's, and neither the evaluation before
    # training nor those after each epoch compiled one (nor made the training step recompile).
    assert _read(runs["compiled"][2], METRICS_JSON)["compiled_graphs"] == 1
    assert _read(runs["eager"][2], METRICS_JSON)["compiled_graphs"] is None
