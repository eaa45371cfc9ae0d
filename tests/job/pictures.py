"""Folders of real labelled pictures for the model-side tests: CIFAR-10's own PNGs (the real
archive, test split), re-encoded as JPEG or PNG at other sizes, as 2 to 37 classes."""

from __future__ import annotations

import functools
import io
import tarfile
from pathlib import Path

from PIL import Image


@functools.cache
def cifar_pictures(archive: Path, per_class: int) -> dict[str, tuple[bytes, ...]]:
    """The first ``per_class`` PNGs of each class in the real archive's test split (read from
    its start: the fast.ai archive stores test/ first, class by class)."""
    found: dict[str, list[bytes]] = {}
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 4 or parts[1] != "test":
                if found and parts[1:2] == ["train"]:
                    break  # past the test split
                continue
            pictures = found.setdefault(parts[2], [])
            if len(pictures) < per_class:
                f = tar.extractfile(member)
                assert f is not None
                pictures.append(f.read())
    return {name: tuple(pictures) for name, pictures in sorted(found.items())}


def regroup(pictures: dict[str, tuple[bytes, ...]], classes: int) -> dict[str, list[bytes]]:
    """The pictures dealt into ``classes`` classes named ``<CIFAR class>-<k>``: the CIFAR
    classes themselves when ``classes`` is 10, the first ``classes`` of them when fewer, and
    each CIFAR class cut into several when more."""
    names = sorted(pictures)
    if classes <= len(names):
        return {name: list(pictures[name]) for name in names[:classes]}
    groups: dict[str, list[bytes]] = {}
    for c in range(classes):
        name = names[c % len(names)]
        cut = c // len(names)
        cuts = -(-classes // len(names))
        groups[f"{name}-{cut}"] = list(pictures[name][cut::cuts])
    return groups


def reencode(png: bytes, size: int, fmt: str) -> bytes:
    """A 32 × 32 PNG scaled (bicubic) so its shorter side is ``size`` and its longer side a
    third more, saved as ``fmt`` (``JPEG``, ``PNG``, …): an off-square photo of the object."""
    with Image.open(io.BytesIO(png)) as image:
        scaled = image.convert("RGB").resize((size * 4 // 3, size), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    scaled.save(buf, format=fmt)
    return buf.getvalue()


def write_folder(
    root: Path,
    groups: dict[str, list[bytes]],
    *,
    size: int,
    fmt: str = "JPEG",
    test_every: int = 4,
) -> Path:
    """``root/train/<class>/`` and ``root/test/<class>/`` of the pictures re-encoded at
    ``size`` as ``fmt``; every ``test_every``-th picture of a class goes to test/."""
    suffix = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif"}[fmt]
    for name, pngs in groups.items():
        for i, png in enumerate(pngs):
            split = "test" if i % test_every == 0 else "train"
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}-{i:04d}{suffix}").write_bytes(reencode(png, size, fmt))
    return root
