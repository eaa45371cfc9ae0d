"""`python -m job` end to end, as real subprocesses on small generated archives."""

import dataclasses
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from tests.conftest import OUTPUTS, job_env, run_job, start_job


def _history(output: Path) -> list[dict]:
    """history.json without the wall-clock timings, which no two runs share."""
    timing = {"train_seconds", "eval_seconds", "images_per_sec"}
    history = json.loads((output / "history.json").read_text())
    return [{k: v for k, v in h.items() if k not in timing} for h in history]


@pytest.mark.parametrize("layout", ["fastai", "python"])
def test_run_over_http_writes_every_output(archives, tmp_path, http_server, layout) -> None:
    url = http_server(archives[layout].parent) + "/" + archives[layout].name
    result = run_job(job_env(tmp_path, DATA_URL=url, EPOCHS=2))
    assert result.code == 0, result.stderr
    assert [e["event"] for e in result.events] == ["start", "epoch", "epoch", "done"]
    assert all(e["v"] == 1 for e in result.events)
    out = tmp_path / "output"
    assert all((out / name).is_file() and (out / name).stat().st_size > 0 for name in OUTPUTS)
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert "train_loss" not in history[0] and len(history[1]["lrs"]) == 7  # ceil(400/64)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data_layout"] == layout and metrics["epochs"] == 2
    assert metrics["val_acc"] == result.of("done")[0]["val_acc"] == history[-1]["val_acc"]
    for png in ("accuracy.png", "losses.png", "lrs.png", "samples.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_history_json_entries_are_the_contracts_records(archives, tmp_path) -> None:
    from job.records import Evaluation, TrainedEpoch, record_from_json

    result = run_job(job_env(tmp_path, DATA_URL=archives["python"].as_uri(), EPOCHS=2))
    assert result.code == 0, result.stderr
    out = tmp_path / "output"
    history = json.loads((out / "history.json").read_text())
    records = [record_from_json(entry) for entry in history]
    assert [type(r) for r in records] == [Evaluation, TrainedEpoch, TrainedEpoch]
    for entry, record in zip(history, records, strict=True):
        fields = [f.name for f in dataclasses.fields(record)]
        assert list(entry) == fields and record.to_json() == entry
    # The checkpoint's history holds the same plain dicts (its format is unchanged).
    assert torch.load(out / "checkpoint.pt", weights_only=True)["history"] == history
    for event, record in zip(result.of("epoch"), records[1:], strict=True):
        assert (event["epoch"], event["val_acc"], event["lr"]) == (
            record.epoch,
            record.val_acc,
            record.lrs[-1],
        )
        assert event["seconds"] == record.train_seconds + record.eval_seconds
    progress = [line for line in result.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in progress] == ["1/2", "2/2"]
    assert all("img/s  ETA " in line for line in progress)


def test_epoch_events_carry_the_contract_fields(archives, tmp_path) -> None:
    result = run_job(job_env(tmp_path, DATA_URL=archives["fastai"].as_uri(), EPOCHS=1))
    (epoch,) = result.of("epoch")
    for key in ("epoch", "epochs", "train_loss", "val_loss", "val_acc", "lr", "seconds"):
        assert key in epoch
    assert (epoch["epoch"], epoch["epochs"]) == (1, 1)


def test_model_learns_far_above_chance(archives, tmp_path) -> None:
    result = run_job(job_env(tmp_path, DATA_URL=archives["fastai"].as_uri(), EPOCHS=3))
    assert result.code == 0, result.stderr
    assert result.of("done")[0]["val_acc"] > 0.6  # chance is 0.1


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_same_seed_gives_identical_history_on_cpu(archives, tmp_path, precision) -> None:
    url = archives["python"].as_uri()
    for name in ("a", "b"):
        env = job_env(tmp_path / name, DATA_URL=url, EPOCHS=2, SEED=7, PRECISION=precision)
        assert run_job(env).code == 0
    assert _history(tmp_path / "a" / "output") == _history(tmp_path / "b" / "output")


@pytest.mark.parametrize("precision", ["auto", "fp32", "bf16"])
def test_resolved_precision_is_in_the_start_event_config_and_metrics(
    archives, tmp_path, precision
) -> None:
    from job.cpuinfo import native_bf16

    expected = ("bf16" if native_bf16() else "fp32") if precision == "auto" else precision
    env = job_env(tmp_path, DATA_URL=archives["fastai"].as_uri(), EPOCHS=1, PRECISION=precision)
    result = run_job(env)
    assert result.code == 0, result.stderr
    out = tmp_path / "output"
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert (config["precision"], config["resolved_precision"]) == (precision, expected)
    assert result.of("start")[0]["precision"] == metrics["precision"] == expected


def test_saved_weights_load_into_the_model(archives, tmp_path) -> None:
    from job.model import ResNet9

    assert run_job(job_env(tmp_path, DATA_URL=archives["fastai"].as_uri(), EPOCHS=1)).code == 0
    state = torch.load(tmp_path / "output" / "model.pt", weights_only=True)
    ResNet9(10, width=0.125).load_state_dict(state["state_dict"])


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        ({"EPOCHS": "abc"}, "EPOCHS='abc'"),
        ({"MAX_LR": "-1"}, "MAX_LR='-1'"),
        ({"BATCH_SIZE": "0"}, "BATCH_SIZE='0'"),
        ({"PRECISION": "fp8"}, "PRECISION='fp8'"),
        ({"MODEL_WIDTH": "0"}, "MODEL_WIDTH='0'"),
        pytest.param(
            {"DEVICE": "cuda"},
            "DEVICE='cuda'",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present"),
        ),
    ],
)
def test_bad_configuration_exits_2_with_one_sentence(tmp_path, settings, names) -> None:
    result = run_job(job_env(tmp_path, **settings))
    assert result.code == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert names in line
    assert [e["event"] for e in result.events] == ["error"]
    assert result.events[0]["code"] == 2


