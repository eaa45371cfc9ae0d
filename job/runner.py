"""One run from start to finish, as its stages: claim and prepare the output and resolve the run
once (:func:`start`), then load the data, train, publish the outputs, promote and report done
(:func:`finish`)."""

from __future__ import annotations

import os
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from job import previous, signals
from job import seed as seeds
from job.champion import judge
from job.config import Config
from job.contract import CHECKPOINT, CONFIG_JSON, DATA_REPORT, METRICS_JSON
from job.data import Dataset, load_dataset
from job.errors import ConfigError
from job.events import EpochReporter, emit, log, report_done
from job.export import export
from job.files import write_json
from job.metrics import run_metrics
from job.plan import RunPlan, resolve
from job.promote import promote_run
from job.report import start_history_plots, start_samples, write_history
from job.train import FitResult, fit


def start(cfg: Config) -> RunPlan:
    """Claim OUTPUT_DIR, resolve the run once (:class:`RunPlan`), check OUTPUT_DIR is
    writable, report the start and write config.json."""
    started = time.perf_counter()
    signals.install()
    # Claimed before the seed: a new configuration with SEED=random draws its own.
    saved = previous.claim(cfg)
    plan = resolve(seeds.resolve(cfg, saved), started)  # the seed before anything records it
    _prepare_output(cfg.output_dir)
    emit(
        "start",
        config=plan.cfg.to_json(),
        device=str(plan.device),
        precision=plan.precision,
        cpu_threads=plan.cpu_threads,
        pid=os.getpid(),
        precision_reason=plan.precision_reason,
    )
    log(
        f"resnet-job: {cfg.epochs} epochs on {plan.device} ({plan.precision}: "
        f"{plan.precision_reason}; {plan.cpu_threads} CPU threads), output in {cfg.output_dir}"
    )
    write_json(cfg.output_dir / CONFIG_JSON, {**plan.cfg.to_json(), **plan.resolved()})
    return plan


def finish(plan: RunPlan) -> dict[str, Any]:
    """Load the data, train, write every output, promote; return the metrics written to
    metrics.json."""
    cfg = plan.cfg
    data = _load(cfg)
    samples = start_samples(cfg.output_dir, data, cfg.seed_number)  # drawn while the model trains
    result = fit(plan, data, EpochReporter(cfg.epochs))
    signals.set_stage(signals.WRITING_OUTPUTS)
    _publish(cfg.output_dir, result, samples)
    metrics = run_metrics(result, data, plan)
    write_json(cfg.output_dir / METRICS_JSON, metrics)
    if cfg.promote_dir is not None:
        signals.set_stage(signals.PROMOTING)
        champion = judge(plan, data)
        promote_run(cfg.output_dir, cfg.promote_dir, metrics, cfg.promote_margin, champion)
    signals.set_stage(signals.EXITING)
    report_done(metrics, str(cfg.output_dir))
    return metrics


def _load(cfg: Config) -> Dataset:
    """The data, logged, and its report written to OUTPUT_DIR before training starts (what a
    user checks first when accuracy disappoints)."""
    data = load_dataset(cfg)
    n_train, n_test = len(data.train_labels), len(data.test_labels)
    log(
        f"data: {n_train} train / {n_test} test images of {len(data.classes)} classes at "
        f"{data.preprocess.size} px, {data.layout} layout, sha256 {data.sha256[:12]}…"
        f"{', streamed from the cache' if data.streamed else ''}"
    )
    write_json(cfg.output_dir / DATA_REPORT, data.report)
    return data


def _publish(output_dir: Path, result: FitResult, samples: Future[None]) -> None:
    """model.pt, the exported model and classes.json, history.json and .csv and the plots;
    waits for samples.png (and re-raises what drawing it raised)."""
    if result.resumed_from:
        log(f"resumed after epoch {result.resumed_from} from {output_dir / CHECKPOINT}")
    samples.result()  # drawn long ago; one figure at a time keeps matplotlib's caches safe
    plots = start_history_plots(output_dir, result.records)
    export(result.model, result.info, output_dir)
    write_history(output_dir, result.records)
    plots.result()


def _prepare_output(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"OUTPUT_DIR={str(output_dir)!r} is not a writable folder ({exc.strerror}); "
            "mount or choose a writable one."
        ) from None
