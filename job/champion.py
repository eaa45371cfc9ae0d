"""The champion measured with this run's yardstick: its model on this run's test split.

A champion's recorded val_acc came from its own test split (another TEST_LIMIT subset, an
older archive) and its own code. To compare fairly, promotion loads the champion's ``model.pt``
into this run's ResNet9 (at the champion's MODEL_WIDTH, from its ``config.json``) and
evaluates it exactly as this run evaluated its own model: the same loader, batch size, device
and precision. ``model.pt`` rather than the exported TorchScript model: the TorchScript file
normalises in its own graph and runs in fp32, so its figure would differ from the
challenger's by arithmetic alone, not by the weights.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from job.contract import CLASSES_JSON, CONFIG_JSON, MODEL
from job.data import Dataset
from job.errors import StoppedError
from job.model import ResNet9
from job.plan import RunPlan
from job.train import autocast_for, eval_loader, evaluate


class UnusableChampion(Exception):
    """The champion cannot be loaded or evaluated; the message says why, in a few words."""


ChampionJudge = Callable[[Path], float]
"""The champion folder in, its val_acc on this run's test split out (or UnusableChampion)."""


def judge(plan: RunPlan, data: Dataset) -> ChampionJudge:
    """A judge that evaluates a champion folder on ``data``'s test split as this run did."""
    device = plan.device

    def evaluate_champion(folder: Path) -> float:
        model = _load(folder, data.classes).to(device).to(memory_format=torch.channels_last)
        try:
            _, val_acc = evaluate(
                model, eval_loader(plan.cfg, data, device), autocast_for(device, plan.precision)
            )
        except (StoppedError, torch.OutOfMemoryError):
            raise  # the run's own faults: reported as such, and a rerun promotes
        except Exception as exc:
            raise UnusableChampion(f"its model fails on this run's images ({_why(exc)})") from None
        return val_acc

    return evaluate_champion


def _load(folder: Path, classes: tuple[str, ...]) -> torch.nn.Module:
    """The champion's model in eval mode on the CPU, or UnusableChampion saying what is wrong."""
    width = _width(folder)
    try:
        champion_classes = json.loads((folder / CLASSES_JSON).read_text())
    except (OSError, ValueError) as exc:
        raise UnusableChampion(f"its {CLASSES_JSON} cannot be read ({_why(exc)})") from None
    if champion_classes != list(classes):
        raise UnusableChampion(f"its {CLASSES_JSON} lists other classes than this run's data")
    try:
        state = torch.load(folder / MODEL, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UnusableChampion(f"it has no {MODEL}") from None
    except Exception as exc:  # truncated, not a torch file, unreadable
        raise UnusableChampion(f"its {MODEL} cannot be loaded ({_why(exc)})") from None
    model = ResNet9(len(classes), width)
    try:
        model.load_state_dict(state)
    except Exception as exc:  # another architecture, or a width its config.json does not say
        raise UnusableChampion(
            f"its {MODEL} does not fit a ResNet9 of its MODEL_WIDTH={width:g} ({_why(exc)})"
        ) from None
    return model.eval()


def _width(folder: Path) -> float:
    """The champion's MODEL_WIDTH, from its config.json."""
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
