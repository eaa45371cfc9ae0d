"""The data report: what the decoded data held, written to OUTPUT_DIR as ``data_report.json``.

Images per class and split, the sizes and colour modes of the files as stored, the files left
out (BAD_IMAGES=skip) with the reason, and exact duplicates between train and test (the same
bytes): what a user checks first when accuracy disappoints.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from job.preprocess import Preprocess

SHOWN = 20  # examples listed per finding; the counts are always complete
_SIZES = 10  # the most common stored sizes listed; the rest are counted as "other"


def data_report(
    *,
    layout: str,
    classes: Sequence[str],
    labels: dict[str, np.ndarray],
    files: dict[str, dict[str, list[str]]],
    skipped: list[tuple[str, str]],
    other_files: int,
    preprocess: Preprocess,
    fraction: float | None,
) -> dict[str, Any]:
    """The report. ``files[split]`` holds each kept image's ``name``, ``size`` (``WxH``),
    ``mode`` and ``hash`` lists, aligned with ``labels[split]``."""
    sizes = Counter(s for split in files.values() for s in split["size"])
    common = dict(sizes.most_common(_SIZES))
    if len(sizes) > _SIZES:
        common["other"] = sum(sizes.values()) - sum(common.values())
    return {
        "layout": layout,
        "image_size": preprocess.size,
        "test_fraction": fraction,
        "classes": list(classes),
        "images": {
            split: {c: int((lab == i).sum()) for i, c in enumerate(classes)}
            for split, lab in labels.items()
        },
        "sizes": common,
        "modes": dict(Counter(m for split in files.values() for m in split["mode"]).most_common()),
        "skipped": {
            "count": len(skipped),
            "files": [{"name": n, "reason": why} for n, why in skipped[:SHOWN]],
        },
        "ignored_files": other_files,
        "duplicates": _duplicates(files["train"], files["test"]),
        "normalisation": {"mean": list(preprocess.mean), "std": list(preprocess.std)},
    }


def _duplicates(train: dict[str, list[str]], test: dict[str, list[str]]) -> dict[str, Any]:
    """Test images whose bytes equal a training image's: a test that partly measures memory."""
    first: dict[str, str] = {}
    for name, digest in zip(train["name"], train["hash"], strict=True):
        first.setdefault(digest, name)
    pairs = [
        [first[digest], name]
        for name, digest in zip(test["name"], test["hash"], strict=True)
        if digest in first
    ]
    return {"count": len(pairs), "examples": pairs[:SHOWN]}
