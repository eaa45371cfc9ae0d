"""``python -m search`` (also ``resnet-search``): tune the job with Optuna.

Commands: ``run`` (the study), ``best`` (best parameters, env file, ConfigMap), ``report``
(trials.csv and plots), ``dashboard`` (optuna-dashboard on 127.0.0.1). Bad input exits 2
with one sentence on stderr; every exit code is :class:`job.contract.DriverExit`.

The CLI only parses, calls and reports: the defaults and the rules that turn options into a
run are :mod:`search.settings`, what it prints is :mod:`search.console`. Optuna, pandas and
the launchers are imported inside the commands, so ``--help`` is quick. A storage URL's
password is never printed: messages name the database by host and port.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from job.contract import DriverExit
from search.console import drive, plot_notes, say, verdict
from search.errors import first_line
from search.exits import epilog
from search.settings import (
    DEFAULTS,
    LAUNCHERS,
    PRUNERS,
    SAMPLERS,
    RunOptions,
    SettingsError,
    build_settings,
    existing_storage_url,
)

if TYPE_CHECKING:
    import optuna


class BadInput(click.ClickException):
    """Bad input: printed as one sentence, exit 2."""

    exit_code = DriverExit.BAD_INPUT


class StorageLost(click.ClickException):
    """The study's database became unusable (unreachable past ``--storage-retry``, or an
    error no retry cures): exit 6."""

    exit_code = DriverExit.STORAGE


@contextlib.contextmanager
def _refused() -> Iterator[None]:
    """Options the settings refuse: their one sentence, exit 2."""
    try:
        yield
    except SettingsError as exc:
        raise BadInput(str(exc)) from None


@contextlib.contextmanager
def _storage_errors(url: str) -> Iterator[None]:
    """Turn the storage's failures into one-sentence exits: 6 when unusable (unreachable or
    broken), 2 when it refused us; other errors are reported without the URL's password."""
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


def _load(
    storage: str | None, output: Path, study_name: str, retry: float
) -> tuple[optuna.Study, str]:
    """The existing study and its storage URL, for the commands that read it."""
    from search.storage import describe
    from search.study import load_study

    with _refused():
        url = existing_storage_url(storage, output)
    with _storage_errors(url):
        try:
            return load_study(url, study_name, retry_seconds=retry), url
        except KeyError:
            raise BadInput(f"no study named {study_name!r} in {describe(url)}.") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=epilog())
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
    default=DEFAULTS.output,
    show_default=True,
    help="Folder for the study database (SQLite default), trials and results.",
)
_storage = click.option(
    "--storage",
    envvar="SEARCH_STORAGE",
    help="Optuna storage URL (default: sqlite in --output); postgresql://… for several "
    "drivers. Prefer the SEARCH_STORAGE variable for a URL with a password.",
)
_study = click.option("--study-name", default=DEFAULTS.study_name, show_default=True)
_storage_retry = click.option(
    "--storage-retry",
    type=click.FloatRange(min=0),
    default=DEFAULTS.storage_retry,
    show_default=True,
    metavar="SECONDS",
    help="Ride out an unreachable database this long, retrying with backoff; then stop the "
    "running trials (a rerun resumes them) and exit 6.",
)


