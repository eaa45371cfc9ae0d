"""bench/decode.py on tiny archives of re-encoded pictures: both pipelines count every image."""

import json
from pathlib import Path

import pytest

from bench.decode import main
from tests.archives import picture_files, write_pictures


@pytest.mark.parametrize(("split", "container"), [(False, "zip"), (True, "tgz")])
def test_both_pipelines_decode_every_picture(
    tmp_path: Path, capsys, split: bool, container: str
) -> None:
    archive = write_pictures(tmp_path / "pics", picture_files(split=split), container)
    out = tmp_path / "decode.json"
    args = ["--archive", str(archive), "--sizes", "16", "24", "--workers", "1", "--json", str(out)]
    assert main(args) == 0
    rows = json.loads(out.read_text())
    counts = [(r["size"], r["images"], r["torchvision_images"], r["workers"]) for r in rows]
    assert counts == [(16, 30, 30, 1), (24, 30, 30, 1)]
    assert all(r["job_images_per_sec"] > 0 and r["torchvision_images_per_sec"] > 0 for r in rows)
    printed = capsys.readouterr().out
    assert "16 px" in printed and "24 px" in printed and "ImageFolder" in printed
