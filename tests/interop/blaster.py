"""Send the invalid corpus messages and fuzzed datagrams at a SIP server; print JSON.

Run inside a lab namespace: ``python -m tests.interop.blaster HOST PORT CORPUS_DIR N SEED``.
For each invalid manifest row it records the status line of any answer (or null); then
it sends N mutated/random datagrams without waiting and counts answers.
"""

from __future__ import annotations

import csv
import json
import random
import socket
import sys
from pathlib import Path


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        choice = rng.random()
        if choice < 0.4 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif choice < 0.6 and buf:
            del buf[rng.randrange(len(buf)) :]
        elif choice < 0.8:
            pos = rng.randrange(len(buf) + 1)
            buf[pos:pos] = rng.choice([b"\r\n", b":", b";", b"[", b"]", b"\x00", b"%", b" "])
        else:
            buf += bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
    return bytes(buf)


def main() -> None:
    host, port, corpus, count, seed = sys.argv[1:6]
    target = (host, int(port))
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.settimeout(0.5)
    root = Path(corpus)
    with (root / "manifest.tsv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    answers: dict[str, str | None] = {}
    for row in rows:
        if row["expected"] != "invalid":
            continue
        sock.sendto((root / row["file"]).read_bytes(), target)
        try:
            reply = sock.recv(65535)
            answers[row["name"]] = reply.split(b"\r\n", 1)[0].decode("utf-8", "replace")
        except TimeoutError:
            answers[row["name"]] = None
    rng = random.Random(int(seed))
    seeds = [(root / r["file"]).read_bytes() for r in rows]
    fuzz_answers = 0
    sock.settimeout(0)
    for i in range(int(count)):
        data = mutate(rng, rng.choice(seeds)) if i % 4 else rng.randbytes(rng.randint(0, 1500))
        sock.sendto(data[:65000], target)
        try:
            while True:
                sock.recv(65535)
                fuzz_answers += 1
        except BlockingIOError:
            pass
    print(json.dumps({"corpus": answers, "fuzz_answers": fuzz_answers}))


if __name__ == "__main__":
    main()
