"""Every command-line entry point: a bad argument is one line and exit code 2."""

from __future__ import annotations

import importlib
import runpy
import sys
from pathlib import Path

import pytest

from jstyle import terminal
from jstyle.errors import JStyleError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module, prefix", [
    ("jstyle.run", "jstyle: error: "),
    ("jstyle.figures", "jstyle: error: "),
    ("jstyle.bench.harness", "jstyle.bench: error: "),
    ("jstyle.bench.memory", "jstyle.bench.memory: error: "),
    ("jstyle.weights.provision", "convert_vgg_weights: error: "),
])
def test_a_bad_argument_is_one_line_and_exit_2(module, prefix, capsys):
    main = importlib.import_module(module).main
    first = ["fig4"] if module == "jstyle.figures" else []  # its figure's name comes first
    assert main([*first, "--no-such-option"]) == terminal.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith(prefix) and err.count("\n") == 1, err
    assert "--no-such-option" in err and "--help" in err


def test_the_quality_benchmark_refuses_an_unknown_solver(capsys):
    from jstyle.bench.harness import main

    assert main(["quality", "--solvers", "nope"]) == terminal.EXIT_BAD_INPUT
    assert capsys.readouterr().err.startswith("jstyle.bench: error: ")


def test_the_weights_script_is_the_same_entry_point(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["convert_vgg_weights.py", "--bogus"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(ROOT / "scripts" / "convert_vgg_weights.py"), run_name="__main__")
    assert exit_.value.code == terminal.EXIT_BAD_INPUT
    assert capsys.readouterr().err.startswith("convert_vgg_weights: error: ")


def test_errors_and_interrupts_become_exit_codes(capsys):
    def parser():
        p = terminal.Parser(prog="tool")
        p.add_argument("--debug", action="store_true")
        return p

    def bad(args):
        raise JStyleError("the problem; the fix")

    def stop(args):
        raise KeyboardInterrupt

    assert terminal.main(parser, bad, []) == 2
    assert capsys.readouterr().err == "tool: error: the problem; the fix\n"
    assert terminal.main(parser, stop, [], interrupted="interrupted; nothing written") == 130
    assert capsys.readouterr().err == "tool: interrupted; nothing written\n"
    with pytest.raises(JStyleError):
        terminal.main(parser, bad, ["--debug"])
