"""The fakes that the tests and the benchmarks share, one of each.

- :mod:`testkit.job`: the stand-in job (speaks the job's event protocol, trains nothing);
- :mod:`testkit.postgres`: a throwaway PostgreSQL server, and a fake one that answers with
  a fault;
- :mod:`testkit.jobrun`: starting the real ``python -m job`` as a subprocess;
- :func:`alive`: whether a process the test started (or left behind) still runs.

Standard library and :mod:`job.contract` only, so the lightest test can import it.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
"""The repository root: the working folder of every job, search and pytest started here."""


def alive(pid: int) -> bool:
    """Whether process ``pid`` is still running (a zombie, dead but not reaped, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
