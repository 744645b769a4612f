"""Which way imports go (core <- engine <- shell), and the declared public surface."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jstyle"

#: The layers of the guide: the network, losses, objective and optimisers; the loop that
#: runs them; everything that knows of configs, files and terminals.
CORE = ("layers", "vgg", "onednn", "losses", "style_losses", "objective", "optimize",
        "preprocessing", "metrics", "options", "errors", "tiling")
ENGINE = ("engine", "transfer", "sharding", "distributed", "programs")
SHELL = ("config", "inputs", "images", "outputs", "progress", "run", "figures", "api",
         "pipeline", "report", "default_images", "memory", "cache", "fileio", "color", "terminal",
         "bench", "weights", "xla_cpu", "precision", "web", "studio")


def _imports(module: str) -> set[str]:
    """The jstyle modules ``module`` imports anywhere in its file (lazy imports included),
    as their first component below ``jstyle``."""
    path = PACKAGE / f"{module}.py"
    if not path.exists():
        path = PACKAGE / module / "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "jstyle":
                found.add(parts[1] if len(parts) > 1 else node.names[0].name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "jstyle" and len(parts) > 1:
                    found.add(parts[1])
    return found - {module}


def _reachable(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for name in _imports(todo.pop()) - seen:
            seen.add(name)
            todo.append(name)
    return seen


@pytest.mark.parametrize("module", CORE + ENGINE)
def test_no_core_or_engine_module_reaches_the_shell(module):
    below = CORE if module in CORE else CORE + ENGINE
    reached = _reachable(module)
    assert not reached & set(SHELL), f"{module} imports {sorted(reached & set(SHELL))}"
    assert reached <= set(below), f"{module} imports {sorted(reached - set(below))}"


def test_every_module_is_placed_in_a_layer():
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"} | {
        p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert modules == set(CORE + ENGINE + SHELL)


PUBLIC = ("", ".api", ".config", ".losses", ".objective", ".optimize", ".engine", ".transfer",
          ".sharding", ".pipeline", ".vgg", ".preprocessing", ".metrics", ".layers",
          ".options", ".color", ".weights")


@pytest.mark.parametrize("name", PUBLIC)
def test_public_modules_declare_what_they_export(name):
    module = importlib.import_module(f"jstyle{name}")
    assert module.__all__, name
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, missing


def test_what_the_readme_imports_is_public():
    text = (ROOT / "README.md").read_text()
    imports = re.findall(r"^from (jstyle(?:\.\w+)*) import ([\w, ]+)$", text, flags=re.M)
    assert imports
    for module, names in imports:
        exported = importlib.import_module(module).__all__
        for name in (n.strip() for n in names.split(",")):
            assert name in exported, f"the README imports {name} from {module}"


def _weights_imports(module: str) -> set[str]:
    """The modules of jstyle.weights that ``jstyle/weights/<module>.py`` imports."""
    found = set()
    tree = ast.parse((PACKAGE / "weights" / f"{module}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("jstyle.weights."):
                found.add(node.module.split(".")[2])
            elif node.module == "jstyle.weights":
                found |= {alias.name for alias in node.names}
    return found - {module}


def test_the_weights_modules_import_one_way():
    """store <- normalize <- convert <- provision: no cycle, not even a lazy one."""
    order = ["legacy_torch", "store", "normalize", "convert", "provision"]
    for i, module in enumerate(order):
        assert _weights_imports(module) <= set(order[:i]), (module, _weights_imports(module))


def test_reading_a_weights_file_needs_no_jax(tmp_path):
    import subprocess
    import sys

    import numpy as np

    from jstyle.layers import CONV_CHANNELS
    from jstyle.preprocessing import CAFFE
    from jstyle.weights.store import LICENSE, save_weights

    rng = np.random.default_rng(0)
    params = {name: {"kernel": rng.standard_normal((3, 3, cin, cout), np.float32) * 0.01,
                     "bias": np.zeros(cout, np.float32)}
              for name, (cin, cout) in CONV_CHANNELS.items()}
    path = tmp_path / "w.h5"
    save_weights(path, params, CAFFE, {"source": "test", "source_file": "none",
                                       "source_sha256": "0" * 64, "license": LICENSE,
                                       "converter_version": "1"})
    code = (f"import sys\nfrom jstyle.weights import load_weights\n"
            f"w = load_weights({str(path)!r})\n"
            "print(len(w.params), sorted({m.split('.')[0] for m in sys.modules} & "
            "{'jax', 'jaxlib', 'flax', 'optax'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.stdout.split() == ["16", "[]"], out.stdout + out.stderr


def test_the_command_line_loads_no_web_module_without_web():
    """``--web``'s server and pages (jstyle.web) load only when it is given."""
    import subprocess
    import sys

    code = ("import sys\nimport jstyle.run\njstyle.run.parser().parse_args(['--quiet'])\n"
            "print(sorted(m for m in sys.modules if m.startswith('jstyle.web') or m in "
            "('jstyle.studio', 'http.server')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
