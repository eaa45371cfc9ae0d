"""The model files of a run: ``model.pt``, and the trained ResNet9 as TorchScript with its own
preprocessing inside, which anyone can load.

``model.torchscript.pt`` loads with ``torch.jit.load`` alone (no code of this project) and takes
images as they come: ``uint8`` (0–255) or floating point in [0, 1], one image (C, H, W) or a
batch (N, C, H, W), channels first or last (…, H, W, 3), at the run's IMAGE_SIZE; it returns
the logits (N, classes). It carries ``image_size``, ``mean``, ``std`` and ``classes`` as
attributes; ``classes.json`` beside it lists the class names in logit order too.

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

from job.contract import CLASSES_JSON, EXPORTED_MODEL, MODEL
from job.files import atomic_write, write_json
from job.model import ModelInfo, save_model


class Classifier(nn.Module):
    """``model`` behind its own preprocessing, for any of the inputs the module names."""

    scale: torch.Tensor  # per channel, (3, 1, 1): 1 / (255 std)
    shift: torch.Tensor  # per channel, (3, 1, 1): -mean / std
    image_size: int  # px: the side the model was trained at
    mean: list[float]  # per channel, RGB, on the 0…1 scale
    std: list[float]
    classes: list[str]  # the class of each logit, in order

    def __init__(self, model: nn.Module, info: ModelInfo) -> None:
        super().__init__()
        self.model = model
        self.image_size = info.preprocess.size
        self.mean = list(info.preprocess.mean)
        self.std = list(info.preprocess.std)
        self.classes = list(info.classes)
        std = torch.tensor(info.preprocess.std).view(3, 1, 1)
        mean = torch.tensor(info.preprocess.mean).view(3, 1, 1)
        # The loader's own multiply-add: x * scale + shift, so a uint8 image gives the very
        # values training and evaluation saw.
        self.register_buffer("scale", 1.0 / (255.0 * std))
        self.register_buffer("shift", -mean / std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of ``images`` (see the module docstring for the forms taken)."""
        x = images.unsqueeze(0) if images.dim() == 3 else images
        if x.shape[1] != 3 and x.shape[-1] == 3:
            x = x.permute(0, 3, 1, 2)  # channels last, as PIL and NumPy give them
        if x.shape[2] != self.image_size or x.shape[3] != self.image_size:
            raise ValueError(
                "the model takes images of "
                + str(self.image_size)
                + " × "
                + str(self.image_size)
                + " pixels, not "
                + str(x.shape[2])
                + " × "
                + str(x.shape[3])
                + ": resize the shorter side to that, then crop the centre"
            )
        if x.dtype == torch.uint8:
            x = torch.addcmul(self.shift, x.float(), self.scale)
        else:
            x = torch.addcmul(self.shift, x.float() * 255.0, self.scale)
        return self.model(x.contiguous(memory_format=torch.channels_last))


def export(model: nn.Module, info: ModelInfo, output_dir: Path) -> None:
    """Write ``model`` as ``MODEL`` (its state_dict with ``info``), as ``EXPORTED_MODEL`` (in
    eval mode, on the CPU, with its preprocessing) and its classes as ``CLASSES_JSON`` in
    ``output_dir``; the trained model itself is left as it was."""
    save_model(output_dir / MODEL, model, info)
    cpu = copy.deepcopy(model).to("cpu").eval()
    with warnings.catch_warnings():
        # torch 2.14 marks torch.jit deprecated; docs/contract.md says why it is used anyway.
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(Classifier(cpu, info))
        atomic_write(output_dir / EXPORTED_MODEL, lambda f: torch.jit.save(scripted, f))
    write_json(output_dir / CLASSES_JSON, list(info.classes))
