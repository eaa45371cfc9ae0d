"""The job's code digest: what a run reports as ``code_sha256`` (metrics.json, ``done``).

A version number does not change between commits and an image tag can be moved, so a run
that must be recognised as "the same code" (the search reuses a baseline run only when its
code is the same: docs/search.md) names the code by its content: the sha256 over the job
package's ``.py`` files, each as its path relative to the package (POSIX, UTF-8), a NUL, its
bytes and a NUL, in sorted path order. Only the source counts: caches (``__pycache__``) and
other files in the folder do not.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
"""The job package's folder."""


@functools.cache
def code_sha256(package: Path = PACKAGE) -> str:
    """The hex sha256 of the source files under ``package`` (computed once per process: a run
    reports the code it started with)."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py"), key=lambda p: p.relative_to(package).as_posix()):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()
