import pytest
import torch

from job.config import (
    VARIABLES,
    Config,
    choose_precision,
    from_env,
    resolve_device,
    resolve_precision,
)
from job.contract import TUNABLE, TUNED
from job.errors import ConfigError


def test_defaults_are_the_tutorial_recipe() -> None:
    cfg = from_env({})
    assert (cfg.epochs, cfg.batch_size, cfg.max_lr, cfg.weight_decay, cfg.grad_clip) == (
        8,
        400,
        0.01,
        1e-4,
        0.1,
    )
    assert (cfg.optimizer, cfg.model_width, cfg.train_limit, cfg.test_limit) == ("adam", 1.0, 0, 0)


def test_every_config_field_has_a_variable() -> None:
    fields = set(Config.__dataclass_fields__)
    assert {v.field for v in VARIABLES} == fields


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"EPOCHS": "3"}, ("epochs", 3)),
        ({"MAX_LR": "2e-3"}, ("max_lr", 0.002)),
        ({"GRAD_CLIP": "0"}, ("grad_clip", 0.0)),
        ({"LABEL_SMOOTHING": "0.1"}, ("label_smoothing", 0.1)),
        ({"LABEL_SMOOTHING": "0"}, ("label_smoothing", 0.0)),
        ({"OPTIMIZER": "SGD"}, ("optimizer", "sgd")),
        ({"DEVICE": "cuda:1"}, ("device", "cuda:1")),
        ({"COMPILE": "true"}, ("compile", True)),
        ({"MODEL_WIDTH": "0.25"}, ("model_width", 0.25)),
        ({"DATA_SHA256": "A" * 64}, ("data_sha256", "a" * 64)),
        ({"PROMOTE_DIR": ""}, ("promote_dir", None)),
        ({"SEED": "42"}, ("seed", 42)),
        ({"SEED": "random"}, ("seed", "random")),
        ({"SEED": " Random "}, ("seed", "random")),
        ({"PROMOTE_MARGIN": "0"}, ("promote_margin", 0.0)),
        ({"PROMOTE_MARGIN": "0.02"}, ("promote_margin", 0.02)),
    ],
)
def test_valid_values_parse(env: dict[str, str], expected: tuple[str, object]) -> None:
    field, value = expected
    assert getattr(from_env(env), field) == value


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EPOCHS", "abc"),
        ("EPOCHS", "0"),
        ("EPOCHS", "2.5"),
        ("MAX_LR", "-1"),
        ("MAX_LR", "0"),
        ("MAX_LR", "nan"),
        ("WEIGHT_DECAY", "inf"),
        ("BATCH_SIZE", "0"),
        ("PRECISION", "fp8"),
        ("MODEL_WIDTH", "0"),
        ("OPTIMIZER", "adamw"),
        ("DEVICE", "gpu"),
        ("DATA_URL", "ftp://example.org/cifar10.tgz"),
        ("DATA_SHA256", "not-a-digest"),
        ("COMPILE", "maybe"),
        ("SEED", "-1"),
        ("SEED", "1.5"),
        ("SEED", "randomly"),
        ("SEED", ""),
        ("PROMOTE_MARGIN", "-0.01"),
        ("PROMOTE_MARGIN", "nan"),
        ("PROMOTE_MARGIN", "some"),
        ("LABEL_SMOOTHING", "1"),
        ("LABEL_SMOOTHING", "-0.1"),
        ("LABEL_SMOOTHING", "nan"),
        ("LABEL_SMOOTHING", "a lot"),
    ],
)
def test_invalid_value_is_rejected_by_name(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_env({name: value})
    message = info.value.message
    assert message.startswith(f"{name}={value!r} is invalid: ")
    assert message.count(".") >= 1 and "\n" not in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_a_config_error(device: str) -> None:
    with pytest.raises(ConfigError, match=r"DEVICE=.*no usable CUDA device") as error:
        resolve_device(from_env({"DEVICE": device}))
    # What a user fixes: the setting, or (in a search, where DEVICE is not theirs) the GPUs.
    assert "set DEVICE=cpu" in error.value.message and "--gpus" in error.value.message


@pytest.mark.parametrize(
    ("precision", "device", "cpu_bf16", "expected"),
    [
        ("auto", "cpu", False, "fp32"),
        ("auto", "cpu", True, "bf16"),
        ("fp32", "cpu", True, "fp32"),
        ("fp32", "cuda", True, "fp32"),
        ("bf16", "cpu", False, "bf16"),
        ("fp16", "cpu", True, "fp16"),
    ],
)
def test_precision_resolves_per_device_and_cpu(
    precision: str, device: str, cpu_bf16: bool, expected: str
) -> None:
    cfg = from_env({"PRECISION": precision})
    assert resolve_precision(cfg, torch.device(device), cpu_bf16=cpu_bf16) == expected


def test_auto_on_a_cpu_says_whether_bf16_is_native() -> None:
    auto = from_env({})
    cpu = torch.device("cpu")
    assert choose_precision(auto, cpu, cpu_bf16=True).reason == (
        "auto: CPU with native bf16 (avx512_bf16 or amx_bf16)"
    )
    assert choose_precision(auto, cpu, cpu_bf16=False).reason.startswith(
        "auto: CPU without native bf16"
    )


@pytest.mark.parametrize(
    ("setting", "capability", "expected", "reason"),
    [
        ("auto", (9, 0), "bf16", "auto: NVIDIA H100 has compute capability 9.0 >= 8.0"),
        ("auto", (8, 0), "bf16", "auto: NVIDIA H100 has compute capability 8.0 >= 8.0"),
        (
            "auto",
            (7, 5),
            "fp16",
            "auto: NVIDIA H100 has compute capability 7.5 < 8.0, where bf16 is emulated: "
            "fp16 with a gradient scaler",
        ),
        ("bf16", (7, 5), "bf16", "PRECISION=bf16 set"),
        ("fp32", (9, 0), "fp32", "PRECISION=fp32 set"),
    ],
)
def test_auto_on_cuda_follows_the_compute_capability(
    monkeypatch: pytest.MonkeyPatch,
    setting: str,
    capability: tuple[int, int],
    expected: str,
    reason: str,
) -> None:
    asked: list[object] = []

    def get_device_capability(device: object = None) -> tuple[int, int]:
        asked.append(device)
        return capability

    monkeypatch.setattr(torch.cuda, "get_device_capability", get_device_capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100")
    cuda = torch.device("cuda:1")
    assert choose_precision(from_env({"PRECISION": setting}), cuda) == (expected, reason)
    assert asked in ([cuda], [])  # the run's own GPU, and only when auto asks


def test_fingerprint_ignores_where_and_how_not_what() -> None:
    a = from_env({"OUTPUT_DIR": "/a", "DATA_DIR": "/x", "DEVICE": "cpu", "COMPILE": "1"})
    b = from_env({"OUTPUT_DIR": "/b", "DATA_DIR": "/y", "DEVICE": "auto"})
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != from_env({"MAX_LR": "0.02"}).fingerprint()


@pytest.mark.parametrize("var", VARIABLES, ids=lambda v: v.name)
def test_each_default_is_the_contracts_text_parsed(var) -> None:
    from job.contract import default

    assert getattr(Config(), var.field) == var.parse(default(var.name))


@pytest.mark.parametrize("var", VARIABLES, ids=lambda v: v.name)
def test_setting_a_variable_to_its_default_text_changes_nothing(var) -> None:
    assert from_env({var.name: var.default}) == Config()


def test_config_has_exactly_the_declared_variables_in_order() -> None:
    from dataclasses import fields

    assert [f.name for f in fields(Config)] == [v.field for v in VARIABLES]


def test_the_fingerprint_holds_exactly_the_variables_declared_in_it() -> None:
    declared = {v.field for v in VARIABLES if v.fingerprint}
    assert set(Config().fingerprint()) == declared
    # Where files live, the device, compilation, threads and progress never block a resume.
    where_and_how = {"data_url", "data_dir", "output_dir", "device", "compile", "promote_dir"}
    where_and_how |= {"cpu_threads", "progress_seconds", "promote_margin", "stream_data"}
    assert declared == {v.field for v in VARIABLES} - where_and_how


@pytest.mark.parametrize("name", TUNED)
def test_the_default_space_tunes_only_tunable_variables(name: str) -> None:
    assert TUNABLE[name.lower()] == name