@pytest.mark.parametrize("problem", ["missing", "not-found", "sha256"])
def test_data_problems_exit_3(archives, tmp_path, http_server, problem) -> None:
    settings = {"DATA_URL": (tmp_path / "missing.tgz").as_uri()}
    if problem == "not-found":
        settings["DATA_URL"] = http_server(tmp_path) + "/missing.tgz"
    elif problem == "sha256":
        settings = {"DATA_URL": archives["fastai"].as_uri(), "DATA_SHA256": "0" * 64}
    result = run_job(job_env(tmp_path, **settings))
    assert result.code == 3
    assert "Traceback" not in result.stderr
    assert settings["DATA_URL"] in result.of("error")[0]["message"]
    assert not (tmp_path / "output" / "metrics.json").exists()


def test_non_finite_loss_exits_4_naming_epoch_and_step(archives, tmp_path) -> None:
    env = job_env(
        tmp_path, DATA_URL=archives["fastai"].as_uri(), OPTIMIZER="sgd", MAX_LR="1e12", GRAD_CLIP=0
    )
    result = run_job(env)
    assert result.code == 4, result.stderr
    assert "epoch 1, step" in result.of("error")[0]["message"]
    assert "Traceback" not in result.stderr


def test_concurrent_jobs_on_an_empty_data_dir_download_and_decode_once(
    archives, tmp_path, http_server
) -> None:
    url = http_server(archives["fastai"].parent) + "/" + archives["fastai"].name
    procs = []
    for i in range(3):
        env = job_env(tmp_path, DATA_URL=url, EPOCHS=1, OUTPUT_DIR=tmp_path / f"out{i}")
        env["DATA_DIR"] = str(tmp_path / "shared-data")
        procs.append(start_job(env))
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert sum("decoding" in err for _, err in outputs) == 1
    assert len(list((tmp_path / "shared-data" / "downloads").iterdir())) == 1


# --- SIGTERM, checkpoints and resume ------------------------------------------------------


def _wait_for_epoch(proc: subprocess.Popen, epoch: int) -> list[dict]:
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1].get("event") == "epoch" and events[-1]["epoch"] == epoch:
            return events
    raise AssertionError(f"job ended before epoch {epoch}: {proc.wait()} {proc.stderr.read()}")


