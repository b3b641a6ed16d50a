"""The one lab fixture of the interop tests.

A test module states what its lab needs as module constants and takes ``net`` (the
module's lab, built once per module and always removed) and ``work`` (a fresh directory
per test; every process the test started in the lab is stopped after it):

    LAB_TOOLS = ("sipp", "ss")       # executables the module needs (require_lab)
    LAB_DUAL_STACK = True            # add the dual-stack host (default False)

As root a missing tool fails the test; elsewhere the whole module skips with a reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.lab import Lab, lab, require_lab

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
