"""bench.startup's start-up of a local search's warm slots, run for real on one slot."""

from __future__ import annotations

from bench.startup import warm_slots
from search.launchers.local import WARM_SAFE
from tests.conftest import need


def test_warm_slots_times_every_slot_forking_a_trial() -> None:
    need(WARM_SAFE, "warm starts need Linux (fork, PDEATHSIG, descriptors over a socket)")
    result = warm_slots(1)
    assert result["slots"] == 1
    assert result["exits"] == [0]  # the warm process forked a trial that ran
    assert result["seconds"] > 0
