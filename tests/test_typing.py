"""README's examples type-check under `mypy --strict`, and the typos in them are caught."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import wine_limit

ROOT = Path(__file__).resolve().parent.parent


@wine_limit("bcryptprimitives.dll is missing, which mypy's compiled extension loads")
@pytest.mark.timeout(180)
def test_readme_examples_pass_mypy_strict():
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         str(ROOT / "tests" / "typing_examples.py")],
        cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert result.returncode == 0, result.stdout + result.stderr
