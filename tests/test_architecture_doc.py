"""``docs/architecture.md`` stays true to the code: every module it names exists, every module of
``autolrs.core`` (and the torch, integrations and bench layers) is named, its phase graph names
exactly the edges of ``Edge``, each phase's row names the edges its module takes, every ``Phase``
is named, and it cites no file outside the repository."""

from __future__ import annotations

import ast
import inspect
import re
from collections import Counter
from pathlib import Path

import pytest

from autolrs.core.phases.base import Edge, Phase
from autolrs.core.state import PHASES

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "autolrs"
DOC = ROOT / "docs" / "architecture.md"

REPO_DIRS = ("tests/", "docs/", "benchmarks/")
"""Backticked paths that start with these are relative to the repository's root."""

LAYERS = ("core", "core/phases", "torch", "integrations", "bench")
"""Folders of ``src/autolrs`` whose every module the page must name."""

EXTERNAL = re.compile(r"DESIGN\.md|BENCHMARK\.md|\bshared/|\.\./")


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def _code_spans(text: str) -> list[str]:
    """The page's inline code spans (fenced blocks left out)."""
    prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    return re.findall(r"`([^`\n]+)`", prose)


def _module_paths(text: str) -> set[str]:
    """Backticked ``*.py`` paths, as written (e.g. ``core/run.py``, ``phases/ramp.py``)."""
    return {span for span in _code_spans(text) if re.fullmatch(r"[\w./]+\.py", span)}


def _resolve(path: str) -> Path:
    """Where a path the page names lies: ``phases/`` is ``core/phases/``; ``tests/``, ``docs/``
    and ``benchmarks/`` are the repository's; anything else is under ``src/autolrs/``."""
    if path.startswith(REPO_DIRS):
        return ROOT / path
    if path.startswith("phases/"):
        return SRC / "core" / path
    return SRC / path


def _named_modules(text: str) -> set[Path]:
    return {_resolve(p).resolve() for p in _module_paths(text)}


def _graph(text: str) -> str:
    """The fenced block of the section "The phase graph"."""
    section = text.split("## The phase graph", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, "the phase graph section should hold one drawing"
    return blocks[0]


def _edges() -> dict[str, str]:
    """``Edge``'s members: name -> value."""
    return {k: v for k, v in vars(Edge).items() if k.isupper() and isinstance(v, str)}


def _phases() -> dict[str, str]:
    return {k: v for k, v in vars(Phase).items() if k.isupper() and isinstance(v, str)}


def _edges_taken(module: Path) -> set[str]:
    """The ``Edge`` members a phase module names in ``Transition(..., next=...)``."""
    taken = set()
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Transition":
            for kw in node.keywords:
                if kw.arg != "next":
                    continue
                for sub in ast.walk(kw.value):
                    if (
                        isinstance(sub, ast.Attribute)
                        and isinstance(sub.value, ast.Name)
                        and sub.value.id == "Edge"
                    ):
                        taken.add(sub.attr)
    return taken


def _phase_rows(text: str) -> dict[str, str]:
    """The phase table's rows, by the module they name (``phases/x.py`` -> the row)."""
    rows = {}
    for line in text.splitlines():
        cells = line.split("|")
        if len(cells) == 6:  # | phase | module | begins | ends |
            match = re.fullmatch(r"\s*`(phases/\w+\.py)`\s*", cells[2])
            if match:
                rows[match.group(1)] = line
    return rows


PHASE_MODULES = sorted({Path(inspect.getfile(cls)) for cls in PHASES.values()})
"""The modules of the phases a saved state can name (``state.PHASES``)."""


# ---------------------------------------------------------------------- the checks
def test_every_module_the_page_names_exists():
    paths = _module_paths(_text())
    assert len(paths) > 40, f"the page should name the modules it maps; found {sorted(paths)}"
    missing = sorted(p for p in paths if not _resolve(p).is_file())
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"


@pytest.mark.parametrize("folder", LAYERS)
def test_every_module_of_the_layers_is_named(folder):
    named = _named_modules(_text())
    modules = sorted(p for p in (SRC / folder).glob("*.py") if p.name != "__init__.py")
    assert modules, folder
    unnamed = [str(p.relative_to(SRC)) for p in modules if p.resolve() not in named]
    assert not unnamed, f"docs/architecture.md does not name {unnamed}"


def test_the_graph_names_exactly_the_edges_of_Edge():
    drawn = set(re.findall(r"──([A-Z_]+)──", _graph(_text())))
    assert drawn == set(_edges()), (
        f"edges drawn {sorted(drawn)} but Edge has {sorted(_edges())}"
    )


def test_the_graph_draws_one_arrow_per_edge_a_phase_takes():
    """Each (phase module, edge it takes) pair is one ``──EDGE──`` arrow in the drawing."""
    drawn = Counter(re.findall(r"──([A-Z_]+)──", _graph(_text())))
    taken = Counter(edge for module in PHASE_MODULES for edge in _edges_taken(module))
    assert drawn == taken, f"arrows drawn {dict(drawn)}, edges the phases take {dict(taken)}"


def test_every_edge_is_named_in_code_and_every_named_edge_exists():
    spans = set(_code_spans(_text()))
    members = set(_edges())
    assert members <= spans, f"Edge members not named: {sorted(members - spans)}"
    graph_words = set(re.findall(r"\b[A-Z]{4,}\b", _graph(_text())))
    assert graph_words <= members, f"the graph names no such edges: {sorted(graph_words - members)}"


@pytest.mark.parametrize("module", PHASE_MODULES, ids=lambda p: p.stem)
def test_each_phase_row_names_the_edges_its_module_takes(module):
    rows = _phase_rows(_text())
    key = f"phases/{module.name}"
    assert key in rows, f"the phase table has no row for {key}"
    taken = _edges_taken(module)
    row = rows[key]
    unnamed = sorted(e for e in taken if f"`{e}`" not in row.split("|")[4])
    assert not unnamed, f"{key} takes {sorted(taken)} but its row's last cell omits {unnamed}"


def test_the_phase_table_has_a_row_per_phase_module_and_names_every_phase():
    text = _text()
    assert set(_phase_rows(text)) == {f"phases/{p.name}" for p in PHASE_MODULES}
    table = "\n".join(_phase_rows(text).values())
    missing = sorted(v for v in _phases().values() if f"`{v}`" not in table)
    assert not missing, f"phase names missing from the phase table: {missing}"


def test_the_page_cites_no_file_outside_the_repository():
    text = _text()
    found = EXTERNAL.findall(text)
    assert not found, f"docs/architecture.md cites files outside the repository: {found}"
    docs = {s for s in _code_spans(text) if s.endswith(".md")}
    missing = sorted(d for d in docs if not (ROOT / d).is_file())
    assert not missing, f"docs/architecture.md names pages that do not exist: {missing}"
