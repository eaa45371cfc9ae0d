"""CIFAR-10: its class names and its official python batches, read safely.

The pickles go through an unpickler that admits only numpy arrays, so no code can run.
"""

from __future__ import annotations

import io
import pickle
import re

import numpy as np

from job.errors import DataError

CIFAR_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

BATCH = re.compile(r"(?:^|/)cifar-10-batches-py/(data_batch_[1-5]|test_batch|batches\.meta)$")
"""The python layout's members, by name; group 1 is the batch."""
BATCHES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
"""The batches the python layout must hold (batches.meta is optional)."""


class _RestrictedUnpickler(pickle.Unpickler):
    """Loads CIFAR's pickled dicts of numpy arrays and nothing else: no code can run."""

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            # Python 3's protocol-2 pickles spell bytes as _codecs.encode(str, "latin1").
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"forbidden global {module}.{name}")


def _unpickle(blob: bytes, what: str, url: str) -> dict:
    try:
        obj = _RestrictedUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except Exception as exc:  # any malformed pickle is bad data, never a crash
        raise DataError(f"The archive from {url} has an invalid {what}: {exc}.") from None
    if not isinstance(obj, dict):
        raise DataError(f"The archive from {url} has an invalid {what}: not a dict.")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def decode_batches(batches: dict[str, bytes], url: str) -> dict[str, np.ndarray]:
    classes = list(CIFAR_CLASSES)
    if "batches.meta" in batches:
        names = _unpickle(batches["batches.meta"], "batches.meta", url).get("label_names")
        if isinstance(names, list) and names:
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    arrays: dict[str, np.ndarray] = {"classes": np.array(classes), "layout": np.array("python")}
    splits = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    for split, names in splits.items():
        images, labels = [], []
        for name in names:
            batch = _unpickle(batches[name], name, url)
            data, lab = batch.get("data"), batch.get("labels")
            if not (
                isinstance(data, np.ndarray)
                and data.dtype == np.uint8
                and data.ndim == 2
                and data.shape[1] == 3072
                and isinstance(lab, list)
                and len(lab) == len(data)
            ):
                raise DataError(f"The archive from {url} has a malformed {name}.")
            images.append(data.reshape(-1, 3, 32, 32))
            labels.extend(lab)
        arrays[f"{split}_images"] = np.concatenate(images)
        arrays[f"{split}_labels"] = np.asarray(labels, dtype=np.int64)
        if arrays[f"{split}_labels"].min() < 0 or arrays[f"{split}_labels"].max() >= len(classes):
            raise DataError(f"The archive from {url} has labels outside 0…{len(classes) - 1}.")
    return arrays
