"""The search's settings: every rule that turns the ``run`` command's options into a run.

The options themselves, with their defaults, are declared once in :mod:`search.options`.
:func:`build_settings` turns the options a ``run`` was given into the :class:`Settings` of
one driver run: the search space, the known configurations to queue, the fixed job
variables, the GPUs and slots, the launcher. Options that cannot be honoured raise
:class:`SettingsError` with one sentence saying what to do.

This module imports neither Optuna nor the launchers at import time, so ``--help`` stays quick.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from job.contract import default
from search.errors import SettingsError, first_line
from search.options import default as option

if TYPE_CHECKING:
    from search.launchers.base import Launcher
    from search.space import Space

__all__ = ["Settings", "SettingsError", "build_settings"]

CPU_PARALLEL = 2
"""Trials at once of a search without GPUs whose trials share this machine (local, docker),
given that many cores: each trial then gets half the cores, which measured faster than one
trial on all of them (docs/benchmarks.md: parallel CPU trials)."""


@dataclass(frozen=True)
class Settings:
    """Everything one driver run needs; :func:`build_settings` makes it from the options, and
    a field left out takes the default of its option (:mod:`search.options`).

    Times are in seconds. ``trials`` is the study's total of finished trials, shared by every
    driver of the study; ``parallel`` is this driver's trials at once, worker ``i`` pinned to
    ``gpus[i % len(gpus)]`` (so ``parallel = len(gpus) * K`` puts K trials on each GPU).
    ``storage_retry`` bounds how long one database outage is ridden out; ``enqueue`` holds
    the known configurations to run first, ``fresh`` keeps an existing study aside.
    """

    trials: int
    output: Path
    storage: str
    study_name: str
    space: Space
    launcher: Launcher
    parallel: int = 1
    gpus: Sequence[str] = ()
    job_env: Mapping[str, str] = field(default_factory=dict)
    data_dir: Path = Path(default("DATA_DIR"))
    pruner: str = option("run", "pruner")
    sampler: str = option("run", "sampler")
    seed: int | None = None
    trial_timeout: float = option("run", "trial_timeout")
    retries: int = option("run", "retries")
    heartbeat: int = option("run", "heartbeat")
    stop_grace: float = 30.0
    max_failures: int = 5
    storage_retry: float = option("run", "storage_retry")
    confirm: int = option("run", "confirm")
    confirm_seeds: int = option("run", "confirm_seeds")
    timeout: float | None = None
    enqueue: Sequence[Mapping[str, Any]] = ()
    fresh: bool = False


def build_settings(given: Mapping[str, Any], say: Callable[[str], None]) -> Settings:
    """The settings of one driver run from the ``run`` options ``given`` by name (those left
    out take their defaults); ``say`` tells which launcher ``auto`` chose."""
    from search.gpus import check_device_env, usable_gpus
    from search.jobvars import JobEnvError, parse_job_env
    from search.options import given as complete
    from search.space import SpaceError, default_space, load_configurations, load_space

    options = complete("run", given)
    try:
        space = load_space(options["space"]) if options["space"] else default_space()
        fixed = parse_job_env(options["job_env"], space.job_vars())
        queued = load_configurations(options["enqueue"], space) if options["enqueue"] else []
    except (SpaceError, JobEnvError) as exc:
        raise SettingsError(str(exc)) from None
    _check_seed(options["confirm"], fixed)
    _check_policy(options["confirm"], options["confirm_seeds"])
    launcher_name = choose_launcher(options["launcher"], options["image"], say)
    gpu_ids, check_gpus = usable_gpus(options["gpus"], launcher_name, parse_gpus, os.environ)
    parallel = slots(
        launcher_name,
        gpu_ids,
        options["trials_per_gpu"],
        options["parallel"],
        options["gpu_resource"],
    )
    check_gpus()  # after the slots: a --parallel that cannot fit is said first
    check_device_env(fixed, gpus=bool(gpu_ids))
    launcher = _launcher(launcher_name, options, gpus=bool(gpu_ids), slots=parallel)
    data_dir = Path(fixed.pop("DATA_DIR", os.environ.get("DATA_DIR", default("DATA_DIR"))))
    return Settings(
        output=options["output"].resolve(),
        storage=storage_url(options["storage"], options["output"]),
        space=space,
        launcher=launcher,
        parallel=parallel,
        gpus=gpu_ids,
        job_env=fixed,
        data_dir=data_dir.resolve(),
        enqueue=queued,
        **{name: options[name] for name in _AS_GIVEN},
    )


_AS_GIVEN: tuple[str, ...] = (
    *("trials", "study_name", "pruner", "sampler", "seed", "trial_timeout", "retries"),
    *("heartbeat", "storage_retry", "confirm", "confirm_seeds", "timeout", "fresh"),
)
"""The ``run`` options a driver's settings take as given."""


