"""The README's commands, pasted in order, work: its shell blocks are read from README.md itself
and run one after the other in one shell session, in a copy of the checkout, on the real
archive.

Every ```sh / ```bash block of the README carries a marker in the line above it:
``<!-- readme-test: run; produces: PATH … -->`` (run it; afterwards each PATH exists) or
``<!-- readme-test: skip: REASON -->`` (the network, a cluster, a server that never ends). The
blocks run as written, with two things a test needs and a user does not:

- a small configuration (``SMALL``): in the environment for ``make`` and ``python``, through
  an ``--env-file`` placed first for ``docker run`` (the README's own ``-e`` flags come after
  and still win), and for ``make search`` fewer trials and ``--job-env`` sizes (``_shrink``);
- the archive placed where the README's download block puts it, ``data/cifar10.tgz``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from job.contract import VARIABLE_NAMES
from tests.conftest import REAL_CIFAR, REPO, need

pytestmark = [pytest.mark.realdata, pytest.mark.slow, pytest.mark.docker]

README = REPO / "README.md"
IMAGE = "resnet-job:latest"  # what the README's `docker run … resnet-job` runs
SMALL = {
    "MODEL_WIDTH": "0.25",
    "TRAIN_LIMIT": "500",
    "TEST_LIMIT": "200",
    "EPOCHS": "1",
    "DEVICE": "cpu",
}
"""The small real-data configuration every run of the test gets unless the README sets one."""
SEARCH_TRIALS = "2"

_BLOCK = re.compile(
    r"<!-- readme-test: (?P<marker>[^>]*?) -->\n```(?:sh|bash)\n(?P<body>.*?)\n```", re.DOTALL
)
_ANY_BLOCK = re.compile(r"^```(?:sh|bash)$", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    """One shell block of the README and what its marker says."""

    body: str
    run: bool
    produces: tuple[str, ...]
    reason: str


def blocks(text: str) -> list[Block]:
    """The README's shell blocks in order, with their markers."""
    found = []
    for match in _BLOCK.finditer(text):
        marker = match["marker"].strip()
        kind, _, rest = marker.partition(";" if marker.startswith("run") else ":")
        produces: tuple[str, ...] = ()
        if kind.strip() == "run" and "produces:" in rest:
            produces = tuple(rest.split("produces:", 1)[1].split())
        found.append(Block(match["body"], kind.strip() == "run", produces, rest.strip()))
    return found


def _shrink(body: str, env_file: Path) -> str:
    """``body`` with the test's small configuration where a command fixes its own sizes."""
    extra = " ".join(f"--job-env {k}={v}" for k, v in SMALL.items() if k != "EPOCHS")
    body = re.sub(r"\bTRIALS=\d+", f"TRIALS={SEARCH_TRIALS}", body)
    body = re.sub(r'SEARCH_ARGS="([^"]*)"', rf'SEARCH_ARGS="\1 {extra} --confirm 0"', body)
    return body.replace("docker run ", f"docker run --env-file {shlex.quote(str(env_file))} ")


def test_every_shell_block_of_the_readme_has_a_marker() -> None:
    text = README.read_text()
    assert len(blocks(text)) == len(_ANY_BLOCK.findall(text))
    assert all(b.run or b.reason for b in blocks(text))


def test_the_readme_names_no_gpu_flag_in_commands_that_run() -> None:
    assert not [b for b in blocks(README.read_text()) if b.run and "--gpus" in b.body]


def _copy_checkout(target: Path) -> None:
    """The checkout's files (tracked and new) with their times, and its .venv as a link, so
    ``make`` finds the venv up to date."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to(REPO / ".venv")


@pytest.fixture
def image() -> str:
    need(shutil.which("docker") is not None, "the docker client is not installed")
    info = subprocess.run(["docker", "info"], capture_output=True, check=False)
    need(info.returncode == 0, "no Docker engine answers (start dockerd)")
    found = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, check=False)
    need(found.returncode == 0, f"image {IMAGE} not built (make image, or bash .ci/docker.sh)")
    return IMAGE


def test_the_readme_commands_run_in_order(tmp_path: Path, image: str) -> None:
    need(REAL_CIFAR.is_file(), f"real CIFAR-10 archive not found at {REAL_CIFAR}")
    need((REPO / ".venv" / ".installed").is_file(), "no .venv (make venv)")
    repo = tmp_path / "repo"
    _copy_checkout(repo)
    # `make` would reinstall the shared venv from the copy (and point it there): never.
    fresh = subprocess.run(["make", "-q", ".venv/.installed"], cwd=repo, check=False)
    need(fresh.returncode == 0, ".venv is older than pyproject.toml (run make venv)")
    (repo / "data").mkdir()
    shutil.copyfile(REAL_CIFAR, repo / "data" / "cifar10.tgz")  # what the download block does
    env_file = tmp_path / "small.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in SMALL.items()))
    state = tmp_path / "state.sh"  # the session's exported variables, block to block
    env = {k: v for k, v in os.environ.items() if k not in VARIABLE_NAMES}
    env |= {**SMALL, "DATA_URL": (repo / "data" / "cifar10.tgz").as_uri()}
    env.pop("MAKEFLAGS", None)
    ran = 0
    for number, block in enumerate(blocks(README.read_text()), 1):
        if not block.run:
            continue
        script = "\n".join(
            [
                "set -euo pipefail",
                f"if [ -f {state} ]; then . {state}; fi",
                _shrink(block.body, env_file),
                f"export -p > {state}",
            ]
        )
        proc = subprocess.run(
            ["bash", "-c", script],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert proc.returncode == 0, f"README block {number} failed:\n{block.body}\n{proc.stderr}"
        missing = [p for p in block.produces if not (repo / p).exists()]
        assert not missing, f"README block {number} did not produce {missing}"
        ran += 1
    assert ran >= 3  # the quick start, the container and the search
    # Every configuration kept its results: the runs set aside each hold a whole run.
    previous = sorted((repo / "output" / "previous").iterdir())
    assert len(previous) >= 4
    assert all((p / "metrics.json").is_file() and (p / "model.pt").is_file() for p in previous)
