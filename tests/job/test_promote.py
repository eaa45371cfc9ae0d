"""Champion promotion: the lock and the atomic swap (on hand-made run folders whose champion
is judged by its recorded figure), then the fair decision in real `python -m job` runs: the
champion re-evaluated on the challenger's test split, the margin, a damaged champion."""

import json
import multiprocessing
import os
import re
import shutil
import time
from pathlib import Path

import pytest
import torch

from job.config import from_env
from job.contract import PROMOTED, ExitCode
from job.data import load_dataset
from job.errors import DeviceError
from job.plan import RunPlan
from job.promote import decide, promote, promote_run, recorded_val_acc
from tests.conftest import JobResult, job_env, run_job
from tests.job.pictures import cifar_pictures, regroup, write_folder


def _run_dir(root: Path, name: str, val_acc: float) -> Path:
    out = root / name
    out.mkdir(parents=True)
    (out / "model.pt").write_bytes(name.encode())
    (out / "metrics.json").write_text(json.dumps({"val_acc": val_acc}))
    return out


def _recorded(folder: Path) -> float:
    """A judge for hand-made folders: the champion's own recorded val_acc."""
    return json.loads((folder / "metrics.json").read_text())["val_acc"]


def _promote(out: Path, promote_dir: Path, val_acc: float, run_id: str) -> None:
    def record(decision: dict) -> None:
        (out / "metrics.json").write_text(json.dumps({"val_acc": val_acc, "promotion": decision}))

    promote(out, promote_dir, run_id, lambda: decide(promote_dir, val_acc, 0.0, _recorded), record)


@pytest.mark.parametrize(
    ("first", "second", "winner"), [(0.5, 0.6, "b"), (0.6, 0.5, "a"), (0.6, 0.6, "a")]
)
def test_only_a_strictly_better_run_replaces_the_champion(tmp_path, first, second, winner) -> None:
    promote_dir = tmp_path / "promote"
    _promote(_run_dir(tmp_path, "a", first), promote_dir, first, "a")
    _promote(_run_dir(tmp_path, "b", second), promote_dir, second, "b")
    assert (promote_dir / "champion" / "model.pt").read_bytes() == winner.encode()
    assert recorded_val_acc(promote_dir) == max(first, second)


def test_the_champion_carries_the_promotion_decision(tmp_path) -> None:
    promote_dir = tmp_path / "promote"
    _promote(_run_dir(tmp_path, "a", 0.7), promote_dir, 0.7, "a")
    metrics = json.loads((promote_dir / "champion" / "metrics.json").read_text())
    assert metrics["promotion"] == {
        "promoted": True,
        "val_acc": 0.7,
        "champion_val_acc": None,
        "champion_recorded_val_acc": None,
        "margin": 0.0,
        "reason": "there is no champion yet",
        "champion": str(promote_dir / "champion"),
    }


def test_concurrent_promotions_leave_the_best_whole_champion(tmp_path) -> None:
    promote_dir = tmp_path / "promote"
    scores = [0.31, 0.77, 0.52, 0.69, 0.12, 0.75]
    runs = [_run_dir(tmp_path, f"run{i}", s) for i, s in enumerate(scores)]
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_promote, args=(out, promote_dir, s, out.name))
        for out, s in zip(runs, scores, strict=True)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    champion = promote_dir / "champion"
    assert (champion / "model.pt").read_bytes() == b"run1"
    assert json.loads((champion / "metrics.json").read_text())["val_acc"] == 0.77
    assert not list((promote_dir / "runs").glob(".*staging"))


def test_a_failed_promotion_leaves_no_staging_and_records_no_promotion(tmp_path) -> None:
    from tests.tmpfs import small_volume

    out = _run_dir(tmp_path, "big", 0.9)
    (out / "model.pt").write_bytes(b"\0" * (2 << 20))  # 2 MiB: larger than the volume
    with small_volume(tmp_path / "promote", 1 << 20) as promote_dir:
        with pytest.raises(OSError):
            _promote(out, promote_dir, 0.9, "big")
        assert not list((promote_dir / "runs").glob("*"))
        assert not (promote_dir / "champion").exists()
    assert json.loads((out / "metrics.json").read_text())["promotion"]["promoted"] is False


