"""Instructions per REGISTER (plain, digest) and per call through the gateway's proxy path.

``bench/icount.py`` counts the pure SIP cores; ``bench/callcost.py`` the whole ``rtc64
serve`` under valgrind, where the server's own background work (self-pings, load watch)
costs more than the operations in the window and makes the figure noisy. This drives the
real ``gateway.proxy.service.Proxy`` in-process (transaction layer, router, registrar,
authenticator, the SQLite store with its writer thread, dialogs, splicing) with parsed
datagrams and a sender that only keeps the bytes: no sockets, no background tasks.
Each operation uses fresh Call-IDs, tags and branches; the clock then moves 40 s so that
every Timer J/K/D fires inside the count. Run under callgrind for N and 2N operations:
the difference / N is the cost of one operation, start-up and warm-up cancelled.

    python -m bench.gwcount --measure 300                         # this tree, pure+compiled
    python -m bench.gwcount --measure 300 --before /tmp/before    # + another tree's src
    python -m bench.gwcount --scenario reg --ops 100              # one run, no valgrind
    python -m bench.gwcount --measure 300 --loop uvloop           # on the loop serve runs
    python -m bench.gwcount --measure 300 --shared                # the SIP workers' store
    python -m bench.gwcount --scenario call --ops 1000 --pycalls  # Python calls per call

``--spawner``: ``await`` (default: the harness awaits each request's coroutine itself, no
task) or ``serve`` (``io.scheduler.Spawner`` as ``rtc64 serve`` wires it: a task per
request, or none when the tree's spawner starts work eagerly and it never waits).
``--loop``: ``asyncio`` (default, as every earlier figure in bench/RESULTS.md) or ``uvloop``
(what ``rtc64 serve`` runs on, ``io/loop.py``): the default loop's Python-level ``_run_once``
is counted in every operation that waits for the store.

``--calllog``: the call log (``gateway.calllog.CallLog``) on the proxy's call control, as
``rtc64 serve`` wires it (``lifecycle``), its logger below info level (the benchmark's
``--log-level warning``).

``--shared``: the SQLite store in shared mode, as ``rtc64 serve`` opens it with SIP workers
(reads from the file, compare-and-set in the write transaction) instead of one process's
memory.

Scenarios: ``reg`` REGISTER from a trusted source (straight to the registrar), ``reg-auth``
REGISTER, 401, REGISTER with MD5 credentials (untrusted source), ``call`` INVITE/100/180/
200/ACK/BYE/200 with Record-Route, IPv4 to an IPv4 literal (as ``bench/sip_proxy.py``),
``call-trying`` the same call with a 100 Trying from the callee before its 180 (as most
phones and PBXs send it; SIPp's UAS in ``bench/sip_proxy.py`` does not).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from ipaddress import IPv4Address, IPv4Network, ip_address
from pathlib import Path
from typing import Any

SCENARIOS = ("reg", "reg-auth", "call", "call-trying")
DOMAIN = "bench.test"
PASSWORD = "bench-secret"
GW = IPv4Address("192.0.2.1")
PHONE = ("198.51.100.7", 25100)  # trusted
STRANGER = ("203.0.113.9", 25100)  # untrusted: authenticates
CALLEE = ("192.0.2.50", 5060)
USERS = 1000


class Sink:
    """The proxy's ``Sender``: keeps the last datagram per destination, sends nothing."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, int], bytes] = {}
        self.count = 0

    def send(self, data: bytes, transport: Any, address: Any, port: int, **_: Any) -> bool:
        self.last[(str(address), port)] = data
        self.count += 1
        return True

    def has_connection(self, transport: Any, address: Any, port: int) -> bool:
        return True


def _lines(data: bytes, *names: bytes) -> list[bytes]:
    low = tuple(n.lower() + b":" for n in names)
    return [ln for ln in data.split(b"\r\n") if ln.lower().startswith(low)]


