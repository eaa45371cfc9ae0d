"""`python -m job.predict` (``resnet-job-predict``): classify image files with a trained model.

``MODEL`` is a folder holding ``model.torchscript.pt`` and ``classes.json``: a run's OUTPUT_DIR,
a champion (``PROMOTE_DIR/champion``) or a PROMOTE_DIR itself (its champion is used). Each image
(PNG, JPEG, WebP, BMP or GIF, any size and mode) is decoded as training decoded its images
(:func:`job.data.images.decode`: upright, RGB, shorter side resized to the model's IMAGE_SIZE,
centre crop; 32 for a model exported before models recorded it), and one JSON line per image
goes to stdout, in the order given:
``{"image": PATH, "top": [{"class": NAME, "index": I, "probability": P}, …]}``.
The model is loaded first, then every image is read before any is classified: a missing or
unreadable one prints one sentence on stderr, nothing on stdout, and exits with its code
(:class:`PredictExit`).
The model runs through ``torch.jit.load`` alone, as any consumer of the champion would run it.
"""

from __future__ import annotations

import json
import sys
import traceback
import warnings
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from job.contract import CLASSES_JSON, EXPORTED_MODEL, IMAGE_FORMATS
from job.preprocess import CIFAR10

if TYPE_CHECKING:
    import numpy as np


class PredictExit(IntEnum):
    """How ``python -m job.predict`` (``resnet-job-predict``) ends (``docs/contract.md``)."""

    DONE = 0
    UNEXPECTED = 1
    """A bug: the traceback is printed."""
    BAD_MODEL = 2
    """A bad option, or the model folder is missing or holds no exported model."""
    NO_IMAGE = 3
    """An image path does not exist or is not a file."""
    BAD_IMAGE = 4
    """An image file is not a readable image of one of ``IMAGE_FORMATS``."""


PREDICT_EXIT_MEANINGS: dict[PredictExit, str] = {
    PredictExit.DONE: "every image classified",
    PredictExit.UNEXPECTED: "anything unexpected (a bug: the traceback is printed)",
    PredictExit.BAD_MODEL: "a bad option, or MODEL holds no readable exported model",
    PredictExit.NO_IMAGE: "an image path does not exist or is not a file",
    PredictExit.BAD_IMAGE: f"an image file is not a readable {IMAGE_FORMATS} image",
}
"""One line per exit code of the predictor, for its ``--help``."""


class _Failure(Exception):
    def __init__(self, code: PredictExit, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def model_folder(path: Path) -> Path:
    """The folder of the exported model ``path`` names (a PROMOTE_DIR gives its champion)."""
    if not (path / EXPORTED_MODEL).is_file() and (path / "champion" / EXPORTED_MODEL).is_file():
        return path / "champion"
    return path


def _check_folder(path: Path) -> Path:
    """The model folder ``path`` names, once it is known to exist (checked before the images
    are read, so a wrong MODEL is the sentence a user sees first)."""
    folder = model_folder(path)
    if not folder.is_dir():
        raise _Failure(
            PredictExit.BAD_MODEL,
            f"The model folder {str(path)!r} does not exist; give a run's OUTPUT_DIR, a "
            "champion or a PROMOTE_DIR.",
        )
    return folder


def _load_model(folder: Path) -> tuple[Any, list[str], int]:
    """The exported model, its classes and the side of its input in pixels."""
    import torch

    try:
        classes = json.loads((folder / CLASSES_JSON).read_text())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 deprecates torch.jit
            model = torch.jit.load(str(folder / EXPORTED_MODEL), map_location="cpu")
    except (OSError, ValueError, RuntimeError) as exc:
        raise _Failure(
            PredictExit.BAD_MODEL,
            f"{str(folder)!r} holds no readable {EXPORTED_MODEL} and {CLASSES_JSON} "
            f"({type(exc).__name__}); give the folder of a run that finished.",
        ) from None
    # A model exported before models recorded their preprocessing was CIFAR-10's, at 32.
    size = int(model.image_size) if hasattr(model, "image_size") else CIFAR10.size
    return model.eval(), [str(c) for c in classes], size


def read_image(path: Path, size: int) -> np.ndarray:
    """``path`` as ``size`` × ``size`` RGB pixels (HWC uint8), decoded as training decodes; a
    missing or unreadable file is a :class:`_Failure` naming it."""
    from job.data.images import ImageError, decode

    if not path.is_file():
        raise _Failure(
            PredictExit.NO_IMAGE, f"The image {str(path)!r} does not exist or is not a file."
        )
    try:
        return decode(path, size)
    except ImageError as exc:
        raise _Failure(
            PredictExit.BAD_IMAGE,
            f"The image {str(path)!r} cannot be used: {exc}.",
        ) from None
    except OSError as exc:  # unreadable: permissions, an I/O error
        raise _Failure(
            PredictExit.BAD_IMAGE, f"The image {str(path)!r} cannot be read ({exc.strerror})."
        ) from None


def classify(
    model: Any, classes: list[str], pixels: list[np.ndarray], top: int
) -> list[list[dict]]:
    """The ``top`` classes with their probabilities of each image's pixels."""
    import numpy as np
    import torch

    batch = torch.from_numpy(np.stack(pixels))  # channels last: the model takes them so
    with torch.inference_mode():
        probs = torch.softmax(model(batch).float(), dim=1)
    values, indices = probs.topk(min(top, len(classes)), dim=1)
    return [
        [
            {"class": classes[i], "index": i, "probability": round(p, 6)}
            for p, i in zip(row_p, row_i, strict=True)
        ]
        for row_p, row_i in zip(values.tolist(), indices.tolist(), strict=True)
    ]


@click.command(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    help=f"Classify IMAGES ({IMAGE_FORMATS}; any size, decoded as training decoded its images) "
    "with the exported model in MODEL (a run's OUTPUT_DIR, a champion or a PROMOTE_DIR); one JSON "
    "line per image.",
    epilog="\b\nExit codes (docs/contract.md):\n"
    + "\n".join(f"  {int(c)}  {meaning}" for c, meaning in PREDICT_EXIT_MEANINGS.items()),
)
@click.option("--top", type=click.IntRange(1), default=3, show_default=True, help="Classes shown.")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
def cli(top: int, model: Path, images: tuple[Path, ...]) -> None:
    """The command (help text above)."""
    net, classes, size = _load_model(_check_folder(model))
    pixels = [read_image(path, size) for path in images]  # every image read before any output
    for path, best in zip(images, classify(net, classes, pixels, top), strict=True):
        sys.stdout.write(json.dumps({"image": str(path), "top": best}) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: classify, and turn every failure into its documented exit code."""
    try:
        cli.main(args=argv, prog_name="resnet-job-predict", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(PredictExit.BAD_MODEL)
    except _Failure as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        sys.exit(exc.code)
    except Exception as exc:
        traceback.print_exc()
        sys.stderr.write(f"error: unexpected {type(exc).__name__}: {exc}; this is a bug.\n")
        sys.exit(PredictExit.UNEXPECTED)
    sys.exit(PredictExit.DONE)


if __name__ == "__main__":
    main()
