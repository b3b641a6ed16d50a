# In-process micro-benchmark of the TURN allocation cycle: TurnService with its real
# listeners and relay sockets (loopback), fed Allocate → 401 → Allocate with credentials →
# Refresh 0 straight through ``from_client`` (no client sockets, no network round trip),
# answers captured at ``listeners.send``. Reports CPU per cycle (process time) and Python
# calls per cycle (cProfile), the load-independent figure on a shared machine.
"""python -m bench.turn_micro [--cycles N] [--creds lt|rest] [--profile] [--no-tune]

``--icount N`` runs this module under valgrind's callgrind (warm-up only, then N and 2N
cycles, and the client side alone) and prints instructions per cycle of the server side:
user-space instructions, the load-independent figure (system calls' kernel work is not in
it; count those with strace -c). ``--before DIR`` also measures DIR/src's rtc64.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address, ip_network

from bench import icount as icount_tools
from bench import turn_stun as stun
from rtc64.io import memory
from rtc64.net.endpoint import Transport, parse_listen
from rtc64.turn.settings import TurnSettings
from rtc64.turnserver.credentials import Credentials, CredentialSettings, long_term_key
from rtc64.turnserver.peers import PeerPolicy
from rtc64.turnserver.quotas import ChallengeLimiter
from rtc64.turnserver.service import TurnService, TurnServiceSettings

REALM = "bench.rtc64"
USER, PASSWORD = "bench", "secret-password"
SECRET = "rest-secret"


@dataclass(frozen=True, slots=True)
class _Record:
    name: str
    realm: str
    ha1_md5: str
    ha1_sha256: str


class _Store:
    async def get_user(self, name: str) -> _Record | None:
        if name != USER:
            return None
        return _Record(
            USER,
            REALM,
            long_term_key(USER, REALM, PASSWORD, 1).hex(),
            long_term_key(USER, REALM, PASSWORD, 2).hex(),
        )


async def _service(creds: str) -> tuple[TurnService, Credentials]:
    credentials = Credentials(
        CredentialSettings(
            realm=REALM,
            long_term=creds == "lt",
            secrets=(SECRET.encode(),) if creds == "rest" else (),
        ),
        _Store(),
    )
    settings = TurnServiceSettings(
        core=TurnSettings(realm=REALM, user_quota=1_000_000),
        listen=(parse_listen("udp:127.0.0.1:0"),),
        relay_addresses=(ip_address("127.0.0.1"),),
        ports=(20000, 29999),  # not the relay ports of `python -m bench turn`
    )
    service = TurnService(
        settings,
        credentials=credentials,
        policy=PeerPolicy(allow=[ip_network("127.0.0.0/8")]),
        fetch=credentials.fetch,
        challenges=ChallengeLimiter(),
    )
    await service.start()
    if creds == "lt":
        await credentials.fetch(USER)
    return service, credentials


def _cycles(service: TurnService, creds: str) -> Callable[[int], Awaitable[None]]:
    """A function running ``n`` allocation cycles, each from the next source address."""
    sent: list[bytes] = []
    service.listeners.send = lambda data, *rest: sent.append(data)  # type: ignore[method-assign]
    local = service.bound[0].local
    user = (
        stun.rest_credentials(SECRET, "bench", 86400, time.time())
        if creds == "rest"
        else stun.Credentials(USER, PASSWORD)
    )
    key = user.key(REALM.encode())
    base = int(IPv4Address("127.77.0.1"))
    counter = [0]

    def reply() -> stun.Response:
        if not sent:
            raise SystemExit(f"no answer at {counter[0]}: {service.stats()}")
        r = stun.decode(sent.pop())
        assert r is not None and not sent
        return r

    async def run(n: int) -> None:
        for _ in range(n):
            i = counter[0] = counter[0] + 1
            if sent:
                raise SystemExit(f"left over at {i}")
            remote = (IPv4Address(base + (i * 7919) % 60000), 10000 + i % 50000)
            tid = stun.transaction_id()
            service.from_client(stun.allocate(tid, None), Transport.UDP, local, remote, 0)
            r = reply()
            if r.error != 401:
                raise SystemExit(f"expected 401, got {r.error}")
            auth = stun.Auth(user.username.encode(), r.attrs[stun.REALM], r.attrs[stun.NONCE], key)
            msg = stun.allocate(stun.transaction_id(), auth)
            service.from_client(msg, Transport.UDP, local, remote, 0)
            r = reply()
            if r.error or r.address(stun.XOR_RELAYED_ADDRESS) is None:
                raise SystemExit(f"Allocate failed: {r.error}")
            for _ in range(3):  # the relay's transport starts (a task), as when serving
                await asyncio.sleep(0)
            msg = stun.refresh(stun.transaction_id(), auth, 0)
            service.from_client(msg, Transport.UDP, local, remote, 0)
            r = reply()
            if r.error:
                raise SystemExit(f"Refresh failed: {r.error}")

    return run


def _client_cost(creds: str, n: int) -> float:
    """CPU of the client side alone (encoding, decoding), subtracted from the figures."""
    tid = stun.transaction_id()
    user = stun.Credentials(USER, PASSWORD)
    auth = stun.Auth(user.username.encode(), REALM.encode(), b"x" * 40, user.key(b"r"))
    t0 = time.process_time()
    for _ in range(n):
        stun.decode(stun.allocate(stun.transaction_id(), None))
        stun.decode(stun.allocate(stun.transaction_id(), auth))
        stun.decode(stun.refresh(tid, auth, 0))
        stun.Auth(user.username.encode(), REALM.encode(), b"x" * 40, user.key(b"r"))
        IPv4Address(1)
    return time.process_time() - t0


async def _main(args: argparse.Namespace) -> None:
    if not args.no_tune:
        memory.tune()
    service, _ = await _service(args.creds)
    try:
        run = _cycles(service, args.creds)
        await run(200)  # warm up
        if args.bare is not None:  # under callgrind: nothing but the work counted
            if args.client_only:
                _client_cost(args.creds, args.bare)
            else:
                await run(args.bare)
            return
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.process_time()
            await run(args.cycles)
            best = min(best, time.process_time() - t0)
        client = _client_cost(args.creds, args.cycles)
        prof = cProfile.Profile()
        prof.enable()
        await run(args.cycles)
        prof.disable()
        stats = pstats.Stats(prof)
        calls = stats.total_calls  # type: ignore[attr-defined]
        # The client side's calls, profiled the same way, are subtracted.
        cprof = cProfile.Profile()
        cprof.runcall(_client_cost, args.creds, args.cycles)
        ccalls = pstats.Stats(cprof).total_calls  # type: ignore[attr-defined]
        server_us = (best - client) / args.cycles * 1e6
        print(
            f"{args.creds}: {args.cycles} cycles, server CPU {server_us:.1f} us/cycle "
            f"(best of {args.repeat}, client side {client / args.cycles * 1e6:.1f} us "
            f"subtracted), Python calls {(calls - ccalls) / args.cycles:.0f}/cycle "
            f"(cProfile), allocations left {len(service.core.by_flow)}"
        )
        if args.profile:
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats(args.sort).print_stats(args.top)
            print(out.getvalue())
    finally:
        await service.close()
        if not args.no_tune:
            memory.untune()


def icount(n: int, before: str | None, uvloop_flag: list[str]) -> int:
    """Server instructions per cycle: (I(2N) - I(N) - client(2N) + client(N)) / N."""
    if shutil.which("valgrind") is None:
        print("valgrind not installed", file=sys.stderr)
        return 1
    print("| variant | creds | instructions per cycle (server side) |")
    print("|---|---|---:|")
    client: dict[str, int] = {}  # the client side is bench code: measured once per creds

    def callgrind_ir(args: list[str], env: dict[str, str]) -> int:
        return icount_tools.callgrind_ir(args, env, "bench.turn_micro")

    for variant, env in icount_tools.variants(before):
        for creds in ("lt", "rest"):
            common = ["--creds", creds, *uvloop_flag]
            if creds not in client:
                args = [*common, "--client-only", "--bare"]
                c = [callgrind_ir([*args, str(k)], env) for k in (n, 2 * n)]
                client[creds] = c[1] - c[0]
            ir = [callgrind_ir([*common, "--bare", str(k)], env) for k in (n, 2 * n)]
            per = (ir[1] - ir[0] - client[creds]) / n
            print(f"| {variant} | {creds} | {per:,.0f} |", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.turn_micro", description=__doc__)
    ap.add_argument("--cycles", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--creds", choices=("lt", "rest"), default="lt")
    ap.add_argument("--profile", action="store_true", help="print the cProfile table")
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--no-tune", action="store_true", help="CPython's GC defaults")
    ap.add_argument("--no-uvloop", action="store_true")
    ap.add_argument("--bare", type=int, metavar="N", help="warm-up + N cycles only (callgrind)")
    ap.add_argument("--client-only", action="store_true", help="with --bare: the client side")
    ap.add_argument("--icount", type=int, metavar="N", help="instructions per cycle (callgrind)")
    ap.add_argument("--before", metavar="DIR", help="with --icount: also DIR/src's rtc64")
    args = ap.parse_args(argv)
    if args.icount:
        return icount(args.icount, args.before, ["--no-uvloop"] if args.no_uvloop else [])
    if args.no_uvloop:
        asyncio.run(_main(args))
    else:
        import uvloop  # noqa: PLC0415 - optional, as serve uses it

        uvloop.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
