"""``python -m search`` (also ``resnet-search``): tune the job with Optuna.

Commands: ``run`` (the study), ``best`` (best parameters, env file, ConfigMap), ``report``
(trials.csv and plots), ``dashboard`` (optuna-dashboard on 127.0.0.1). Bad input exits 2
with one sentence on stderr; every exit code is :class:`job.contract.DriverExit`.

Optuna, pandas and the launchers are imported inside the commands, so ``--help`` is quick.
A storage URL's password is never printed: messages name the database by host and port.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from job.contract import DriverExit
from search.errors import first_line

if TYPE_CHECKING:
    import optuna

    from search.driver import Driver
    from search.launchers.base import Launcher

DEFAULT_OUTPUT = Path("output/search")
DEFAULT_STUDY = "resnet-job"
DEFAULT_IMAGE = "resnet-job:latest"
DEFAULT_STORAGE_RETRY = 300.0
"""Seconds (``--storage-retry``): the search.storage default, without importing Optuna."""


class BadInput(click.ClickException):
    """Bad input: printed as one sentence, exit 2."""

    exit_code = DriverExit.BAD_INPUT


class StorageLost(click.ClickException):
    """The study's database stayed unreachable past ``--storage-retry``: exit 6."""

    exit_code = DriverExit.STORAGE


def _storage_url(storage: str | None, output: Path) -> str:
    if storage:
        return storage
    return f"sqlite:///{(output / 'study.db').resolve()}"


def _sqlite_file(url: str) -> Path | None:
    return Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None


@contextlib.contextmanager
def _storage_errors(url: str) -> Iterator[None]:
    """Turn the storage's failures into one-sentence exits: 6 when unreachable, 2 when it
    refused us; other errors are reported without the URL's password."""
    from search.storage import StorageRefused, StorageUnavailable, scrub

    try:
        yield
    except StorageUnavailable as exc:
        raise StorageLost(str(exc)) from None
    except StorageRefused as exc:
        raise BadInput(str(exc)) from None
    except click.ClickException:
        raise
    except Exception as exc:
        raise BadInput(f"cannot open the study: {scrub(first_line(exc), url)}") from None


def _load(storage: str | None, output: Path, study_name: str, retry: float) -> optuna.Study:
    from search.storage import describe
    from search.study import load_study

    url = _storage_url(storage, output)
    sqlite = _sqlite_file(url)
    if sqlite is not None and not sqlite.is_file():
        raise BadInput(f"no study database at {sqlite}; run `search run` first.")
    with _storage_errors(url):
        try:
            return load_study(url, study_name, retry_seconds=retry)
        except KeyError:
            raise BadInput(f"no study named {study_name!r} in {describe(url)}.") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Also log Optuna's own messages.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Tune the resnet-job training job with Optuna."""
    logging.basicConfig(level=logging.INFO, format="search: %(message)s", stream=sys.stderr)
    ctx.obj = {"verbose": verbose}


def _optuna_logging() -> None:
    """Optuna's own messages only with ``--verbose`` (imports Optuna: call it in commands)."""
    import optuna

    verbose = bool((click.get_current_context().find_root().obj or {}).get("verbose"))
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)


_output = click.option(
    "--output",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_OUTPUT,
    show_default=True,
    help="Folder for the study database (SQLite default), trials and results.",
)
_storage = click.option(
    "--storage",
    envvar="SEARCH_STORAGE",
    help="Optuna storage URL (default: sqlite in --output); postgresql://… for several "
    "drivers. Prefer the SEARCH_STORAGE variable for a URL with a password.",
)
_study = click.option("--study-name", default=DEFAULT_STUDY, show_default=True)
_storage_retry = click.option(
    "--storage-retry",
    type=click.FloatRange(min=0),
    default=DEFAULT_STORAGE_RETRY,
    show_default=True,
    metavar="SECONDS",
    help="Ride out an unreachable database this long, retrying with backoff; then stop the "
    "running trials (a rerun resumes them) and exit 6.",
)


