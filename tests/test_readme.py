"""The README's promises: its Python examples run, and its config reference is complete."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jstyle.config import FIELDS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_config_reference_lists_every_key():
    for key in FIELDS:
        assert f"| `{key}` |" in README, key


def test_readme_names_the_test_command():
    # Two workers (pytest-xdist): most of a test's time is single-threaded compilation.
    assert "python -m pytest -n 2" in README
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "python -m pytest -q -n 2" in ci


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_python_examples_run(index, request, capsys):
    code = PYTHON_BLOCKS[index]
    if "ensure_weights" in code or "jstyle.stylize" in code:
        request.getfixturevalue("real_weights")  # skips unless the weights are provisioned
    exec(compile(code, f"README.md python block {index}", "exec"), {})
    assert capsys.readouterr().out.strip()
