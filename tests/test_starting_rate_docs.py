"""Every place that tells users about the optimizer's learning rate says the same true thing
(issue 20, item 8; issue 19 changed what is true): a fallback, where autolrs starts only where
the range test finds nothing, never "ignored"."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import autolrs

ROOT = Path(__file__).resolve().parents[1]
IGNORED_NEAR_LR = re.compile(
    r"(\blr\b|learning.rate).{0,60}\bignored\b|\bignored\b.{0,60}(\blr\b|learning.rate)",
    re.IGNORECASE | re.DOTALL,
)
SOURCES = sorted(
    [ROOT / "README.md", *(ROOT / "examples").glob("*.py"), *(ROOT / "src/autolrs/integrations").glob("*.py")]
)


def _docstrings() -> dict[str, str]:
    from autolrs.integrations.huggingface import AutoLRSCallback as HF
    from autolrs.integrations.lightning import AutoLRSCallback as PL

    return {
        "AutoLRS": autolrs.AutoLRS.__doc__ or "",
        "autolrs": autolrs.__doc__ or "",
        "huggingface.AutoLRSCallback": HF.__doc__ or "",
        "lightning.AutoLRSCallback": PL.__doc__ or "",
    }


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_file_calls_the_optimizers_rate_ignored(path):
    text = path.read_text(encoding="utf-8")
    found = [m.group(0) for m in IGNORED_NEAR_LR.finditer(text)]
    assert not found, f"{path.name} calls the learning rate ignored: {found}"


def test_no_docstring_calls_it_ignored_and_autolrs_says_where_it_starts():
    docs = _docstrings()
    for name, doc in docs.items():
        assert not IGNORED_NEAR_LR.search(doc), name
    said = "learning rate is a fallback"
    assert said in " ".join(docs["AutoLRS"].split())
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "optimizer's learning rate is a fallback: where the range test finds nothing, it is " \
        "where autolrs starts" in readme


def test_the_pattern_catches_what_the_issue_found():
    for old in ("lr=0.1, momentum=0.9)  # lr is ignored", "learning_rate=5e-4,  # ignored: autolrs sets",
                "the optimizer's own learning rate is ignored (except"):
        assert IGNORED_NEAR_LR.search(old), old