def test_promote_run_records_the_decision_in_metrics_json_and_reports_it(tmp_path, capsys) -> None:
    promote_dir = tmp_path / "promote"
    out = _run_dir(tmp_path, "a", 0.7)
    metrics = {"val_acc": 0.7, "epochs": 2}
    promote_run(out, promote_dir, metrics, 0.01, _recorded)
    decision = {
        "promoted": True,
        "val_acc": 0.7,
        "champion_val_acc": None,
        "champion_recorded_val_acc": None,
        "margin": 0.01,
        "reason": "there is no champion yet",
        "champion": str(promote_dir / "champion"),
    }
    assert metrics == {"val_acc": 0.7, "epochs": 2, "promotion": decision}
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert json.loads((promote_dir / "champion" / "metrics.json").read_text()) == metrics
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"v": 1, "event": "promote", **decision}
    assert captured.err == "promotion: promoted: there is no champion yet.\n"
    (run,) = (promote_dir / "runs").iterdir()
    assert re.fullmatch(r"\d{8}T\d{6}Z-\d+", run.name)  # UTC time and pid


def test_promote_run_keeps_a_better_champion(tmp_path, capsys) -> None:
    promote_dir = tmp_path / "promote"
    _promote(_run_dir(tmp_path, "a", 0.8), promote_dir, 0.8, "a")
    metrics = {"val_acc": 0.6}
    promote_run(_run_dir(tmp_path, "b", 0.6), promote_dir, metrics, 0.0, _recorded)
    assert metrics["promotion"]["promoted"] is False
    assert metrics["promotion"]["champion_val_acc"] == 0.8
    assert capsys.readouterr().err == (
        "promotion: kept the champion: 0.6000 does not beat the champion's 0.8000 on this "
        "run's test split by more than the margin 0.\n"
    )
    assert recorded_val_acc(promote_dir) == 0.8


# --- the fair decision, in real runs ------------------------------------------------------------


def _train(archives, tmp: Path, promote_dir: Path, **settings: object) -> JobResult:
    env = job_env(tmp, DATA_URL=archives["python"].as_uri(), EPOCHS=1, PROMOTE_DIR=promote_dir)
    result = run_job({**env, **{k: str(v) for k, v in settings.items()}})
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


@pytest.fixture(scope="module")
def champion_dir(archives, tmp_path_factory) -> Path:
    """A PROMOTE_DIR whose champion is a real run evaluated on 100 of the 200 test images."""
    tmp = tmp_path_factory.mktemp("champion")
    _train(archives, tmp, tmp / "promote", TEST_LIMIT=100)
    return tmp / "promote"


@pytest.fixture
def promote_dir(champion_dir, tmp_path) -> Path:
    """A copy of the champion's PROMOTE_DIR for one test to change."""
    copy = tmp_path / "promote"
    shutil.copytree(champion_dir, copy, symlinks=True)
    return copy


def _decision(result: JobResult) -> dict:
    (event,) = result.of("promote")
    return event


def test_the_champion_is_re_evaluated_on_the_challengers_test_split(
    archives, tmp_path, promote_dir
) -> None:
    recorded = recorded_val_acc(promote_dir)
    # The same seed and training data train the very same model; only the test split differs.
    result = _train(archives, tmp_path, promote_dir, TEST_LIMIT=0, PROMOTE_MARGIN=0)
    decision = _decision(result)
    assert decision["champion_recorded_val_acc"] == recorded
    assert decision["champion_val_acc"] == decision["val_acc"]  # this run's split and code
    assert decision["promoted"] is False  # equal is not better
    metrics = json.loads((tmp_path / "output" / "metrics.json").read_text())
    assert metrics["promotion"] == {k: v for k, v in decision.items() if k not in ("v", "event")}
    assert metrics["n_test"] == 200


@pytest.mark.parametrize(
    ("margin", "promoted"), [(0, True), (0.05, True), (0.9, False)], ids=["0", "below", "above"]
)
def test_a_better_run_replaces_the_champion_only_by_more_than_the_margin(
    archives, tmp_path, promote_dir, margin, promoted
) -> None:
    before = os.readlink(promote_dir / "champion")
    result = _train(archives, tmp_path, promote_dir, EPOCHS=3, PROMOTE_MARGIN=margin)
    decision = _decision(result)
    gain = decision["val_acc"] - decision["champion_val_acc"]
    assert 0.05 < gain < 0.9  # three epochs against one: the figures straddle the margins
    assert (decision["promoted"], decision["margin"]) == (promoted, margin)
    assert (os.readlink(promote_dir / "champion") != before) is promoted


