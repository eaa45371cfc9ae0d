"""The search driver: Optuna trials in, job runs out, events back in.

Each worker thread repeatedly takes a trial from the study, turns its parameters into job
variables, starts the job through a launcher, reports each epoch's ``val_acc`` to Optuna,
stops the run when the pruner says so, and records the result. The budget is the study's
total of finished (COMPLETE or PRUNED) trials, so several drivers, and reruns after a crash,
share it. The driver knows launchers only through :mod:`search.launchers.base`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import queue
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState

from search.launchers.base import LOST, Launcher, Run, TrialSpec
from search.space import Space, to_env

log = logging.getLogger("search")

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
CHECKPOINT = "checkpoint.pt"
"""The job's resumable state in its OUTPUT_DIR (DESIGN.md: output folder)."""
EXIT_BAD_CONFIG = 2
EXIT_NO_DATA = 3
EXIT_DIVERGED = 4
EXIT_STOPPED = 143
ARTIFACTS = (
    "history.json",
    "metrics.json",
    "config.json",
    "accuracy.png",
    "losses.png",
    "lrs.png",
    "samples.png",
    "job.log",
)
"""Trial files uploaded as Optuna artifacts (those that exist), for the dashboard."""


class StudyStopped(RuntimeError):
    """A trial showed that every trial would fail the same way; ``code`` is the CLI's exit."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Settings:
    """Everything one driver run needs; the CLI builds it from its options."""

    trials: int
    output: Path
    storage: str
    study_name: str
    space: Space
    launcher: Launcher
    parallel: int = 1
    gpus: Sequence[str] = ()
    job_env: Mapping[str, str] = field(default_factory=dict)
    data_dir: Path = Path("data")
    pruner: str = "median"
    sampler: str = "tpe"
    seed: int | None = None
    trial_timeout: float = 1800.0
    retries: int = 2
    heartbeat: int = 10
    stop_grace: float = 30.0
    max_failures: int = 5


def open_study(
    storage_url: str,
    study_name: str,
    *,
    pruner: str = "median",
    sampler: str = "tpe",
    seed: int | None = None,
    heartbeat: int = 10,
    retries: int = 2,
) -> optuna.Study:
    """Create or load the study (maximising ``val_acc``) on a crash-safe RDB storage.

    The storage records a heartbeat for every running trial; a trial whose driver stops
    beating is failed and its parameters are queued again (up to ``retries`` times).
    """
    return optuna.create_study(
        storage=make_storage(storage_url, heartbeat=heartbeat, retries=retries),
        study_name=study_name,
        direction="maximize",
        sampler=make_sampler(sampler, seed),
        pruner=make_pruner(pruner),
        load_if_exists=True,
    )


def make_storage(url: str, *, heartbeat: int = 10, retries: int = 2) -> RDBStorage:
    """An RDBStorage with heartbeats and retry of stale trials."""
    url = postgres_driver(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 120}}
    with _quiet_experimental():
        return RDBStorage(
            url,
            engine_kwargs=kwargs,
            heartbeat_interval=heartbeat,
            grace_period=3 * heartbeat,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=retries),
        )


def postgres_driver(url: str) -> str:
    """Name psycopg2 in a bare ``postgresql://`` URL when psycopg 3 (SQLAlchemy 2.1's default
    driver) is not installed; the project depends on psycopg2-binary."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres") and importlib.util.find_spec("psycopg") is None:
        return f"postgresql+psycopg2://{rest}"
    return url


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    """``tpe`` (constant liar, for parallel trials) or ``random``."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with _quiet_experimental():
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=5)


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """``median`` (from epoch 2, once 2 trials finished), ``hyperband`` or ``none``."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def driver_id() -> str:
    """``host:pid:start-time`` of this process; identifies it on its trials."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def _start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "?"
    return stat.rsplit(")", 1)[1].split()[19]


def _alive_here(ident: str) -> bool:
    """False when ``ident`` names a driver on this host that is no longer running."""
    host, _, rest = ident.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine: only its heartbeat can tell
    return _start_time(int(pid)) == started


class Driver:
    """Runs a study to its budget with ``settings.parallel`` worker threads."""

    def __init__(self, settings: Settings, study: optuna.Study | None = None) -> None:
        self.s = settings
        self.study = study or open_study(
            settings.storage,
            settings.study_name,
            pruner=settings.pruner,
            sampler=settings.sampler,
            seed=settings.seed,
            heartbeat=settings.heartbeat,
            retries=settings.retries,
        )
        self.storage = self.study._storage
        with _quiet_experimental():
            self.retry = RetryHeartbeatStaleTrialCallback(max_retry=settings.retries)
        self.artifacts = FileSystemArtifactStore(self._artifact_dir())
        self.id = driver_id()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._active: dict[int, int] = {}  # trial number -> trial id, for heartbeats
        self._error: StudyStopped | None = None
        self._failures = 0

    def _artifact_dir(self) -> Path:
        path = self.s.output / "artifacts"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- the study loop ---------------------------------------------------------------

    def run(self, on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None) -> None:
        """Run trials until the study holds ``settings.trials`` finished ones.

        Raises :class:`StudyStopped` when a trial shows the study cannot succeed (bad
        configuration, data unavailable); the other running trials are stopped first.
        """
        self.s.output.mkdir(parents=True, exist_ok=True)
        self._reap()
        self._enqueue_baseline()
        beat = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        beat.start()
        workers = [
            threading.Thread(target=self._work, args=(i, on_trial), name=f"worker-{i}")
            for i in range(max(1, self.s.parallel))
        ]
        for w in workers:
            w.start()
        try:
            for w in workers:
                while w.is_alive():
                    w.join(timeout=0.5)
        except KeyboardInterrupt:
            self.stop()
            for w in workers:
                w.join()
            raise
        finally:
            self._stop.set()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """Stop launching trials and stop the running ones (they are queued to run again)."""
        self._stop.set()

    def finished(self) -> int:
        """How many trials of the study are COMPLETE or PRUNED."""
        return len(self.study.get_trials(deepcopy=False, states=FINISHED))

    def _enqueue_baseline(self) -> None:
        with self._lock:
            if not self.study.get_trials(deepcopy=False):
                self.study.enqueue_trial(self.s.space.baseline(), skip_if_exists=True)

    def _work(self, slot: int, on_trial: Callable | None) -> None:
        gpu = self.s.gpus[slot % len(self.s.gpus)] if self.s.gpus else None
        while not self._stop.is_set():
            trial = self._next_trial()
            if trial is None:
                return
            try:
                frozen = self._run_trial(trial, gpu)
            except StudyStopped as exc:
                with self._lock:
                    self._error = self._error or exc
                self._stop.set()
                return
            except Exception as exc:  # a bug or a storage error: fail this trial, go on
                log.exception("trial %d: the driver failed to run it", trial.number)
                frozen = self._fail(trial, f"driver error: {type(exc).__name__}: {exc}")
            finally:
                with self._lock:
                    self._active.pop(trial.number, None)
            if frozen is not None:
                self._count(frozen)
                if on_trial is not None:
                    on_trial(frozen)

    def _fail(self, trial: optuna.Trial, reason: str) -> optuna.trial.FrozenTrial | None:
        try:
            trial.set_user_attr("fail_reason", reason[:500])
            return self.study.tell(trial, state=TrialState.FAIL)
        except Exception:
            log.exception("trial %d: could not record the failure", trial.number)
            return None

    def _count(self, frozen: optuna.trial.FrozenTrial) -> None:
        """Stop the study after too many failures in a row: something is broken."""
        with self._lock:
            if frozen.state != TrialState.FAIL:
                self._failures = 0
                return
            self._failures += 1
            if self._failures >= self.s.max_failures and self._error is None:
                self._error = StudyStopped(
                    1,
                    f"{self._failures} trials failed in a row (last: trial {frozen.number}, "
                    f"{frozen.user_attrs.get('fail_reason', '?')}); see its log "
                    f"{frozen.user_attrs.get('log', '')}.",
                )
                self._stop.set()

    def _next_trial(self) -> optuna.Trial | None:
        """Ask for a trial while finished + running < budget; None once the budget is met."""
        while not self._stop.is_set():
            with self._lock:
                self._reap()
                trials = self.study.get_trials(deepcopy=False)
                done = sum(t.state in FINISHED for t in trials)
                running = sum(t.state == TrialState.RUNNING for t in trials)
                if done >= self.s.trials:
                    return None
                if done + running < self.s.trials:
                    with _quiet_experimental():  # heartbeats come from our own thread
                        trial = self.study.ask()
                    self._active[trial.number] = trial._trial_id
                    self.storage.record_heartbeat(trial._trial_id)
                    trial.set_user_attr("driver", self.id)
                    return trial
            self._stop.wait(2.0)  # others' runs may still finish the budget, or go stale
        return None

    def _reap(self) -> None:
        """Fail (and queue again) running trials whose driver is gone."""
        with _quiet_experimental():
            fail_stale_trials(self.study)
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = t.user_attrs.get("driver")
            if owner and owner != self.id and not _alive_here(owner):
                with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                    if self.storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                        log.warning("trial %d: its driver died; queued again", t.number)
                        self.retry(self.study, self.storage.get_trial(t._trial_id))

    def _beat(self) -> None:
        while not self._stop.wait(self.s.heartbeat):
            with self._lock:
                ids = list(self._active.values())
            for trial_id in ids:
                with contextlib.suppress(Exception):
                    self.storage.record_heartbeat(trial_id)

    # -- one trial --------------------------------------------------------------------

    def _run_trial(self, trial: optuna.Trial, gpu: str | None) -> optuna.trial.FrozenTrial | None:
        params = self.s.space.suggest(trial)
        out = self.s.output / "trials" / str(trial.number)
        env = {**self.s.job_env, **to_env(params)}
        spec = TrialSpec(
            name=f"{self.s.study_name}-{trial.number}",
            env=env,
            output_dir=out,
            data_dir=self.s.data_dir,
            gpu=gpu,
            labels={"study": self.s.study_name, "trial": str(trial.number)},
        )
        carried = self._carry_checkpoint(trial, out)
        trial.set_user_attr("output_dir", str(out))
        trial.set_user_attr("launcher", getattr(self.s.launcher, "name", "?"))
        if gpu is not None:
            trial.set_user_attr("gpu", gpu)
        log.info("trial %d: start %s", trial.number, _short(params))
        attempt = _Attempt(trial)
        code = LOST
        for n in range(self.s.retries + 1):
            trial.set_user_attr("attempts", n + 1)
            code, run = attempt.launch(self, spec)
            if code in (EXIT_STOPPED, LOST) and attempt.state is None and not self._stop.is_set():
                log.warning("trial %d: run ended with %s; retrying", trial.number, _why(code))
                continue
            if code == EXIT_BAD_CONFIG and carried:  # the job refused the carried checkpoint
                log.warning(
                    "trial %d: the carried checkpoint does not fit; starting over", trial.number
                )
                (out / CHECKPOINT).unlink(missing_ok=True)
                carried = False
                attempt.error = None
                continue
            break
        return self._record(trial, attempt, code, run)

    def _carry_checkpoint(self, trial: optuna.Trial, out: Path) -> bool:
        """A retry of a trial whose driver died resumes from that trial's checkpoint."""
        history = self.storage.get_trial_system_attrs(trial._trial_id).get("retry_history")
        if not history:
            return False
        source = self.s.output / "trials" / str(history[-1]) / CHECKPOINT
        target = out / CHECKPOINT
        if source.is_file() and not target.exists():
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            log.info("trial %d: resumes trial %d's checkpoint", trial.number, history[-1])
            return True
        return False

    def _record(
        self, trial: optuna.Trial, attempt: _Attempt, code: int, run: Run
    ) -> optuna.trial.FrozenTrial | None:
        tail = run.stderr_tail()
        trial.set_user_attr("exit_code", code)
        trial.set_user_attr("epochs", attempt.epochs)
        trial.set_user_attr("seconds", round(time.monotonic() - attempt.t0, 3))
        if attempt.launch_seconds is not None:
            trial.set_user_attr("launch_seconds", round(attempt.launch_seconds, 3))
        if run.log_path is not None:
            trial.set_user_attr("log", str(run.log_path))
        if tail:
            trial.set_user_attr("stderr", tail[-500:])
        if attempt.state == TrialState.PRUNED:
            self._upload(trial, run)
            frozen = self.study.tell(trial, state=TrialState.PRUNED)
            log.info("trial %d: pruned after %d epochs", trial.number, attempt.epochs)
            return frozen
        if code == 0 and attempt.val_acc is not None:
            trial.set_user_attr("val_acc", attempt.val_acc)
            self._upload(trial, run)
            frozen = self.study.tell(trial, attempt.val_acc)
            log.info("trial %d: val_acc %.4f", trial.number, attempt.val_acc)
            return frozen
        reason = attempt.reason or _why(code)
        trial.set_user_attr("fail_reason", reason)
        frozen = self.study.tell(trial, state=TrialState.FAIL)
        log.warning("trial %d: failed: %s%s", trial.number, reason, f" ({tail})" if tail else "")
        if self._stop.is_set() and attempt.interrupted:
            self.retry(self.study, frozen)  # stopped by us: its parameters run again later
        elif code in (EXIT_BAD_CONFIG, EXIT_NO_DATA):
            what = "rejected its configuration" if code == EXIT_BAD_CONFIG else "found no data"
            detail = attempt.error or tail or "see " + str(run.log_path)
            raise StudyStopped(
                code,
                f"trial {trial.number}: the job {what} ({detail}); every trial would fail "
                "the same way, so the study stopped.",
            )
        return frozen

    def _upload(self, trial: optuna.Trial, run: Run) -> None:
        out = self.s.output / "trials" / str(trial.number)
        for name in ARTIFACTS:
            path = out / name
            if path.is_file():
                with contextlib.suppress(Exception), _quiet_experimental():
                    upload_artifact(
                        artifact_store=self.artifacts, file_path=str(path), study_or_trial=trial
                    )


