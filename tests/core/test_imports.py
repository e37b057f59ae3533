"""autolrs.core must work without PyTorch: every import of torch is blocked here."""

from __future__ import annotations

import subprocess
import sys


def test_core_imports_without_torch():
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch is blocked in this test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import autolrs.core, autolrs.testing, autolrs.core.controller\n"
        "from autolrs import Config\n"
        "from autolrs.core import StageController\n"
        "from autolrs.testing import NoisyQuadratic, drive\n"
        "c = StageController(Config(), total_steps=300, seed=0)\n"
        "drive(c, NoisyQuadratic(), 300)\n"
        "assert not [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_autolrs_exports_autolrs_lazily():
    import autolrs

    assert "AutoLRS" in autolrs.__all__
    from autolrs import AutoLRS
    from autolrs.torch.scheduler import AutoLRS as Direct

    assert AutoLRS is Direct
