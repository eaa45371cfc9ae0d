"""One trial's lifecycle: launch the job (and relaunch a preempted run), follow its events,
report each epoch to Optuna and stop the run when the pruner says so, then record the result.

How each way a run can end becomes a trial state is the table in ``docs/search.md``.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from job.contract import (
    ARTIFACTS,
    CHECKPOINT,
    EXIT_MEANINGS,
    REASON_DISK,
    REASON_MEMORY,
    DoneEvent,
    EpochEvent,
    ErrorEvent,
    ExitCode,
    default,
)
from search._optuna import quiet_experimental, trial_id
from search.errors import StudyStopped
from search.events import EventStream, Interrupted, Silent
from search.exits import MISPLACED, DriverExit
from search.gpus import misplaced
from search.launchers.base import LOST, Run, TrialSpec
from search.settings import Settings
from search.space import to_env
from search.storage import Requeue

log = logging.getLogger("search")

_RETRIED_EXITS = (ExitCode.STOPPED, LOST)
"""Exits of a run that was preempted (SIGTERM, or the container/pod vanished): relaunched."""

_MISPLACED_GRACE = 2.0
"""Seconds a run on the wrong device gets to end after SIGTERM: it has trained nothing."""

DIGESTS = ("data_sha256", "code_sha256")
"""The ``done`` event's fields kept as a COMPLETE trial's user attributes: the data and the
code the run trained with."""

DOES_NOT_FIT = "does not fit in memory"
"""``fail_reason`` of a trial whose job ran out of memory (exit 5, reason memory): its
parameters (a large batch, a wide model) are too big for the machine; other trials may fit,
so it does not count toward the failures in a row that stop the study."""


class TrialRunner:
    """Runs trials of one study through the settings' launcher, one call per trial."""

    def __init__(
        self,
        settings: Settings,
        study: optuna.Study,
        storage: BaseStorage,
        stopping: threading.Event,
        requeue: Requeue,
        folder: str = "trials",
        what: str = "trial",
    ) -> None:
        self.settings = settings
        self.folder = folder
        self.what = what  # how log lines name a run: "trial 3", "confirmation run 3"
        self.study = study
        self.storage = storage
        self.stopping = stopping
        self.requeue = requeue
        artifact_dir = settings.output / "artifacts"
        artifact_dir.mkdir(parents=True, exist_ok=True)
        self.artifacts = FileSystemArtifactStore(artifact_dir)

    def trial_dir(self, number: int) -> Path:
        """The trial's own folder: the job's OUTPUT_DIR."""
        return self.settings.output / self.folder / str(number)

    def run(
        self, trial: optuna.Trial, gpu: str | None, env: Mapping[str, str] | None = None
    ) -> FrozenTrial | None:
        """Run ``trial`` to its end and record it; the frozen trial (None: not recorded).
        ``env`` overrides job variables (a confirmation run's SEED).

        Raises :class:`StudyStopped` when the run showed every trial would fail alike.
        """
        settings = self.settings
        params = settings.space.suggest(trial)
        out = self.trial_dir(trial.number)
        name = self.study.study_name
        spec = TrialSpec(
            name=f"{name}-{trial.number}",
            env={**settings.job_env, **to_env(params), **(env or {})},
            output_dir=out,
            data_dir=settings.data_dir,
            gpu=gpu,
            labels={"study": name, "trial": str(trial.number)},
        )
        carried = self._carry_checkpoint(trial, out)
        trial.set_user_attr("output_dir", str(out))
        trial.set_user_attr("seed", spec.env.get("SEED", default("SEED")))
        trial.set_user_attr("launcher", getattr(settings.launcher, "name", "?"))
        if gpu is not None:
            trial.set_user_attr("gpu", gpu)
        log.info("%s %d: start %s", self.what, trial.number, _short(params))
        outcome = _Outcome(trial, gpu)
        code: int = LOST
        run: Run | _NotStarted = _NotStarted()
        for attempt in range(settings.retries + 1):
            trial.set_user_attr("attempts", attempt + 1)
            code, run = self._launch(outcome, spec)
            preempted = code in _RETRIED_EXITS and outcome.state is None
            if preempted and not self.stopping.is_set():
                log.warning("trial %d: run ended with %s; retrying", trial.number, _why(code))
                continue
            if code == ExitCode.BAD_CONFIG and carried:  # the job refused the carried checkpoint
                log.warning(
                    "trial %d: the carried checkpoint does not fit; starting over", trial.number
                )
                (out / CHECKPOINT).unlink(missing_ok=True)
                carried = False
                outcome.error = None
                continue
            break
        return self._record(trial, outcome, code, run)

    def _launch(self, outcome: _Outcome, spec: TrialSpec) -> tuple[int, Run | _NotStarted]:
        """Start one run, follow its events, return its exit code and the run.

        Whatever ends the following early (pruning, silence, the driver stopping, the
        database lost for good) stops the run first: SIGTERM, so the job checkpoints.
        """
        settings = self.settings
        started = time.monotonic()
        try:
            run = settings.launcher.start(spec)
        except Exception as exc:  # the launcher could not start it: a failed trial
            outcome.reason = f"the launcher could not start the run: {exc}"
            return LOST, _NotStarted()
        try:
            events = EventStream(run, settings.trial_timeout, self.stopping)
            for event in events:
                if outcome.launch_seconds is None:
                    outcome.launch_seconds = time.monotonic() - started
                    outcome.warm_start = getattr(run, "warm_start", None)  # local runs say
                if outcome.on_event(event, latest=not events.behind()):
                    run.stop(_MISPLACED_GRACE if outcome.misplaced else settings.stop_grace)
                    break
        except Silent:
            outcome.reason = f"no event for {settings.trial_timeout:g} s; stopped"
            run.stop(settings.stop_grace)
        except Interrupted:
            outcome.interrupted = True
            outcome.reason = "the driver was stopped"
            run.stop(settings.stop_grace)
        except BaseException:
            outcome.interrupted = True
            run.stop(settings.stop_grace)
            run.wait()
            raise
        code = run.wait()
        if code == ExitCode.DONE and outcome.state == TrialState.PRUNED:
            outcome.finished_anyway(events)
        return (MISPLACED if outcome.misplaced else code), run

    def _carry_checkpoint(self, trial: optuna.Trial, out: Path) -> bool:
        """A retry of a trial whose driver died resumes from that trial's checkpoint."""
        history = self.storage.get_trial_system_attrs(trial_id(trial)).get("retry_history")
        if not history:
            return False
        source = self.trial_dir(history[-1]) / CHECKPOINT
        target = out / CHECKPOINT
        if source.is_file() and not target.exists():
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            log.info("trial %d: resumes trial %d's checkpoint", trial.number, history[-1])
            return True
        return False

    def _record(
        self, trial: optuna.Trial, outcome: _Outcome, code: int, run: Run | _NotStarted
    ) -> FrozenTrial | None:
        tail = run.stderr_tail()
        trial.set_user_attr("exit_code", code)
        trial.set_user_attr("epochs", outcome.epochs)
        trial.set_user_attr("seconds", round(time.monotonic() - outcome.t0, 3))
        if outcome.launch_seconds is not None:
            trial.set_user_attr("launch_seconds", round(outcome.launch_seconds, 3))
        if outcome.warm_start is not None:
            trial.set_user_attr("warm_start", outcome.warm_start)
        if run.log_path is not None:
            trial.set_user_attr("log", str(run.log_path))
        if tail:
            trial.set_user_attr("stderr", tail[-500:])
        if outcome.state == TrialState.PRUNED:
            self._upload(trial)
            return self.study.tell(trial, state=TrialState.PRUNED)
        if code == ExitCode.DONE and outcome.val_acc is not None:
            trial.set_user_attr("val_acc", outcome.val_acc)
            for name, digest in outcome.digests.items():
                trial.set_user_attr(name, digest)
            self._upload(trial)
            return self.study.tell(trial, outcome.val_acc)
        out_of = outcome.resource if code == ExitCode.RESOURCES else None
        why = _why(code, outcome.gpu)
        reason = DOES_NOT_FIT if out_of == REASON_MEMORY else outcome.reason or why
        trial.set_user_attr("fail_reason", reason)
        frozen = self.study.tell(trial, state=TrialState.FAIL)
        log.warning(
            "%s %d: failed: %s%s", self.what, trial.number, reason, f" ({tail})" if tail else ""
        )
        if self.stopping.is_set() and outcome.interrupted:
            self.requeue(self.study, frozen)  # stopped by us: its parameters run again later
            return frozen
        stop = _STOPS_THE_STUDY.get(REASON_DISK if out_of == REASON_DISK else code)
        if stop is not None:
            exit_code, what = stop
            detail = outcome.error or tail or f"see {run.log_path}"
            raise StudyStopped(
                exit_code,
                f"trial {trial.number}: the job {what} ({detail}); every trial would fail "
                "the same way, so the study stopped.",
            )
        return frozen

    def _upload(self, trial: optuna.Trial) -> None:
        """The trial's files as Optuna artifacts, for the dashboard (best effort)."""
        out = self.trial_dir(trial.number)
        for name in ARTIFACTS:
            path = out / name
            if path.is_file():
                with contextlib.suppress(Exception), quiet_experimental():
                    upload_artifact(
                        artifact_store=self.artifacts, file_path=str(path), study_or_trial=trial
                    )


