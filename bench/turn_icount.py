# Instructions per allocation of the real TURN server (`rtc64 serve --only turn`, its UDP
# listener, uvloop, the answers' sends), counted by valgrind's callgrind: load-independent,
# unlike the CPU figures of `python -m bench turn` on a shared machine. The server runs
# under callgrind with instrumentation off; after a warm-up the bench's own allocation
# clients (bench/turn_load.py: Allocate → 401 → Allocate → Refresh 0, a fresh source
# address per cycle) run with instrumentation on, the counters are zeroed, the clients run
# again for the counted seconds and the dumped count is divided by the cycles they
# completed (cycles cut at the end or timed out are the error; they are printed). User
# space only: system calls' kernel work is not in it.
"""python -m bench.turn_icount [--creds lt,rest] [--seconds S] [--clients N]"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import turn_load as load
from bench.turn_servers import PASSWORD, SECRET, USER, Server

_CTX = mp.get_context("fork")


class _Callgrind(Server):
    """The rtc64 server of the TURN bench, run under callgrind (instrumentation off)."""

    out: Path

    def command(self) -> list[str]:
        cmd = super().command()
        i = cmd.index(sys.executable)
        return [
            *cmd[:i],
            "valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={self.out}",
            *cmd[i:],
        ]  # fmt: skip


def _clients(server: Server, creds: str, clients: int, seconds: float, net: int) -> int:
    """Run the allocation clients for ``seconds``; cycles completed."""
    source = load.CredentialSource(creds, USER, PASSWORD, SECRET)
    parent, child = _CTX.Pipe()
    now = time.monotonic()
    target = ("127.0.0.1", server.port)
    proc = _CTX.Process(
        target=load.alloc_worker,
        args=(child, target, source, clients, net, now, now, now + seconds, None),
    )
    proc.start()
    if not parent.poll(seconds + 30):
        proc.kill()
        raise RuntimeError("the allocation clients sent no counts")
    completed, _, failures = parent.recv()
    proc.join()
    if failures:
        print(f"  failures: {dict(failures)}", file=sys.stderr)
    return int(completed)


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def measure(
    creds: str, seconds: float, clients: int, warm: float, tmp: Path, keep: Path | None = None
) -> float:
    """Server instructions per allocation cycle with ``creds`` (lt or rest)."""
    server = _Callgrind("rtc64", tmp, None, [], creds=creds)
    server.out = tmp / f"cg.{creds}.out"
    server.start_timeout = 120.0
    server.start()
    try:
        pid = server.proc.pid if server.proc else 0
        _clients(server, creds, clients, warm, 77)
        _control(pid, "-i", "on")  # valgrind translates the code again: a slow start
        _clients(server, creds, clients, warm, 78)
        _control(pid, "-z")
        cycles = _clients(server, creds, clients, seconds, 79)
        _control(pid, "-d")
        _control(pid, "-i", "off")
    finally:
        server.stop()
    total = 0
    for dump in tmp.glob(f"cg.{creds}.out.*"):  # the dumps asked for (not the exit's)
        m = re.search(r"^totals: (\d+)", dump.read_text(errors="replace"), re.M)
        if m:
            total += int(m.group(1))
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(dump, keep / dump.name)
    print(f"  {creds}: {cycles:,} cycles counted, {total:,} instructions", file=sys.stderr)
    return total / max(cycles, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.turn_icount", description=__doc__)
    ap.add_argument("--creds", type=lambda s: s.split(","), default=["lt", "rest"])
    ap.add_argument("--seconds", type=float, default=20.0, help="counted seconds")
    ap.add_argument("--warm", type=float, default=5.0, help="uncounted seconds first")
    ap.add_argument("--clients", type=int, default=8, help="concurrent allocation clients")
    ap.add_argument("--keep", type=Path, help="copy callgrind's dumps there (callgrind_annotate)")
    args = ap.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind (callgrind_control) not installed", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="rtc64-turn-icount-") as tmp:
        for creds in args.creds:
            per = measure(creds, args.seconds, args.clients, args.warm, Path(tmp), args.keep)
            print(f"| {creds} | {per:,.0f} instructions per allocation (server, user space) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
