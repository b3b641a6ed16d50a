"""``python -m bench [NAME...]``: run the named benchmarks (default: all that need no root)."""

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
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="fewer rounds (smoke run)")
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    status = 0
    for name in names:
        module = importlib.import_module(BENCHMARKS[name])
        status |= int(module.main(quick=args.quick))
    return status


if __name__ == "__main__":
    sys.exit(main())
