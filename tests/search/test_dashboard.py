"""``search dashboard`` explains the study: read back through optuna-dashboard's own HTTP API
from a real server (``python -m search dashboard``) on a confirmed study."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.search.helpers import clean_env, search_cli, stub_driver
from tests.search.test_confirm import LUCKY, _driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    """The dashboard's detail of every study: a confirmed one (``t``, ``t.confirm``, its
    note written by ``search best``) and one with a failed trial (``f``)."""
    folder = tmp_path_factory.mktemp("dash")
    url = f"sqlite:///{folder / 'study.db'}"
    _driver(folder, LUCKY).run()
    stub_driver(folder / "f", "1=exit9,*=done", study_name="f", storage=url).run()
    out = str(folder / "out")
    best = search_cli("best", "--storage", url, "--study-name", "t", "--output", out)
    assert best.returncode == 0, best.stderr
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "search",
            "dashboard",
            "--storage",
            url,
            "--port",
            str(port),
            "--output",
            out,
        ],
        cwd=REPO,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/api/studies"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                listing = _get(base)["study_summaries"]
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.3)
        yield {s["study_name"]: _get(f"{base}/{s['study_id']}") for s in listing}
    finally:
        server.terminate()
        server.wait(timeout=30)


def _attrs(trial: dict[str, Any]) -> dict[str, str]:
    return {a["key"]: a["value"] for a in trial["user_attrs"]}


@pytest.mark.parametrize("name", ["t", "t.confirm", "f"])
def test_the_objective_is_named_val_acc(studies, name) -> None:
    assert studies[name]["objective_names"] == ["val_acc"]


@pytest.mark.parametrize(("name", "key"), [("t", "seed"), ("t", "launcher"), ("t.confirm", "seed")])
def test_every_trial_shows_its(studies, name, key) -> None:
    assert all(key in _attrs(t) for t in studies[name]["trials"])


def test_confirmation_runs_show_what_they_confirm(studies) -> None:
    confirms = {_attrs(t)["confirms"] for t in studies["t.confirm"]["trials"]}
    assert confirms == {"0", "1", "2"}


def test_a_failed_trial_shows_its_reason(studies) -> None:
    failed = [t for t in studies["f"]["trials"] if t["state"].lower() == "fail"]
    assert len(failed) == 1 and "exit 9" in _attrs(failed[0])["fail_reason"]


def test_the_study_note_holds_the_table_and_the_verdict(studies) -> None:
    body = studies["t"]["note"]["body"]
    assert "| 2 | 0.5500 | 0.5400 | 0.5600 | 0.5500 |" in body
    assert "Exported: trial 2." in body
    assert "trial 2: 0.550 ± 0.014 over 2 seeds vs baseline 0.415 ± 0.007: +0.135" in body
    assert "| 1 | 0.6000 | 0.4500 | 0.4400 | 0.4450 | 0.0071 | round 2 |" in body


def test_search_best_prints_the_verdict(tmp_path: Path) -> None:
    driver = _driver(tmp_path, LUCKY)
    driver.run()
    url = f"sqlite:///{tmp_path / 'study.db'}"
    out = str(tmp_path / "res")
    best = search_cli(
        "best", "--storage", url, "--study-name", "t", "--output", out, "--configmap", "best"
    )
    assert best.returncode == 0, best.stderr
    assert json.loads(best.stdout)["trial"] == 2
    assert (
        "confirmed over fresh seeds [1, 2] in 2 rounds (0 reused runs): trial 2: 0.550 ± 0.014 "
        "over 2 seeds vs baseline 0.415 ± 0.007: +0.135" in best.stderr
    )
    assert "; dropped: trial 1 after round 2" in best.stderr
    assert "PROMOTE_MARGIN" in (tmp_path / "res" / "configmap.yaml").read_text()
