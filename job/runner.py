"""One run from start to finish: events, data, training, outputs, promotion."""

from __future__ import annotations

import datetime as dt
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from job import cpuinfo, signals
from job.config import Config, resolve_device, resolve_precision
from job.contract import CHECKPOINT, CONFIG_JSON, METRICS_JSON, MODEL
from job.data import load_dataset
from job.errors import ConfigError
from job.events import emit, log
from job.files import atomic_write, write_json
from job.loader import DeviceLoader
from job.promote import promote
from job.report import plot_history, plot_samples, sample_indices, write_history
from job.train import fit


def run(cfg: Config) -> dict[str, Any]:
    """Train per ``cfg`` and write every output; return the metrics written to metrics.json."""
    wall0 = time.perf_counter()
    signals.install()
    device = resolve_device(cfg)
    precision = resolve_precision(cfg, device)
    _prepare_output(cfg.output_dir)
    emit("start", config=cfg.to_json(), device=str(device), precision=precision, pid=os.getpid())
    log(f"resnet-job: {cfg.epochs} epochs on {device} ({precision}), output in {cfg.output_dir}")
    write_json(
        cfg.output_dir / CONFIG_JSON,
        {**cfg.to_json(), "resolved_device": str(device), "resolved_precision": precision},
    )

    data = load_dataset(cfg)
    n_train, n_test = len(data.train_labels), len(data.test_labels)
    log(
        f"data: {n_train} train / {n_test} test images, {data.layout} layout, "
        f"sha256 {data.sha256[:12]}…"
    )
    picked = sample_indices(n_train, cfg.seed)
    sample = DeviceLoader(
        data.train_images[picked], data.train_labels[picked], len(picked), train=True, seed=cfg.seed
    )
    images, labels = (t.cpu() for t in next(iter(sample.epoch())))
    # Drawn while the model trains (matplotlib's import and drawing take ~0.5 s of one core);
    # joined before the run reports done, so every output exists when it exits 0.
    background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="resnet-job-plots")
    samples = background.submit(_draw_samples, cfg.output_dir, images, labels, data.classes)
    background.shutdown(wait=False)

    epoch_times: list[float] = []

    def on_epoch(entry: dict[str, Any]) -> None:
        seconds = entry["train_seconds"] + entry["eval_seconds"]
        epoch_times.append(seconds)
        lr = entry["lrs"][-1] if entry["lrs"] else 0.0
        emit(
            "epoch",
            epoch=entry["epoch"],
            epochs=cfg.epochs,
            train_loss=entry["train_loss"],
            val_loss=entry["val_loss"],
            val_acc=entry["val_acc"],
            lr=lr,
            seconds=seconds,
            images_per_sec=entry["images_per_sec"],
        )
        eta = (cfg.epochs - entry["epoch"]) * sum(epoch_times) / len(epoch_times)
        log(
            f"epoch {entry['epoch']}/{cfg.epochs}  train_loss {entry['train_loss']:.4f}  "
            f"val_loss {entry['val_loss']:.4f}  val_acc {entry['val_acc']:.4f}  "
            f"{entry['images_per_sec']:.0f} img/s  ETA {dt.timedelta(seconds=round(eta))}"
        )

    result = fit(cfg, data, device, precision, on_epoch)
    if result.resumed_from:
        log(f"resumed after epoch {result.resumed_from} from {cfg.output_dir / CHECKPOINT}")
    state = result.model.state_dict()
    atomic_write(cfg.output_dir / MODEL, lambda f: torch.save(state, f))
    history = result.history
    write_history(cfg.output_dir, history)
    plot_history(cfg.output_dir, history)
    samples.result()  # re-raises what the drawing thread raised

    trained = [h for h in history if "train_loss" in h]
    best = max(history, key=lambda h: h["val_acc"])
    train_seconds = sum(h["train_seconds"] for h in trained)
    metrics: dict[str, Any] = {
        "val_acc": history[-1]["val_acc"],
        "val_loss": history[-1]["val_loss"],
        "train_loss": trained[-1]["train_loss"] if trained else None,
        "best_val_acc": best["val_acc"],
        "best_epoch": best["epoch"],
        "epochs": len(trained),
        "resumed_from": result.resumed_from,
        "train_seconds": train_seconds,
        "images_per_sec": n_train * len(trained) / train_seconds if train_seconds else 0.0,
        "wall_seconds": time.perf_counter() - wall0,
        "n_train": n_train,
        "n_test": n_test,
        "parameters": sum(p.numel() for p in result.model.parameters()),
        "device": str(device),
        "device_name": device_name(device),
        "precision": precision,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "data_sha256": data.sha256,
        "data_layout": data.layout,
    }
    metrics_path = cfg.output_dir / METRICS_JSON
    write_json(metrics_path, metrics)
    if cfg.promote_dir is not None:
        run_id = f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{os.getpid()}"

        def record(decision: dict[str, Any]) -> None:
            metrics["promotion"] = decision
            write_json(metrics_path, metrics)

        decision = promote(cfg.output_dir, cfg.promote_dir, metrics["val_acc"], run_id, record)
        emit("promote", **decision)
        log(
            f"promotion: {'promoted' if decision['promoted'] else 'kept the champion'} "
            f"(this run {decision['val_acc']:.4f}, champion {decision['champion_val_acc']})"
        )
    emit(
        "done",
        val_acc=metrics["val_acc"],
        best_val_acc=metrics["best_val_acc"],
        epochs=metrics["epochs"],
        train_seconds=train_seconds,
        images_per_sec=metrics["images_per_sec"],
        output_dir=str(cfg.output_dir),
    )
    log(f"done: val_acc {metrics['val_acc']:.4f} in {metrics['wall_seconds']:.1f} s")
    return metrics


def _draw_samples(
    output_dir: Path, images: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...]
) -> None:
    plot_samples(output_dir, images, labels, classes)
    # Warm what the end of the run imports (history.csv, the epoch plots' ticks) meanwhile.
    import matplotlib.ticker  # noqa: F401
    import pandas  # noqa: F401


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


def device_name(device: torch.device) -> str:
    """The GPU's name on CUDA, the CPU model (from /proc/cpuinfo) on a CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpuinfo.model_name()  # "Intel(R) Xeon(R) …", not platform's bare "x86_64"
