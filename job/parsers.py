"""Parsers of the job's variable values (standard library only, like the contract).

Each parser turns a variable's text into its value, or raises ValueError saying what is
allowed; :func:`job.config.from_env` prefixes the variable's name and value. The same parser
turns the contract's default text into the field's default, so a default is written once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse


def number(
    kind: type, low: float, *, exclusive: bool = False, below: float | None = None, hint: str
) -> Callable[[str], Any]:
    """A whole number (``kind`` int) or a finite number (float) ≥ ``low`` (> with
    ``exclusive``) and, with ``below``, < ``below``."""
    word = "a whole number" if kind is int else "a number"
    bound = f"> {low:g}" if exclusive else f"≥ {low:g}"
    if below is not None:
        bound += f" and < {below:g}"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"expected {word} {bound}, for example {hint}") from None
        if kind is float and not math.isfinite(value):
            raise ValueError(f"expected a finite number {bound}, for example {hint}")
        if value < low or (exclusive and value == low) or (below is not None and value >= below):
            raise ValueError(f"expected {word} {bound}, for example {hint}")
        return value

    return parse


def choice(*allowed: str) -> Callable[[str], str]:
    """One of ``allowed``, case-insensitively."""

    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise ValueError(f"allowed values are {', '.join(allowed)}")
        return value

    return parse


def flag(text: str) -> bool:
    """1/0, true/false, yes/no, on/off; empty is off."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("allowed values are 1 or 0")


def url(text: str) -> str:
    """An http://, https:// or file:// URL."""
    scheme = urlparse(text).scheme
    if scheme not in ("http", "https", "file"):
        raise ValueError("expected an http://, https:// or file:// URL of the archive")
    return text


def file_path(url: str) -> Path | None:
    """The local path a ``file://`` URL names (None for another scheme): netloc + path,
    unquoted, so ``file://data/x.tgz`` is the relative ``data/x.tgz``."""
    parsed = urlparse(url)
    return Path(unquote(parsed.netloc + parsed.path)) if parsed.scheme == "file" else None


def sha256(text: str) -> str:
    """64 hexadecimal digits (lower-cased), or empty."""
    value = text.strip().lower()
    if value and not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError("expected 64 hexadecimal digits, or empty to skip the check")
    return value


def path(text: str) -> Path:
    """A folder path, never empty."""
    if not text.strip():
        raise ValueError("expected a folder path")
    return Path(text)


def optional_path(text: str) -> Path | None:
    """A folder path, or None when empty."""
    return Path(text) if text.strip() else None


def device(text: str) -> str:
    """auto, cpu, cuda or cuda:N."""
    value = text.strip().lower()
    if value in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", value):
        return value
    raise ValueError("allowed values are auto, cpu, cuda, cuda:N")


def count_or_auto(text: str) -> int | str:
    """``auto``, or a whole number ≥ 1."""
    value = text.strip().lower()
    if value == "auto":
        return value
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise ValueError("expected auto or a whole number ≥ 1, for example 4")


def seed(text: str) -> int | str:
    """``random``, or a whole number ≥ 0."""
    value = text.strip().lower()
    if value == "random":
        return value
    if value.isdigit():
        return int(value)
    raise ValueError("expected random or a whole number ≥ 0, for example 0")
