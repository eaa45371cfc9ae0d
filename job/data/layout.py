"""Which files are which class and split: the layouts of docs/images.md, from names alone.

``train/<class>/…`` with ``test/<class>/…`` (or ``val/``, ``valid/``), or ``<class>/…``
alone, of which :func:`holdout` keeps a stratified share for testing, chosen by a hash of
each file's name so that it never moves with SEED. Either may sit inside one top folder.
Bad layouts are refused with one sentence (DataError, exit 3).
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

from job.data.images import IMAGE_SUFFIXES
from job.errors import DataError

MAX_CLASSES = 1000
TEST_SPLITS = ("test", "val", "valid")
"""The folders taken as the test split beside ``train/``, the first present in this order."""
_FORMATS = "PNG, JPEG, WebP, BMP or GIF"


@dataclass(frozen=True)
class Layout:
    """The classes (sorted) and each split's files as (name in the source, label), in the
    source's order."""

    kind: str
    """``split`` (train/ and test/ folders) or ``holdout`` (class folders alone)."""
    classes: tuple[str, ...]
    train: list[tuple[str, int]]
    test: list[tuple[str, int]]


def arrange(folders: Iterable[str], files: Iterable[str], fraction: float, url: str) -> Layout:
    """The layout of a source's (non-hidden) folder and file names, in the source's order."""
    files = list(files)
    dirs = {tuple(n.split("/")) for n in folders}
    dirs |= {tuple(n.split("/"))[:i] for n in files for i in range(1, n.count("/") + 1)}
    top = _top_folder(dirs, files)
    dirs = {d[len(top) :] for d in dirs if d[: len(top)] == top and len(d) > len(top)}
    prefix = "".join(f"{t}/" for t in top)
    names = [n.removeprefix(prefix) for n in files if n.startswith(prefix) and _is_image(n)]
    position = {name: i for i, name in enumerate(names)}
    level = {d[0] for d in dirs}
    splits = [s for s in TEST_SPLITS if s in level]
    if "train" in level and splits:
        train = _classes_under(dirs, names, url, "train")
        test = _classes_under(dirs, names, url, splits[0])
        _same_classes(train, test, splits[0], url)
        classes = tuple(sorted(train))
        return Layout(
            "split",
            classes,
            _labelled(train, classes, position, prefix),
            _labelled(test, classes, position, prefix),
        )
    if "train" in level or splits:
        has, lacks = (
            ("train/", "test/, val/ or valid/") if "train" in level else (f"{splits[0]}/", "train/")
        )
        raise DataError(
            f"The data at {url} has {has} but not {lacks} beside it; add it, or put the class "
            "folders at the top to hold out TEST_FRACTION of each class."
        )
    found = _classes_under(dirs, names, url, "")
    classes = tuple(sorted(found))
    train, test = holdout(found, fraction)
    return Layout(
        "holdout",
        classes,
        _labelled(train, classes, position, prefix),
        _labelled(test, classes, position, prefix),
    )


def _is_image(name: str) -> bool:
    return posixpath.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _top_folder(dirs: set[tuple[str, ...]], files: list[str]) -> tuple[str, ...]:
    """``(top,)`` when everything sits inside one folder that itself holds folders, else
    ``()``: a lone ``cat/`` of pictures is one class, not a top folder."""
    firsts = {d[0] for d in dirs} | {f.split("/")[0] for f in files}
    if len(firsts) == 1 and any(len(d) >= 2 for d in dirs):
        return (next(iter(firsts)),)
    return ()


def _classes_under(
    dirs: set[tuple[str, ...]], names: list[str], url: str, split: str
) -> dict[str, list[str]]:
    """``{class: [image names]}`` for the folders right under ``split`` (or the top), each
    holding images at any depth; an empty class folder is refused."""
    base = (split,) if split else ()
    found: dict[str, list[str]] = {
        d[len(base)]: [] for d in sorted(dirs) if d[: len(base)] == base and len(d) > len(base)
    }
    prefix = f"{split}/" if split else ""
    for name in names:
        rest = name.removeprefix(prefix)
        if name.startswith(prefix) and "/" in rest:
            found[rest.split("/")[0]].append(name)
    _check_classes(found, url, prefix)
    return found


def _check_classes(found: dict[str, list[str]], url: str, where: str) -> None:
    empty = sorted(c for c, names in found.items() if not names)
    if not found:
        raise DataError(
            f"The data at {url} has no class folders{' in ' + where if where else ''}: expected "
            "train/<class>/ with test/<class>/, or <class>/ folders of images (docs/images.md)."
        )
    if empty:
        raise DataError(
            f"The data at {url} has class folders without images ({_few(empty)} in "
            f"{where or 'the top folder'}); add {_FORMATS} pictures or remove them."
        )
    if len(found) < 2 and where != "train/" and where.rstrip("/") in TEST_SPLITS:
        return  # the test split's classes are compared with train's instead
    if len(found) < 2:
        raise DataError(
            f"The data at {url} has one class ({next(iter(found))!r}); a classifier needs at "
            "least 2 class folders."
        )
    if len(found) > MAX_CLASSES:
        raise DataError(
            f"The data at {url} has {len(found)} class folders; at most {MAX_CLASSES} are "
            "supported."
        )


def _same_classes(
    train: dict[str, list[str]], test: dict[str, list[str]], split: str, url: str
) -> None:
    only_train, only_test = sorted(train.keys() - test.keys()), sorted(test.keys() - train.keys())
    if only_train or only_test:
        parts = [f"only in train/: {_few(only_train)}"] if only_train else []
        parts += [f"only in {split}/: {_few(only_test)}"] if only_test else []
        raise DataError(
            f"The data at {url} has different classes in train/ and {split}/ "
            f"({'; '.join(parts)}); give both the same class folders."
        )


def _few(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(repr(n) for n in names[:shown]) + more


def holdout(
    found: dict[str, list[str]], fraction: float
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Each class's files split into train and test: the ``fraction`` (rounded, at least one,
    never all) whose sha256 of the name comes first. Neither SEED nor the source's order nor
    the other files change which split a file is in; each split keeps the source's order."""
    train: dict[str, list[str]] = {}
    test: dict[str, list[str]] = {}
    for cls, names in found.items():
        n_test = min(max(1, round(fraction * len(names))), len(names) - 1)
        ranked = sorted(names, key=lambda n: hashlib.sha256(n.encode()).digest())
        held = set(ranked[:n_test])
        train[cls] = [n for n in names if n not in held]
        test[cls] = [n for n in names if n in held]
    return train, test


def _labelled(
    found: dict[str, list[str]], classes: tuple[str, ...], position: dict[str, int], top: str
) -> list[tuple[str, int]]:
    """(name in the source, label) pairs in the source's order."""
    index = {cls: i for i, cls in enumerate(classes)}
    label = {name: index[cls] for cls, names in found.items() for name in names}
    return [(top + name, label[name]) for name in sorted(label, key=position.__getitem__)]
