"""Run an exported model where only torch can be imported: a fresh ``python -I -S`` in an
empty folder with torch's site-packages alone on sys.path (neither this checkout nor its
editable install is importable)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

FRESH = """
import importlib.util, sys
import torch
assert importlib.util.find_spec("job") is None, "this project is importable"
model = torch.jit.load(sys.argv[1])
data = torch.load(sys.argv[2])
images = data["images"].float() / 255 if sys.argv[3] == "float" else data["images"]
if sys.argv[3] == "channels_last":
    images = images.permute(0, 2, 3, 1)
with torch.inference_mode():
    predicted = model(images).argmax(dim=1)
print((predicted == data["labels"]).double().mean().item())
"""


def fresh_accuracy(
    tmp: Path, model: Path, images: torch.Tensor, labels: torch.Tensor, form: str = "uint8"
) -> float:
    """The accuracy of ``model`` on uint8 NCHW ``images`` given as ``form`` (uint8, float in
    [0, 1], or channels_last uint8), computed by a fresh interpreter without this project."""
    empty = tmp / "empty"
    empty.mkdir()
    data = tmp / "test-images.pt"
    torch.save({"images": images, "labels": labels}, data)
    site = str(Path(torch.__file__).parent.parent)
    script = f"import sys; sys.path.append({site!r})\n" + FRESH
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script, str(model), str(data), form],
        cwd=empty,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return float(proc.stdout)