@cli.command()
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    envvar="TRIALS",
    default=20,
    show_default=True,
    help="Finished trials the study should hold in total.",
)
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    help="Trials at once (default: GPUs x --trials-per-gpu, 1 without GPUs).",
)
@click.option(
    "--launcher",
    "launcher_name",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "local", "docker", "kubernetes"]),
)
@_storage
@_study
@_output
@_storage_retry
@click.option(
    "--pruner",
    default="median",
    show_default=True,
    type=click.Choice(["median", "hyperband", "none"]),
)
@click.option("--sampler", default="tpe", show_default=True, type=click.Choice(["tpe", "random"]))
@click.option("--seed", type=int, default=None, help="Sampler seed.")
@click.option(
    "--space",
    "space_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML/JSON search space replacing the default one.",
)
@click.option(
    "--trial-timeout",
    type=click.FloatRange(min=1),
    default=1800,
    show_default=True,
    help="Stop and fail a trial that emits no event for this many seconds.",
)
@click.option("--gpus", help="GPU ids to use, e.g. 0,1,2, or 'none' (default: all detected).")
@click.option(
    "--trials-per-gpu",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="K",
    help="Trials sharing each GPU at once (local and docker; on Kubernetes it needs a "
    "shared --gpu-resource).",
)
@click.option(
    "--gpu-resource",
    metavar="NAME",
    help="Kubernetes resource each trial requests (default nvidia.com/gpu), e.g. a MIG or "
    "time-sliced resource name.",
)
@click.option(
    "--job-env",
    multiple=True,
    metavar="KEY=VALUE",
    help="A fixed job variable for every trial (repeatable), e.g. EPOCHS=4.",
)
@click.option(
    "--image",
    default=lambda: os.environ.get("RESNET_JOB_IMAGE", DEFAULT_IMAGE),
    show_default=DEFAULT_IMAGE,
    help="Container image (docker, kubernetes).",
)
@click.option("--namespace", default="default", show_default=True, help="Kubernetes namespace.")
@click.option(
    "--job-template",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Kubernetes Job manifest to build trial Jobs from (default: built in).",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Relaunches of a preempted (exit 143 or vanished) run.",
)
@click.option(
    "--heartbeat",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Seconds between trial heartbeats; a trial silent 3x this long is stale.",
)
def run(
    trials: int,
    parallel: int | None,
    launcher_name: str,
    storage: str | None,
    study_name: str,
    output: Path,
    storage_retry: float,
    pruner: str,
    sampler: str,
    seed: int | None,
    space_file: Path | None,
    trial_timeout: float,
    gpus: str | None,
    trials_per_gpu: int,
    gpu_resource: str | None,
    job_env: tuple[str, ...],
    image: str,
    namespace: str,
    job_template: Path | None,
    retries: int,
    heartbeat: int,
) -> None:
    """Run the study until it holds TRIALS finished trials, then write the results."""
    _optuna_logging()
    from search.driver import Driver, Settings
    from search.jobvars import JobEnvError, parse_job_env
    from search.launchers import detect_gpus
    from search.space import SpaceError, default_space, load_space

    try:
        space = load_space(space_file) if space_file else default_space()
        fixed = parse_job_env(job_env, space.job_vars())
    except (SpaceError, JobEnvError) as exc:
        raise BadInput(str(exc)) from None
    gpu_ids = _gpus(gpus, detect_gpus)
    launcher_name = _choose_launcher(launcher_name, image)
    slots = _slots(launcher_name, gpu_ids, trials_per_gpu, parallel, gpu_resource)
    launcher = _launcher(
        launcher_name,
        image=image,
        namespace=namespace,
        gpus=bool(gpu_ids),
        template=_read_template(job_template) if job_template is not None else None,
        gpu_resource=gpu_resource,
        trials_per_gpu=trials_per_gpu,
    )
    data_dir = Path(fixed.pop("DATA_DIR", os.environ.get("DATA_DIR", "data"))).resolve()
    url = _storage_url(storage, output)
    settings = Settings(
        trials=trials,
        output=output.resolve(),
        storage=url,
        study_name=study_name,
        space=space,
        launcher=launcher,
        parallel=slots,
        gpus=gpu_ids,
        job_env=fixed,
        data_dir=data_dir,
        pruner=pruner,
        sampler=sampler,
        seed=seed,
        trial_timeout=trial_timeout,
        retries=retries,
        heartbeat=heartbeat,
        storage_retry=storage_retry,
    )
    output.mkdir(parents=True, exist_ok=True)
    with _storage_errors(url):
        driver = Driver(settings)
    sys.exit(_drive(driver, trials, output))


