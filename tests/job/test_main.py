"""`python -m job --help` and `--variables` come from the contract (job/__main__.py); a SIGTERM
outside the training loop stops the run with the stage it interrupted (job/signals.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from job import signals
from job.contract import EXIT_MEANINGS, OUTPUTS, VARIABLES, ExitCode
from job.errors import StoppedError
from tests.conftest import REPO, JobResult, job_env, run_job


def _job(*args: str) -> JobResult:
    """``python -m job ARGS`` in this process's environment; its output is no event stream."""
    return run_job(None, *args, timeout=120, strict=False)


@pytest.fixture(scope="module")
def help_text() -> str:
    result = _job("--help")
    assert result.code == 0, result.stderr
    return " ".join(result.stdout.split())  # click wraps lines; compare word by word


def test_variables_prints_each_default_and_meaning_as_json() -> None:
    result = _job("--variables")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout) == {
        v.name: {"default": v.default, "help": v.help} for v in VARIABLES
    }


@pytest.mark.parametrize(("code", "meaning"), EXIT_MEANINGS.items(), ids=lambda x: str(x))
def test_help_lists_every_exit_code(help_text: str, code: int, meaning: str) -> None:
    assert f"{int(code)} {meaning}" in help_text


@pytest.mark.parametrize("name", OUTPUTS)
def test_help_lists_every_output(help_text: str, name: str) -> None:
    assert name in help_text


_NO_TORCH = """
import runpy, sys
sys.argv = ["job", "--help"]
try:
    runpy.run_module("job", run_name="__main__")
except SystemExit:
    pass
assert "torch" not in sys.modules, "--help loaded torch"
"""


def test_help_loads_no_torch() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _NO_TORCH], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


# -- SIGTERM outside the training loop -----------------------------------------------------


@pytest.fixture
def sigterm_handler() -> Iterator[None]:
    """The job's SIGTERM handler installed in this process, and the process's own restored."""
    before = signal.getsignal(signal.SIGTERM)
    signals.install()
    yield
    signal.signal(signal.SIGTERM, before)
    signals.set_stage(signals.BEFORE_TRAINING)
    signals._stop = False


@pytest.mark.parametrize(
    "stage",
    [signals.BEFORE_TRAINING, signals.WRITING_OUTPUTS, signals.PROMOTING, signals.EXITING],
)
def test_a_sigterm_outside_training_stops_with_the_stage_it_interrupted(
    sigterm_handler: None, stage: str
) -> None:
    signals.set_stage(stage)
    with pytest.raises(StoppedError) as stopped:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises at the next instruction of this thread
    assert stopped.value.message == f"Stopped by SIGTERM {stage}"
    assert stopped.value.exit_code == ExitCode.STOPPED


_LATE_THREAD = """
import os, sys, threading, time
from job.__main__ import main
def wait_for(flag):  # a thread the exit waits for, as for a checkpoint being written
    while not os.path.exists(flag):
        time.sleep(0.05)
threading.Thread(target=wait_for, args=(sys.argv[1],)).start()
main([])
"""


def test_a_sigterm_after_done_exits_143_with_its_sentence(archives, tmp_path: Path) -> None:
    env = job_env(tmp_path, DATA_URL=archives["fastai"].as_uri(), EPOCHS=1, TRAIN_LIMIT=128)
    flag = tmp_path / "thread-may-end"
    proc = subprocess.Popen(
        [sys.executable, "-c", _LATE_THREAD, str(flag)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line)["event"] == "done":
            break
    proc.send_signal(signal.SIGTERM)
    time.sleep(1)  # the signal is handled before the thread ends, wherever the exit was
    flag.touch()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.STOPPED, err
    assert "Traceback" not in err
    assert f"error: Stopped by SIGTERM {signals.EXITING}" in err
    assert json.loads(out.splitlines()[-1])["code"] == ExitCode.STOPPED
