"""Results of a study: best parameters, an env file, a ConfigMap, trials.csv and plots.

Every file is written whole or not at all (:func:`job.files.atomic_write`), so a reader
never sees half a result, even when the driver is stopped while writing.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import yaml
from optuna.trial import TrialState

from job.contract import default
from job.files import atomic_write, write_json, write_text
from search.confirm import Result, confirmation_of
from search.space import to_env
from search.study.record import configuration, recorded

BEST_PARAMS = "best_params.json"
BEST_ENV = "best.env"
CONFIGMAP = "configmap.yaml"
TRIALS_CSV = "trials.csv"

PLOTS: dict[str, tuple[str, int]] = {
    "optimization_history": ("plot_optimization_history", 1),
    "param_importances": ("plot_param_importances", 2),
    "intermediate_values": ("plot_intermediate_values", 1),
    "parallel_coordinate": ("plot_parallel_coordinate", 2),
}
"""Plot file stem → (optuna.visualization.matplotlib function, COMPLETE trials it needs)."""


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best COMPLETE trial, or None when no trial completed."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    return study.best_trial


def baseline_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The COMPLETE run of the baseline: the study's first trial (the tutorial's recipe), or
    the first retry of it with the same parameters; None when it has not completed."""
    trials = study.get_trials(deepcopy=False)
    if not trials:
        return None
    recipe = trials[0].params
    for trial in trials:
        if trial.state == TrialState.COMPLETE and trial.params == recipe:
            return trial
    return None


def exported_trial(
    study: optuna.Study, confirmation: Result | None
) -> optuna.trial.FrozenTrial | None:
    """The trial whose parameters are exported: the confirmation race's winner (the baseline
    unless a configuration beats it on the fresh seeds), else the best trial."""
    winner = None if confirmation is None else confirmation.winner_trial
    if winner is not None:
        for trial in study.get_trials(deepcopy=False):
            if trial.number == winner:
                return trial
    return best_trial(study)


def write_best(study: optuna.Study, output: Path) -> optuna.trial.FrozenTrial | None:
    """Write ``best_params.json`` and ``best.env``; return the exported trial (None: none
    completed).

    ``best_params.json`` holds the exported trial's tuned ``params``, the study's ``fixed``
    job variables (every variable that shapes the result, as the trials ran with it), ``env``
    (what ``best.env`` sets: the fixed variables that differ from the job's defaults, then
    the tuned ones), ``epochs`` (the EPOCHS its ``val_acc`` was measured at), the baseline
    trial's ``val_acc``, the exported trial's improvement over it on the study's seed
    (``null`` until the baseline completed) and the confirmation phase's ``confirmation``
    object (``null`` without the phase).
    """
    confirmation = confirmation_of(study)
    best = exported_trial(study, confirmation)
    if best is None:
        return None
    output.mkdir(parents=True, exist_ok=True)
    baseline = baseline_trial(study)
    summary = {
        "study": study.study_name,
        "trial": best.number,
        "val_acc": best.value,
        "params": best.params,
        "fixed": (recorded(study) or {}).get("job", {}),
        "env": trial_env(study, best),
        "epochs": epochs_of(study, best),
        "baseline": (
            None if baseline is None else {"trial": baseline.number, "val_acc": baseline.value}
        ),
        "improvement": (
            None
            if baseline is None or best.value is None or baseline.value is None
            else best.value - baseline.value
        ),
        "confirmation": None if confirmation is None else confirmation.as_json(),
    }
    write_json(output / BEST_PARAMS, summary)
    write_text(output / BEST_ENV, env_file(study, best, confirmation))
    return best


def write_note(study: optuna.Study, confirmation: Result) -> None:
    """Show the confirmation table and verdict as the study's note in optuna-dashboard
    (a new version only when the text changed)."""
    import optuna_dashboard

    body = confirmation.markdown()
    if optuna_dashboard.get_note(study) != body:
        optuna_dashboard.save_note(study, body)


def trial_env(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, str]:
    """The job variables that rerun ``trial``'s configuration: the study's fixed ones that
    differ from the job's defaults, then the trial's tuned parameters."""
    return {**configuration(study), **to_env(trial.params)}


