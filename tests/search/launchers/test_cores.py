"""CorePool (search/launchers/cores.py): disjoint core sets for a launcher's slots."""

from __future__ import annotations

import threading

import pytest

from search.launchers.cores import CorePool, Share


@pytest.mark.parametrize(
    ("cpus", "slots", "sets", "threads"),
    [
        ([0, 1, 2, 3], 2, [{0, 1}, {2, 3}], 2),
        ([0, 1, 2, 3, 4], 2, [{0, 1}, {2, 3}], 2),  # the odd core stays idle: equal shares
        ([4, 5, 6, 7, 8, 9], 3, [{4, 5}, {6, 7}, {8, 9}], 2),
        ([0, 1], 2, [{0}, {1}], 1),
    ],
)
def test_slots_get_disjoint_equal_core_sets(
    cpus: list[int], slots: int, sets: list[set[int]], threads: int
) -> None:
    pool = CorePool(slots, cpus)
    shares = [pool.take() for _ in range(slots)]
    assert [set(s.cpus) for s in shares if s] == sets
    assert {s.threads for s in shares if s} == {threads}


def test_fewer_cores_than_slots_pins_nothing_and_gives_one_thread() -> None:
    pool = CorePool(3, [0, 1])
    assert [pool.take() for _ in range(3)] == [Share(1)] * 3


def test_one_slot_divides_nothing() -> None:
    assert CorePool(1, [0, 1, 2, 3]).take() is None


def test_a_set_given_back_is_taken_again() -> None:
    pool = CorePool(2, [0, 1])
    first, second = pool.take(), pool.take()
    assert pool.take() == Share(1)  # a third trial at once (a retry overlapping): unpinned
    pool.give_back(first)
    assert pool.take() == first
    assert second is not None and second.cpuset() == "1"


def test_workers_starting_at_once_never_share_a_set() -> None:
    pool = CorePool(8, list(range(16)))
    taken: list[Share | None] = []
    workers = [threading.Thread(target=lambda: taken.append(pool.take())) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    cpus = [c for share in taken if share for c in share.cpus]
    assert sorted(cpus) == list(range(16))
