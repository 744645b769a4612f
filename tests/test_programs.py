"""jstyle.programs: compiled programs kept on disk and loaded without tracing, in a fresh
process as in this one; what cannot be read back is compiled again."""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jstyle import programs

TRACES = []


@functools.partial(jax.jit, static_argnames=("power",))
def _solve(a, b, *, power):
    TRACES.append(power)
    # a LAPACK custom call (Cholesky): what a loaded executable needs initialised first
    x = jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(a), b)
    return jnp.sum(x**power), x


@pytest.fixture
def kept(tmp_path):
    programs.enable(tmp_path / "programs")
    programs._MEMO.clear()
    yield tmp_path / "programs"
    programs.disable()
    programs._MEMO.clear()


def _operands():
    a = np.eye(3, dtype=np.float32) * 2 + 0.5
    return jnp.asarray(a), jnp.ones((3,), jnp.float32)


def test_a_program_is_stored_and_loaded_without_tracing(kept):
    a, b = _operands()
    TRACES.clear()
    first = programs.compiled(_solve, a, b, power=2)
    expected = first(a, b)
    assert TRACES == [2] and len(list(kept.glob("*.program"))) == 1
    programs._MEMO.clear()  # as a new process finds it: nothing compiled, nothing traced
    jax.clear_caches()
    again = programs.compiled(_solve, a, b, power=2)
    assert TRACES == [2]  # loaded, not traced
    np.testing.assert_array_equal(again(a, b)[1], expected[1])
    assert float(again(a, b)[0]) == float(expected[0])


def test_static_arguments_and_shapes_are_in_the_key(kept):
    a, b = _operands()
    keys = {programs.key(_solve, (a, b), {"power": 2}),
            programs.key(_solve, (a, b), {"power": 3}),
            programs.key(_solve, (a[:2, :2], b[:2]), {"power": 2}),
            programs.key(_solve, (a.astype(jnp.bfloat16), b), {"power": 2})}
    assert len(keys) == 4
    assert programs.key(_solve, (a, b), {"power": 2}) == programs.key(_solve, (a + 1, b),
                                                                      {"power": 2})


def test_an_unreadable_program_is_compiled_again(kept):
    a, b = _operands()
    programs.compiled(_solve, a, b, power=2)
    (path,) = kept.glob("*.program")
    path.write_bytes(b"truncated")
    programs._MEMO.clear()
    jax.clear_caches()
    TRACES.clear()
    program = programs.compiled(_solve, a, b, power=2)
    assert TRACES == [2] and path.stat().st_size > 100  # compiled and stored anew
    assert np.isfinite(float(program(a, b)[0]))


def test_a_program_that_cannot_be_kept_is_marked_and_then_compiled_as_usual(kept,
                                                                             monkeypatch):
    from jax.experimental import serialize_executable

    def refuse(compiled):
        raise NotImplementedError("serialize_executables with const_args")

    a, b = _operands()
    monkeypatch.setattr(serialize_executable, "serialize", refuse)
    first = programs.compiled(_solve, a, b, power=2)
    assert not list(kept.glob("*.program")) and len(list(kept.glob("*.unkept"))) == 1
    programs._MEMO.clear()
    calls = []
    monkeypatch.setattr(programs, "_outside_jax_cache",
                        lambda: calls.append(1) or pytest.fail("compiled outside JAX's cache"))
    again = programs.compiled(_solve, a, b, power=2)  # through JAX's caches, not afresh
    assert not calls
    np.testing.assert_array_equal(again(a, b)[1], first(a, b)[1])


def test_nothing_is_kept_when_disabled(tmp_path):
    programs.disable()
    a, b = _operands()
    TRACES.clear()
    jax.clear_caches()
    programs.compiled(_solve, a, b, power=2)
    jax.clear_caches()
    programs.compiled(_solve, a, b, power=2)
    assert TRACES == [2, 2] and not list(tmp_path.rglob("*.program"))