def register(user: str, source: tuple[str, int], n: int, cseq: int, extra: bytes = b"") -> bytes:
    return (
        b"REGISTER sip:%(d)s SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP %(ip)s:%(port)d;rport;branch=z9hG4bK-r%(n)d-%(c)d\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:%(u)s@%(d)s>;tag=r%(n)d\r\n"
        b"To: <sip:%(u)s@%(d)s>\r\n"
        b"Call-ID: r%(n)d@%(ip)s\r\n"
        b"CSeq: %(c)d REGISTER\r\n"
        b"Contact: <sip:%(u)s@%(ip)s:%(port)d>;expires=3600\r\n"
        b"%(x)sExpires: 3600\r\nContent-Length: 0\r\n\r\n"
    ) % {
        b"d": DOMAIN.encode(), b"ip": source[0].encode(), b"port": source[1], b"n": n,
        b"c": cseq, b"u": user.encode(), b"x": extra,
    }  # fmt: skip


def authorization(challenge: bytes, user: str, cseq: int) -> bytes:
    """The MD5 answer (qop=auth) to the last challenge of a 401, as SIPp sends it."""
    value = _lines(challenge, b"WWW-Authenticate")[-1].split(b":", 1)[1]
    nonce = re.search(rb'nonce="([^"]+)"', value)
    assert nonce is not None, challenge
    uri, cnonce, nc = f"sip:{DOMAIN}", "6b8b4567", "00000001"

    def md5(text: str) -> str:
        return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

    ha1, ha2 = md5(f"{user}:{DOMAIN}:{PASSWORD}"), md5(f"REGISTER:{uri}")
    resp = md5(f"{ha1}:{nonce.group(1).decode()}:{nc}:{cnonce}:auth:{ha2}")
    return (
        f'Authorization: Digest username="{user}",realm="{DOMAIN}",uri="{uri}",'
        f'nonce="{nonce.group(1).decode()}",response="{resp}",algorithm=MD5,'
        f'cnonce="{cnonce}",qop=auth,nc={nc}\r\n'
    ).encode()


def invite(n: int) -> bytes:
    sdp = (
        b"v=0\r\no=bench 1 1 IN IP4 198.51.100.7\r\ns=bench\r\nc=IN IP4 198.51.100.7\r\n"
        b"t=0 0\r\nm=audio 26100 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    return (
        b"INVITE sip:callee@192.0.2.50:5060 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 198.51.100.7:25100;rport;branch=z9hG4bK-%(n)d-1-0\r\n"
        b"Max-Forwards: 70\r\n"
        b'From: "bench" <sip:caller@198.51.100.7:25100>;tag=c%(n)d\r\n'
        b"To: <sip:callee@192.0.2.50:5060>\r\n"
        b"Call-ID: %(n)d-4242@198.51.100.7\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Contact: <sip:caller@198.51.100.7:25100;transport=UDP>\r\n"
        b"Content-Type: application/sdp\r\nContent-Length: %(l)d\r\n\r\n%(b)s"
    ) % {b"n": n, b"l": len(sdp), b"b": sdp}


def answer(request: bytes, status: int, tag: bytes) -> bytes:
    """The callee's response to the request it received (Via, Record-Route copied)."""
    reason = {100: b"Trying", 200: b"OK"}.get(status, b"Ringing")
    out = [b"SIP/2.0 %d %s" % (status, reason)]
    for ln in request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        low = ln[:14].lower()
        if low.startswith((b"via:", b"from:", b"call-id:", b"cseq:", b"record-route:")):
            out.append(ln)
        elif low.startswith(b"to:"):
            out.append(ln if b";tag=" in ln or not tag else ln + b";tag=" + tag)
    out += [b"Contact: <sip:callee@192.0.2.50:5060;transport=UDP>", b"Content-Length: 0"]
    return b"\r\n".join(out) + b"\r\n\r\n"


