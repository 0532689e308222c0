"""bench/results.py: a benchmark's printed lines become a dated section of the results file."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from bench.results import append_results, command_line, recorded


def test_a_section_holds_the_date_the_command_the_machine_and_the_lines(tmp_path: Path) -> None:
    path = tmp_path / "results.md"
    path.write_text("# Measured results\n")
    append_results(["a: 1.0/s", "b: 2.0/s"], "python bench/x.py --rounds 1", path=path,
                   day=datetime.date(2026, 12, 3))
    text = path.read_text()
    assert text.startswith("# Measured results\n")
    assert "### 2026-12-03: `python bench/x.py --rounds 1`" in text
    assert "Machine: nproc " in text
    assert "```text\na: 1.0/s\nb: 2.0/s\n```\n" in text


def test_the_command_names_the_benchmark_as_a_module_of_the_repository() -> None:
    script = Path(__file__).resolve().parents[1] / "bench" / "deid.py"
    assert command_line([str(script), "--rounds", "1"]) == "python -m bench.deid --rounds 1"


def test_recorded_prints_and_appends_only_when_asked_and_only_on_success(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "results.md"
    path.write_text("")
    with recorded(False, path=path):
        print("not kept")
    assert path.read_text() == ""
    with recorded(True, path=path):
        print("kept 1.0/s")
    assert "```text\nkept 1.0/s\n```" in path.read_text()
    with pytest.raises(RuntimeError), recorded(True, path=path):
        print("half a run")
        raise RuntimeError("benchmark failed")
    assert "half a run" not in path.read_text()
    assert capsys.readouterr().out == "not kept\nkept 1.0/s\nhalf a run\n"
