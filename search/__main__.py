"""``python -m search`` (also ``resnet-search``): tune the job with Optuna.

Commands: ``run`` (the study), ``best`` (best parameters, env file, ConfigMap), ``report``
(trials.csv and plots), ``dashboard`` (optuna-dashboard on 127.0.0.1). Bad input exits 2
with one sentence on stderr; every exit code is :class:`job.contract.DriverExit`.

Optuna, pandas and the launchers are imported inside the commands, so ``--help`` is quick.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from job.contract import DriverExit

if TYPE_CHECKING:
    import optuna

DEFAULT_OUTPUT = Path("output/search")
DEFAULT_STUDY = "resnet-job"
DEFAULT_IMAGE = "resnet-job:latest"


class BadInput(click.ClickException):
    """Bad input: printed as one sentence, exit 2."""

    exit_code = DriverExit.BAD_INPUT


def _storage_url(storage: str | None, output: Path) -> str:
    if storage:
        return storage
    return f"sqlite:///{(output / 'study.db').resolve()}"


def _load(storage: str | None, output: Path, study_name: str) -> optuna.Study:
    from search.study import load_study

    url = _storage_url(storage, output)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
        raise BadInput(f"no study database at {url[len('sqlite:///') :]}; run `search run` first.")
    try:
        return load_study(url, study_name)
    except KeyError:
        raise BadInput(f"no study named {study_name!r} in {url}.") from None
    except Exception as exc:
        raise BadInput(f"cannot open the storage {url}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


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
    help="Optuna storage URL (default: sqlite in --output); postgresql://… for several drivers.",
)
_study = click.option("--study-name", default=DEFAULT_STUDY, show_default=True)


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
    help="Trials at once (default: one per GPU, 1 without GPUs).",
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
    pruner: str,
    sampler: str,
    seed: int | None,
    space_file: Path | None,
    trial_timeout: float,
    gpus: str | None,
    job_env: tuple[str, ...],
    image: str,
    namespace: str,
    job_template: Path | None,
    retries: int,
    heartbeat: int,
) -> None:
    """Run the study until it holds TRIALS finished trials, then write the results."""
    _optuna_logging()
    from search.driver import Driver, Settings, StudyStopped
    from search.jobvars import JobEnvError, parse_job_env
    from search.launchers import detect_gpus, docker_ready, make_launcher
    from search.space import SpaceError, default_space, load_space

    try:
        space = load_space(space_file) if space_file else default_space()
        fixed = parse_job_env(job_env, space.job_vars())
    except (SpaceError, JobEnvError) as exc:
        raise BadInput(str(exc)) from None
    gpu_ids = _gpus(gpus, detect_gpus)
    if launcher_name == "auto":
        ok, why = docker_ready(image)
        launcher_name = "docker" if ok else "local"
        click.echo(f"search: launcher {launcher_name} ({why})", err=True)
    template = None
    if job_template is not None:
        template = _read_template(job_template)
    try:
        launcher = make_launcher(
            launcher_name, image=image, namespace=namespace, gpus=bool(gpu_ids), template=template
        )
    except Exception as exc:
        raise BadInput(f"the {launcher_name} launcher cannot start: {_first_line(exc)}") from None
    data_dir = Path(fixed.pop("DATA_DIR", os.environ.get("DATA_DIR", "data"))).resolve()
    settings = Settings(
        trials=trials,
        output=output.resolve(),
        storage=_storage_url(storage, output),
        study_name=study_name,
        space=space,
        launcher=launcher,
        parallel=parallel or max(1, len(gpu_ids)),
        gpus=gpu_ids,
        job_env=fixed,
        data_dir=data_dir,
        pruner=pruner,
        sampler=sampler,
        seed=seed,
        trial_timeout=trial_timeout,
        retries=retries,
        heartbeat=heartbeat,
    )
    output.mkdir(parents=True, exist_ok=True)
    try:
        driver = Driver(settings)
    except Exception as exc:
        raise BadInput(f"cannot open the study: {_first_line(exc)}") from None
    signal.signal(signal.SIGTERM, lambda *_: driver.stop())
    code: int = DriverExit.DONE
    try:
        driver.run()
    except StudyStopped as exc:
        click.echo(f"search: {exc}", err=True)
        code = exc.code
    except KeyboardInterrupt:
        click.echo("search: interrupted; rerun the same command to continue.", err=True)
        code = DriverExit.INTERRUPTED
    if driver.stopping and code == DriverExit.DONE and driver.finished() < trials:
        click.echo("search: stopped; rerun the same command to continue.", err=True)
        code = DriverExit.STOPPED
    _results(driver.study, output)
    sys.exit(code)


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
        raise BadInput(f"cannot read the Job template {path}: {_first_line(exc)}") from None
    jobs = [d for d in docs if isinstance(d, dict) and d.get("kind") == "Job"]
    if not jobs:
        raise BadInput(f"the Job template {path} holds no kind: Job document.")
    return jobs[0]


def _results(study: optuna.Study, output: Path) -> None:
    from search.report import write_best, write_report

    best = write_best(study, output)
    for note in write_report(study, output):
        click.echo(f"search: plot {note}", err=True)
    if best is None:
        click.echo("search: no trial completed yet; no best parameters.", err=True)
        return
    click.echo(
        f"search: best trial {best.number}: val_acc {best.value:.4f} "
        + " ".join(f"{k}={v}" for k, v in best.params.items()),
        err=True,
    )
    click.echo(f"search: results in {output}", err=True)


@cli.command()
@_storage
@_study
@_output
@click.option(
    "--configmap",
    metavar="NAME",
    help="Also write <output>/configmap.yaml: a ConfigMap NAME of the best parameters.",
)
def best(storage: str | None, study_name: str, output: Path, configmap: str | None) -> None:
    """Print the best trial; (re)write best_params.json and best.env."""
    _optuna_logging()
    from search.report import write_best, write_configmap

    study = _load(storage, output, study_name)
    trial = write_best(study, output)
    if trial is None:
        raise BadInput(f"the study {study_name!r} has no COMPLETE trial yet.")
    click.echo(json.dumps({"trial": trial.number, "val_acc": trial.value, "params": trial.params}))
    if configmap:
        path = write_configmap(study, output, configmap)
        click.echo(f"search: wrote {path}", err=True)


@cli.command()
@_storage
@_study
@_output
def report(storage: str | None, study_name: str, output: Path) -> None:
    """(Re)write trials.csv and the study's plots."""
    _optuna_logging()
    from search.report import write_report

    study = _load(storage, output, study_name)
    for note in write_report(study, output):
        click.echo(f"search: plot {note}", err=True)
    click.echo(f"search: wrote {output / 'trials.csv'} and {output / 'plots'}", err=True)


@cli.command()
@_storage
@_output
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
def dashboard(storage: str | None, output: Path, port: int, host: str) -> None:
    """Serve optuna-dashboard for the storage, with the trials' files as artifacts."""
    _optuna_logging()
    import optuna_dashboard
    from optuna.artifacts import FileSystemArtifactStore

    from search.storage import make_storage

    url = _storage_url(storage, output)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
        raise BadInput(f"no study database at {url[len('sqlite:///') :]}; run `search run` first.")
    (output / "artifacts").mkdir(parents=True, exist_ok=True)
    click.echo(f"search: dashboard on http://{host}:{port}/dashboard", err=True)
    optuna_dashboard.run_server(
        make_storage(url),
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
        click.echo(f"search: {exc.format_message().rstrip('.')}.", err=True)
        sys.exit(DriverExit.BAD_INPUT)
    except click.ClickException as exc:
        click.echo(f"search: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        sys.exit(DriverExit.INTERRUPTED)


if __name__ == "__main__":
    main()