@cli.command(epilog=epilog("run"))
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    envvar="TRIALS",
    default=DEFAULTS.trials,
    show_default=True,
    help="Finished trials the study should hold in total.",
)
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    help=(
        "Trials at once (default: GPUs x --trials-per-gpu; without GPUs 2 for local and "
        "docker on 2+ cores, else 1)."
    ),
)
@click.option(
    "--launcher",
    default=DEFAULTS.launcher,
    show_default=True,
    type=click.Choice(LAUNCHERS),
)
@_storage
@_study
@_output
@_storage_retry
@click.option(
    "--pruner",
    default=DEFAULTS.pruner,
    show_default=True,
    type=click.Choice(PRUNERS),
)
@click.option("--sampler", default=DEFAULTS.sampler, show_default=True, type=click.Choice(SAMPLERS))
@click.option("--seed", type=int, default=None, help="Sampler seed.")
@click.option(
    "--space",
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML/JSON search space: adds or overrides parameters of the default space "
    "(name: null drops one); with the top-level key replace: true it replaces it whole.",
)
@click.option(
    "--trial-timeout",
    type=click.FloatRange(min=1),
    default=DEFAULTS.trial_timeout,
    show_default=True,
    help="Stop and fail a trial that emits no event for this many seconds.",
)
@click.option("--gpus", help="GPU ids to use, e.g. 0,1,2, or 'none' (default: all detected).")
@click.option(
    "--trials-per-gpu",
    type=click.IntRange(min=1),
    default=DEFAULTS.trials_per_gpu,
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
    default=lambda: os.environ.get("RESNET_JOB_IMAGE", DEFAULTS.image),
    show_default=DEFAULTS.image,
    help="Container image (docker, kubernetes).",
)
@click.option(
    "--namespace", default=DEFAULTS.namespace, show_default=True, help="Kubernetes namespace."
)
@click.option(
    "--job-template",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Kubernetes Job manifest to build trial Jobs from (default: built in).",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=DEFAULTS.retries,
    show_default=True,
    help="Relaunches of a preempted (exit 143 or vanished) run.",
)
@click.option(
    "--heartbeat",
    type=click.IntRange(min=1),
    default=DEFAULTS.heartbeat,
    show_default=True,
    help="Seconds between trial heartbeats; a trial silent 3x this long is stale.",
)
@click.option(
    "--confirm",
    type=click.IntRange(min=0),
    default=DEFAULTS.confirm,
    show_default=True,
    metavar="K",
    help="After the budget, re-run the top K configurations and the baseline on "
    "--confirm-seeds seeds and export the best mean; 0 = off.",
)
@click.option(
    "--confirm-seeds",
    type=click.IntRange(min=2),
    default=DEFAULTS.confirm_seeds,
    show_default=True,
    metavar="S",
    help="Seeds per confirmed configuration: the study's SEED and the next S-1.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=DEFAULTS.timeout,
    metavar="SECONDS",
    help="Start no new trial after this many seconds of this run; running trials finish, "
    "the results are written and the run exits 0 (Optuna's timeout); rerun to continue. "
    "Default: no limit.",
)
@click.option(
    "--cold-start",
    is_flag=True,
    default=DEFAULTS.cold_start,
    help="Start every local trial as a new Python process instead of forking it from a "
    "warm one that has already imported PyTorch.",
)
@click.option(
    "--enqueue",
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML/JSON list of known configurations to run first (after the baseline), "
    "each a mapping of parameter names to values inside the space; queued once.",
)
@click.option(
    "--fresh",
    is_flag=True,
    help="Keep the study (and its files in --output) under <name>-<UTC time> and start a "
    "new, empty study under this name.",
)
def run(**given: Any) -> None:
    """Run the study until it holds TRIALS finished trials, then write the results."""
    _optuna_logging()
    from search.driver import Driver
    from search.enqueue import enqueue
    from search.recorded import prepare

    options = RunOptions(**given)
    with _refused():
        settings = build_settings(options, say)
    options.output.mkdir(parents=True, exist_ok=True)
    with _storage_errors(settings.storage):
        with _refused():
            prepare(settings, say)  # refuses a study started with other settings
        driver = Driver(settings)
        queued = enqueue(driver.study, driver.storage, settings.enqueue)
    if settings.enqueue:
        say(f"queued {queued} of the {len(settings.enqueue)} configurations of {options.enqueue}")
    sys.exit(drive(driver, options.trials, options.output))


@cli.command(epilog=epilog("best"))
@_storage
@_study
@_output
@_storage_retry
@click.option(
    "--configmap",
    metavar="NAME",
    help="Also write <output>/configmap.yaml: a ConfigMap NAME of the exported parameters "
    "and a PROMOTE_MARGIN from the confirmation's seed noise.",
)
def best(
    storage: str | None,
    study_name: str,
    output: Path,
    storage_retry: float,
    configmap: str | None,
) -> None:
    """Print the exported trial (the confirmed winner, else the best) and the verdict;
    (re)write best_params.json and best.env."""
    _optuna_logging()
    from search.report import write_best, write_configmap

    study, url = _load(storage, output, study_name, storage_retry)
    with _storage_errors(url):
        trial = write_best(study, output)
        if trial is None:
            raise BadInput(f"the study {study_name!r} has no COMPLETE trial yet.")
        summary = {"trial": trial.number, "val_acc": trial.value, "params": trial.params}
        click.echo(json.dumps(summary))
        verdict(study)
        if configmap:
            say(f"wrote {write_configmap(study, output, configmap)}")


@cli.command(epilog=epilog("report"))
@_storage
@_study
@_output
@_storage_retry
def report(storage: str | None, study_name: str, output: Path, storage_retry: float) -> None:
    """(Re)write trials.csv and the study's plots."""
    _optuna_logging()
    from search.report import TRIALS_CSV, write_report

    study, url = _load(storage, output, study_name, storage_retry)
    with _storage_errors(url):
        plot_notes(write_report(study, output))
    say(f"wrote {output / TRIALS_CSV} and {output / 'plots'}")


@cli.command(epilog=epilog("dashboard"))
@_storage
@_output
@_storage_retry
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULTS.port, show_default=True)
@click.option("--host", default=DEFAULTS.host, show_default=True)
def dashboard(
    storage: str | None, output: Path, storage_retry: float, port: int, host: str
) -> None:
    """Serve optuna-dashboard for the storage, with the trials' files as artifacts."""
    _optuna_logging()
    import optuna_dashboard
    from optuna.artifacts import FileSystemArtifactStore

    from search.storage import make_storage

    with _refused():
        url = existing_storage_url(storage, output)
    with _storage_errors(url):
        storage_object = make_storage(url, retry_seconds=storage_retry)
    (output / "artifacts").mkdir(parents=True, exist_ok=True)
    say(f"dashboard on http://{host}:{port}/dashboard")
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
        say(f"{exc.format_message().rstrip('.')}.")
        sys.exit(DriverExit.BAD_INPUT)
    except click.ClickException as exc:
        say(exc.format_message())
        sys.exit(exc.exit_code)
    except click.Abort:
        sys.exit(DriverExit.INTERRUPTED)


if __name__ == "__main__":
    main()
