"""Start-up shortcuts: three places where the job steps around a library's slow default.

Each one leans on a detail of a library (torch, numpy's ``.npz`` layout, CPython's exit), so
each lives here, says what it saves, falls back to the plain library call when the detail is
not what it expects, and has a test in ``tests/job/test_shortcuts.py`` that fails if an
upgrade stops the shortcut from working. What each saves on the development machines is
measured in ``docs/benchmarks.md`` ("Start-up shortcuts").

- :func:`eager_optimizer_class`: an optimizer whose methods skip ``torch._dynamo``'s
  import, which torch's wrappers trigger on first call even when nothing is compiled.
- :func:`npz_arrays`: the decoded cache's large arrays memory-mapped instead of read, so a
  run reads only the images it uses.
- :func:`exit_now`: a finished run exits without the interpreter tearing torch down.
"""

from __future__ import annotations

import inspect
import io
import os
import struct
import sys
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

if TYPE_CHECKING:
    import numpy as np
    import torch

# -- optimizers without torch._dynamo --------------------------------------------------------

_GUARDED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")
"""Optimizer methods torch wraps in ``torch._disable_dynamo`` besides ``step``."""

_Opt = TypeVar("_Opt", bound="type[torch.optim.Optimizer]")


def eager_optimizer_class(base: _Opt) -> _Opt:
    """A subclass of ``base`` whose methods are torch's own, unwrapped from their dynamo guard.

    torch wraps ``step`` and a few other optimizer methods so that ``torch.compile`` leaves
    them alone; the wrappers import ``torch._dynamo`` on first call even when nothing is
    compiled. An eager run may call the wrapped functions directly, with the grad mode the
    ``step`` wrapper sets: the arithmetic and the state_dict are identical. A method torch no
    longer wraps (no ``__wrapped__``) is kept as it is: correct, only slower to start.
    """
    import torch

    namespace: dict[str, Any] = {}
    for method in _GUARDED:
        wrapped = getattr(base, method)
        raw = inspect.unwrap(wrapped)
        if raw is not wrapped:
            namespace[method] = raw
    raw_step = inspect.unwrap(base.step)
    if raw_step is not base.step:

        def step(self: torch.optim.Optimizer, closure: Callable[[], float] | None = None) -> Any:
            with torch.set_grad_enabled(self.defaults["differentiable"]):
                return raw_step(self, closure)

        namespace["step"] = step
    return cast(_Opt, type(f"Eager{base.__name__}", (base,), namespace))


# -- memory-mapped .npz members --------------------------------------------------------------

_MMAP_MIN = 1 << 20  # bytes: smaller members are simply read
_ZIP_LOCAL = struct.Struct("<4s22xHH")  # local file header: signature … name and extra lengths


def npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """An ``.npz``'s arrays, the large stored (uncompressed) ones memory-mapped read-only.

    ``np.load`` cannot map the members of an ``.npz``, so each stored member's data offset is
    found from its zip local header and its ``.npy`` header. Any other member, or a header in a
    form this does not know, is read in full by numpy (the plain call). A header that
    disagrees with its zip entry raises ValueError: the file is not what was written.
    """
    import numpy as np

    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as zf, path.open("rb") as f:
        for info in zf.infolist():
            name = info.filename.removesuffix(".npy")
            mapped = None
            if info.compress_type == zipfile.ZIP_STORED and info.file_size >= _MMAP_MIN:
                mapped = _map_member(path, f, info)
            if mapped is None:
                with zf.open(info) as member:
                    mapped = np.lib.format.read_array(member, allow_pickle=False)
            arrays[name] = mapped
    return arrays


def _map_member(path: Path, f: io.BufferedReader, info: zipfile.ZipInfo) -> np.ndarray | None:
    import numpy as np

    f.seek(info.header_offset)
    signature, name_len, extra_len = _ZIP_LOCAL.unpack(f.read(_ZIP_LOCAL.size))
    if signature != b"PK\x03\x04":
        raise ValueError(f"{info.filename} has no zip local header")
    start = info.header_offset + _ZIP_LOCAL.size + name_len + extra_len
    f.seek(start)
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        return None
    offset = f.tell()
    if dtype.hasobject or offset - start + dtype.itemsize * int(np.prod(shape)) != info.file_size:
        raise ValueError(f"{info.filename} does not match its zip entry")
    return np.memmap(
        path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C"
    )


# -- exit without teardown -------------------------------------------------------------------


def exit_now(code: int) -> NoReturn:
    """Exit with ``code`` at once, without the interpreter's teardown.

    Tearing torch down (its modules, the CUDA libraries) does nothing a finished run needs:
    every output is written and fsynced, and the events are flushed here. What the interpreter
    does first on exit is done here too (:func:`_end_threads`): thread pools are told to end
    and threads that are not daemons are joined. When the flush fails (a closed or full
    stdout), the plain ``sys.exit`` is taken instead, so Python reports the lost output as it
    always does; so it is when this CPython has no ``threading._shutdown``.
    """
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    if not _end_threads():
        sys.exit(code)
    os._exit(code)


def _end_threads() -> bool:
    """End the threads as the interpreter's exit does; False when this CPython lacks the way.

    ``threading._shutdown`` is what CPython's exit calls before its teardown: it runs the
    callbacks registered with ``threading._register_atexit`` (``concurrent.futures`` wakes the
    idle workers of every pool never shut down there, such as the compile workers
    ``torch.compile`` starts, so they end) and then joins every thread that is not a daemon.
    Joining the threads without those callbacks would wait forever on such idle workers.
    """
    shutdown = getattr(threading, "_shutdown", None)
    if not callable(shutdown):
        return False
    shutdown()
    return True
