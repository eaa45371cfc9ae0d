"""One picture in, one square uint8 array out: the decode training and ``predict`` share.

Pillow reads the file (PNG, JPEG, WebP, BMP, GIF; the first frame of an animation), turns it
upright by its EXIF orientation, converts it to RGB, resizes the shorter side to ``size`` and
crops the centre. Standard library, numpy and Pillow only: worker processes import this module
without torch.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from job.contract import IMAGE_FORMATS

IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"})
"""The file suffixes (lower case) read as images; other files are ignored."""

_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")  # Pillow's names of the accepted formats


class ImageError(ValueError):
    """A file that is not a readable image, or an image bomb; the message is a short reason."""


@dataclass(frozen=True)
class Decoded:
    """A decoded image and what the data report says about its file."""

    pixels: np.ndarray
    """(size, size, 3) uint8, RGB, HWC."""
    width: int
    height: int
    mode: str
    """Pillow's colour mode of the file (``RGB``, ``L``, ``P``, ``RGBA``, …)."""


def decode(source: Path | bytes, size: int) -> np.ndarray:
    """One image as (size, size, 3) uint8 HWC RGB: upright, shorter side resized to ``size``,
    centre-cropped. Raises :class:`ImageError` for an undecodable file or an image bomb."""
    return decode_info(source, size).pixels


def decode_info(source: Path | bytes, size: int) -> Decoded:
    """:func:`decode` with the file's original size and colour mode."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with warnings.catch_warnings():
            # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that: both are bombs.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream, formats=_FORMATS) as img:
                width, height, mode = img.width, img.height, img.mode
                img.seek(0)  # an animation's first frame
                _draft(img, size)
                upright = ImageOps.exif_transpose(img)
                pixels = _square(upright if upright.mode == "RGB" else upright.convert("RGB"), size)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageError(f"image bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageError(f"not a {IMAGE_FORMATS} image") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(f"not a readable image ({reason})") from None
    return Decoded(pixels=pixels, width=width, height=height, mode=mode)


def _draft(img: object, size: int) -> None:
    """Let a JPEG decode at 1/2, 1/4 or 1/8 scale while its shorter side stays ≥ ``size``:
    a 4000-pixel photo for a 96-pixel model decodes 64 times fewer pixels."""
    from PIL import JpegImagePlugin

    if isinstance(img, JpegImagePlugin.JpegImageFile):
        shorter = min(img.size)
        scale = shorter / size
        img.draft("RGB", (round(img.size[0] / scale), round(img.size[1] / scale)))


def _square(img: object, size: int) -> np.ndarray:
    """Shorter side resized to ``size`` (Pillow's bicubic with antialiasing), centre crop."""
    from PIL import Image

    assert isinstance(img, Image.Image)
    width, height = img.size
    if (width, height) != (size, size):
        scale = size / min(width, height)
        # At least ``size`` on both sides: rounding never leaves the crop short.
        new = (max(size, round(width * scale)), max(size, round(height * scale)))
        if new != img.size:
            img = img.resize(new, Image.Resampling.BICUBIC, reducing_gap=None)
        left, top = (img.width - size) // 2, (img.height - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8).reshape(size, size, 3)


def resize_array(pixels: np.ndarray, size: int) -> np.ndarray:
    """An already-decoded (H, W, 3) uint8 image squared to ``size`` as :func:`decode` does
    (CIFAR-10's python batches at another IMAGE_SIZE)."""
    from PIL import Image

    return _square(Image.fromarray(pixels), size)
