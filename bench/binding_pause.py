"""What 100,000 registered contacts cost the event loop outside the keepalives themselves:
the objects they add to the garbage collector's walk, the pause of a full collection, and
one expiry tick of the store and of the registration log (issue 11).

In-process, no network: the bindings of ``bench.keepalive`` are written into a SQLite
store file, the store is opened as ``rtc64 serve`` opens it (its in-memory cache), every
binding is handed to a keepalive schedule and to the registration log (as REGISTERs
would), the collector is tuned as the gateway tunes it, and then:

- tracked objects added: ``len(gc.get_objects())`` after a collection, minus before;
- full collection: ``io.memory.full_collection()`` (unfreeze, collect, freeze), 3 times;
- times are CPU seconds of this process (``time.process_time``: the pause the loop would
  see on an idle core, independent of the machine's load);
- expiry tick: ``store.expire(now)`` and ``RegistrationLog.sweep`` with nothing due.

``python -m bench.binding_pause [--contacts N]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import logging
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from bench.keepalive import fill_store, store_file_name
from rtc64.gateway.calllog import RegistrationLog
from rtc64.gateway.keepalive.schedule import KeepaliveSchedule, KeepaliveSettings
from rtc64.gateway.location.sqlite import SqliteStore
from rtc64.io import memory


async def measure(data: Path) -> dict[str, float]:
    gc.collect()
    base = len(gc.get_objects())
    store = await SqliteStore.open(data / store_file_name())
    rng, counter = random.Random(1), itertools.count()
    schedule = KeepaliveSchedule(
        KeepaliveSettings(), rng=rng.random, new_token=lambda: b"%020x" % next(counter)
    )
    registrations = RegistrationLog(logging.getLogger("bench.binding_pause"))
    registrations.log.disabled = True
    now = time.time()
    for binding in await store.all_bindings(now):
        schedule.add(binding, 0.0, now)
        registrations.changed([], [binding], now)
    memory.tune()
    memory.full_collection()  # the gateway's first one (rows become untracked here)
    gc.unfreeze()
    gc.collect()
    tracked = len(gc.get_objects()) - base
    memory.tune()
    pauses = []
    for _ in range(3):
        t = time.process_time()
        memory.full_collection()
        pauses.append(time.process_time() - t)
    t = time.process_time()
    await store.expire(now)
    expire_s = time.process_time() - t
    t = time.process_time()
    await registrations.sweep(store, now)
    sweep_s = time.process_time() - t
    memory.untune()
    await store.close()
    assert len(schedule) == len(registrations)
    return {
        "contacts": len(schedule),
        "tracked": tracked,
        "full_gc_s": statistics.median(pauses),
        "expire_s": expire_s,
        "sweep_s": sweep_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.binding_pause")
    parser.add_argument("--contacts", type=int, default=100_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rtc64-bench-pause-") as tmp:
        fill_store(Path(tmp), args.contacts)
        r = asyncio.run(measure(Path(tmp)))
    print(
        f"contacts {r['contacts']:.0f}: tracked objects added {r['tracked']:.0f}, "
        f"full collection {r['full_gc_s'] * 1000:.1f} ms (median of 3), "
        f"store expiry tick {r['expire_s'] * 1000:.2f} ms, "
        f"registration-log sweep {r['sweep_s'] * 1000:.3f} ms; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
