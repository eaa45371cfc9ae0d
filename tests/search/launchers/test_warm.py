"""Warm starts: a trial forked from a warm process is started as a cold one would be.

Real processes and real signals: the stand-in job (:mod:`testkit.job`, plans ``report``,
``hold`` and ``kill``) reports what it was started with, and the real job runs on a small
generated archive.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from job.contract import CHECKPOINT, ExitCode
from search.launchers.base import TrialSpec
from search.launchers.local import WARM_SAFE, LocalLauncher
from tests.conftest import REPO, need
from tests.search.launchers.test_local import _alive

STANDIN = "testkit.job"
MODES = pytest.mark.parametrize("cold", [True, False], ids=["cold", "warm"])
TIMING = ("eval_seconds", "train_seconds", "images_per_sec")  # history.json's clock readings


@pytest.fixture(autouse=True)
def _warm_safe() -> None:
    need(WARM_SAFE, "warm starts need Linux (fork, PDEATHSIG, descriptors over a socket)")


@pytest.fixture
def launchers():
    """Make launchers from the repository root; their warm processes end with the test."""
    made: list[LocalLauncher] = []

    def make(cold: bool, **kw) -> LocalLauncher:
        kw.setdefault("module", STANDIN)
        launcher = LocalLauncher(cwd=REPO, cold_start=cold, **kw)
        made.append(launcher)
        return launcher

    yield make
    for launcher in made:
        launcher.close()


def _spec(tmp_path: Path, name: str = "t", **env: str) -> TrialSpec:
    return TrialSpec(name, env, tmp_path / name, tmp_path / "data")


def _report(run) -> dict:
    line = next(iter(run.lines()))
    assert run.wait() == 0, run.stderr_tail()
    return json.loads(line)


def _job_env(archive: Path, **extra: str) -> dict[str, str]:
    env = {"DATA_URL": archive.as_uri(), "DEVICE": "cpu", "MODEL_WIDTH": "0.125"}
    env |= {"TRAIN_LIMIT": "200", "TEST_LIMIT": "100", "PRECISION": "fp32", "SEED": "3"}
    return env | extra


@MODES
def test_the_trial_gets_its_environment_and_only_it(tmp_path, launchers, monkeypatch, cold):
    monkeypatch.setenv("EPOCHS", "99")  # a job variable in the driver's shell: never passed
    monkeypatch.setenv("SEARCH_STORAGE", "postgresql://user:secret@db/study")
    launcher = launchers(cold)
    spec = _spec(tmp_path, STANDIN_PLAN="report", SEED="7")
    run = launcher.start(spec)
    report = _report(run)
    assert run.warm_start is not cold
    assert report["env"] == launcher._env(spec, None)  # what the cold path builds, exactly
    assert "EPOCHS" not in report["env"] and "SEARCH_STORAGE" not in report["env"]
    assert report["env"]["SEED"] == "7"


def test_a_warm_trial_starts_as_a_cold_one(tmp_path, launchers) -> None:
    cold = _report(launchers(True).start(_spec(tmp_path, "c", STANDIN_PLAN="report")))
    warm_run = launchers(False).start(_spec(tmp_path, "w", STANDIN_PLAN="report"))
    warm = _report(warm_run)
    assert warm_run.warm_start
    same = ("argv", "path0", "cwd", "fds", "signals", "blocked", "stdin", "name", "cpus")
    assert {k: warm[k] for k in same} == {k: cold[k] for k in same}
    assert warm["name"] == "__main__" and warm["stdin"] == ""


@MODES
def test_the_trial_leads_its_own_process_group(tmp_path, launchers, cold) -> None:
    report = _report(launchers(cold).start(_spec(tmp_path, STANDIN_PLAN="report")))
    assert report["pgid"] == report["pid"] == report["sid"]
    assert report["pgid"] != os.getpgid(0)


@MODES
def test_stdout_is_read_and_stderr_goes_to_the_log(tmp_path, launchers, cold) -> None:
    run = launchers(cold).start(_spec(tmp_path, STANDIN_PLAN="report", STANDIN_HOLD="0.2"))
    assert json.loads(next(iter(run.lines())))["env"]["STANDIN_PLAN"] == "report"
    assert run.wait() == 0
    assert run.log_path == tmp_path / "t" / "job.log"
    assert run.log_path.read_text() == "working\n"
    assert run.stderr_tail() == "working"


@MODES
@pytest.mark.parametrize(("probe", "code"), [("report", 0), ("report", 3), ("kill", 137)])
def test_the_exit_code_reaches_the_driver(tmp_path, launchers, cold, probe, code) -> None:
    run = launchers(cold).start(_spec(tmp_path, STANDIN_PLAN=probe, STANDIN_EXIT=str(code)))
    list(run.lines())
    assert run.wait() == code
    assert run.wait() == code  # asked again: the same answer


@MODES
def test_stop_ends_the_run_and_its_process_group(tmp_path, launchers, cold) -> None:
    run = launchers(cold).start(_spec(tmp_path, STANDIN_PLAN="hold"))
    next(iter(run.lines()))
    grandchild = int((tmp_path / "t" / "child.pid").read_text())
    run.stop(grace=5)
    assert run.wait() == 143  # Python's default SIGTERM action: killed by signal 15
    assert not _alive(grandchild)


@MODES
def test_slots_keep_their_cores_and_threads(tmp_path, launchers, cold) -> None:
    cores = sorted(os.sched_getaffinity(0))
    need(len(cores) >= 2, "pinning two runs to disjoint cores needs 2 or more cores")
    launcher = launchers(cold, slots=2)
    for round_ in range(2):  # the second round reuses the warm processes
        runs = [
            launcher.start(
                _spec(tmp_path, f"t{round_}{i}", STANDIN_PLAN="report", STANDIN_HOLD="1")
            )
            for i in range(2)
        ]
        reports = [_report(run) for run in runs]
        per_slot = len(cores) // 2
        assert [len(r["cpus"]) for r in reports] == [per_slot, per_slot]
        assert not set(reports[0]["cpus"]) & set(reports[1]["cpus"])
        assert [r["threads"] for r in reports] == [str(per_slot)] * 2
        assert [run.warm_start for run in runs] == [not cold] * 2


def test_a_killed_warm_process_is_replaced(tmp_path, launchers) -> None:
    launcher = launchers(False)
    first = launcher.start(_spec(tmp_path, "a", STANDIN_PLAN="report"))
    _report(first)
    server = first.proc.server.proc
    server.kill()
    server.wait()
    second = launcher.start(_spec(tmp_path, "b", STANDIN_PLAN="report"))
    assert _report(second)["env"]["STANDIN_PLAN"] == "report"
    assert second.warm_start
    assert second.proc.server.proc.pid != server.pid


def test_a_warm_trial_whose_warm_process_dies_is_lost(tmp_path, launchers) -> None:
    from search.launchers.base import LOST

    launcher = launchers(False)
    run = launcher.start(_spec(tmp_path, STANDIN_PLAN="hold"))
    next(iter(run.lines()))
    run.proc.server.proc.kill()  # the trial dies with it (PDEATHSIG): relaunched as lost
    assert run.wait() == LOST


DRIVER = """
import json, sys, time
from pathlib import Path
from search.launchers.base import TrialSpec
from search.launchers.local import LocalLauncher
launcher = LocalLauncher(cwd=Path.cwd(), cold_start=sys.argv[1] == "cold", module=sys.argv[2])
out = Path(sys.argv[3])
run = launcher.start(TrialSpec("t", {"STANDIN_PLAN": "hold"}, out, out))
next(iter(run.lines()))
server = run.proc.server.proc.pid if run.warm_start else None
print(json.dumps({"trial": run.proc.pid, "server": server}), flush=True)
time.sleep(3600)
"""


@MODES
def test_the_trials_die_with_the_driver(tmp_path, cold) -> None:
    mode = "cold" if cold else "warm"
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, mode, STANDIN, str(tmp_path / "t")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert driver.stdout is not None
    pids = json.loads(driver.stdout.readline())
    grandchild = int((tmp_path / "t" / "child.pid").read_text())
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert not _alive(pids["trial"])
    if pids["server"] is not None:
        assert not _alive(pids["server"])
    os.kill(grandchild, signal.SIGKILL)  # not the launcher's to reap: the stand-in's own child


SLOTS_DRIVER = """
import json, sys, threading, time
from pathlib import Path
from search.launchers.base import TrialSpec
from search.launchers.local import LocalLauncher
launcher = LocalLauncher(cwd=Path.cwd(), slots=2, module=sys.argv[1])
out = Path(sys.argv[2])
def trial(i):  # a worker thread: it ends, its slot's warm process must not
    run = launcher.start(TrialSpec(str(i), {"STANDIN_PLAN": "report"}, out / str(i), out))
    list(run.lines())
    run.wait()
