"""Files any machine can load: every tensor a run saves is moved to the CPU first.

``torch.save`` records the device of each tensor and ``torch.load`` (without ``map_location``)
puts it back there, so a ``model.pt`` or ``checkpoint.pt`` saved from GPU tensors fails to load
on a machine without that GPU. :func:`on_cpu` gives the state to save with every tensor on the
CPU: ``model.pt``, ``checkpoint.pt`` and a champion's copies of them then load with a plain
``torch.load(path)`` anywhere.
"""

from __future__ import annotations

import copy
from typing import Any

import torch


def on_cpu(obj: Any, *, snapshot: bool = False) -> Any:
    """``obj`` (tensors in dicts, lists and tuples, as ``state_dict()`` gives them) with every
    tensor on the CPU, detached from autograd.

    With ``snapshot``, CPU tensors are copied too, so the result keeps its values while the
    training that owns the originals goes on updating them in place; without it, a tensor
    already on the CPU is returned as it is (no second copy of the weights). A dict keeps its
    type and attributes (a ``state_dict``'s ``_metadata``, which ``load_state_dict`` reads).
    """
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=snapshot)
    if isinstance(obj, dict):
        out = copy.copy(obj)  # the same dict type, with its attributes, but its own entries
        for key, value in obj.items():
            out[key] = on_cpu(value, snapshot=snapshot)
        return out
    if isinstance(obj, list):
        return [on_cpu(value, snapshot=snapshot) for value in obj]
    if isinstance(obj, tuple):
        values = [on_cpu(value, snapshot=snapshot) for value in obj]
        return type(obj)(*values) if hasattr(obj, "_fields") else tuple(values)
    return obj  # numbers, strings, None: immutable, saved as they are
