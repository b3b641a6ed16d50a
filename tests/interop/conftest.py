"""The lab fixtures of the interop tests (``clat``, at the end, builds its own NAT64 lab).

A test module states what its lab needs as module constants and takes ``net`` (the
module's lab, built once per module and always removed) and ``work`` (a fresh directory
per test; every process the test started in the lab is stopped after it):

    LAB_TOOLS = ("sipp", "ss")       # executables the module needs (require_lab)
    LAB_DUAL_STACK = True            # add the dual-stack host (default False)

As root a missing tool fails the test; elsewhere the whole module skips with a reason.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.clatlab import ClatLab
from tests.interop.lab import Lab, lab, require_lab
from tests.interop.nat64lab import Nat64Lab

DEFAULT_TOOLS = ("sipp", "ss")


@pytest.fixture(scope="module")
def net(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """The module's lab topology (``tests.interop.lab.Lab``)."""
    tools = getattr(request.module, "LAB_TOOLS", DEFAULT_TOOLS)
    require_lab(*tools)
    with lab(dual_stack=getattr(request.module, "LAB_DUAL_STACK", False)) as topology:
        yield topology


@pytest.fixture
def work(tmp_path: Path, net: Lab) -> Iterator[Path]:
    """A working directory for one test; the lab's processes are stopped after it."""
    yield tmp_path
    for host in net.hosts:
        host.stop_all()


@pytest.fixture
def clat() -> Iterator[ClatLab]:
    """A ``Nat64Lab`` with ``rtc64 clat`` helpers; the daemon stopped and cleaned up after."""
    require_lab("tayga", "unbound")
    with Nat64Lab() as topology:
        c = ClatLab(topology)
        try:
            yield c
        finally:
            if c.proc is not None and c.proc.poll() is None:
                c.proc.send_signal(signal.SIGTERM)
                c.proc.wait(15)
            c.rtc64("clat", "cleanup", "--netns-prefix", c.ns_prefix, "--state-dir", str(c.state))
