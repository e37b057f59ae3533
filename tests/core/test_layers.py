"""The arrows inside ``autolrs.core`` point down (``docs/architecture.md``, "How autolrs is
built"): the method imports nothing above it, and within it only the modules that drive the
phase graph import the phases."""

from __future__ import annotations

import ast
from pathlib import Path

import autolrs.core

CORE = Path(autolrs.core.__file__).parent

DRIVERS = {"autolrs.core.controller", "autolrs.core.state"}
"""The controller follows the phase graph; ``state`` rebuilds a saved phase for it."""

ABOVE_THE_PHASES = DRIVERS | {"autolrs.core", "autolrs.core.executor"}
"""What stands above the phases: the drivers, the executor and the package's exports."""

OUTSIDE_CORE = {"autolrs.exceptions"}
"""The one module outside ``autolrs.core`` that it may import."""


def _modules() -> dict[str, set[str]]:
    """Every core module's name -> the ``autolrs`` modules it imports (anywhere in the file)."""
    out = {}
    for path in sorted(CORE.rglob("*.py")):
        parts = path.relative_to(CORE.parent.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:  # a submodule, or a name the package exports
                    sub = f"{node.module}.{alias.name}"
                    imported.add(sub if _exists(sub) else node.module)
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
        out[name] = {m for m in imported if m == "autolrs" or m.startswith("autolrs.")}
    return out


def _exists(module: str) -> bool:
    """Whether ``module`` names a file of the package (not a name one of them defines)."""
    parts = module.split(".")[1:]
    base = CORE.parent.joinpath(*parts)
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _is_phase(name: str) -> bool:
    return name == "autolrs.core.phases" or name.startswith("autolrs.core.phases.")


def test_core_imports_nothing_above_it():
    for name, imported in _modules().items():
        above = {m for m in imported if not m.startswith("autolrs.core")} - OUTSIDE_CORE
        assert not above, f"{name} imports {sorted(above)}"


def test_only_the_drivers_import_the_phases():
    for name, imported in _modules().items():
        if _is_phase(name) or name in ABOVE_THE_PHASES:
            continue
        phases = sorted(m for m in imported if _is_phase(m))
        assert not phases, f"{name} is below the phases but imports {phases}"
        assert not imported & ABOVE_THE_PHASES, f"{name} imports {imported & ABOVE_THE_PHASES}"


def test_no_phase_imports_what_drives_it():
    for name, imported in _modules().items():
        if _is_phase(name):
            assert not imported & ABOVE_THE_PHASES, f"{name} imports its driver"


def test_the_executor_stands_above_the_controller_and_no_lower_module_imports_either():
    modules = _modules()
    for name, imported in modules.items():
        if name in ("autolrs.core", "autolrs.core.executor"):
            continue
        assert "autolrs.core.executor" not in imported, name
        if name != "autolrs.core.controller":
            assert "autolrs.core.controller" not in imported, name
    assert modules["autolrs.core.executor"] & {"autolrs.core.controller"}
