"""The README's table of `Config` fields says what `Config()` and `Config.paper()` hold."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from autolrs import Config

README = Path(__file__).resolve().parents[1] / "README.md"
HEADER = "| field | default | paper | meaning |"


def _rows() -> dict[str, tuple[str, str]]:
    lines = README.read_text().splitlines()
    start = lines.index(HEADER) + 2
    out: dict[str, tuple[str, str]] = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        name, default, paper = (c.strip() for c in line.strip("|").split("|")[:3])
        names = [n.strip(" `") for n in name.split(",")]
        defaults = _split(default, len(names))
        papers = _split(paper, len(names))
        for n, d, p in zip(names, defaults, papers):
            out[n] = (d, p)
    return out


def _split(cell: str, parts: int) -> list[str]:
    """Splits ``a, b`` into its values, keeping tuples such as ``(1e-7, 10)`` whole."""
    if parts == 1:
        return [cell]
    values, depth, current = [], 0, ""
    for ch in cell:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += ch
    values.append(current.strip())
    assert len(values) == parts, f"README cell {cell!r} does not hold {parts} values"
    return values


def _value(text: str):
    if text in ("lcb", "ei", "pi", "grid", "paper", "observed", "worst", "penalty", "robust",
                "validation", "train"):
        return text
    if "/" in text:
        num, den = text.split("/")
        return float(num) / float(den)
    return ast.literal_eval(text)


def _same(shown, actual) -> bool:
    if isinstance(actual, float) and isinstance(shown, (int, float)):
        return shown == pytest.approx(actual, rel=1e-3)
    if isinstance(actual, tuple):
        return isinstance(shown, tuple) and len(shown) == len(actual) and all(
            _same(a, b) for a, b in zip(shown, actual)
        )
    return shown == actual


@pytest.mark.parametrize("preset", ["default", "paper"])
def test_every_config_field_is_in_the_readme_with_its_value(preset):
    rows = _rows()
    config = Config() if preset == "default" else Config.paper()
    fields = dataclasses.asdict(config)
    assert sorted(set(fields) - set(rows)) == [], "Config fields missing from the README table"
    assert sorted(set(rows) - set(fields)) == [], "README rows naming no Config field"
    wrong = {}
    for name, actual in fields.items():
        shown = _value(rows[name][0 if preset == "default" else 1])
        if not _same(shown, actual):
            wrong[name] = (shown, actual)
    assert not wrong, f"README shows (shown, actual) for Config{'' if preset == 'default' else '.paper'}(): {wrong}"


def test_the_readme_states_the_range_tests_real_length():
    """Issue 20, item 9: not "at most 3 %" — 3 %, but 20 to ``range_test_steps`` steps."""
    from autolrs.core.planning import range_test_length

    text = " ".join(README.read_text().split())
    assert "over 3 % of the budget, but never fewer than 20 steps nor more than 100" in text
    assert "for any budget under about 670 steps" in text
    config = Config()
    assert config.range_test_fraction == 0.03 and config.range_test_steps == 100
    assert range_test_length(config, 300) == 20  # 6.7 % of the budget
    assert range_test_length(config, 660) == 20 and range_test_length(config, 700) == 21
    assert range_test_length(config, 1000) == 30
    assert range_test_length(config, 100_000) == 100
