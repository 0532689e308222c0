"""The package map in docs/architecture.md is the law of imports: this test holds the code to it.

Every ``import`` and ``from ... import`` of the ``gateway`` package is read with :mod:`ast`
(including imports inside functions and under ``TYPE_CHECKING``: a lazy import is still a
dependency) and checked against the table's "may import" column; the module graph must have no
cycle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAP = ROOT / "docs" / "architecture.md"


def package_map(text: str) -> dict[str, set[str]]:
    """Package -> the packages it may import, from the table between the ``packages`` markers."""
    table = text[text.index("<!-- packages:start -->"):text.index("<!-- packages:end -->")]
    allowed = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            allowed[cells[0].strip("`")] = set(re.findall(r"`([a-z_]+)`", cells[2]))
    return allowed


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the ``gateway`` modules it imports, for every module under ``root / "gateway"``."""

    def name_of(path: Path) -> str:
        parts = path.relative_to(root).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    def is_module(name: str) -> bool:
        relative = root / Path(*name.split("."))
        return relative.with_suffix(".py").is_file() or (relative / "__init__.py").is_file()

    graph = {}
    for path in sorted((root / "gateway").rglob("*.py")):
        module = name_of(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "gateway"}
            elif isinstance(node, ast.ImportFrom):
                source = node.module or ""
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                if source.split(".")[0] == "gateway":
                    found |= {f"{source}.{a.name}" if is_module(f"{source}.{a.name}") else source for a in node.names}
        graph[module] = found
    return graph


def package_of(module: str) -> str:
    """``gateway.mask.render`` -> ``mask``; ``gateway.config`` -> ``config``; ``gateway`` -> ``gateway``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "gateway"


def forbidden_imports(graph: dict[str, set[str]], allowed: dict[str, set[str]]) -> list[str]:
    """Every import across packages that the map does not allow, as ``module -> module``."""
    return sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if package_of(target) != package_of(module) and package_of(target) not in allowed[package_of(module)]
    )


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` (its modules in order, the first repeated last), or []."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str]:
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return []
        path.append(module)
        for target in sorted(graph.get(module, ())):
            found = visit(target)
            if found:
                return found
        path.pop()
        done.add(module)
        return []

    for module in sorted(graph):
        found = visit(module)
        if found:
            return found
    return []


def test_the_map_names_every_package_and_nothing_else() -> None:
    allowed = package_map(MAP.read_text())
    assert {package_of(module) for module in import_graph(ROOT)} == set(allowed)
    for package, imports in allowed.items():
        assert imports <= set(allowed), f"{package} may import unknown packages {imports - set(allowed)}"


def test_imports_follow_the_map() -> None:
    assert forbidden_imports(import_graph(ROOT), package_map(MAP.read_text())) == []


def test_nothing_imports_the_command_line() -> None:
    graph = import_graph(ROOT)
    assert [module for module, targets in graph.items() if "gateway.cli" in targets] == []


def test_there_is_no_import_cycle() -> None:
    assert cycle(import_graph(ROOT)) == []


def test_the_checks_catch_a_forbidden_import_and_a_cycle(tmp_path: Path) -> None:
    """The rules bite: a mask module importing the configuration (lazily, inside a function)
    is refused, and two modules importing each other are a cycle."""
    mask = tmp_path / "gateway" / "mask"
    mask.mkdir(parents=True)
    for package in (tmp_path / "gateway", mask):
        (package / "__init__.py").write_text("")
    (tmp_path / "gateway" / "config.py").write_text("")
    (mask / "render.py").write_text("from gateway.mask import compose\n")
    (mask / "compose.py").write_text("from . import render\n\ndef f():\n    from gateway.config import X\n")
    graph = import_graph(tmp_path)
    allowed = package_map(MAP.read_text())
    assert forbidden_imports(graph, allowed) == ["gateway.mask.compose -> gateway.config"]
    assert cycle(graph) in (
        ["gateway.mask.compose", "gateway.mask.render", "gateway.mask.compose"],
        ["gateway.mask.render", "gateway.mask.compose", "gateway.mask.render"],
    )