def in_dialog(method: bytes, n: int, cseq: int, tag: bytes, routes: list[bytes]) -> bytes:
    route = b", ".join(r.split(b":", 1)[1].strip() for r in reversed(routes))
    return (
        b"%(m)s sip:callee@192.0.2.50:5060;transport=UDP SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 198.51.100.7:25100;rport;branch=z9hG4bK-%(n)d-%(s)d-2\r\n"
        b"Route: %(r)s\r\nMax-Forwards: 70\r\n"
        b'From: "bench" <sip:caller@198.51.100.7:25100>;tag=c%(n)d\r\n'
        b"To: <sip:callee@192.0.2.50:5060>;tag=%(t)s\r\n"
        b"Call-ID: %(n)d-4242@198.51.100.7\r\n"
        b"CSeq: %(s)d %(m)s\r\nContent-Length: 0\r\n\r\n"
    ) % {b"m": method, b"n": n, b"s": cseq, b"t": tag, b"r": route}


class Bench:
    """The proxy on real parts (SQLite store in a temporary directory) and fake clocks."""

    def __init__(self, store: Any, spawner: str = "await", calllog: bool = False) -> None:
        from rtc64.gateway.auth import Authenticator  # noqa: PLC0415
        from rtc64.gateway.identity import Identity, Listener  # noqa: PLC0415
        from rtc64.gateway.proxy.service import Proxy, ProxySettings  # noqa: PLC0415
        from rtc64.gateway.ratelimit import TokenBucket  # noqa: PLC0415
        from rtc64.io.resolver import Resolver  # noqa: PLC0415
        from rtc64.net.endpoint import ListenSpec, Transport  # noqa: PLC0415
        from rtc64.sip.digest import Algorithm  # noqa: PLC0415
        from rtc64.sip.transaction import TransactionLayer  # noqa: PLC0415

        self.now, self.wall_now = 1000.0, 1_700_000_000.0
        self.profile: cProfile.Profile | None = None  # set to count Python calls
        self.sink = Sink()
        self.tasks: list[Any] = []
        log = logging.getLogger("bench.gwcount")
        log.setLevel(logging.WARNING)
        self.listener = Listener(ListenSpec(Transport.UDP, GW, 5060), 5060)
        identity = Identity([self.listener], domains=(DOMAIN,), source_for=lambda _ip: None)
        auth = Authenticator(
            realm=DOMAIN, users=[(f"u{n:05d}", PASSWORD) for n in range(USERS)], store=store,
            trusted=[IPv4Network(f"{PHONE[0]}/32")], nonce_lifetime=300.0, max_failures=5,
            block_seconds=60.0, log=log, algorithms=[Algorithm.MD5],
        )  # fmt: skip
        self.layer = TransactionLayer()
        spawn: Any = self.tasks.append  # "await": the harness awaits each coroutine itself
        self.spawned: set[Any] | None = None
        if spawner == "serve":  # as ``rtc64 serve``: io.scheduler.Spawner (eager if it can)
            from rtc64.io.scheduler import Spawner  # noqa: PLC0415

            found = Spawner(log)
            spawn = getattr(found, "eager", found)
            self.spawned = found._tasks  # the tasks it holds until they finish
        self.proxy = Proxy(
            ProxySettings(attempt_delay=None), identity=identity, layer=self.layer,
            sender=self.sink, store=store, auth=auth, resolver=Resolver(),
            limiter=TokenBucket(0.0, burst=1), clock=lambda: self.now,
            wall=lambda: self.wall_now, spawn=spawn, log=log,
        )  # fmt: skip
        if calllog:
            from rtc64.gateway.calllog import CallLog  # noqa: PLC0415

            self.proxy.calls.journal = CallLog(log.getChild("calls"), lambda: self.now)

    async def feed(self, data: bytes, source: tuple[str, int]) -> None:
        from rtc64.net.endpoint import Flow, Transport  # noqa: PLC0415
        from rtc64.sip.framing import parse_datagram  # noqa: PLC0415

        flow = Flow(Transport.UDP, (GW, 5060), (ip_address(source[0]), source[1]))
        if self.profile is not None:  # ``--pycalls``: the gateway's calls only
            self.profile.enable()
        try:
            await self._feed(data, flow, parse_datagram)
        finally:
            if self.profile is not None:
                self.profile.disable()

    async def _feed(self, data: bytes, flow: Any, parse_datagram: Any) -> None:
        # As the UDP listener (io/udp.py) and ``startup.Reception``: responses and
        # requests may be taken from their raw bytes (trees without the hooks parse).
        if data.startswith(b"SIP/2.0 "):
            raw = getattr(self.proxy, "on_raw_response", None)
        elif self.proxy.shed_raw(data, flow):
            return
        else:
            raw = getattr(self.proxy, "on_raw_request", None)
        if raw is None or not raw(data, flow):
            self.proxy.on_message(parse_datagram(data), flow)
        while self.tasks:
            await self.tasks.pop(0)
        while self.spawned:
            await asyncio.gather(*self.spawned)

    def expire(self) -> None:
        """Move both clocks 40 s on: every transaction's Timer J/K/D fires."""
        self.now += 40.0
        self.wall_now += 40.0
        if self.profile is not None:
            self.profile.enable()
        try:
            self.proxy.handle_timer(self.now)
        finally:
            if self.profile is not None:
                self.profile.disable()

    async def reg(self, n: int) -> None:
        await self.feed(register(f"u{n % USERS:05d}", PHONE, n, 1), PHONE)

    async def reg_auth(self, n: int) -> None:
        user = f"u{n % USERS:05d}"
        await self.feed(register(user, STRANGER, n, 1), STRANGER)
        challenge = self.sink.last[STRANGER]
        assert challenge.startswith(b"SIP/2.0 401"), challenge[:40]
        await self.feed(register(user, STRANGER, n, 2, authorization(challenge, user, 2)), STRANGER)
        assert self.sink.last[STRANGER].startswith(b"SIP/2.0 200"), self.sink.last[STRANGER]

    async def call(self, n: int, trying: bool = False) -> None:
        tag = b"u%d" % n
        await self.feed(invite(n), PHONE)
        fwd = self.sink.last[CALLEE]
        assert fwd.startswith(b"INVITE"), fwd[:60]
        if trying:
            sent = self.sink.count
            await self.feed(answer(fwd, 100, b""), CALLEE)
            assert self.sink.count == sent  # absorbed: nothing forwarded
        for status in (180, 200):
            await self.feed(answer(fwd, status, tag), CALLEE)
        routes = _lines(fwd, b"Record-Route")
        await self.feed(in_dialog(b"ACK", n, 1, tag, routes), PHONE)
        await self.feed(in_dialog(b"BYE", n, 2, tag, routes), PHONE)
        bye = self.sink.last[CALLEE]
        assert bye.startswith(b"BYE"), bye[:60]
        await self.feed(answer(bye, 200, tag), CALLEE)
        assert self.sink.last[PHONE].startswith(b"SIP/2.0 200"), self.sink.last[PHONE][:60]