def test_a_champion_of_another_width_is_evaluated_at_its_own_width(
    archives, tmp_path, promote_dir
) -> None:
    result = _train(archives, tmp_path, promote_dir, MODEL_WIDTH=0.25, PROMOTE_MARGIN=0)
    decision = _decision(result)
    assert isinstance(decision["champion_val_acc"], float)
    assert "cannot be evaluated" not in decision["reason"]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _set(path: Path, key: str, value: object) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), key: value}))


def _set_model(path: Path, key: str, value: object | None) -> None:
    """Change (or, with None, remove) one entry of a model.pt."""
    saved = torch.load(path, weights_only=True)
    saved = {k: v for k, v in {**saved, key: value}.items() if v is not None}
    torch.save(saved, path)


def _bare(champion: Path) -> None:
    """Rewrite model.pt as the bare state_dict a run saved before models carried their info."""
    torch.save(
        torch.load(champion / "model.pt", weights_only=True)["state_dict"], champion / "model.pt"
    )


def _bare_and(then):
    return lambda c: (_bare(c), then(c))


DAMAGES = {
    "truncated model": (lambda c: _truncate(c / "model.pt"), "its model.pt cannot be loaded"),
    "missing model": (lambda c: (c / "model.pt").unlink(), "it has no model.pt"),
    "other width": (
        lambda c: _set_model(c / "model.pt", "model_width", 0.5),
        "its model.pt does not fit a ResNet9 of 10 classes at MODEL_WIDTH=0.5",
    ),
    "incomplete model": (
        lambda c: _set_model(c / "model.pt", "preprocess", None),
        "its model.pt cannot be loaded (ValueError: its description is incomplete",
    ),
    "missing folder": (shutil.rmtree, "its folder runs/"),
    "bare model, no config": (
        _bare_and(lambda c: (c / "config.json").unlink()),
        "it has no config.json",
    ),
    "bare model, other width": (
        _bare_and(lambda c: _set(c / "config.json", "model_width", 0.5)),
        "its model.pt does not fit a ResNet9 of 10 classes at MODEL_WIDTH=0.5",
    ),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_an_unusable_champion_is_reported_and_replaced(
    archives, tmp_path, promote_dir, damage
) -> None:
    spoil, why = DAMAGES[damage]
    champion = promote_dir / "champion"
    spoil(champion.resolve())
    before = os.readlink(champion)
    result = _train(archives, tmp_path, promote_dir, PROMOTE_MARGIN=0.9)
    decision = _decision(result)
    assert decision["promoted"] is True and decision["champion_val_acc"] is None
    assert decision["reason"].startswith(f"the champion cannot be evaluated: {why}")
    assert decision["reason"].endswith("; promoted in its place")
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("promotion:")]
    assert line == f"promotion: promoted: {decision['reason']}."
    assert os.readlink(champion) != before and (champion / "model.pt").is_file()


def test_a_champion_saved_before_models_carried_their_info_is_read_as_cifar10_at_32(
    archives, tmp_path, promote_dir
) -> None:
    _bare((promote_dir / "champion").resolve())
    result = _train(archives, tmp_path, promote_dir, TEST_LIMIT=100)  # the champion's split
    decision = _decision(result)
    assert decision["champion_val_acc"] == decision["champion_recorded_val_acc"]


def test_a_champion_of_another_image_size_is_evaluated_at_its_own(archives, tmp_path) -> None:
    promote_dir = tmp_path / "promote"
    first = _train(archives, tmp_path, promote_dir, IMAGE_SIZE=64, OUTPUT_DIR=tmp_path / "a")
    assert _decision(first)["promoted"] is True
    # The same DATA_DIR: the challenger's test split at 64 px comes from the champion's cache.
    second = _train(archives, tmp_path, promote_dir, IMAGE_SIZE=32, OUTPUT_DIR=tmp_path / "b")
    decision = _decision(second)
    assert decision["champion_val_acc"] == _decision(first)["val_acc"]


@pytest.mark.realdata
def test_a_champion_of_other_classes_is_kept(archives, real_cifar, tmp_path, promote_dir) -> None:
    champion = promote_dir / "champion"
    before = os.readlink(champion)
    groups = regroup(cifar_pictures(real_cifar, 20), 2)
    pictures = write_folder(tmp_path / "pictures", groups, size=32)
    result = _train(archives, tmp_path, promote_dir, DATA_URL=pictures.as_uri(), PROMOTE_MARGIN=0)
    decision = _decision(result)
    assert (decision["promoted"], decision["champion_val_acc"]) == (False, None)
    assert decision["reason"] == (
        "the champion is another task's: it classifies 10 classes (airplane, automobile, bird, "
        "…), this run's data 2 classes (airplane, automobile); it is kept — give this data its "
        f"own PROMOTE_DIR, or remove {champion} to replace it"
    )
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("promotion:")]
    assert line == f"promotion: kept the champion: {decision['reason']}."
    assert os.readlink(champion) == before