def test_the_oldest_programs_go_when_the_folder_is_full(kept, monkeypatch):
    a, b = _operands()
    monkeypatch.setattr(programs, "MAX_BYTES", 1)
    programs.compiled(_solve, a, b, power=2)
    programs.compiled(_solve, a, b, power=3)
    assert len(list(kept.glob("*.program"))) == 1  # the newest stays, the rest go


def test_a_fresh_process_loads_and_runs_the_stored_program(kept):
    """The case that matters: another process, which has lowered nothing (its LAPACK
    kernels uninitialised), runs the loaded executable and gets the same numbers, without
    importing ``scipy.linalg`` for the kernels' routines (start-up time)."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import {__name__} as t
        from jstyle import programs
        programs.enable({str(kept)!r})
        a, b = t._operands()
        program = programs.compiled(t._solve, a, b, power=2)
        print(len(t.TRACES), repr(float(program(a, b)[0])), "scipy.linalg" in sys.modules)
    """)
    a, b = _operands()
    expected = float(programs.compiled(_solve, a, b, power=2)(a, b)[0])  # stored here
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    traced, value, linalg = done.stdout.split()
    assert traced == "0" and float(value) == expected and linalg == "False"


def test_a_transfer_runs_the_same_from_kept_programs(kept, random_params, monkeypatch):
    """The engine's four programs (targets, first evaluation, a chunk of steps, the final
    terms) kept, then loaded in place of tracing: the same image and losses."""
    from jstyle import engine, transfer
    from jstyle.objective import Objective
    from jstyle.optimize import make_solver
    from jstyle.preprocessing import CAFFE

    objective = Objective((("relu2_2", 1.0),), (("relu1_1", 0.5), ("relu2_1", 0.5)),
                          1.0, 1e2, 0.0, "avg", CAFFE)
    rng = np.random.default_rng(0)
    content, style = rng.random((2, 24, 24, 3), dtype=np.float32)

    def run():
        return transfer.stylize(random_params, content, [style], objective,
                                make_solver("lbfgs"), iterations=3)

    first = run()
    stored = sorted(kept.glob("*.program"))
    assert len(stored) == 4
    programs._MEMO.clear()
    engine._COMPILED.clear()
    jax.clear_caches()

    def untraceable(*args, **kwargs):
        raise AssertionError("traced: the kept program was not loaded")

    for name in ("compute_targets", "objective_and_terms", "loss_terms"):
        monkeypatch.setattr(engine, name, untraceable)
    again = run()
    assert sorted(kept.glob("*.program")) == stored
    np.testing.assert_array_equal(again.image, first.image)
    assert again.terms == first.terms and again.delivered == first.delivered


def test_a_program_compiled_where_jax_cache_has_it_is_kept_whole(tmp_path):
    """JAX's persistent cache holds the executable (this process compiled it before, as a
    run's earlier steps do): the kept program must still be compiled afresh, since one
    read from that cache and serialised again runs without its kernels."""
    setup = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import jax
        import {__name__} as t
        from jstyle import programs
        jax.config.update("jax_compilation_cache_dir", {str(tmp_path / "xla")!r})
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        programs.enable({str(tmp_path / "programs")!r})
        a, b = t._operands()
    """)
    steps = [
        "t._solve(a, b, power=2)",  # into JAX's cache
        # read back from it (into this process's memory too), then kept
        "jax.clear_caches(); t._solve(a, b, power=2)\n"
        "programs.compiled(t._solve, a, b, power=2)",
        "print(float(programs.compiled(t._solve, a, b, power=2)(a, b)[0]))",  # loaded, run
    ]
    for step in steps:
        done = subprocess.run([sys.executable, "-c", setup + step], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
    assert len(list((tmp_path / "programs").glob("*.program"))) == 1
    a, b = _operands()
    assert float(done.stdout) == pytest.approx(float(_solve(a, b, power=2)[0]), rel=1e-6)
