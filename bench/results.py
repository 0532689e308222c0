"""Record what a benchmark printed as a dated section of ``docs/results.md``.

Measured figures go stale; written by hand into comments or documents they also lose the date,
the command and the machine that make them mean something. Every benchmark here therefore takes
``--record``: it prints as usual, and when it finishes without error :func:`append_results`
appends its printed lines to the one results file, under the date, the command line and the
machine's CPU count (what ``nproc`` prints) and CPU model.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results.md"


def machine() -> str:
    """The CPUs this process may use (as ``nproc`` counts them) and their model."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"nproc {len(os.sched_getaffinity(0))}, {model}"


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that ran the benchmark, as it is run: a module of the repository's ``bench``
    package (``python -m bench.x``), so that a recorded heading can be pasted to run it again."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve()
    if script.is_relative_to(ROOT):
        module = ".".join(script.relative_to(ROOT).with_suffix("").parts)
        return shlex.join(["python", "-m", module, *argv[1:]])
    return shlex.join(["python", *argv])


def append_results(lines: Sequence[str], command: str, *, path: Path = RESULTS,
                   day: datetime.date | None = None) -> None:
    """Append one dated section holding a benchmark's printed ``lines`` to ``path``."""
    day = datetime.date.today() if day is None else day
    section = [
        "",
        f"### {day.isoformat()}: `{command}`",
        "",
        f"Machine: {machine()}.",
        "",
        "```text",
        *lines,
        "```",
    ]
    with path.open("a", encoding="utf-8") as results:
        results.write("\n".join(section) + "\n")


def add_record_option(parser: argparse.ArgumentParser) -> None:
    """The ``--record`` flag every benchmark takes."""
    parser.add_argument("--record", action="store_true",
                        help=f"append the output to {RESULTS.relative_to(ROOT)} as a dated section")


class _Tee:
    """A text stream that writes through to ``stream`` and keeps a copy of what was written."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._written: list[str] = []

    def write(self, text: str) -> int:
        self._written.append(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def lines(self) -> list[str]:
        return "".join(self._written).splitlines()


@contextmanager
def recorded(record: bool, *, path: Path = RESULTS) -> Iterator[None]:
    """Run the ``with`` body; with ``record``, append what it printed to ``path`` once it has succeeded."""
    if not record:
        yield
        return
    tee = _Tee(sys.stdout)
    sys.stdout = tee
    try:
        yield
    finally:
        sys.stdout = tee.stream
    append_results(tee.lines(), command_line(), path=path)


def run_benchmark(parser: argparse.ArgumentParser, measure: Callable[[argparse.Namespace], None]) -> None:
    """Parse a benchmark's arguments (``--record`` added) and run ``measure``, recorded when asked."""
    add_record_option(parser)
    args = parser.parse_args()
    with recorded(args.record):
        measure(args)