def _drive(driver: Driver, trials: int, output: Path) -> int:
    """Run the driver with progress lines, write the results; the exit code."""
    from search.errors import StudyStopped
    from search.progress import Progress
    from search.storage import StorageUnavailable

    signal.signal(signal.SIGTERM, lambda *_: driver.stop())
    code: int = DriverExit.DONE
    try:
        progress = Progress(driver.study, trials, _say)
        driver.run(on_trial=progress)
    except StudyStopped as exc:
        _say(str(exc))
        code = exc.code
    except KeyboardInterrupt:
        _say("interrupted; rerun the same command to continue.")
        code = DriverExit.INTERRUPTED
    if code == DriverExit.STORAGE:
        return code  # the database is gone: nothing to read the results from
    try:
        if driver.stopping and code == DriverExit.DONE and driver.finished() < trials:
            _say("stopped; rerun the same command to continue.")
            code = DriverExit.STOPPED
        _results(driver.study, output)
    except StorageUnavailable as exc:
        _say(str(exc))
        code = DriverExit.STORAGE
    return code


def _say(text: str) -> None:
    click.echo(f"search: {text}", err=True)


def _choose_launcher(name: str, image: str) -> str:
    """``auto``: docker when a daemon answers and has the image, else local (said aloud)."""
    if name != "auto":
        return name
    from search.launchers import docker_ready

    ok, why = docker_ready(image)
    chosen = "docker" if ok else "local"
    _say(f"launcher {chosen} ({why})")
    return chosen


def _slots(
    launcher: str,
    gpu_ids: list[str],
    trials_per_gpu: int,
    parallel: int | None,
    gpu_resource: str | None,
) -> int:
    """Trials at once: ``--parallel``, by default GPUs × K; refuse what cannot be honoured."""
    if gpu_resource is not None and launcher != "kubernetes":
        raise BadInput(
            f"--gpu-resource names a Kubernetes resource and applies to --launcher kubernetes "
            f"only, not {launcher}; drop it."
        )
    if trials_per_gpu > 1 and not gpu_ids:
        raise BadInput(
            f"--trials-per-gpu {trials_per_gpu} needs GPUs, and --gpus lists none (nor were "
            "any detected); use --parallel to run several trials at once without GPUs."
        )
    slots = len(gpu_ids) * trials_per_gpu
    if parallel is None:
        return max(1, slots)
    if gpu_ids and launcher != "kubernetes" and parallel > slots:
        raise BadInput(
            f"--parallel {parallel} exceeds {len(gpu_ids)} GPU(s) x --trials-per-gpu "
            f"{trials_per_gpu} = {slots} slots; raise --trials-per-gpu or lower --parallel."
        )
    return parallel


def _launcher(name: str, **options: Any) -> Launcher:
    from search.launchers import make_launcher

    try:
        return make_launcher(name, **options)
    except ValueError as exc:  # a setting the launcher refuses: its message is the sentence
        raise BadInput(str(exc)) from None
    except Exception as exc:
        raise BadInput(f"the {name} launcher cannot start: {first_line(exc)}") from None


def _gpus(option: str | None, detect: Callable[[], list[str]]) -> list[str]:
    if option is None:
        return detect()
    if option.strip().lower() in ("none", ""):
        return []
    ids = [g.strip() for g in option.split(",") if g.strip()]
    if not all(g.isdigit() for g in ids):
        raise BadInput(f"--gpus {option!r} is not a comma-separated list of GPU ids or 'none'.")
    return ids


