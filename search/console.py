"""What the CLI says on stderr: one-line notices, a run's progress and its results.

Optuna and the report are imported inside the functions, so importing this stays quick.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING

import click

from search.exits import DriverExit

if TYPE_CHECKING:
    import optuna

    from search.driver import Driver


def say(text: str) -> None:
    """One line on stderr, ``search: text``."""
    click.echo(f"search: {text}", err=True)


def drive(driver: Driver, trials: int, output: Path) -> int:
    """Run the driver with progress lines, write the results; the exit code."""
    from search.errors import StudyStopped
    from search.progress import Progress
    from search.storage import StorageUnavailable

    signal.signal(signal.SIGTERM, lambda *_: driver.stop())
    code: int = DriverExit.DONE
    try:
        progress = Progress(driver.study, trials, say, driver.confirmations)
        driver.run(on_trial=progress)
    except StudyStopped as exc:
        say(str(exc))
        code = exc.code
    except KeyboardInterrupt:
        say("interrupted; rerun the same command to continue.")
        code = DriverExit.INTERRUPTED
    if code == DriverExit.STORAGE:
        return code  # the database is gone: nothing to read the results from
    try:
        finished = driver.finished()
        unfinished = finished < trials or driver.confirmation_pending()
        if driver.timed_out and code == DriverExit.DONE and finished < trials:
            # Optuna's timeout is a normal end: the time budget was the user's choice.
            timeout = driver.settings.timeout
            say(
                f"timeout reached after {timeout:g} s: {finished} of {trials} trials finished; "
                "rerun to continue."
            )
        elif driver.stopping and code == DriverExit.DONE and unfinished:
            say("stopped; rerun the same command to continue.")
            code = DriverExit.STOPPED
        results(driver.study, output)
    except StorageUnavailable as exc:
        say(str(exc))
        code = DriverExit.STORAGE
    return code


def plot_notes(notes: list[str]) -> None:
    """Say why each skipped plot was skipped."""
    for note in notes:
        say(f"plot {note}")


def results(study: optuna.Study, output: Path) -> None:
    """Write the results files and say what they hold: the top trials and the best."""
    from search.report import summary_table, write_best, write_report

    best = write_best(study, output)
    plot_notes(write_report(study, output))
    if best is None:
        say("no trial completed yet; no best parameters.")
        return
    table = summary_table(study)
    say("top trials and the baseline (vs_best: val_acc minus the best's):")
    click.echo(table, err=True)
    verdict(study)
    say(
        f"exported trial {best.number}: val_acc {best.value:.4f} "
        + " ".join(f"{k}={v}" for k, v in best.params.items())
    )
    say(f"results in {output}")


def verdict(study: optuna.Study) -> None:
    """Say what the confirmation phase showed (nothing without it), and show it as the
    study's note in the dashboard."""
    from search.confirm import confirmation_of
    from search.report import write_note

    confirmation = confirmation_of(study)
    if confirmation is None:
        return
    say(confirmation.summary())
    if confirmation.baseline_wins:
        say(confirmation.baseline_sentence())
    write_note(study, confirmation)