def _check_seed(confirm: int, fixed: Mapping[str, str]) -> None:
    """The confirmation phase compares configurations on the same fresh seeds, the study's
    seed + 1 and on: SEED must be a whole number."""
    seed = fixed.get("SEED", default("SEED")).strip()
    if confirm > 0 and not seed.isdigit():
        raise SettingsError(
            f"--confirm {confirm} re-runs configurations on the seeds after the study's own, "
            f"so SEED must be a whole number, not {seed!r}; drop --job-env SEED={seed} "
            "or pass --confirm 0."
        )


def _check_policy(confirm: int, confirm_seeds: int) -> None:
    """A K and S that leave the verdict no degrees of freedom are refused
    (:func:`search.racing.refusal` says why)."""
    if confirm <= 0:
        return
    from search.racing import refusal

    reason = refusal(confirm, confirm_seeds)
    if reason is not None:
        raise SettingsError(reason)


def storage_url(storage: str | None, output: Path) -> str:
    """``--storage``, or by default the SQLite file ``<output>/study.db``."""
    if storage:
        return storage
    return f"sqlite:///{(output / 'study.db').resolve()}"


def existing_storage_url(storage: str | None, output: Path) -> str:
    """:func:`storage_url` for a command that reads the study: a SQLite file must exist."""
    url = storage_url(storage, output)
    if url.startswith("sqlite:///"):
        sqlite = Path(url[len("sqlite:///") :])
        if not sqlite.is_file():
            raise SettingsError(f"no study database at {sqlite}; run `search run` first.")
    return url


def parse_gpus(option: str | None, detect: Callable[[], list[str]]) -> list[str]:
    """``--gpus``: a comma-separated list of ids, ``none``, or (not given) what ``detect``
    finds."""
    if option is None:
        return detect()
    if option.strip().lower() in ("none", ""):
        return []
    ids = [g.strip() for g in option.split(",") if g.strip()]
    if not all(g.isdigit() for g in ids):
        raise SettingsError(
            f"--gpus {option!r} is not a comma-separated list of GPU ids or 'none'."
        )
    return ids


def choose_launcher(name: str, image: str, say: Callable[[str], None]) -> str:
    """``auto``: docker when a daemon answers and has the image, else local (said aloud)."""
    if name != "auto":
        return name
    from search.launchers import docker_ready

    ok, why = docker_ready(image)
    chosen = "docker" if ok else "local"
    say(f"launcher {chosen} ({why})")
    return chosen


def cpu_slots(cpus: int | None = None) -> int:
    """The default trials at once of a CPU-only local or docker search on ``cpus`` usable
    cores (default: this process's, within its cgroup quota): :data:`CPU_PARALLEL`, or fewer
    on a smaller machine."""
    if cpus is None:
        from job.threads import available_cpus

        cpus = available_cpus()
    return max(1, min(CPU_PARALLEL, cpus))


def slots(
    launcher: str,
    gpu_ids: list[str],
    trials_per_gpu: int,
    parallel: int | None,
    gpu_resource: str | None,
    cpus: int | None = None,
) -> int:
    """Trials at once: ``--parallel``, by default GPUs × K, or without GPUs
    :func:`cpu_slots` for the launchers whose trials share this machine (local, docker; one
    on Kubernetes, where each pod has its own CPUs); refuse what cannot be honoured."""
    if gpu_resource is not None and launcher != "kubernetes":
        raise SettingsError(
            f"--gpu-resource names a Kubernetes resource and applies to --launcher kubernetes "
            f"only, not {launcher}; drop it."
        )
    if trials_per_gpu > 1 and not gpu_ids:
        raise SettingsError(
            f"--trials-per-gpu {trials_per_gpu} needs GPUs, and --gpus lists none (nor were "
            "any detected); use --parallel to run several trials at once without GPUs."
        )
    count = len(gpu_ids) * trials_per_gpu
    if parallel is None:
        if not gpu_ids and launcher in ("local", "docker"):
            return cpu_slots(cpus)
        return max(1, count)
    if gpu_ids and launcher != "kubernetes" and parallel > count:
        raise SettingsError(
            f"--parallel {parallel} exceeds {len(gpu_ids)} GPU(s) x --trials-per-gpu "
            f"{trials_per_gpu} = {count} slots; raise --trials-per-gpu or lower --parallel."
        )
    return parallel


def _template(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    from search.launchers.k8s_manifest import read_template

    try:
        return read_template(path)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def _launcher(name: str, options: Mapping[str, Any], gpus: bool, slots: int) -> Launcher:
    from search.launchers import make_launcher

    template = _template(options["job_template"])
    try:
        return make_launcher(
            name,
            image=options["image"],
            namespace=options["namespace"],
            gpus=gpus,
            template=template,
            gpu_resource=options["gpu_resource"],
            trials_per_gpu=options["trials_per_gpu"],
            slots=slots,
            cold_start=options["cold_start"],
        )
    except ValueError as exc:  # a setting the launcher refuses: its message is the sentence
        raise SettingsError(str(exc)) from None
    except Exception as exc:
        raise SettingsError(f"the {name} launcher cannot start: {first_line(exc)}") from None
