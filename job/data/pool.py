"""Decode a split's files in parallel, over the container's CPUs, into one NCHW array.

Pillow spends most of its time per image holding the GIL, so threads would only take turns:
a pool of processes decodes chunks of files, each returning the pixels, what the data report
says of each file (size, colour mode, content hash) and the channel sums of the statistics.
Workers are forked where the platform can (as torch's own DataLoader workers are): a spawned
worker would re-run the caller's main module, which a script without a ``__main__`` guard
cannot bear; a worker uses numpy and Pillow only, never torch's threads.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from job.data.images import ImageError, decode_info
from job.data.sources import Ref

CHUNK = 64  # files a worker decodes per task: large enough to amortise the transfer


@dataclass
class Decoded:
    """A split decoded into ``images``; failed files are left as zeros and listed."""

    images: np.ndarray
    ok: np.ndarray
    """bool (N,): whether file ``i`` decoded."""
    sizes: list[str] = field(default_factory=list)
    """``WxH`` of each file as stored ("" for a failure)."""
    modes: list[str] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    """sha256 of each file's bytes (exact duplicates share it)."""
    errors: list[tuple[int, str]] = field(default_factory=list)
    """(index, reason) of each file that did not decode."""
    sums: np.ndarray = field(default_factory=lambda: np.zeros(2 * 3))
    """Per channel, the sum of pixel values and of their squares, on the 0…1 scale."""


@dataclass
class _Chunk:
    pixels: np.ndarray
    sizes: list[str]
    modes: list[str]
    hashes: list[str]
    errors: list[tuple[int, str]]
    sums: np.ndarray


def decode_split(refs: Sequence[Ref], size: int, out: np.ndarray, workers: int) -> Decoded:
    """Decode ``refs`` into ``out`` ((N, 3, size, size) uint8, in memory or a memory map)."""
    result = Decoded(images=out, ok=np.ones(len(refs), dtype=bool))
    chunks = [refs[i : i + CHUNK] for i in range(0, len(refs), CHUNK)]
    for start, chunk in zip(
        range(0, len(refs), CHUNK), _decoded(chunks, size, workers), strict=True
    ):
        out[start : start + len(chunk.pixels)] = chunk.pixels.transpose(0, 3, 1, 2)
        result.sizes += chunk.sizes
        result.modes += chunk.modes
        result.hashes += chunk.hashes
        result.errors += [(start + i, why) for i, why in chunk.errors]
        result.sums += chunk.sums
    for i, _ in result.errors:
        result.ok[i] = False
    return result


def _decoded(chunks: list[Sequence[Ref]], size: int, workers: int) -> Iterator[_Chunk]:
    """Each chunk decoded, in order: in this process when one worker would do."""
    if workers <= 1 or len(chunks) <= 1:
        yield from (decode_chunk(chunk, size) for chunk in chunks)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=context) as pool:
        yield from pool.map(decode_chunk, chunks, [size] * len(chunks))


def decode_chunk(refs: Sequence[Ref], size: int) -> _Chunk:
    """One task of a worker: decode each file, noting what the data report needs."""
    chunk = _Chunk(np.zeros((len(refs), size, size, 3), np.uint8), [], [], [], [], np.zeros(0))
    zips: dict[str, zipfile.ZipFile] = {}
    try:
        for i, ref in enumerate(refs):
            try:
                blob = _bytes(ref, zips)
                chunk.hashes.append(hashlib.sha256(blob).hexdigest())
                info = decode_info(blob, size)
            except (ImageError, OSError, zipfile.BadZipFile, zlib.error) as exc:
                if len(chunk.hashes) == i:
                    chunk.hashes.append("")
                reason = str(exc) if isinstance(exc, ImageError) else f"cannot be read ({exc})"
                chunk.sizes.append("")
                chunk.modes.append("")
                chunk.errors.append((i, reason))
                continue
            chunk.pixels[i] = info.pixels
            chunk.sizes.append(f"{info.width}x{info.height}")
            chunk.modes.append(info.mode)
    finally:
        for zf in zips.values():
            zf.close()
    chunk.sums = _channel_sums(chunk.pixels)
    return chunk


def _channel_sums(pixels: np.ndarray) -> np.ndarray:
    """Per channel, the sum of the values and of their squares on the 0…1 scale, for the
    whole chunk at once in exact integers (failed files are zeros and add nothing): float
    arithmetic per image cost more than decoding it at 96 pixels."""
    flat = pixels.reshape(-1, 3)
    sums = flat.sum(0, dtype=np.int64)
    squares = np.einsum("ij,ij->j", flat, flat, dtype=np.int64)
    return np.concatenate([sums / 255.0, squares / 255.0**2])


def _bytes(ref: Ref, zips: dict[str, zipfile.ZipFile]) -> bytes:
    """A file's bytes; a zip archive is opened once per chunk."""
    if isinstance(ref, bytes):
        return ref
    if isinstance(ref, tuple):
        archive, member = ref
        if archive not in zips:
            zips[archive] = zipfile.ZipFile(archive)
        return zips[archive].read(member)
    return Path(ref).read_bytes()
