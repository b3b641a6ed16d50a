"""The process's memory: garbage-collector settings, pause accounting and heap trimming.

A proxy under load keeps every finished transaction for its retransmission timers (up to
32 s), so millions of objects live at once; CPython's automatic full collections scan
them all and stop the loop for a second or more. The gateway's per-call objects are
freed by reference counting (measured: no cycles), so:

- ``tune`` freezes what start-up created and turns automatic full collections off;
- ``settle`` (every 50 ms, from the lag monitor) collects the young generation and freezes
  what survived since: collections
  then only ever scan the last few tens of milliseconds of objects. (CPython 3.11 counts a
  deallocation against the young generation's allocation count, so while old
  transactions expire as fast as new ones start, the young generation grows unchecked
  and one young collection took 0.6 s in the overload benchmark; ``settle`` bounds it.)
  Frozen objects are still freed by reference counting;
- ``MemoryKeeper`` runs the full collection itself (unfreeze, collect, freeze) when the
  transaction tables are small (a short pause) or after ``max_interval`` at the latest, so
  rare cyclic garbage stays bounded, and after a load drop empties caches and returns
  freed heap pages to the system (glibc ``malloc_trim``);
- ``GcWatch`` measures every collection's pause from ``gc.callbacks``: wall time (what the
  loop saw) and the thread's CPU time (the collector's own work: on a shared machine the
  wall time also holds the time the process waited for a core).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

YOUNG_THRESHOLD = 2000
"""Net allocations between two young collections (CPython's default is 700)."""
MIDDLE_THRESHOLD = 10
NO_AUTOMATIC_FULL = 1_000_000_000
LONG_PAUSE = 0.1
"""Pauses from this long are logged at info."""
NOTABLE_PAUSE = 0.01
"""Young collections from this long are logged at debug (full ones always are)."""


def tune(young: int = YOUNG_THRESHOLD, middle: int = MIDDLE_THRESHOLD) -> int:
    """Collect and freeze what exists now (start-up), then set the thresholds with
    automatic full collections off. Returns the number of objects frozen."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(young, middle, NO_AUTOMATIC_FULL)
    return gc.get_freeze_count()


def settle() -> None:
    """Move every object that survived so far out of the collector's sight: a young
    collection first (at most ``YOUNG_THRESHOLD`` objects), where CPython stops tracking
    tuples of atoms (keys, binding rows) that would otherwise sit tracked among the frozen
    objects until the next full collection, then a freeze (O(1))."""
    gc.collect(0)
    gc.freeze()


def full_collection() -> int:
    """A full collection over everything, frozen objects included; frozen again after."""
    gc.unfreeze()
    try:
        return gc.collect()
    finally:
        gc.freeze()


def untune() -> None:
    """CPython's defaults again (tests, shutdown)."""
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)


class GcWatch:
    """Pause of every collection (``gc.callbacks``): the longest; full collections and
    young ones from ``NOTABLE_PAUSE`` logged at debug (at info from ``LONG_PAUSE``)."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.longest = 0.0
        self.longest_full = 0.0
        self.full_collections = 0
        self.collections = 0
        self.longest_full_cpu = 0.0
        self._started = 0.0
        self._started_cpu = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            self._started_cpu = time.thread_time()
            return
        pause = time.perf_counter() - self._started
        cpu = time.thread_time() - self._started_cpu
        self.collections += 1
        self.longest = max(self.longest, pause)
        if info.get("generation") != 2:
            if pause >= NOTABLE_PAUSE:
                level = logging.INFO if pause >= LONG_PAUSE else logging.DEBUG
                self.log.log(
                    level,
                    "gc: generation %s took %.3f s (%.3f s CPU)",
                    info.get("generation"),
                    pause,
                    cpu,
                )
            return
        self.full_collections += 1
        self.longest_full = max(self.longest_full, pause)
        self.longest_full_cpu = max(self.longest_full_cpu, cpu)
        level = logging.INFO if pause >= LONG_PAUSE else logging.DEBUG
        self.log.log(
            level,
            "gc: full collection took %.3f s (%.3f s CPU, %s collected, %d objects frozen)",
            pause,
            cpu,
            info.get("collected"),
            gc.get_freeze_count(),
        )

    def close(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


class MemoryKeeper:
    """Full collections at quiet moments, heap trimming after a load drop.

    ``size`` is how many transactions are live (what the heap holds scales with it),
    ``busy`` whether admission control is shedding, ``release`` empties caches that
    would pin memory after a peak. Call ``check(now)`` periodically.
    """

    def __init__(
        self,
        size: Callable[[], int],
        busy: Callable[[], bool],
        log: logging.Logger,
        *,
        release: Callable[[], None] = lambda: None,
        quiet: int = 2000,
        quiet_interval: float = 60.0,
        max_interval: float = 1800.0,
    ) -> None:
        self.size = size
        self.release = release
        self.busy = busy
        self.log = log
        self.quiet = quiet
        self.quiet_interval = quiet_interval
        self.max_interval = max_interval
        self.trims = 0
        self._last_full: float | None = None
        self._peak = 0
        self._trim = _malloc_trim()

    def check(self, now: float) -> None:
        size = self.size()
        self._peak = max(self._peak, size)
        if self._last_full is None:
            self._last_full = now
        since = now - self._last_full
        quiet = not self.busy() and size <= self.quiet
        if since >= self.max_interval or (quiet and since >= self.quiet_interval):
            self._last_full = now
            full_collection()
        if self._peak > max(4 * size, self.quiet):
            # The load dropped: caches refilled during the peak pin memory all over the
            # heap (CPython frees an arena only when it is empty); release them, then give
            # the free pages back to the system so RSS follows the load down.
            self.release()
            gc.collect(1)
            if self._trim is not None:
                self._trim(0)
            self.trims += 1
            self.log.debug("memory: heap trimmed (transactions %d -> %d)", self._peak, size)
            self._peak = size
