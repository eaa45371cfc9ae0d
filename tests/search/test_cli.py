"""The CLI rejects bad input with exit 2 and one sentence, before any trial runs."""

from __future__ import annotations

import socket

import pytest

from search.exits import COMMAND_EXITS, DRIVER_EXIT_MEANINGS, DriverExit, epilog
from search.settings import build_settings
from search.study import open_study
from tests.conftest import REPO
from tests.search.helpers import load, search_cli


@pytest.mark.parametrize(
    ("args", "space", "message"),
    [
        (["--launcher", "slurm"], None, "'slurm' is not one of"),
        (["--job-env", "EPOCHS"], None, "is not KEY=VALUE"),
        (["--job-env", "=3"], None, "is not KEY=VALUE"),
        (["--job-env", "EPOCH=3"], None, "EPOCH is not a job variable"),
        (["--job-env", "OUTPUT_DIR=/tmp/x"], None, "set per trial by the search"),
        (["--job-env", "MAX_LR=0.1"], None, "tuned by the search space"),
        (["--trials", "0"], None, "--trials"),
        (["--gpus", "a,b"], None, "not a comma-separated list"),
        (["--gpus", "none", "--trials-per-gpu", "2"], None, "needs GPUs"),
        (["--gpus", "0", "--parallel", "3"], None, "exceeds 1 GPU(s) x --trials-per-gpu 1"),
        (["--gpu-resource", "nvidia.com/mig-1g.10gb"], None, "--launcher kubernetes only"),
        (
            ["--launcher", "kubernetes", "--gpus", "0", "--trials-per-gpu", "2"],
            None,
            "needs a shared GPU resource",
        ),
        (["--storage", "postgresql://u:pw@host:notaport/db"], None, "not a valid SQLAlchemy URL"),
        ([], "momentum: {low: 0.1, high: 0.9}\n", "unknown parameter 'momentum'"),
        ([], "max_lr: {low: 0.1, high: 0.01, log: true}\n", "empty range"),
    ],
)
def test_bad_run_arguments_exit_2_with_one_sentence(tmp_path, args, space, message) -> None:
    if space is not None:
        (tmp_path / "space.yaml").write_text(space)
        args = [*args, "--space", str(tmp_path / "space.yaml")]
    proc = search_cli("run", "--output", str(tmp_path / "out"), "--launcher", "local", *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "trials").exists()


@pytest.mark.parametrize("command", ["best", "report", "dashboard"])
def test_commands_on_a_missing_study_exit_2(tmp_path, command: str) -> None:
    proc = search_cli(command, "--output", str(tmp_path / "nothing"))
    assert proc.returncode == 2
    assert "no study database" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_help_lists_the_commands() -> None:
    proc = search_cli("--help")
    assert proc.returncode == 0
    for command in ("run", "best", "report", "dashboard"):
        assert command in proc.stdout


def test_an_unreachable_database_exits_6_with_one_sentence_and_no_password(tmp_path) -> None:
    password = "Hunter2-Secret-77"
    port = _closed_port()
    url = f"postgresql://optuna:{password}@127.0.0.1:{port}/optuna"
    output = tmp_path / "out"
    proc = search_cli(
        "run",
        "--launcher",
        "local",
        "--output",
        str(output),
        "--storage",
        url,
        "--storage-retry",
        "1",
    )
    assert proc.returncode == 6, proc.stderr
    # A notice when the retrying starts, then the one sentence that ends the run.
    waiting, sentence = proc.stderr.strip().splitlines()
    assert "retrying for up to 1 s" in waiting
    assert f"127.0.0.1:{port}" in sentence
    assert "could not be reached for 1 s" in sentence
    assert "Traceback" not in proc.stderr
    written = [p.read_bytes() for p in output.rglob("*") if p.is_file()]
    for text in (proc.stdout.encode(), proc.stderr.encode(), *written):
        assert password.encode() not in text


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket is closed


@pytest.mark.parametrize("command", [None, *COMMAND_EXITS])
def test_help_ends_with_the_commands_exit_codes(command: str | None) -> None:
    proc = search_cli(*([command] if command else []), "--help")
    assert proc.returncode == 0, proc.stderr
    tail = proc.stdout[proc.stdout.rindex("Exit codes:") :]
    shown = [int(line.split()[0]) for line in tail.splitlines()[1:] if line[:7].strip()]
    codes = tuple(DriverExit) if command is None else COMMAND_EXITS[command]
    assert shown == [int(code) for code in codes]
    assert " ".join(tail.split()) == " ".join(epilog(command).lstrip("\b").split())


def test_every_driver_exit_code_has_a_meaning() -> None:
    assert set(DRIVER_EXIT_MEANINGS) == set(DriverExit)


def test_docs_search_md_lists_the_exit_codes_help_shows() -> None:
    doc = (REPO / "docs" / "search.md").read_text()
    section = doc[doc.index("\n## Exit codes\n") + len("\n## Exit codes\n") :]
    rows = {}
    for line in section.splitlines():
        if line.startswith("## "):
            break
        if line.startswith("| ") and not line.startswith("| code"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[int(cells[0])] = (cells[1].strip("`"), cells[2], cells[3])
    assert rows == {
        int(code): (code.name, DRIVER_EXIT_MEANINGS[code], _commands(code)) for code in DriverExit
    }


def _commands(code: DriverExit) -> str:
    return ", ".join(f"`{name}`" for name, codes in COMMAND_EXITS.items() if code in codes)


def test_a_study_started_with_other_settings_refuses_the_run_and_writes_nothing(
    tmp_path,
) -> None:
    out = tmp_path / "out"
    options = {"launcher": "local", "gpus": "none", "output": out, "job_env": ("EPOCHS=4",)}
    out.mkdir(parents=True)
    queued = open_study(build_settings(options, print), print).study.trials  # the baseline
    before = sorted(p.name for p in out.iterdir())
    proc = search_cli(
        "run", "--launcher", "local", "--gpus", "none", "--output", str(out), "--trials", "2"
    )
    assert proc.returncode == DriverExit.BAD_INPUT, proc.stderr
    assert proc.stderr.startswith(
        "search: the study 'resnet-job' was started with EPOCHS=4, not EPOCHS=8; "
    )
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == before
    assert load(out).trials == queued


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- {momentum: 0.9}\n", "sets 'momentum', which the search space does not tune"),
        ("- {max_lr: 5}\n", "sets max_lr=5, outside the space's max_lr"),
        ("{max_lr: 0.01}\n", "must be a list of configurations"),
    ],
)
def test_a_bad_enqueue_file_exits_2_with_one_sentence(tmp_path, text: str, message: str) -> None:
    (tmp_path / "known.yaml").write_text(text)
    out = tmp_path / "out"
    proc = search_cli(
        "run",
        "--launcher",
        "local",
        "--output",
        str(out),
        "--enqueue",
        str(tmp_path / "known.yaml"),
    )
    assert proc.returncode == DriverExit.BAD_INPUT, proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not out.exists()
