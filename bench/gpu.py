"""The GPU synthetic rows (``python -m bench --gpu-synthetic``): the full recipe, job vs tutorial.

The job runs as a real subprocess with its defaults (on a GPU: bf16 autocast, cudnn
benchmark) for the whole recipe; its training seconds come from its ``metrics.json``. The
tutorial pipeline's steady-state training throughput is measured on the same machine and
the same archive, and its time for the same recipe is projected from it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from bench import synthetic
from bench.runs import steady_images_per_sec
from bench.table import Row
from bench.training import tutorial_on_archive
from bench.wall import WallConfig, run_job, warm_file


def run(
    workdir: Path,
    *,
    n_train: int,
    n_test: int,
    epochs: int,
    width: float,
    batch_size: int,
    steps: int,
    warmup: int,
    log: Any,
    job_env: dict[str, str] | None = None,
) -> tuple[list[Row], dict[str, Any]]:
    """Generate the archive, time the job and the tutorial; return table rows and details."""
    log(f"writing a synthetic archive: {n_train:,} train / {n_test:,} test random images")
    archive = synthetic.write_archive(workdir / "synthetic" / "cifar10.tgz", n_train, n_test)
    warm_file(archive)

    log(f"job: {epochs} epochs of the full recipe (width {width:g}) as a subprocess")
    cfg = WallConfig(width, 0, 0, epochs, batch_size)  # limits of 0: the whole generated set
    job = run_job(archive, cfg, workdir / "job", job_env)
    metrics, history = job.details["metrics"], job.details["history"]
    train_s = float(metrics["train_seconds"])
    steady = steady_images_per_sec(history, n_train)
    shutil.rmtree(workdir / "job" / "data", ignore_errors=True)

    log(f"tutorial: extract, then {steps} timed training steps after {warmup} warm-up")
    rate, _, _ = tutorial_on_archive(
        archive, workdir / "tutorial-png", width, batch_size, steps, warmup
    )
    projected = n_train * epochs / rate

    device_name = metrics.get("device_name", "")
    rows = [
        Row(
            f"{epochs} epochs training, {n_train:,} images, width {width:g}",
            "s",
            projected,
            train_s,
            higher_is_better=False,
            how=(
                "job: metrics.json train_seconds (training time of all epochs, evaluation "
                f"excluded, first-epoch warm-up included; {metrics.get('precision')} on "
                f"{device_name}); tutorial: projected from its steady-state images/s"
            ),
        ),
        Row(
            "training throughput",
            "images/s",
            rate,
            n_train * epochs / train_s,
            how=(
                f"job: all epochs' images / train_seconds; tutorial: {steps} steps of its "
                f"loop fed by its DataLoader (num_workers=3) after {warmup} warm-up, fp32"
            ),
        ),
        Row(
            "job steady state (epochs 2+)",
            "images/s",
            None,
            steady,
            higher_is_better=None,
            how="job: history.json, epochs after the first",
        ),
        Row(
            "job wall time, cold start",
            "s",
            None,
            job.seconds,
            higher_is_better=None,
            how="job: subprocess wall time incl. copying, decoding (fresh DATA_DIR), plots",
        ),
    ]
    details = {"job": {"seconds": job.seconds, **job.details}, "tutorial_images_per_sec": rate}
    return rows, details
