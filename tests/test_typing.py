"""README's examples type-check under `mypy --strict`, and the typos in them are caught.

`typing_examples.py` holds README's examples as an application would write them, with the
mistakes the types must catch. Besides, every ```python block of README.md and docs/*.md
marked `<!-- README test: type-checked (mypy --strict) -->` is checked as it stands (a block
that uses a `conn` it does not make gets one declared).
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.processes import wine_limit

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = "<!-- README test: type-checked (mypy --strict) -->"


def typed_blocks() -> list[tuple[str, str]]:
    """(file:line, code) for every python block marked to be type-checked."""
    found = []
    for document in DOCUMENTS:
        lines = document.read_text().splitlines()
        for index, line in enumerate(lines):
            if line.strip() != "```python" or index == 0 or lines[index - 1].strip() != MARKER:
                continue
            end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
            found.append((f"{document.relative_to(ROOT).as_posix()}:{index + 1}",
                          "\n".join(lines[index + 1:end])))
    return found


def as_module(code: str) -> str:
    code = textwrap.dedent(code)
    if re.search(r"\bconn\b", code) and not re.search(r"\bconn\s*(=|:)|as conn\b", code):
        code = "import snworker\n\nconn: snworker.ServiceNowConnection\n" + code
    return code + "\n"


@wine_limit("bcryptprimitives.dll is missing, which mypy's compiled extension loads")
@pytest.mark.timeout(180)
def test_readme_examples_pass_mypy_strict(tmp_path):
    blocks = typed_blocks()
    assert any(line.startswith("README.md:") for line, _ in blocks)
    files = [str(ROOT / "tests" / "typing_examples.py")]
    for line, code in blocks:
        module = tmp_path / (re.sub(r"\W", "_", line) + ".py")
        module.write_text(as_module(code))
        files.append(str(module))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *files],
        cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert result.returncode == 0, result.stdout + result.stderr
