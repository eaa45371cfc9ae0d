"""What this machine's CPU is and can do, from /proc/cpuinfo (standard library only)."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
"""CPU flags meaning bf16 arithmetic runs natively (AVX512-BF16 dot products, AMX tiles)."""


def parse(text: str) -> dict[str, str]:
    """The first processor's ``key: value`` fields of a /proc/cpuinfo text.

    One block is enough: every core of a machine has the same model and flags.
    """
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


@functools.cache
def _fields() -> dict[str, str]:
    try:
        return parse(CPUINFO.read_text(errors="replace"))
    except OSError:  # not Linux, or /proc not mounted
        return {}


def model_name(fields: dict[str, str] | None = None) -> str:
    """The CPU model ("Intel(R) Xeon(R) Platinum 8480+"), or the architecture when unknown.

    ``fields`` defaults to this machine's /proc/cpuinfo (see :func:`parse`).
    """
    fields = _fields() if fields is None else fields
    return fields.get("model name") or platform.processor() or platform.machine()


def flags(fields: dict[str, str] | None = None) -> frozenset[str]:
    """The CPU's feature flags; empty when /proc/cpuinfo cannot be read."""
    fields = _fields() if fields is None else fields
    return frozenset(fields.get("flags", "").split())


def native_bf16(cpu_flags: frozenset[str] | None = None) -> bool:
    """True when the CPU computes bf16 natively (``avx512_bf16`` or ``amx_bf16``).

    Without such support, autocast emulates bf16 and is slower than fp32.
    """
    return bool(BF16_FLAGS & (flags() if cpu_flags is None else cpu_flags))
