"""A model anyone can load: the trained ResNet9 as TorchScript, normalisation included.

``model.torchscript.pt`` loads with ``torch.jit.load`` alone (no code of this project) and takes
images as they come: ``uint8`` (0–255) or floating point in [0, 1], one image (C, H, W) or a
batch (N, C, H, W), channels first or last (…, H, W, 3), 32 × 32 pixels; it returns the logits
(N, classes). ``classes.json`` beside it lists the class names in logit order.

TorchScript rather than ``torch.export``: a ``.pt2`` program is specialised to its example
input's dtype (one traced for uint8 refuses a float tensor), while a scripted module branches on
the dtype and layout at run time, so one file serves every input above; and a TorchScript
archive loads in every torch of this project's range and in C++ (libtorch).
"""

# No ``from __future__ import annotations``: TorchScript reads the buffers' class annotations
# as real types, not strings.
import copy
import warnings
from pathlib import Path

import torch
from torch import nn

from job.contract import CLASSES_JSON, EXPORTED_MODEL
from job.files import atomic_write, write_json
from job.loader import MEAN, STD


class Classifier(nn.Module):
    """``model`` behind the tutorial's normalisation, for any of the inputs the module names."""

    scale: torch.Tensor  # per channel, (3, 1, 1): 1 / (255 std)
    shift: torch.Tensor  # per channel, (3, 1, 1): -mean / std

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        std = torch.tensor(STD).view(3, 1, 1)
        mean = torch.tensor(MEAN).view(3, 1, 1)
        # The loader's own multiply-add: x * scale + shift, so a uint8 image gives the very
        # values training and evaluation saw.
        self.register_buffer("scale", 1.0 / (255.0 * std))
        self.register_buffer("shift", -mean / std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of ``images`` (see the module docstring for the forms taken)."""
        x = images.unsqueeze(0) if images.dim() == 3 else images
        if x.shape[1] != 3 and x.shape[-1] == 3:
            x = x.permute(0, 3, 1, 2)  # channels last, as PIL and NumPy give them
        if x.dtype == torch.uint8:
            x = torch.addcmul(self.shift, x.float(), self.scale)
        else:
            x = torch.addcmul(self.shift, x.float() * 255.0, self.scale)
        return self.model(x.contiguous(memory_format=torch.channels_last))


def export(model: nn.Module, classes: tuple[str, ...], output_dir: Path) -> None:
    """Write ``model`` (in eval mode, on the CPU) as ``EXPORTED_MODEL`` and the class names as
    ``CLASSES_JSON`` in ``output_dir``; the trained model itself is left as it was."""
    cpu = copy.deepcopy(model).to("cpu").eval()
    with warnings.catch_warnings():
        # torch 2.14 marks torch.jit deprecated; docs/contract.md says why it is used anyway.
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(Classifier(cpu))
        atomic_write(output_dir / EXPORTED_MODEL, lambda f: torch.jit.save(scripted, f))
    write_json(output_dir / CLASSES_JSON, list(classes))