def test_sigterm_checkpoints_and_resume_matches_an_uninterrupted_run(archives, tmp_path) -> None:
    url = archives["fastai"].as_uri()
    settings = {"DATA_URL": url, "EPOCHS": 4, "SEED": 3, "BATCH_SIZE": 16}
    reference = run_job(job_env(tmp_path / "ref", **settings))
    assert reference.code == 0, reference.stderr

    env = job_env(tmp_path / "cut", **settings)
    proc = start_job(env)
    _wait_for_epoch(proc, 1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    error = [json.loads(line) for line in out.splitlines()][-1]
    assert error["event"] == "error" and error["code"] == 143
    ckpt = torch.load(tmp_path / "cut" / "output" / "checkpoint.pt", weights_only=True)
    assert 1 <= ckpt["epoch"] < 4

    resumed = run_job(env)
    assert resumed.code == 0, resumed.stderr
    assert resumed.of("epoch")[0]["epoch"] == ckpt["epoch"] + 1
    metrics = json.loads((tmp_path / "cut" / "output" / "metrics.json").read_text())
    assert metrics["resumed_from"] == ckpt["epoch"]
    assert _history(tmp_path / "cut" / "output") == _history(tmp_path / "ref" / "output")


def test_sigterm_before_training_exits_143_promptly(archives, tmp_path) -> None:
    proc = start_job(job_env(tmp_path, DATA_URL=archives["fastai"].as_uri()))
    first = json.loads(proc.stdout.readline())
    assert first["event"] == "start"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err


def _files(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in OUTPUTS}


def test_a_finished_run_of_another_configuration_is_set_aside_whole(archives, tmp_path) -> None:
    url = archives["fastai"].as_uri()
    assert run_job(job_env(tmp_path, DATA_URL=url, EPOCHS=1)).code == 0
    out = tmp_path / "output"
    first = _files(out)

    result = run_job(job_env(tmp_path, DATA_URL=url, EPOCHS=1, MAX_LR=0.02))
    assert result.code == 0, result.stderr
    (kept,) = (out / "previous").iterdir()
    assert _files(kept) == first  # every output of the first run, byte for byte
    (line,) = [line for line in result.stderr.splitlines() if "previous" in line]
    assert "MAX_LR 0.01 → 0.02" in line and str(kept) in line
    assert json.loads((out / "config.json").read_text())["max_lr"] == 0.02
    assert json.loads((out / "metrics.json").read_text())["resumed_from"] == 0


def test_a_finished_run_of_the_same_configuration_is_not_set_aside(archives, tmp_path) -> None:
    env = job_env(tmp_path, DATA_URL=archives["fastai"].as_uri(), EPOCHS=1)
    assert run_job(env).code == 0
    again = run_job(env)
    assert again.code == 0, again.stderr
    assert not (tmp_path / "output" / "previous").exists()
    assert json.loads((tmp_path / "output" / "metrics.json").read_text())["resumed_from"] == 1


def test_an_unfinished_run_of_another_configuration_is_refused(archives, tmp_path) -> None:
    url = archives["fastai"].as_uri()
    settings = {"DATA_URL": url, "EPOCHS": 4, "BATCH_SIZE": 16}
    proc = start_job(job_env(tmp_path, **settings))
    _wait_for_epoch(proc, 1)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 143
    out = tmp_path / "output"
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    result = run_job(job_env(tmp_path, **settings, MAX_LR=0.02))
    assert result.code == 2
    message = result.of("error")[0]["message"]
    assert "unfinished run of a different configuration (MAX_LR 0.01 → 0.02)" in message
    assert "rerun with its settings" in message and "Traceback" not in result.stderr
    # Refused before anything was written: the stopped run can still be finished.
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert run_job(job_env(tmp_path, **settings)).code == 0


def test_a_move_cut_short_is_finished_by_the_next_run(archives, tmp_path) -> None:
    from job.contract import CHECKPOINT, METRICS_JSON

    url = archives["fastai"].as_uri()
    assert run_job(job_env(tmp_path, DATA_URL=url, EPOCHS=1)).code == 0
    out = tmp_path / "output"
    first = _files(out)
    staging = out / "previous" / ".moving"  # as a SIGKILL after the first rename leaves it
    staging.mkdir(parents=True)
    (out / CHECKPOINT).rename(staging / CHECKPOINT)

    result = run_job(job_env(tmp_path, DATA_URL=url, EPOCHS=1, MAX_LR=0.02))
    assert result.code == 0, result.stderr
    (kept,) = (out / "previous").iterdir()
    assert kept.name != ".moving" and _files(kept) == first
    assert json.loads((out / METRICS_JSON).read_text())["resumed_from"] == 0


# --- champion promotion ---------------------------------------------------------------------


def test_first_run_becomes_the_champion(archives, tmp_path) -> None:
    promote = tmp_path / "champion-dir"
    result = run_job(
        job_env(tmp_path, DATA_URL=archives["fastai"].as_uri(), EPOCHS=1, PROMOTE_DIR=promote)
    )
    assert result.code == 0, result.stderr
    (event,) = result.of("promote")
    assert event["promoted"] is True and event["champion_val_acc"] is None
    assert event["reason"] == "there is no champion yet"
    champion = json.loads((promote / "champion" / "metrics.json").read_text())
    assert champion["val_acc"] == event["val_acc"]
    assert champion["promotion"]["promoted"] is True
    assert (promote / "champion" / "model.pt").is_file()


def test_a_run_that_does_not_beat_the_champion_is_not_promoted(archives, tmp_path) -> None:
    promote = tmp_path / "champion-dir"
    env = job_env(tmp_path, DATA_URL=archives["fastai"].as_uri(), EPOCHS=1, PROMOTE_DIR=promote)
    assert run_job(env).code == 0
    first = os.readlink(promote / "champion")
    # The same recipe in a new OUTPUT_DIR trains the same model: equal is not better.
    result = run_job({**env, "OUTPUT_DIR": str(tmp_path / "again")})
    assert result.code == 0, result.stderr
    (event,) = result.of("promote")
    assert event["promoted"] is False and event["champion_val_acc"] == event["val_acc"]
    assert os.readlink(promote / "champion") == first
    metrics = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert metrics["promotion"]["promoted"] is False