async def run(
    scenario: str,
    ops: int,
    warm: int,
    shared: bool = False,
    spawner: str = "await",
    calls: bool = False,
    calllog: bool = False,
) -> None:
    """``calls``: print the Python calls per operation inside the gateway (cProfile
    around the proxy's entry points and timer sweeps: the harness's own work, building
    and reading the messages, is not counted)."""
    from rtc64.gateway.location.backends import open_store  # noqa: PLC0415

    data = Path(tempfile.mkdtemp(prefix="rtc64-gwcount-"))
    store = await open_store("sqlite", data, shared=shared)
    try:
        bench = Bench(store, spawner, calllog)
        steps = {"reg": bench.reg, "reg-auth": bench.reg_auth, "call": bench.call}
        step = steps.get(scenario) or (lambda n: bench.call(n, trying=True))
        for n in range(warm):
            await step(n)
        bench.expire()
        if calls:
            bench.profile = cProfile.Profile()
        for n in range(ops):
            await step(10**6 + n)
            if n % 100 == 99:
                bench.expire()
        bench.expire()
        if bench.profile is not None:
            # The raw entries, one per code object: pstats keys them by (file, line, name)
            # and keeps one of the dataclass-generated __init__s (all "<string>", 2).
            total = sum(entry.callcount for entry in bench.profile.getstats())
            print(f"{scenario}: {total / ops:,.0f} Python calls per operation in the gateway")
    finally:
        await store.close()


