"""The checkpoint: a plain torch.save archive with its sha256, verified before every resume."""

from __future__ import annotations

import collections
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from job.checkpoint import (
    COMMENT,
    RESOLVED_PRECISION,
    CheckpointWriter,
    check_model_info,
    differences,
    load_checkpoint,
    save_state,
)
from job.contract import CHECKPOINT
from job.data import CIFAR_CLASSES
from job.errors import ConfigError
from job.model import ModelInfo, ResNet9
from job.preprocess import CIFAR10, Preprocess
from job.resources import checkpoint_bytes
from tests.tmpfs import fill, leftovers, small_volume

FINGERPRINT = {"epochs": 2, "model_width": 0.125}


def _state(width: float = 0.125, epoch: int = 1) -> dict:
    """A checkpoint's state as training writes it, with Adam's moments filled by one step."""
    torch.manual_seed(0)
    model = ResNet9(10, width)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    return {
        "fingerprint": FINGERPRINT,
        "epoch": epoch,
        "history": [{"epoch": 0, "val_acc": 0.1}],
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng_cpu": torch.get_rng_state(),
    }


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of one checkpoint, saved once for the module."""
    folder = tmp_path_factory.mktemp("saved")
    save_state(folder / CHECKPOINT, _state())
    return (folder / CHECKPOINT).read_bytes()


def test_a_saved_checkpoint_resumes_with_its_state(saved: bytes, tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT).write_bytes(saved)
    state = load_checkpoint(tmp_path, FINGERPRINT)
    assert state is not None and state["epoch"] == 1
    expected = _state()["model"]
    assert all(torch.equal(state["model"][k], v) for k, v in expected.items())


def test_the_checkpoint_stays_a_torch_archive_carrying_its_sha256(
    saved: bytes, tmp_path: Path
) -> None:
    (tmp_path / CHECKPOINT).write_bytes(saved)
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["epoch"] == 1
    assert zipfile.ZipFile(tmp_path / CHECKPOINT).comment.startswith(COMMENT)


def test_no_checkpoint_means_a_fresh_start(tmp_path: Path) -> None:
    assert load_checkpoint(tmp_path, FINGERPRINT) is None


def _flip(at: Callable[[int], int]) -> Callable[[bytes], bytes]:
    def damage(data: bytes) -> bytes:
        i = at(len(data))
        return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]

    return damage


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        pytest.param(_flip(lambda n: n // 2), "do not match their sha256", id="flip-middle"),
        pytest.param(_flip(lambda n: 100), "do not match their sha256", id="flip-first-record"),
        pytest.param(_flip(lambda n: n - 1), "do not match their sha256", id="flip-checksum"),
        pytest.param(_flip(lambda n: n - 92), "do not match their sha256", id="flip-eocd"),
        pytest.param(_flip(lambda n: n - 70), "does not end with its checksum", id="flip-tag"),
        pytest.param(lambda d: d[: len(d) // 2], "does not end with its checksum", id="half"),
        pytest.param(lambda d: d[:-1], "does not end with its checksum", id="last-byte-cut"),
        pytest.param(lambda d: b"", "does not end with its checksum", id="empty"),
    ],
)
def test_a_damaged_checkpoint_is_refused_with_one_sentence(
    saved: bytes, tmp_path: Path, damage: Callable[[bytes], bytes], why: str
) -> None:
    (tmp_path / CHECKPOINT).write_bytes(damage(saved))
    with pytest.raises(ConfigError) as refused:
        load_checkpoint(tmp_path, FINGERPRINT)
    message = refused.value.message
    assert f"holds a damaged {CHECKPOINT}" in message and why in message
    assert f"delete {CHECKPOINT} to start over, or point OUTPUT_DIR elsewhere" in message


def test_a_checkpoint_without_checksum_is_refused_as_unverifiable(tmp_path: Path) -> None:
    torch.save(_state(), tmp_path / CHECKPOINT)  # what versions before checksums wrote
    with pytest.raises(ConfigError, match=f"an unverifiable {CHECKPOINT} .*no checksum"):
        load_checkpoint(tmp_path, FINGERPRINT)


def test_a_checkpoint_from_another_configuration_is_refused(saved: bytes, tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT).write_bytes(saved)
    with pytest.raises(ConfigError, match=r"different configuration \(EPOCHS 2 → 3\)"):
        load_checkpoint(tmp_path, {**FINGERPRINT, "epochs": 3})


@pytest.mark.parametrize("width", [0.125, 0.5, 1.0])
def test_the_size_estimate_bounds_a_real_checkpoint(tmp_path: Path, width: float) -> None:
    save_state(tmp_path / CHECKPOINT, _state(width))
    actual = (tmp_path / CHECKPOINT).stat().st_size
    assert actual <= checkpoint_bytes(width) <= 1.1 * actual + (2 << 20)


def test_a_full_volume_keeps_the_last_checkpoint_whole(tmp_path: Path) -> None:
    with small_volume(tmp_path / "output", 8 << 20) as out:
        save_state(out / CHECKPOINT, _state(epoch=1))
        before = (out / CHECKPOINT).read_bytes()
        fill(out)
        with pytest.raises(OSError, match="No space left") as full:
            save_state(out / CHECKPOINT, _state(epoch=2))
        assert full.value.filename == str(out / CHECKPOINT)
        assert (out / CHECKPOINT).read_bytes() == before and leftovers(out) == []
        state = load_checkpoint(out, FINGERPRINT)
        assert state is not None and state["epoch"] == 1


@pytest.mark.parametrize(
    ("value", "resumes"), [(0.0, True), (0.1, False)], ids=["its-default", "another-value"]
)
def test_a_checkpoint_older_than_a_variable_resumes_only_at_its_default(
    saved: bytes, tmp_path: Path, value: float, resumes: bool
) -> None:
    # FINGERPRINT has no label_smoothing: written before LABEL_SMOOTHING existed.
    (tmp_path / CHECKPOINT).write_bytes(saved)
    fingerprint = {**FINGERPRINT, "label_smoothing": value}
    if resumes:
        assert load_checkpoint(tmp_path, fingerprint) is not None
    else:
        with pytest.raises(ConfigError, match=r"LABEL_SMOOTHING 0\.0 → 0\.1"):
            load_checkpoint(tmp_path, fingerprint)


# -- the model it trains: classes and normalisation ------------------------------------------

OWN = ModelInfo(("cat", "dog"), Preprocess(32, (0.61, 0.52, 0.40), (0.27, 0.22, 0.31)), 0.125)
CIFAR = ModelInfo(CIFAR_CLASSES, CIFAR10, 0.125)


@pytest.mark.parametrize(
    ("saved", "now"),
    [
        (OWN.to_json(), OWN),
        (CIFAR.to_json(), CIFAR),
        (None, CIFAR),  # a checkpoint from before it recorded them trained on CIFAR-10
    ],
    ids=["own", "cifar", "before"],
)
def test_a_checkpoint_of_the_same_model_resumes(tmp_path: Path, saved, now: ModelInfo) -> None:
    state = {} if saved is None else {"model_info": saved}
    check_model_info(tmp_path, state, now)  # no ConfigError


@pytest.mark.parametrize(
    ("saved", "now", "words"),
    [
        (OWN, CIFAR, "data: 2 classes (cat, dog) → 10 classes (airplane, automobile, bird, …)"),
        (
            OWN,
            ModelInfo(OWN.classes, CIFAR10, 0.125),
            "data: normalisation mean (0.6100, 0.5200, 0.4000), std (0.2700, 0.2200, 0.3100) → "
            "mean (0.4914, 0.4822, 0.4465), std (0.2023, 0.1994, 0.2010)",
        ),
        (None, OWN, "data: 10 classes (airplane, automobile, bird, …) → 2 classes (cat, dog)"),
    ],
    ids=["classes", "normalisation", "before"],
)
def test_a_checkpoint_of_other_data_is_refused_in_one_sentence(
    tmp_path: Path, saved: ModelInfo | None, now: ModelInfo, words: str
) -> None:
    state = {} if saved is None else {"model_info": saved.to_json()}
    with pytest.raises(ConfigError) as refused:
        check_model_info(tmp_path, state, now)
    message = str(refused.value)
    assert words in message and "different configuration" in message
    assert message.endswith(f"or delete {CHECKPOINT} to start over.")


# -- portable: every tensor on the CPU, whatever device trained it ------------------------------


def lazy_device() -> torch.device:
    """torch's lazy-tensor device, started once per process: a real device other than the CPU
    that runs on this machine's CPU, so a state trained off the CPU can be saved here.
    torch.save refuses its tensors as they are, and torch.load would put them back on it: a
    file saved without moving them is unusable."""
    try:
        torch.empty(0, device="lazy")
    except RuntimeError:  # not started yet (starting it twice is an error)
        from torch._lazy import ts_backend

        ts_backend.init()
    return torch.device("lazy")


@pytest.fixture(scope="module")
def lazy() -> torch.device:
    return lazy_device()


def _off_cpu(device: torch.device) -> tuple[dict, dict]:
    """``_state()`` with its model and Adam's moments moved to ``device``, and the original."""
    state = _state()
    model = ResNet9(10, 0.125)
    model.load_state_dict(state["model"])
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    optimizer.load_state_dict(state["optimizer"])  # its moments follow the parameters
    moved = {**state, "model": model.state_dict(), "optimizer": optimizer.state_dict()}
    return moved, state


