"""The champion measured with this run's yardstick: its model on this run's test split.

A champion's recorded val_acc came from its own test split (another TEST_LIMIT subset, an
older archive) and its own code. To compare fairly, promotion loads the champion's ``model.pt``
(its weights, classes, preprocessing and MODEL_WIDTH: :class:`job.model.ModelInfo`) into this
run's ResNet9 and evaluates it exactly as this run evaluated its own model: the same test
images, loader, batch size, device and precision, each model fed as it was trained — this
run's test split decoded at the champion's IMAGE_SIZE and normalised with the champion's
statistics. ``model.pt`` rather than the exported TorchScript model: the TorchScript file
normalises in its own graph and runs in fp32, so its figure would differ from the
challenger's by arithmetic alone, not by the weights.

A champion that names other classes than this run's data is not comparable: it answers
another question, and its consumers expect its classes. It is kept (:class:`OtherTask`).
A CUDA error while it is evaluated is the GPU's failure, not the champion's: the run stops
with exit 6 (:class:`job.errors.DeviceError`) and promotes nothing.
A ``model.pt`` saved before models carried their own info is read as CIFAR-10 at 32 pixels,
at the MODEL_WIDTH of the champion's ``config.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import torch

from job.contract import CONFIG_JSON, MODEL
from job.data import Dataset, load_dataset
from job.errors import StoppedError
from job.loader import DeviceLoader
from job.model import ModelInfo, class_summary, legacy_info, read_model
from job.plan import RunPlan
from job.resources import device_failed, is_device_failure
from job.train import autocast_for, eval_loader, evaluate


class UnusableChampion(Exception):
    """The champion cannot be loaded or evaluated; the message says why, in a few words."""


class OtherTask(Exception):
    """The champion classifies other classes than this run's data: not comparable, and not
    to be replaced by a model of another task; the message names both class lists."""


ChampionJudge = Callable[[Path], float]
"""The champion folder in, its val_acc on this run's test split out (or UnusableChampion, or
OtherTask)."""


def judge(plan: RunPlan, data: Dataset) -> ChampionJudge:
    """A judge that evaluates a champion folder on ``data``'s test split as this run did."""
    device = plan.device

    def evaluate_champion(folder: Path) -> float:
        model, info = _load(folder)
        if info.classes != data.classes:
            raise OtherTask(
                f"it classifies {class_summary(info.classes)}, this run's data "
                f"{class_summary(data.classes)}"
            )
        test = _at_size(plan, data, info.preprocess.size)
        try:
            model = model.to(device).to(memory_format=torch.channels_last)
            loader = eval_loader(plan.cfg, test, device, info.preprocess)
            return _val_acc(model, loader, autocast_for(device, plan.precision))
        except Exception as exc:
            if is_device_failure(exc):  # the GPU's fault, not the champion's: promote nothing
                raise device_failed(exc, str(device), "the champion's evaluation") from exc
            raise

    return evaluate_champion


def _val_acc(
    model: torch.nn.Module,
    loader: DeviceLoader,
    autocast: Callable[[], contextlib.AbstractContextManager],
) -> float:
    """The champion's val_acc; a champion whose model fails on the images is unusable."""
    try:
        _, val_acc = evaluate(model, loader, autocast)
    except (StoppedError, torch.OutOfMemoryError):
        raise  # the run's own faults: reported as such, and a rerun promotes
    except Exception as exc:
        if is_device_failure(exc):
            raise  # a failed GPU, whatever model ran on it (judge says so)
        raise UnusableChampion(f"its model fails on this run's images ({_why(exc)})") from None
    return val_acc


def _at_size(plan: RunPlan, data: Dataset, size: int) -> Dataset:
    """This run's data decoded at ``size`` px: ``data`` itself at the run's own size, else the
    same variables at IMAGE_SIZE=``size`` (the same test images, from the shared cache)."""
    if size == data.preprocess.size:
        return data
    return load_dataset(dataclasses.replace(plan.cfg, image_size=size))


def _load(folder: Path) -> tuple[torch.nn.Module, ModelInfo]:
    """The champion's model in eval mode on the CPU and its info, or UnusableChampion saying
    what is wrong."""
    try:
        state, info = read_model(folder / MODEL)
    except FileNotFoundError:
        raise UnusableChampion(f"it has no {MODEL}") from None
    except Exception as exc:  # truncated, not a torch file, unreadable, incomplete
        raise UnusableChampion(f"its {MODEL} cannot be loaded ({_why(exc)})") from None
    info = info or legacy_info(_width(folder))
    model = info.build()
    try:
        model.load_state_dict(state)
    except Exception as exc:  # another architecture, or a width it does not record
        raise UnusableChampion(
            f"its {MODEL} does not fit a ResNet9 of {len(info.classes)} classes at "
            f"MODEL_WIDTH={info.width:g} ({_why(exc)})"
        ) from None
    return model.eval(), info


def _width(folder: Path) -> float:
    """The MODEL_WIDTH of a champion whose model.pt does not record it, from its config.json."""
    try:
        width = json.loads((folder / CONFIG_JSON).read_text())["model_width"]
    except FileNotFoundError:
        raise UnusableChampion(f"it has no {CONFIG_JSON}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UnusableChampion(f"its {CONFIG_JSON} names no MODEL_WIDTH ({_why(exc)})") from None
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise UnusableChampion(f"its {CONFIG_JSON} holds MODEL_WIDTH={width!r}")
    return float(width)


def _why(exc: BaseException) -> str:
    """The first line of an exception's message, short enough for one sentence."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text[:120] + ("…" if len(text) > 120 else "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