def run_on(loop: str, main: Any) -> None:
    """Run ``main`` on the default asyncio loop or on uvloop."""
    if loop == "uvloop":
        import uvloop  # noqa: PLC0415

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)
        return
    asyncio.run(main)


def callgrind_ir(args: list[str], env: dict[str, str]) -> int:
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, "-m", "bench.gwcount", *args],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    m = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode or m is None:
        raise RuntimeError(f"gwcount run failed: {proc.stderr[-1500:]}")
    return int(m.group(1))


def measure(
    ops: int,
    before: str | None,
    scenarios: list[str],
    variants: list[str],
    loop: str,
    shared: bool = False,
    spawner: str = "await",
    calllog: bool = False,
) -> int:
    if shutil.which("valgrind") is None:
        print("valgrind not installed", file=sys.stderr)
        return 1
    here = str(Path(__file__).resolve().parents[1])
    trees = [("this tree", str(Path(here) / "src"))]
    if before:
        trees.append((f"before ({before})", str(Path(before).resolve() / "src")))
    base = {k: v for k, v in os.environ.items() if k not in ("RTC64_PURE", "RTC64_COMPILED")}
    store = "shared " if shared else ""
    log = ", call log" if calllog else ""
    print(f"# load {os.getloadavg()[0]:.1f}; instructions per operation (callgrind, N={ops}, "
          f"{loop} loop, {store}sqlite store, spawner {spawner}{log})")  # fmt: skip
    print("| scenario | tree | variant | instructions per op |")
    print("|---|---|---|---:|")
    for sc in scenarios:
        for name, src in trees:
            for variant in variants:
                env = {**base, "PYTHONPATH": f"{src}:{here}"}
                env["RTC64_PURE" if variant == "pure" else "RTC64_COMPILED"] = "1"
                args = ["--scenario", sc, "--warm", str(max(ops // 2, 50)), "--loop", loop]
                args += ["--shared"] if shared else []
                args += ["--spawner", spawner]
                args += ["--calllog"] if calllog else []
                one = callgrind_ir([*args, "--ops", str(ops)], env)
                two = callgrind_ir([*args, "--ops", str(2 * ops)], env)
                print(f"| {sc} | {name} | {variant} | {(two - one) / ops:,.0f} |", flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gwcount", description=__doc__)
    ap.add_argument("--scenario", action="append", choices=SCENARIOS)
    ap.add_argument("--ops", type=int, default=100)
    ap.add_argument("--warm", type=int, default=50)
    ap.add_argument("--measure", type=int, nargs="?", const=300, metavar="N")
    ap.add_argument("--before", metavar="DIR", help="with --measure: also DIR/src's rtc64")
    ap.add_argument("--variant", action="append", choices=["pure", "compiled"])
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    ap.add_argument("--shared", action="store_true", help="the SQLite store in shared mode")
    ap.add_argument("--spawner", choices=["await", "serve"], default="await")
    ap.add_argument("--calllog", action="store_true", help="the call log, as serve wires it")
    ap.add_argument("--pycalls", action="store_true", help="Python calls per op in the gateway")
    args = ap.parse_args()
    scenarios = args.scenario or list(SCENARIOS)
    if args.measure:
        variants = args.variant or ["pure", "compiled"]
        return measure(
            args.measure, args.before, scenarios, variants, args.loop, args.shared,
            args.spawner, args.calllog,
        )  # fmt: skip
    for sc in scenarios:
        run_on(
            args.loop,
            run(sc, args.ops, args.warm, args.shared, args.spawner, args.pycalls, args.calllog),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