def _tensors(obj: object) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    values = obj.values() if isinstance(obj, dict) else obj
    if isinstance(values, (list, tuple)) or isinstance(obj, dict):
        return [t for value in values for t in _tensors(value)]
    return []


def test_a_checkpoint_of_a_state_off_the_cpu_loads_on_the_cpu(tmp_path: Path, lazy) -> None:
    moved, original = _off_cpu(lazy)
    assert {t.device.type for t in _tensors(moved)} >= {"lazy"}
    writer = CheckpointWriter(tmp_path / CHECKPOINT)
    writer.write(moved)
    writer.wait()
    loaded = torch.load(tmp_path / CHECKPOINT, map_location=None, weights_only=True)
    assert {t.device.type for t in _tensors(loaded)} == {"cpu"}
    assert len(_tensors(loaded)) == len(_tensors(original))
    assert all(torch.equal(loaded["model"][k], v) for k, v in original["model"].items())
    moments = original["optimizer"]["state"][0]
    assert torch.equal(loaded["optimizer"]["state"][0]["exp_avg"], moments["exp_avg"])
    assert load_checkpoint(tmp_path, FINGERPRINT) is not None  # and verifies


class _Gate:
    """Pickled first in a state: holds the checkpoint's serialization until opened."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.waited: bool | None = None

    def __reduce__(self) -> tuple:
        self.waited = self.open.wait(timeout=10)  # False: write() serialized before returning
        return (collections.OrderedDict, ())


def test_the_writer_saves_the_state_it_was_given_while_training_goes_on(tmp_path: Path) -> None:
    state = _state()
    model = ResNet9(10, 0.125)
    model.load_state_dict(state["model"])
    gate = _Gate()
    writer = CheckpointWriter(tmp_path / CHECKPOINT)
    writer.write({"gate": gate, **state, "model": model.state_dict()})  # live tensors
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # the next epoch's updates, in place, while the write is held
    gate.open.set()
    writer.wait()
    assert gate.waited is True  # write() returned before serializing: it did not stall
    loaded = load_checkpoint(tmp_path, FINGERPRINT)
    assert loaded is not None
    assert all(torch.equal(loaded["model"][k], v) for k, v in state["model"].items())


def test_a_failed_background_write_is_raised_by_wait_and_keeps_the_last_one(
    tmp_path: Path,
) -> None:
    with small_volume(tmp_path / "output", 8 << 20) as out:
        writer = CheckpointWriter(out / CHECKPOINT)
        writer.write(_state(epoch=1))
        writer.wait()
        before = (out / CHECKPOINT).read_bytes()
        fill(out)
        writer.write(_state(epoch=2))  # returns: the volume's answer comes from wait()
        with pytest.raises(OSError, match="No space left") as full:
            writer.wait()
        assert full.value.filename == str(out / CHECKPOINT)
        assert (out / CHECKPOINT).read_bytes() == before and leftovers(out) == []
        writer.wait()  # reported once


# -- the arithmetic the checkpoint was written in --------------------------------------------

AUTO = {**FINGERPRINT, "precision": "auto"}


def _saved_in(tmp_path: Path, fingerprint: dict) -> Path:
    """A checkpoint of ``fingerprint`` (the refusal reads nothing else) in ``tmp_path``."""
    save_state(tmp_path / CHECKPOINT, {"fingerprint": fingerprint, "epoch": 1})
    return tmp_path


def test_a_checkpoint_written_in_another_arithmetic_is_refused_in_one_sentence(
    tmp_path: Path,
) -> None:
    out = _saved_in(tmp_path, {**AUTO, RESOLVED_PRECISION: "bf16"})
    with pytest.raises(ConfigError) as refused:
        load_checkpoint(out, {**AUTO, RESOLVED_PRECISION: "fp16"})
    assert refused.value.exit_code == 2
    assert refused.value.message == (
        f"checkpoint.pt in OUTPUT_DIR={str(out)!r} was written in bf16 and this run resolves "
        "fp16 (PRECISION=auto on this device): set PRECISION=bf16 to resume it here, or use "
        "another OUTPUT_DIR."
    )


@pytest.mark.parametrize(
    ("saved", "now"),
    [
        ({**AUTO, RESOLVED_PRECISION: "bf16"}, {**AUTO, RESOLVED_PRECISION: "bf16"}),
        # What the refusal advises: the setting differs, the arithmetic does not.
        (
            {**AUTO, RESOLVED_PRECISION: "bf16"},
            {**FINGERPRINT, "precision": "bf16"} | {RESOLVED_PRECISION: "bf16"},
        ),
        (AUTO, {**AUTO, RESOLVED_PRECISION: "fp16"}),  # written before it was recorded
    ],
    ids=["same", "auto-then-explicit", "older-checkpoint"],
)
def test_a_checkpoint_in_the_same_or_an_unrecorded_arithmetic_resumes(
    tmp_path: Path, saved: dict, now: dict
) -> None:
    assert load_checkpoint(_saved_in(tmp_path, saved), now) is not None


@pytest.mark.parametrize(
    ("setting", "diff"),
    [("auto", []), ("bf16", []), ("fp16", ["PRECISION 'auto' (bf16) → 'fp16'"])],
)
def test_the_bare_settings_pass_what_may_resolve_to_the_checkpoints_arithmetic(
    setting: str, diff: list[str]
) -> None:
    # previous.claim compares the settings before the device, hence the arithmetic, is known.
    saved = {**AUTO, RESOLVED_PRECISION: "bf16"}
    assert differences(saved, {**FINGERPRINT, "precision": setting}) == diff