# --- a GPU that fails while the champion is evaluated -------------------------------------------

_ILLEGAL_ADDRESS = "CUDA error: an illegal memory access was encountered"


def _judge_failing_with(error: Exception, archives, tmp_path: Path, monkeypatch):
    """This run's judge (the champion's split: TEST_LIMIT=100), its evaluation raising
    ``error`` as a failed GPU raises it: no GPU here, so the function the champion's
    evaluation calls is replaced; loading the champion and its loader run for real."""
    import job.champion

    def evaluate(*args: object, **kwargs: object) -> tuple[float, float]:
        raise error

    monkeypatch.setattr(job.champion, "evaluate", evaluate)
    env = job_env(tmp_path, DATA_URL=archives["python"].as_uri(), EPOCHS=1, TEST_LIMIT=100)
    cfg = from_env(env)
    plan = RunPlan(cfg, torch.device("cpu"), "fp32", 1, started=time.perf_counter())
    return job.champion.judge(plan, load_dataset(cfg))


@pytest.mark.parametrize(
    "error",
    [torch.AcceleratorError(_ILLEGAL_ADDRESS), RuntimeError(_ILLEGAL_ADDRESS)],
    ids=["AcceleratorError", "RuntimeError"],
)
def test_a_failed_gpu_in_the_champions_evaluation_promotes_nothing(
    archives, tmp_path, promote_dir, monkeypatch, capsys, error
) -> None:
    judge = _judge_failing_with(error, archives, tmp_path, monkeypatch)
    link, runs = os.readlink(promote_dir / "champion"), sorted((promote_dir / "runs").iterdir())
    out = _run_dir(tmp_path, "run", 0.99)  # would beat any champion
    with pytest.raises(DeviceError) as failed:
        promote_run(out, promote_dir, {"val_acc": 0.99}, 0.0, judge)
    assert failed.value.exit_code == ExitCode.DEVICE_FAILED == 6
    assert failed.value.message.startswith(
        f"The GPU failed during the champion's evaluation on cpu ({_ILLEGAL_ADDRESS}); "
    )
    assert "nothing was promoted" in failed.value.message
    assert os.readlink(promote_dir / "champion") == link
    assert sorted((promote_dir / "runs").iterdir()) == runs
    assert json.loads((out / "metrics.json").read_text()) == {"val_acc": 0.99}  # no decision
    assert capsys.readouterr().out == ""  # no promote event


def test_a_champion_whose_model_fails_otherwise_is_still_unusable(
    archives, tmp_path, promote_dir, monkeypatch
) -> None:
    error = RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x64 and 32x10)")
    judge = _judge_failing_with(error, archives, tmp_path, monkeypatch)
    decision = decide(promote_dir, 0.5, 0.0, judge)
    assert decision["promoted"] is True
    assert decision["reason"].startswith(
        "the champion cannot be evaluated: its model fails on this run's images (RuntimeError"
    )


def test_a_failed_gpu_in_the_champions_evaluation_exits_6_with_the_runs_outputs(
    archives, tmp_path, promote_dir
) -> None:
    # The real `python -m job`, its champion's evaluation failing as a GPU's would: a
    # sitecustomize module (imported by Python at start-up) replaces the function it calls.
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import torch\nimport job.champion\n\n\ndef evaluate(*args, **kwargs):\n"
        f"    raise torch.AcceleratorError({_ILLEGAL_ADDRESS!r})\n\n\n"
        "job.champion.evaluate = evaluate\n"
    )
    link = os.readlink(promote_dir / "champion")
    env = job_env(tmp_path, DATA_URL=archives["python"].as_uri(), EPOCHS=1, PROMOTE_DIR=promote_dir)
    result = run_job({**env, "PYTHONPATH": str(hook)})
    assert result.code == ExitCode.DEVICE_FAILED, result.stderr
    (error,) = result.of("error")
    assert "during the champion's evaluation" in error["message"]
    assert _ILLEGAL_ADDRESS in error["message"] and "Traceback" not in result.stderr
    assert not result.of("promote") and os.readlink(promote_dir / "champion") == link
    out = tmp_path / "output"
    assert all((out / name).is_file() for name in PROMOTED)  # the run's own outputs stay
    assert "promotion" not in json.loads((out / "metrics.json").read_text())