def epochs_of(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> int | None:
    """The EPOCHS ``trial`` trained (tuned, fixed or the job's default); None when the study
    recorded no settings and the trial no epochs."""
    env = to_env(trial.params)
    if "EPOCHS" in env:
        return int(env["EPOCHS"])
    record = recorded(study)
    if record is not None:
        return int(record.get("job", {}).get("EPOCHS", default("EPOCHS")))
    epochs = trial.user_attrs.get("epochs")
    return epochs if isinstance(epochs, int) else None


def env_file(
    study: optuna.Study, best: optuna.trial.FrozenTrial, confirmation: Result | None = None
) -> str:
    """``NAME=value`` lines that rerun the exported configuration (``docker run --env-file``
    format): the study's fixed variables and the tuned parameters, under a header that says
    how they were chosen and at which EPOCHS the quoted ``val_acc`` was measured."""
    name = study.study_name
    if confirmation is not None and confirmation.winner_trial == best.number:
        head = (
            f"# confirmed winner of study {name}: trial {best.number}, "
            f"{confirmation.winner_summary()}\n"
        )
    else:
        head = f"# best of study {name}: trial {best.number}, val_acc {best.value:.4f}\n"
    env = trial_env(study, best)
    epochs = epochs_of(study, best)
    if epochs is not None:
        trains = "EPOCHS=" + env.get("EPOCHS", f"{default('EPOCHS')} (the job's default)")
        head += (
            f"# val_acc measured with EPOCHS={epochs} (the study's budget); this file trains "
            f"with {trains} unless you change it\n"
        )
    return head + "".join(f"{k}={v}\n" for k, v in env.items())


def summary_table(study: optuna.Study, top: int = 5) -> str:
    """The ``top`` COMPLETE trials by ``val_acc`` and the baseline, each against the best
    (``vs_best``: its val_acc minus the best's), as a text table; "" when none completed."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return ""
    ranked = sorted(complete, key=lambda t: (-(t.value or 0.0), t.number))
    best_value = ranked[0].value or 0.0
    rows = [(str(rank), t) for rank, t in enumerate(ranked[:top], start=1)]
    baseline = baseline_trial(study)
    if baseline is not None:
        rows.append(("baseline", baseline))
    frame = pd.DataFrame(
        [
            {
                "": label,
                "trial": t.number,
                "val_acc": f"{t.value:.4f}",
                "vs_best": f"{(t.value or 0.0) - best_value:+.4f}",
                "epochs": t.user_attrs.get("epochs", ""),
                **{k: f"{v:.3g}" if isinstance(v, float) else v for k, v in t.params.items()},
            }
            for label, t in rows
        ]
    )
    return frame.to_string(index=False)


def configmap(study: optuna.Study, name: str) -> str:
    """A Kubernetes ConfigMap manifest whose data are the exported parameters as job
    variables, and ``PROMOTE_MARGIN`` from the confirmation's pooled noise and its degrees of
    freedom (:func:`search.racing.promote_margin`) when it measured some."""
    confirmation = confirmation_of(study)
    best = exported_trial(study, confirmation)
    if best is None:
        raise ValueError("the study has no COMPLETE trial yet")
    data = to_env(best.params)
    margin = None if confirmation is None else confirmation.margin()
    if margin is not None:
        data["PROMOTE_MARGIN"] = f"{margin:.4f}"
    doc = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/name": "resnet-job"},
            "annotations": {
                "resnet-job/study": study.study_name,
                "resnet-job/trial": str(best.number),
                "resnet-job/val-acc": f"{best.value:.6f}",
                "resnet-job/val-acc-epochs": str(epochs_of(study, best)),
            },
        },
        "data": data,
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_configmap(study: optuna.Study, output: Path, name: str) -> Path:
    """Write ``configmap.yaml`` (see :func:`configmap`); return its path."""
    path = output / CONFIGMAP
    write_text(path, configmap(study, name))
    return path


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, params, val_acc, epochs, seconds, exit code, …"""
    rows: list[dict[str, Any]] = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        row.update({f"param_{k}": v for k, v in t.params.items()})
        row.update(
            {
                "val_acc": t.value if t.state == TrialState.COMPLETE else attrs.get("val_acc"),
                "best_intermediate": max(t.intermediate_values.values(), default=None),
                "epochs": attrs.get("epochs"),
                "seconds": attrs.get("seconds"),
                "launch_seconds": attrs.get("launch_seconds"),
                "warm_start": attrs.get("warm_start"),
                "exit_code": attrs.get("exit_code"),
                "attempts": attrs.get("attempts"),
                "retry_of": t.system_attrs.get("failed_trial"),
                "fail_reason": attrs.get("fail_reason"),
                "output_dir": attrs.get("output_dir"),
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)


def write_report(study: optuna.Study, output: Path) -> list[str]:
    """Write ``trials.csv`` and the study's PNG plots; return notes on skipped plots."""
    output.mkdir(parents=True, exist_ok=True)
    write_text(output / TRIALS_CSV, trials_frame(study).to_csv(index=False))
    return write_plots(study, output / "plots")


def write_plots(study: optuna.Study, folder: Path) -> list[str]:
    """Optuna's matplotlib plots as PNGs; a plot needing more trials is skipped with a note."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    folder.mkdir(parents=True, exist_ok=True)
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    notes = []
    for stem, (func_name, needs) in PLOTS.items():
        if complete < needs:
            notes.append(f"{stem}: skipped, needs {needs} COMPLETE trials ({complete} so far)")
            continue
        func: Callable = getattr(vis, func_name)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = func(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            notes.append(f"{stem}: skipped, {exc}")
            continue
        fig = _figure(axes)
        fig.set_size_inches(9, 6)
        fig.tight_layout()
        _save_png(fig, folder / f"{stem}.png")
        plt.close(fig)
    write_text(folder / "NOTES.txt", "".join(n + "\n" for n in notes))
    return notes


def _save_png(fig: Any, path: Path) -> None:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))


def _figure(axes: Any) -> Any:
    if hasattr(axes, "figure"):
        return axes.figure
    return axes.flat[0].figure  # an array of Axes