workers = [threading.Thread(target=trial, args=(i,)) for i in range(2)]
for worker in workers: worker.start()
for worker in workers: worker.join()
print(json.dumps([server.proc.pid for server in launcher.warm._idle]), flush=True)
time.sleep(3600)
"""


def _started(pid: int) -> float:
    """When process ``pid`` started, in seconds since boot (/proc/PID/stat, field 22)."""
    ticks = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    return int(ticks) / os.sysconf("SC_CLK_TCK")


def test_slots_start_together_and_die_with_the_driver(tmp_path) -> None:
    """Two slots asked for at once start their warm processes together (not one import after
    the other), outlive the worker threads that asked, and die when the driver is killed."""
    driver = subprocess.Popen(
        [sys.executable, "-c", SLOTS_DRIVER, STANDIN, str(tmp_path / "t")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert driver.stdout is not None
    servers = json.loads(driver.stdout.readline())
    assert len(servers) == 2 and all(_alive(pid) for pid in servers)
    first, second = sorted(_started(pid) for pid in servers)
    assert second - first < 1.0  # one after the other, they would be an import of torch apart
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert not any(_alive(pid) for pid in servers)


# -- the real job ------------------------------------------------------------------------------


@MODES
def test_sigterm_checkpoints_and_exits_143(tmp_path, launchers, archives, cold) -> None:
    run = launchers(cold, module="job").start(
        _spec(tmp_path, **_job_env(archives["python"], EPOCHS="30"))
    )
    lines = run.lines()  # kept open: the job still writes its error event when it stops
    for line in lines:
        if json.loads(line).get("event") == "epoch":
            break
    run.stop(grace=60)
    assert json.loads(list(lines)[-1])["code"] == ExitCode.STOPPED
    assert run.wait() == ExitCode.STOPPED
    assert (tmp_path / "t" / CHECKPOINT).is_file()


def test_bad_input_exits_2_with_the_same_words(tmp_path, launchers, archives) -> None:
    seen = []
    for cold in (True, False):
        env = _job_env(archives["python"], EPOCHS="many")
        run = launchers(cold, module="job").start(_spec(tmp_path, f"bad-{cold}", **env))
        events = [json.loads(line) for line in run.lines()]
        assert run.wait() == ExitCode.BAD_CONFIG
        seen.append((events, run.log_path.read_text()))
    assert seen[0] == seen[1]
    assert "EPOCHS='many' is invalid" in seen[0][1]


def test_the_same_trial_cold_and_warm_has_the_same_history(tmp_path, launchers, archives):
    histories = []
    for cold in (True, False):
        env = _job_env(archives["python"], EPOCHS="2")
        run = launchers(cold, module="job").start(_spec(tmp_path, f"run-{cold}", **env))
        list(run.lines())
        assert run.wait() == ExitCode.DONE, run.stderr_tail()
        assert run.warm_start is not cold
        history = json.loads((tmp_path / f"run-{cold}" / "history.json").read_text())
        histories.append([{k: v for k, v in h.items() if k not in TIMING} for h in history])
    assert histories[0] == histories[1]  # floats compared exactly: bit for bit
    assert len(histories[0]) == 3  # the evaluation before training and two epochs
