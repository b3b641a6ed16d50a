"""Collector settings, pause accounting and the memory keeper's schedule."""

from __future__ import annotations

import gc
import logging

from rtc64.io import memory


def test_tune_freezes_start_up_and_turns_off_automatic_full_collections() -> None:
    try:
        frozen = memory.tune()
        assert frozen > 1000 and gc.get_freeze_count() == frozen
        young, _middle, full = gc.get_threshold()
        assert young == memory.YOUNG_THRESHOLD and full == memory.NO_AUTOMATIC_FULL
    finally:
        memory.untune()
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == (700, 10, 10)


def test_settle_takes_survivors_out_of_every_collection() -> None:
    try:
        memory.tune()
        before = gc.get_freeze_count()
        kept = [[i] for i in range(5000)]
        memory.settle()
        assert gc.get_freeze_count() >= before + 5000
        assert gc.get_count()[0] == 0, "nothing left for a young collection to scan"
        del kept  # frozen objects are still freed by reference counting
        assert gc.get_freeze_count() < before + 100
        assert memory.full_collection() >= 0 and gc.get_freeze_count() > 0
    finally:
        memory.untune()


def test_settle_never_freezes_a_tuple_of_atoms_still_tracked() -> None:
    """Keys and binding rows made between two settles are untracked before the freeze, so
    the next full collection does not walk them (100,000 contacts cost 0.12 s CPU there)."""
    try:
        memory.tune()
        rows = [(f"sip:u{i}@example.net", b"sip:u@192.0.2.1", float(i), i) for i in range(3000)]
        keys = [(f"sip:u{i}@example.net", b"contact") for i in range(3000)]
        memory.settle()
        assert not any(gc.is_tracked(t) for t in rows + keys)
    finally:
        memory.untune()


def test_gc_watch_measures_full_collections() -> None:
    watch = memory.GcWatch(logging.getLogger("test.gc"))
    try:
        gc.collect()
    finally:
        watch.close()
    assert watch.full_collections == 1 and watch.longest_full > 0
    gc.collect()
    assert watch.full_collections == 1, "closed: no longer called"


def test_keeper_collects_when_quiet_or_overdue_and_trims_after_a_drop() -> None:
    size = [50_000]
    busy = [True]
    released: list[bool] = []
    keeper = memory.MemoryKeeper(
        lambda: size[0], lambda: busy[0], logging.getLogger("test.mem"),
        release=lambda: released.append(True), quiet=2000, quiet_interval=60, max_interval=600,
    )  # fmt: skip
    watch = memory.GcWatch(logging.getLogger("test.gc"))
    try:
        keeper.check(0.0)
        keeper.check(100.0)
        assert watch.full_collections == 0, "busy and large: no full collection"
        keeper.check(600.0)
        assert watch.full_collections == 1, "overdue: collected anyway"
        size[0], busy[0] = 100, False
        keeper.check(610.0)
        assert watch.full_collections == 1, "quiet, but collected 10 s ago"
        keeper.check(670.0)
        assert watch.full_collections == 2
    finally:
        watch.close()
    assert keeper.trims == 1, "the load dropped from 50,000 transactions to 100"
    assert released == [True], "caches emptied once, after the drop"
