"""``python -m search`` (also ``resnet-search``): tune the job with Optuna.

Commands: ``run`` (the study), ``best`` (best parameters, env file, ConfigMap), ``report``
(trials.csv and plots), ``dashboard`` (optuna-dashboard on 127.0.0.1). Bad input exits 2
with one sentence on stderr; every exit code is :class:`search.exits.DriverExit`.

The CLI only parses, calls and reports: the options with their defaults are
:mod:`search.options`, the rules that turn them into a run :mod:`search.settings`, opening
the study :mod:`search.study`, what it prints :mod:`search.console`. Optuna, pandas and
the launchers are imported inside the commands, so ``--help`` is quick. A storage URL's
password is never printed: messages name the database by host and port.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from search.console import drive, plot_notes, say, verdict
from search.errors import SettingsError, first_line
from search.exits import DriverExit, epilog
from search.options import options
from search.settings import build_settings, existing_storage_url

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


@cli.command(epilog=epilog("run"))
@options("run")
def run(**given: Any) -> None:
    """Run the study until it holds TRIALS finished trials, then write the results."""
    _optuna_logging()
    from search.driver import Driver
    from search.study import open_study

    with _refused():
        settings = build_settings(given, say)
    given["output"].mkdir(parents=True, exist_ok=True)
    with _storage_errors(settings.storage):
        with _refused():
            opened = open_study(settings, say)  # refuses a study started with other settings
        driver = Driver(settings, opened)
    if settings.enqueue:
        count = len(settings.enqueue)
        say(f"queued {opened.queued} of the {count} configurations of {given['enqueue']}")
    sys.exit(drive(driver, settings.trials, given["output"]))


@cli.command(epilog=epilog("best"))
@options("best")
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
@options("report")
def report(storage: str | None, study_name: str, output: Path, storage_retry: float) -> None:
    """(Re)write trials.csv and the study's plots."""
    _optuna_logging()
    from search.report import TRIALS_CSV, write_report

    study, url = _load(storage, output, study_name, storage_retry)
    with _storage_errors(url):
        plot_notes(write_report(study, output))
    say(f"wrote {output / TRIALS_CSV} and {output / 'plots'}")


@cli.command(epilog=epilog("dashboard"))
@options("dashboard")
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