def _read_template(path: Path) -> dict[str, Any]:
    import yaml

    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    except (OSError, yaml.YAMLError) as exc:
        raise BadInput(f"cannot read the Job template {path}: {first_line(exc)}") from None
    jobs = [d for d in docs if isinstance(d, dict) and d.get("kind") == "Job"]
    if not jobs:
        raise BadInput(f"the Job template {path} holds no kind: Job document.")
    return jobs[0]


def _results(study: optuna.Study, output: Path) -> None:
    from search.report import summary_table, write_best, write_report

    best = write_best(study, output)
    for note in write_report(study, output):
        _say(f"plot {note}")
    if best is None:
        _say("no trial completed yet; no best parameters.")
        return
    table = summary_table(study)
    _say("top trials and the baseline (vs_best: val_acc minus the best's):")
    click.echo(table, err=True)
    _say(
        f"best trial {best.number}: val_acc {best.value:.4f} "
        + " ".join(f"{k}={v}" for k, v in best.params.items())
    )
    _say(f"results in {output}")


@cli.command()
@_storage
@_study
@_output
@_storage_retry
@click.option(
    "--configmap",
    metavar="NAME",
    help="Also write <output>/configmap.yaml: a ConfigMap NAME of the best parameters.",
)
def best(
    storage: str | None,
    study_name: str,
    output: Path,
    storage_retry: float,
    configmap: str | None,
) -> None:
    """Print the best trial; (re)write best_params.json and best.env."""
    _optuna_logging()
    from search.report import write_best, write_configmap

    study = _load(storage, output, study_name, storage_retry)
    with _storage_errors(_storage_url(storage, output)):
        trial = write_best(study, output)
        if trial is None:
            raise BadInput(f"the study {study_name!r} has no COMPLETE trial yet.")
        summary = {"trial": trial.number, "val_acc": trial.value, "params": trial.params}
        click.echo(json.dumps(summary))
        if configmap:
            _say(f"wrote {write_configmap(study, output, configmap)}")


@cli.command()
@_storage
@_study
@_output
@_storage_retry
def report(storage: str | None, study_name: str, output: Path, storage_retry: float) -> None:
    """(Re)write trials.csv and the study's plots."""
    _optuna_logging()
    from search.report import TRIALS_CSV, write_report

    study = _load(storage, output, study_name, storage_retry)
    with _storage_errors(_storage_url(storage, output)):
        for note in write_report(study, output):
            _say(f"plot {note}")
    _say(f"wrote {output / TRIALS_CSV} and {output / 'plots'}")


@cli.command()
@_storage
@_output
@_storage_retry
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
def dashboard(
    storage: str | None, output: Path, storage_retry: float, port: int, host: str
) -> None:
    """Serve optuna-dashboard for the storage, with the trials' files as artifacts."""
    _optuna_logging()
    import optuna_dashboard
    from optuna.artifacts import FileSystemArtifactStore

    from search.storage import make_storage

    url = _storage_url(storage, output)
    sqlite = _sqlite_file(url)
    if sqlite is not None and not sqlite.is_file():
        raise BadInput(f"no study database at {sqlite}; run `search run` first.")
    with _storage_errors(url):
        storage_object = make_storage(url, retry_seconds=storage_retry)
    (output / "artifacts").mkdir(parents=True, exist_ok=True)
    _say(f"dashboard on http://{host}:{port}/dashboard")
    optuna_dashboard.run_server(
        storage_object.backend,  # the plain RDB storage: the dashboard checks for that type
        host=host,
        port=port,
        artifact_store=FileSystemArtifactStore(output / "artifacts"),
    )


def main() -> None:
    """Entry point: click, with bad input reported as one sentence and exit 2."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(0)
    except click.UsageError as exc:
        _say(f"{exc.format_message().rstrip('.')}.")
        sys.exit(DriverExit.BAD_INPUT)
    except click.ClickException as exc:
        _say(exc.format_message())
        sys.exit(exc.exit_code)
    except click.Abort:
        sys.exit(DriverExit.INTERRUPTED)


if __name__ == "__main__":
    main()
