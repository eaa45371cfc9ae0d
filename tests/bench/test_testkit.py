"""testkit: the stand-in job speaks the contract's events and does what its plan says; the
shim makes ``python -m job`` the stand-in; the job runner parses events."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from job.contract import EVENT_VERSION, EVENTS, ExitCode
from testkit import REPO
from testkit import job as standin
from testkit.jobrun import clean_env, events, run_job
from testkit.postgres import Server, available
from tests.conftest import need


def _run(tmp: Path, *args: str, name: str = "7", **env: str) -> subprocess.CompletedProcess[str]:
    full = clean_env(OUTPUT_DIR=tmp / "trials" / name, EPOCHS=2, **env)
    cmd = [sys.executable, str(standin.PATH), *args]
    return subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=60)


def test_a_plan_maps_trials_to_behaviours() -> None:
    assert standin.parse_plan("0=exit4,1=preempt,*=done") == {
        "0": "exit4",
        "1": "preempt",
        "*": "done",
    }
    assert standin.parse_plan("report") == {"*": "report"}


def test_an_event_the_contract_does_not_declare_is_refused() -> None:
    with pytest.raises(ValueError, match="no field"):
        standin.emit("done", val_acc=0.5, nonsense=1)


def test_done_speaks_the_contracts_events_and_version(tmp_path: Path) -> None:
    proc = _run(tmp_path, "done")
    found = events(proc.stdout, strict=True)
    assert proc.returncode == 0, proc.stderr
    assert [e["event"] for e in found] == ["start", "epoch", "epoch", "done"]
    assert all(e["v"] == EVENT_VERSION for e in found)
    for e in found:  # every field the contract requires, none it lacks
        declared = EVENTS[e["event"]]
        assert set(declared.__required_keys__) <= set(e) <= set(declared.__annotations__)
    assert json.loads((tmp_path / "trials" / "7" / "result.json").read_text()) == {
        "val_acc": found[-1]["val_acc"]
    }


@pytest.mark.parametrize(
    ("plan", "code", "reason"),
    [("7=exit5-memory", 5, "memory"), ("memory", 5, "memory"), ("*=exit4", 4, None)],
)
def test_a_planned_failure_exits_with_its_code(
    tmp_path: Path, plan: str, code: int, reason: str | None
) -> None:
    proc = _run(tmp_path, plan)
    error = events(proc.stdout)[-1]
    assert proc.returncode == code
    assert (error["event"], error["code"], error.get("reason")) == ("error", code, reason)


def test_preempt_stops_first_and_finishes_when_rerun(tmp_path: Path) -> None:
    assert _run(tmp_path, STANDIN_PLAN="preempt").returncode == ExitCode.STOPPED
    assert _run(tmp_path, STANDIN_PLAN="preempt").returncode == 0


def test_learn_peaks_at_the_tutorials_recipe(tmp_path: Path) -> None:
    best = events(_run(tmp_path, "learn", MAX_LR="0.01").stdout)[-1]["val_acc"]
    worse = events(_run(tmp_path, "learn", name="8", MAX_LR="0.1").stdout)[-1]["val_acc"]
    assert best > worse


def test_report_says_how_it_was_started(tmp_path: Path) -> None:
    proc = _run(tmp_path, STANDIN_PLAN="report", STANDIN_EXIT="3")
    report = json.loads(proc.stdout.splitlines()[0])
    assert proc.returncode == 3
    assert report["env"]["STANDIN_PLAN"] == "report" and report["name"] == "__main__"


def test_a_second_run_in_a_folder_in_use_is_refused(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    first = subprocess.Popen(
        [sys.executable, str(standin.PATH), "hang"],
        env=clean_env(OUTPUT_DIR=tmp_path / "t", STANDIN_LEDGER=ledger),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert first.stdout is not None and "start" in first.stdout.readline()
    second = subprocess.run(
        [sys.executable, str(standin.PATH), "done"],
        env=clean_env(OUTPUT_DIR=tmp_path / "t", STANDIN_LEDGER=ledger),
        capture_output=True,
        text=True,
    )
    first.terminate()
    assert first.wait() == ExitCode.STOPPED  # SIGTERM ends it as it ends the job
    assert second.returncode == 1
    records = [json.loads(p.read_text()) for p in ledger.glob("*.json")]
    assert sorted(bool(r.get("shared")) for r in records) == [False, True]


def test_the_shim_makes_python_m_job_the_stand_in(tmp_path: Path) -> None:
    folder = standin.shim(tmp_path / "shim")
    env = clean_env(OUTPUT_DIR=tmp_path / "out", STANDIN_PLAN="done", PYTHONPATH=REPO)
    check = "import job.contract as c; print(c.__file__)"
    contract = subprocess.run(
        [sys.executable, "-c", check], cwd=folder, env=env, capture_output=True, text=True
    )
    result = run_job(env, cwd=folder, timeout=120)
    assert result.code == 0, result.stderr
    assert result.events[-1]["event"] == "done"
    assert contract.stdout.strip() == str(REPO / "job" / "contract.py")  # the real one


def test_strict_events_refuse_a_line_that_is_not_one() -> None:
    assert events('{"v": 1}\nnoise\n') == [{"v": 1}]
    with pytest.raises(ValueError):
        events('{"v": 1}\nnoise\n', strict=True)


def test_postgres_server_stops_and_starts(tmp_path: Path) -> None:
    found, why = available()
    need(found is not None, why)
    import psycopg2

    with Server() as server:
        url = server.url().replace("+psycopg2", "")
        psycopg2.connect(url).close()
        server.stop()
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(url)
        server.start()
        psycopg2.connect(url).close()
        assert "PostgreSQL" in server.version()
    assert not server.root.exists()
