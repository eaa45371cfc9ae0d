"""scikit-learn's handwritten digits as a folder of images the job trains on, and a reference.

``python examples/digits.py DIR`` writes the 1,797 8×8 greyscale digits that ship inside
scikit-learn (``sklearn.datasets.load_digits``, no download) as PNG files in ten class folders,
``DIR/0/`` … ``DIR/9/``, with no split: the job holds out TEST_FRACTION of each class itself.
Then ``DATA_URL=file://DIR python -m job`` trains on them (docs/images.md: the example).

``--reference`` also prints the test accuracy of two simple classifiers on the raw pixels,
trained on the job's training images and tested on the SAME images the job holds out (the
job's own split function, at ``--test-fraction``, default the job's TEST_FRACTION).

Needs the ``examples`` extra (``pip install -e '.[examples]'``). Exit codes: 0 done, 2 bad
input (DIR holds something else; scikit-learn missing), one sentence on stderr.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from job.contract import ExitCode, default, variable

DIGIT_MAX = 16
"""load_digits' pixels are counts of 0 to 16 set bits in a 4×4 block of the scanned form."""


def main(argv: list[str] | None = None) -> int:
    """Write the folder (unless it already holds exactly it), then the reference if asked."""
    args = _parser().parse_args(argv)
    try:
        digits = _load_digits()
        folder = args.folder.resolve()
        if _holds_the_digits(folder, digits.target):
            print(f"{folder} already holds the digits; left as it is", file=sys.stderr)
        else:
            _write(folder, digits.images, digits.target)
            print(f"wrote {len(digits.target)} images in 10 class folders to {folder}")
        if args.reference:
            _print_reference(folder, args.test_fraction)
    except _Refused as exc:
        print(exc, file=sys.stderr)
        return ExitCode.BAD_CONFIG
    return ExitCode.DONE


class _Refused(Exception):
    """Bad input: one sentence that names the problem and the fix."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python examples/digits.py",
        description="Write scikit-learn's handwritten digits as <class>/ folders of PNGs.",
    )
    parser.add_argument("folder", type=Path, help="folder to write (new, or holding the digits)")
    parser.add_argument(
        "--reference",
        action="store_true",
        help="print the test accuracy of logistic regression and an RBF SVM on the raw pixels, "
        "on the test images the job holds out",
    )
    parser.add_argument(
        "--test-fraction",
        type=_fraction,
        default=default("TEST_FRACTION"),
        help="the job's TEST_FRACTION to split by (default: the job's, %(default)s)",
    )
    return parser


def _fraction(text: str) -> float:
    """TEST_FRACTION's own parser, its message as argparse's."""
    try:
        return float(variable("TEST_FRACTION").parse(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _load_digits():  # sklearn.utils.Bunch: scikit-learn is optional, so no annotation
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise _Refused(
            "scikit-learn is not installed; install the examples extra: "
            "pip install -e '.[examples]'."
        ) from None
    return load_digits()


def _names(labels: np.ndarray) -> list[str]:
    """Each image's file name inside the folder: ``<class>/<index in load_digits>.png``."""
    return [f"{label}/{i:04d}.png" for i, label in enumerate(labels)]


def _holds_the_digits(folder: Path, labels: np.ndarray) -> bool:
    """True when ``folder`` holds exactly the files this script writes; False when it does
    not exist or is empty; refused when it holds anything else (never overwritten)."""
    if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        return False
    found = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    if found == sorted(_names(labels)):
        return True
    raise _Refused(
        f"{folder} exists and holds other files; give a new folder, or remove it to write "
        "the digits there."
    )


def _write(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write the PNGs into a new folder beside ``folder`` and rename it into place, so an
    interrupted run leaves no half-written folder."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        # 0..16 → 0..255: the full range of an 8-bit greyscale PNG, exactly as load_digits has it.
        pixels = np.rint(images * (255 / DIGIT_MAX)).astype(np.uint8)
        for name, image in zip(_names(labels), pixels, strict=True):  # 2-D uint8: mode L
            (staging / name).parent.mkdir(exist_ok=True)
            Image.fromarray(image).save(staging / name)
        staging.chmod(0o755)  # mkdtemp makes it 0700: the job may run as another user
        if folder.exists():
            folder.rmdir()  # empty: _holds_the_digits said so
        os.rename(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _split(folder: Path, fraction: float) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The job's train and test (name, label) pairs for ``folder``, by the job's own code."""
    from job.data.layout import arrange
    from job.data.sources import list_source

    url = folder.as_uri()
    listing = list_source(folder, url)
    layout = arrange(listing.folders, listing.files, fraction, url)
    return layout.train, layout.test


def _pixels(folder: Path, pairs: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray]:
    """The PNGs' raw pixels in [0, 1], one row per image, and their labels."""
    rows = [np.asarray(Image.open(folder / name), dtype=np.float64).ravel() for name, _ in pairs]
    return np.stack(rows) / 255, np.array([label for _, label in pairs])


def _print_reference(folder: Path, fraction: float) -> None:
    """Fit each reference on the job's training images; print its accuracy on the test ones."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    train, test = _split(folder, fraction)
    x_train, y_train = _pixels(folder, train)
    x_test, y_test = _pixels(folder, test)
    print(
        f"the job's split at TEST_FRACTION={fraction}: {len(train)} training and "
        f"{len(test)} test images"
    )
    references = {
        "logistic regression, raw pixels": LogisticRegression(max_iter=5000),
        "SVM (RBF kernel), raw pixels": SVC(),
    }
    for name, model in references.items():
        accuracy = model.fit(x_train, y_train).score(x_test, y_test)
        print(f"reference test accuracy, {name}: {accuracy:.4f}")


if __name__ == "__main__":
    sys.exit(main())