class _Attempt:
    """The state of one trial across its (re)launches: events seen, pruning, timing."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.t0 = time.monotonic()
        self.epochs = 0
        self.reported: set[int] = set()
        self.val_acc: float | None = None
        self.state: TrialState | None = None
        self.reason: str | None = None
        self.error: str | None = None
        self.interrupted = False
        self.launch_seconds: float | None = None

    def launch(self, driver: Driver, spec: TrialSpec) -> tuple[int, Run]:
        """Start one run, follow its events, return its exit code and the run."""
        started = time.monotonic()
        try:
            run = driver.s.launcher.start(spec)
        except Exception as exc:  # the launcher could not start it: a failed trial
            self.reason = f"the launcher could not start the run: {exc}"
            return LOST, _NotStarted()
        try:
            for event in _events(run, driver.s.trial_timeout, driver._stop):
                if self.launch_seconds is None:
                    self.launch_seconds = time.monotonic() - started
                if self._on_event(event):
                    run.stop(driver.s.stop_grace)
                    break
        except _Silent:
            self.reason = f"no event for {driver.s.trial_timeout:g} s; stopped"
            run.stop(driver.s.stop_grace)
        except _Interrupted:
            self.interrupted = True
            self.reason = "the driver was stopped"
            run.stop(driver.s.stop_grace)
        return run.wait(), run

    def _on_event(self, event: Mapping[str, Any]) -> bool:
        """Handle one event; True when the run must be stopped (pruned)."""
        kind = event.get("event")
        if kind == "epoch":
            epoch, acc = int(event["epoch"]), float(event["val_acc"])
            self.epochs = max(self.epochs, epoch)
            if epoch not in self.reported:  # a resumed run repeats nothing, but be safe
                self.reported.add(epoch)
                self.trial.report(acc, epoch)
                if self.trial.should_prune():
                    self.state = TrialState.PRUNED
                    return True
        elif kind == "done":
            self.val_acc = float(event["val_acc"])
        elif kind == "error":
            self.error = str(event.get("message", ""))
        return False


class _NotStarted:
    """Stands in for a run the launcher failed to start."""

    log_path = None

    def stderr_tail(self) -> str:
        return ""


class _Silent(Exception):
    """The run emitted nothing for the trial timeout."""


class _Interrupted(Exception):
    """The driver is stopping."""


def _events(run: Run, timeout: float, stop: threading.Event) -> Iterator[dict[str, Any]]:
    """Parse the run's stdout into events; raise _Silent after ``timeout`` s of silence."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        try:
            for line in run.lines():
                lines.put(line)
        finally:
            lines.put(None)

    threading.Thread(target=pump, daemon=True, name="pump").start()
    deadline = time.monotonic() + timeout
    while True:
        if stop.is_set():
            raise _Interrupted
        try:
            line = lines.get(timeout=min(1.0, max(0.01, deadline - time.monotonic())))
        except queue.Empty:
            if time.monotonic() >= deadline:
                raise _Silent from None
            continue
        if line is None:
            return
        deadline = time.monotonic() + timeout
        event = parse_event(line)
        if event is not None:
            yield event


def parse_event(line: str | bytes) -> dict[str, Any] | None:
    """One stdout line → an event dict, or None for a line that is not a v1 event."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def _why(code: int) -> str:
    return {
        0: "the job ended without a done event",
        EXIT_BAD_CONFIG: "bad configuration (exit 2)",
        EXIT_NO_DATA: "data unavailable or invalid (exit 3)",
        EXIT_DIVERGED: "training diverged (exit 4)",
        EXIT_STOPPED: "stopped by SIGTERM (exit 143)",
        137: "killed (exit 137)",
        LOST: "the run disappeared",
    }.get(code, f"exit {code}")


def _short(params: Mapping[str, Any]) -> str:
    return " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


@contextlib.contextmanager
def _quiet_experimental() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        yield
