"""The fakes that the tests and the benchmarks share, one of each.

- :mod:`testkit.job`: the stand-in job (speaks the job's event protocol, trains nothing);
- :mod:`testkit.postgres`: a throwaway PostgreSQL server, and a fake one that answers with
  a fault;
- :mod:`testkit.jobrun`: starting the real ``python -m job`` as a subprocess.

Standard library and :mod:`job.contract` only, so the lightest test can import it.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
"""The repository root: the working folder of every job, search and pytest started here."""
