import json
import multiprocessing
import re
from pathlib import Path

import pytest

from job.promote import champion_val_acc, promote, promote_run


def _run_dir(root: Path, name: str, val_acc: float) -> Path:
    out = root / name
    out.mkdir(parents=True)
    (out / "model.pt").write_bytes(name.encode())
    (out / "metrics.json").write_text(json.dumps({"val_acc": val_acc}))
    return out


def _promote(out: Path, promote_dir: Path, val_acc: float, run_id: str) -> None:
    def record(decision: dict) -> None:
        (out / "metrics.json").write_text(json.dumps({"val_acc": val_acc, "promotion": decision}))

    promote(out, promote_dir, val_acc, run_id, record)


@pytest.mark.parametrize(
    ("first", "second", "winner"), [(0.5, 0.6, "b"), (0.6, 0.5, "a"), (0.6, 0.6, "a")]
)
def test_only_a_strictly_better_run_replaces_the_champion(tmp_path, first, second, winner) -> None:
    promote_dir = tmp_path / "promote"
    _promote(_run_dir(tmp_path, "a", first), promote_dir, first, "a")
    _promote(_run_dir(tmp_path, "b", second), promote_dir, second, "b")
    assert (promote_dir / "champion" / "model.pt").read_bytes() == winner.encode()
    assert champion_val_acc(promote_dir) == max(first, second)


def test_the_champion_carries_the_promotion_decision(tmp_path) -> None:
    promote_dir = tmp_path / "promote"
    _promote(_run_dir(tmp_path, "a", 0.7), promote_dir, 0.7, "a")
    metrics = json.loads((promote_dir / "champion" / "metrics.json").read_text())
    assert metrics["promotion"] == {
        "promoted": True,
        "val_acc": 0.7,
        "champion_val_acc": None,
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
    promote_run(out, promote_dir, metrics)
    decision = {
        "promoted": True,
        "val_acc": 0.7,
        "champion_val_acc": None,
        "champion": str(promote_dir / "champion"),
    }
    assert metrics == {"val_acc": 0.7, "epochs": 2, "promotion": decision}
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert json.loads((promote_dir / "champion" / "metrics.json").read_text()) == metrics
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"v": 1, "event": "promote", **decision}
    assert captured.err == "promotion: promoted (this run 0.7000, champion None)\n"
    (run,) = (promote_dir / "runs").iterdir()
    assert re.fullmatch(r"\d{8}T\d{6}Z-\d+", run.name)  # UTC time and pid


def test_promote_run_keeps_a_better_champion(tmp_path, capsys) -> None:
    promote_dir = tmp_path / "promote"
    _promote(_run_dir(tmp_path, "a", 0.8), promote_dir, 0.8, "a")
    metrics = {"val_acc": 0.6}
    promote_run(_run_dir(tmp_path, "b", 0.6), promote_dir, metrics)
    assert metrics["promotion"]["promoted"] is False
    assert metrics["promotion"]["champion_val_acc"] == 0.8
    assert (
        capsys.readouterr().err == "promotion: kept the champion (this run 0.6000, champion 0.8)\n"
    )
    assert champion_val_acc(promote_dir) == 0.8