_STOPS_THE_STUDY: dict[int | str, tuple[DriverExit, str]] = {
    ExitCode.BAD_CONFIG: (DriverExit.BAD_INPUT, "rejected its configuration"),
    ExitCode.NO_DATA: (DriverExit.NO_DATA, "found no data"),
    REASON_DISK: (DriverExit.RESOURCES, "ran out of disk space"),
}
"""Job failures that every trial would repeat (by exit code, or exit 5's reason): the
driver's exit code and what happened, in words."""


class _Outcome:
    """What one trial's runs showed across its (re)launches: events, pruning, timing."""

    def __init__(self, trial: optuna.Trial, gpu: str | None = None) -> None:
        self.trial = trial
        self.gpu = gpu  # where the run was placed (None: no GPU)
        self.misplaced = False  # its start event named another device: stopped, failed
        self.t0 = time.monotonic()
        self.epochs = 0
        self.reported: set[int] = set()
        self.val_acc: float | None = None
        self.state: TrialState | None = None
        self.reason: str | None = None
        self.error: str | None = None
        self.resource: str | None = None  # exit 5's reason: what ran out
        self.interrupted = False
        self.launch_seconds: float | None = None
        self.warm_start: bool | None = None  # the run that sent the first event was forked warm
        self.digests: dict[str, str] = {}  # the done event's data_sha256 and code_sha256

    def on_event(self, event: Mapping[str, Any], latest: bool = True) -> bool:
        """Handle one event; True when the run must be stopped (pruned).

        The pruner is consulted only on the run's latest epoch (``latest``: nothing more is
        waiting to be read) and never after its final one: a run that trained all its epochs
        is COMPLETE, even when the driver read its events late (the database was down).
        """
        kind = event.get("event")
        if kind == "start" and "device" in event:  # a job that names no device: unchecked
            wrong = misplaced(event["device"], self.gpu)
            if wrong is not None:
                self.misplaced, self.reason = True, wrong
                return True
        elif kind == "epoch":
            epoch_event = cast(EpochEvent, event)
            epoch, acc = int(epoch_event["epoch"]), float(epoch_event["val_acc"])
            final = epoch >= int(epoch_event.get("epochs") or 0) > 0
            self.epochs = max(self.epochs, epoch)
            if epoch not in self.reported:  # a resumed run repeats nothing, but be safe
                self.reported.add(epoch)
                self.trial.report(acc, epoch)
                if latest and not final and self.trial.should_prune():
                    self.state = TrialState.PRUNED
                    return True
        elif kind == "done":
            self.val_acc = float(cast(DoneEvent, event)["val_acc"])
            # What the run trained with: a later study reuses a baseline run only when
            # both match its own (search.study.reuse).
            self.digests = {k: event[k] for k in DIGESTS if isinstance(event.get(k), str)}
        elif kind == "error":
            error = cast(ErrorEvent, event)
            self.error = str(error.get("message", ""))
            self.resource = error.get("reason")
        return False

    def finished_anyway(self, events: Iterable[Mapping[str, Any]]) -> None:
        """A run pruned while the storage call that decided it waited (the database was
        down) may have trained to its end meanwhile and exited 0 before the SIGTERM: it is a
        result. Its remaining events are read (none is pruned) and the trial is COMPLETE."""
        try:
            for event in events:
                self.on_event(event, latest=False)
        except (Silent, Interrupted):  # the driver is stopping: the trial stays pruned
            return
        if self.val_acc is not None:
            self.state = None


class _NotStarted:
    """Stands in for a run the launcher failed to start."""

    log_path: Path | None = None

    def stderr_tail(self) -> str:
        return ""


def _why(code: int, gpu: str | None = None) -> str:
    """A run's exit code in words, for a failed trial's ``fail_reason`` (``gpu``: where it
    ran, named when the GPU failed)."""
    if code == ExitCode.DEVICE_FAILED and gpu is not None:
        return (
            f"GPU {gpu} failed (a CUDA error, exit 6): nothing was promoted; check that GPU "
            "(nvidia-smi) before it runs more trials"
        )
    if code == ExitCode.DONE:
        return "the job ended without a done event"
    if code == LOST:
        return "the run disappeared"
    if code == 137:
        return "killed (exit 137)"
    try:
        return f"{EXIT_MEANINGS[ExitCode(code)]} (exit {code})"
    except ValueError:
        return f"exit {code}"


def _short(params: Mapping[str, Any]) -> str:
    return " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )
