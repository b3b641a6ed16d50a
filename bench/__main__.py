"""``python -m bench [NAME...]``: run the named benchmarks (default: all that need no root).

With one NAME, options after it go to that benchmark (``python -m bench turn --runs 2``).
"""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHMARKS = {
    "parser": "bench.parser",
    "sip": "bench.sip_proxy",
    "relay": "bench.relay_vs_rtpengine",
    "routing": "bench.call_routing",
    "overload": "bench.overload",
    "turn": "bench.turn",
    "tunnel": "bench.tunnel_backends",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="fewer rounds (smoke run)")
    args, rest = parser.parse_known_args(argv)
    names = args.names or list(BENCHMARKS)
    for name in names:
        if name not in BENCHMARKS:
            parser.error(f"unknown benchmark {name!r} (one of {', '.join(BENCHMARKS)})")
    if rest and len(names) != 1:
        parser.error(f"options {' '.join(rest)} need exactly one NAME (they are its own)")
    status = 0
    for name in names:
        module = importlib.import_module(BENCHMARKS[name])
        if rest:  # the benchmark's own options, e.g. `python -m bench turn --runs 2`
            status |= int(module.main(quick=args.quick, argv=rest))
        else:
            status |= int(module.main(quick=args.quick))
    return status


if __name__ == "__main__":
    sys.exit(main())
