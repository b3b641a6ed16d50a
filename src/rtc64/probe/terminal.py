"""Terminal output of ``rtc64 probe``: live progress while checks run, then the matrices.

Rules: with ``rich`` installed and a terminal on stdout, a live table shows each check as
it finishes and the report is drawn with coloured matrices; otherwise (a pipe, a log, no
rich) one plain line per finished check goes to stderr and the plain report to stdout.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

from rtc64.probe import report as render
from rtc64.probe.verdict import Check, Report, Scenario, Status, exit_code

_COLOUR = {
    Status.PASS: "green",
    Status.WARN: "yellow",
    Status.FAIL: "bold red",
    Status.SKIPPED: "dim",
    Status.INFO: "cyan",
}


def rich_available() -> bool:
    try:
        import rich  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


class Progress:
    """A check sink for the runner: live in a terminal, plain lines elsewhere."""

    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.count = 0
        self._live: object | None = None
        self._rich = (not quiet) and rich_available() and self.stream.isatty()

    def __enter__(self) -> Progress:
        if self._rich:
            from rich.console import Console  # noqa: PLC0415
            from rich.live import Live  # noqa: PLC0415
            from rich.spinner import Spinner  # noqa: PLC0415

            self._spinner = Spinner("dots", text="probing...")
            live = Live(
                self._spinner, console=Console(file=self.stream, highlight=False), transient=True
            )
            live.__enter__()
            self._live = live
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)  # type: ignore[attr-defined]

    def __call__(self, target: str, check: Check) -> None:
        self.count += 1
        if self.quiet:
            return
        if self._live is not None:
            from rich.text import Text  # noqa: PLC0415

            line = Text.assemble(
                (f"{render.SYMBOL[check.status]:>4} ", _COLOUR[check.status]),
                render.printable(f"{target}  {check.id}  {check.message}")[:160],
            )
            self._live.console.print(line)  # type: ignore[attr-defined]
            self._spinner.update(text=f"probing... {self.count} checks done")
        else:
            shown = render.check_line(check).strip()
            print(f"{render.printable(target)}: {shown}", file=self.stream)


def show(report: Report, out: TextIO, *, verbose: bool = False) -> None:
    """The final report: rich tables in a terminal, else plain text."""
    if not (rich_available() and out.isatty()):
        print(render.text(report, verbose=verbose), file=out)
        return
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    console = Console(file=out, highlight=False)
    for target in report.targets:
        score = target.score()
        shown = render.printable(target.target)
        title = f"{shown} ({target.kind}) - score {score if score is not None else '-'}"
        table = Table(title=Text(title), title_justify="left")
        table.add_column("")
        for scenario in Scenario:
            table.add_column(scenario.value, justify="center")
        for aspect, row in target.matrix().items():
            cells: list[str] = [f"[{_COLOUR[row[s]]}]{row[s].value}[/]" for s in Scenario]
            table.add_row(aspect.value, *cells)
        if target.kind != "network":
            console.print(table)
        else:
            console.print(title)
        if target.error:
            console.print(
                "error: " + render.printable(target.error), style="bold red", markup=False
            )
        for check in target.checks:
            if verbose or check.status in (Status.FAIL, Status.WARN):
                console.print(render.check_line(check), style=_COLOUR[check.status], markup=False)
                if check.status in (Status.FAIL, Status.WARN) and check.fix:
                    console.print(f"         hint: {check.fix}", style="dim", markup=False)
    console.print(f"exit code {exit_code(report)}, {report.duration:g} s")


Sink = Callable[[str, Check], None]
