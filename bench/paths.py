"""No figure: where every bench module reads and writes (the repository, the archive).

``python -m bench.paths`` prints the local path of the archive ``DATA_URL`` names — the fast.ai
mirror by default, downloaded once into ``DATA_DIR/downloads/`` as the job does — or exits 3
with the job's sentence; ``make bench``, ``make reproduce`` and ``make gpu-data`` run it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from testkit import REPO

SHARED_ARCHIVE = REPO.parent / "shared" / "data" / "cifar10.tgz"
"""The test fixture: the real fast.ai CIFAR-10 archive beside the checkout on the development
and CI machines (never copied into it); tests read it, users point DATA_URL at their own."""
SUBSET = REPO / ".gl" / "cifar10-subset.tgz"
"""The real subset ``python -m bench.subset`` writes and the GPU campaign's search reads."""
OUTPUT = REPO / "output"
"""Where the bench commands that keep their results write them by default."""
DATA_DIR = REPO / "data"
"""The job's default DATA_DIR (``data``) as the bench runs it, from the repository root."""


def data_url() -> str:
    """The archive's URL: ``DATA_URL`` from the environment, else the job's default."""
    from job.contract import DEFAULT_DATA_URL

    return os.environ.get("DATA_URL") or DEFAULT_DATA_URL


ARCHIVE_HELP = (
    "fast.ai cifar10.tgz (default: the file DATA_URL names, or the fast.ai mirror's archive, "
    "downloaded once)"
)
"""The ``--archive`` option's help, the same in every bench command."""


def command_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """A bench command's parser: ``description`` its module's docstring, defaults in --help."""
    defaults = argparse.ArgumentDefaultsHelpFormatter
    return argparse.ArgumentParser(prog=prog, description=description, formatter_class=defaults)


def given_or_default(given: Path | None) -> Path:
    """``--archive`` as given, else the local file of :func:`data_url` (fetched as the module
    docstring says, ``DATA_DIR`` from the environment, else ``data/``); exit 3 when it cannot."""
    if given is not None:
        return given
    from job.contract import ExitCode
    from job.data.fetch import fetch
    from job.errors import DataError

    try:
        path, _ = fetch(data_url(), Path(os.environ.get("DATA_DIR") or DATA_DIR))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(int(ExitCode.NO_DATA)) from None
    return path.resolve()


if __name__ == "__main__":  # print the archive's path; exit 3 (the job's "no data") without one
    print(given_or_default(None))
