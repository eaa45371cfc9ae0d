"""The start-up shortcuts (job/shortcuts.py): each still takes effect with the installed
libraries, and each computes what the plain library call computes.

Should an upgrade of torch, numpy or CPython change the detail a shortcut leans on, a test here
fails rather than the job silently falling back to the slow path. The optimizer's arithmetic
and its never importing torch._dynamo are tested with the training loop (test_train.py).
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from job.shortcuts import _GUARDED, eager_optimizer_class, npz_arrays
from tests.conftest import REPO

# -- optimizers without torch._dynamo ------------------------------------------------------


@pytest.mark.parametrize("base", [torch.optim.Adam, torch.optim.SGD], ids=["adam", "sgd"])
@pytest.mark.parametrize("method", ["step", *_GUARDED])
def test_torch_still_wraps_what_the_eager_class_unwraps(base: type, method: str) -> None:
    wrapped = getattr(base, method)
    assert inspect.unwrap(wrapped) is not wrapped, f"torch no longer wraps {method}"
    assert getattr(eager_optimizer_class(base), method) is not wrapped


@pytest.mark.parametrize("base", [torch.optim.Adam, torch.optim.SGD], ids=["adam", "sgd"])
def test_the_eager_class_is_a_subclass_of_torchs(base: type) -> None:
    eager = eager_optimizer_class(base)
    assert issubclass(eager, base) and eager.__name__ == f"Eager{base.__name__}"


# -- memory-mapped .npz members ------------------------------------------------------------


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "big": rng.integers(0, 256, (700, 3, 32, 32), dtype=np.uint8),  # > 1 MiB: mapped
        "fortran": np.asfortranarray(rng.random((400, 400))),
        "small": np.arange(10),
        "text": np.array(["airplane", "cat"]),
        "scalar": np.array("fastai"),
    }


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed], ids=["stored", "compressed"])
def test_npz_arrays_equal_numpys_own_load(tmp_path: Path, save) -> None:
    path = tmp_path / "cache.npz"
    save(path, **_arrays())
    loaded = npz_arrays(path)
    assert loaded.keys() == _arrays().keys()
    for name, expected in _arrays().items():
        assert loaded[name].dtype == expected.dtype
        assert np.array_equal(loaded[name], expected)


def test_large_stored_members_are_memory_mapped(tmp_path: Path) -> None:
    path = tmp_path / "cache.npz"
    np.savez(path, **_arrays())
    loaded = npz_arrays(path)
    assert isinstance(loaded["big"], np.memmap) and not isinstance(loaded["small"], np.memmap)


def test_a_member_whose_header_disagrees_with_the_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cache.npz"
    np.savez(path, big=np.zeros((700, 3, 32, 32), np.uint8))
    blob = bytearray(path.read_bytes())
    at = blob.index(b"(700, 3, 32, 32)")
    blob[at : at + 16] = b"(800, 3, 32, 32)"
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="does not match its zip entry"):
        npz_arrays(path)


# -- exit without teardown -----------------------------------------------------------------

_EXIT = """
import atexit, sys, threading, time
from job.shortcuts import exit_now
atexit.register(lambda: print("teardown ran", file=sys.stderr, flush=True))
if {thread!r}:
    def late():
        time.sleep(0.3)
        print("thread finished", file=sys.stderr, flush=True)
    threading.Thread(target=late).start()
if {pool!r}:  # an idle worker of a pool never shut down, as torch.compile leaves one
    from concurrent.futures import ThreadPoolExecutor
    ThreadPoolExecutor(1).submit(int).result()
print("written", end="")  # no newline, no flush: exit_now must flush it
exit_now({code})
"""


def _exit(
    code: int, *, thread: bool = False, pool: bool = False, full: bool = False
) -> tuple[int, str, str]:
    """Run the snippet; with ``full``, its stdout is /dev/full, where every flush fails."""
    with open("/dev/full" if full else os.devnull, "w") as sink:
        result = subprocess.run(
            [sys.executable, "-c", _EXIT.format(code=code, thread=thread, pool=pool)],
            cwd=REPO,
            stdout=sink if full else subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    return result.returncode, result.stdout or "", result.stderr


@pytest.mark.parametrize("code", [0, 3])
def test_exit_now_flushes_and_skips_the_teardown(code: int) -> None:
    returncode, out, err = _exit(code)
    assert returncode == code
    assert out == "written" and "teardown ran" not in err  # flushed; no atexit handler ran


def test_exit_now_joins_a_running_thread_first() -> None:
    returncode, out, err = _exit(0, thread=True)
    assert returncode == 0 and out == "written"
    assert "thread finished" in err and "teardown ran" not in err


def test_exit_now_ends_the_idle_workers_of_a_pool_never_shut_down() -> None:
    # Joining the threads alone waits forever here (the timeout fails the test): the pool's
    # workers end only once told to, as the interpreter's exit tells them.
    returncode, out, err = _exit(4, thread=True, pool=True)
    assert returncode == 4 and out == "written"
    assert "thread finished" in err and "teardown ran" not in err


def test_cpython_still_has_the_thread_shutdown_exit_now_calls() -> None:
    import threading

    assert callable(getattr(threading, "_shutdown", None)), "exit_now falls back to sys.exit"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_exit_now_falls_back_to_sys_exit_when_stdout_cannot_be_flushed() -> None:
    returncode, _, err = _exit(0, full=True)
    assert "teardown ran" in err  # the plain exit ran the interpreter's teardown
    assert returncode != 0  # and, as Python does, reported the lost output
