"""Where trials run: the GPUs a driver may use (a fake ``nvidia-smi`` on PATH, a real process
printing what the real one prints), the ``DEVICE`` a search accepts, and a real local trial of
the real job placed on a GPU this machine does not have."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from search.errors import SettingsError
from search.gpus import check_device_env, misplaced, query_gpus, usable_gpus, visible_gpus
from search.settings import build_settings, parse_gpus
from tests.conftest import REPO
from tests.search.helpers import SMALL_JOB, clean_env, load

MACHINE = [("0", "GPU-0a1b"), ("1", "GPU-1c2d"), ("2", "GPU-2e3f"), ("3", "GPU-3a4b")]
"""Four GPUs as nvidia-smi lists them (index, UUID)."""


@pytest.fixture
def fake_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder first on PATH whose ``nvidia-smi`` answers the index,uuid query for
    :data:`MACHINE` (and fails on anything else, as an unknown query would)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    lines = "".join(f"{index}, {uuid}\\n" for index, uuid in MACHINE)
    script = folder / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--query-gpu=index,uuid" ]; then printf "' + lines + '"; exit 0; fi\n'
        "exit 6\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return folder


def test_detection_reads_nvidia_smi(fake_smi: Path) -> None:
    assert query_gpus() == MACHINE


@pytest.mark.parametrize(
    ("visible", "ids"),
    [
        (None, ["0", "1", "2", "3"]),  # unset: every GPU
        ("2,3", ["2", "3"]),  # nvidia-smi's numbering is kept
        ("3, 1", ["3", "1"]),
        ("GPU-2e3f,0", ["2", "0"]),  # a UUID, or a unique prefix of one
        ("GPU-1", ["1"]),
        ("", []),  # empty: no GPU
        ("-1", []),  # as CUDA: the list ends at the first entry naming no GPU
        ("1,7,2", ["1"]),
    ],
)
def test_the_drivers_cuda_visible_devices_bounds_its_gpus(visible: str | None, ids) -> None:
    assert visible_gpus(MACHINE, visible) == ids


def test_a_mig_instance_is_refused_in_one_sentence() -> None:
    with pytest.raises(SettingsError, match="names a MIG instance") as err:
        visible_gpus(MACHINE, "MIG-5f3e1d2c-0000")
    assert str(err.value).count(". ") == 0


def _usable(option: str | None, visible: str | None, launcher: str = "local") -> list[str]:
    environ = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    ids, check = usable_gpus(option, launcher, parse_gpus, environ, lambda: MACHINE)
    check()
    return ids


@pytest.mark.parametrize(
    ("option", "visible", "message"),
    [
        ("5", None, "--gpus names GPU 5, which this machine lacks; pass GPUs among those "
         "there are, in nvidia-smi's numbering: 0, 1, 2, 3."),
        ("0", "2,3", "--gpus names GPU 0, which CUDA_VISIBLE_DEVICES=2,3 hides; pass GPUs "
         "among those there are, in nvidia-smi's numbering: 2, 3."),
        ("0", "", "--gpus 0 names GPUs, but CUDA_VISIBLE_DEVICES is empty (no GPU); unset "
         "CUDA_VISIBLE_DEVICES or pass --gpus none."),
    ],
)  # fmt: skip
def test_gpus_the_driver_cannot_use_are_refused(option: str, visible, message: str) -> None:
    with pytest.raises(SettingsError) as err:
        _usable(option, visible)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("option", "visible", "ids"),
    [(None, "2,3", ["2", "3"]), ("3", "2,3", ["3"]), (None, "", []), ("none", "", [])],
)
def test_gpus_within_cuda_visible_devices_are_accepted(option, visible, ids) -> None:
    assert _usable(option, visible) == ids


def test_kubernetes_gpus_number_slots_and_are_taken_as_given() -> None:
    assert _usable("0,5", "", launcher="kubernetes") == ["0", "5"]


@pytest.mark.parametrize(
    ("device", "gpus", "refused"),
    [
        ("auto", True, False), ("cuda", True, False), ("cuda:0", True, False),
        ("cpu", True, True), ("cuda:1", True, True),
        ("auto", False, False), ("cpu", False, False), ("cuda", False, True),
        ("cuda:0", False, True),
    ],
)  # fmt: skip
def test_a_job_env_device_must_match_the_placement(device: str, gpus: bool, refused: bool):
    if not refused:
        check_device_env({"DEVICE": device}, gpus)
        return
    with pytest.raises(SettingsError, match=rf"^--job-env DEVICE={device} .*; drop it"):
        check_device_env({"DEVICE": device}, gpus)


@pytest.mark.parametrize(
    ("device", "gpu", "wrong"),
    [("cpu", None, False), ("cuda", "2", False), ("cuda:0", "2", False),
     ("cuda", None, True), ("cpu", "2", True), ("cuda:1", "1", True)],
)  # fmt: skip
def test_a_resolved_device_is_compared_with_the_placement(device, gpu, wrong: bool) -> None:
    assert (misplaced(device, gpu) is not None) is wrong


def test_settings_refuse_a_device_that_contradicts_the_detected_gpus(
    fake_smi: Path, tmp_path: Path
) -> None:
    options = {"launcher": "local", "output": tmp_path / "out", "job_env": ("DEVICE=cpu",)}
    with pytest.raises(SettingsError, match="DEVICE=cpu contradicts --gpus"):
        build_settings(options, print)
    settings = build_settings({**options, "gpus": "1,3", "job_env": ()}, print)
    assert list(settings.gpus) == ["1", "3"]


def _search(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m search run`` with the fake nvidia-smi first on PATH."""
    command = [sys.executable, "-m", "search", "run", "--launcher", "local", *args]
    command += ["--output", str(tmp_path / "out"), "--trials", "1", "--confirm", "0"]
    return subprocess.run(
        command,
        cwd=REPO,
        env=clean_env(PATH=os.environ["PATH"], **env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_cli_refuses_a_hidden_gpu_with_exit_2(fake_smi: Path, tmp_path: Path) -> None:
    proc = _search(tmp_path, "--gpus", "1", CUDA_VISIBLE_DEVICES="GPU-2e3f,3")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "search: --gpus names GPU 1, which CUDA_VISIBLE_DEVICES=GPU-2e3f,3 hides; pass GPUs "
        "among those there are, in nvidia-smi's numbering: 2, 3."
    ]
    assert not (tmp_path / "out" / "trials").exists()


def test_a_trial_placed_on_a_gpu_this_machine_lacks_fails_saying_what_to_fix(
    fake_smi: Path, tmp_path: Path, archives
) -> None:
    """nvidia-smi lists GPU 0 but CUDA finds none: the trial is told DEVICE=cuda, the real
    job refuses it (exit 2) and the study stops with its sentence, instead of training on
    the CPU while the search believes it used a GPU."""
    job = {**SMALL_JOB, "DATA_URL": archives["fastai"].as_uri(), "EPOCHS": "1"}
    job.pop("DEVICE")
    args = [arg for key, value in job.items() for arg in ("--job-env", f"{key}={value}")]
    proc = _search(tmp_path, *args, CUDA_VISIBLE_DEVICES="0")
    assert proc.returncode == 2, proc.stderr
    assert "DEVICE='cuda'" in proc.stderr  # the job's sentence: the value and the fix
    (trial,) = load(tmp_path / "out").trials
    assert trial.user_attrs["gpu"] == "0"
    assert trial.user_attrs["exit_code"] == 2
    assert "DEVICE='cuda'" in (Path(trial.user_attrs["output_dir"]) / "job.log").read_text()
