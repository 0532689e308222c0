"""Pair input files with output paths, for the file-and-folder batches of ``dmask mask`` and ``dmask deid``.

Each input file gives one output file at the same relative path under the output folder, so
that ``dmask audit phi`` and ``dmask audit text`` can pair inputs with outputs afterwards.
Previews that an earlier ``--preview`` run wrote next to its outputs are not inputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gateway.files.preview import is_preview


@dataclass(frozen=True)
class FileJob:
    """One input file and where its output goes."""

    source: Path
    target: Path


def plan_files(inputs: Iterable[Path], output: Path) -> list[FileJob]:
    """Pair every input file (folders walked recursively, sorted; previews left out) with its output path."""
    jobs = []
    for given in inputs:
        if given.is_dir():
            jobs += [
                FileJob(path, output / given.name / path.relative_to(given))
                for path in sorted(given.rglob("*"))
                if path.is_file()
            ]
        else:
            jobs.append(FileJob(given, output / given.name))
    return [job for job in jobs if not is_preview(job.source)]
