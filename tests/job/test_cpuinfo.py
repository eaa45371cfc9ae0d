"""CPU model and bf16 support from /proc/cpuinfo (job/cpuinfo.py)."""

from __future__ import annotations

import pytest

from job import cpuinfo
from tests.conftest import need

_XEON = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile

processor\t: 1
model name\t: some other core
flags\t\t: fpu
"""
_OLD = """processor\t: 0
model name\t: Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz
flags\t\t: fpu sse2 avx2 fma
"""
_ZEN4 = """processor\t: 0
model name\t: AMD EPYC 9654 96-Core Processor
flags\t\t: fpu avx2 avx512f avx512_bf16
"""


@pytest.mark.parametrize(
    ("text", "model"),
    [
        (_XEON, "Intel(R) Xeon(R) Platinum 8480+"),
        (_OLD, "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz"),
        (_ZEN4, "AMD EPYC 9654 96-Core Processor"),
    ],
)
def test_model_name_is_the_first_processors(text: str, model: str) -> None:
    assert cpuinfo.model_name(cpuinfo.parse(text)) == model


@pytest.mark.parametrize(("text", "native"), [(_XEON, True), (_OLD, False), (_ZEN4, True)])
def test_native_bf16_from_the_flags(text: str, native: bool) -> None:
    assert cpuinfo.native_bf16(cpuinfo.flags(cpuinfo.parse(text))) is native


def test_without_cpuinfo_the_model_falls_back_to_the_platform() -> None:
    assert cpuinfo.model_name({}) != ""
    assert cpuinfo.flags({}) == frozenset()


def test_a_cpu_runs_device_name_is_the_cpu_model() -> None:
    import torch

    need(cpuinfo.CPUINFO.is_file(), "no /proc/cpuinfo (not Linux)")
    from job.metrics import device_name

    name = device_name(torch.device("cpu"))
    assert name == cpuinfo.parse(cpuinfo.CPUINFO.read_text())["model name"]
