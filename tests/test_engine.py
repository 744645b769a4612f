"""The one host loop (jstyle.engine): stops at chunk boundaries, and an interrupted run
continued from its saved state ends where an uninterrupted one does."""

from __future__ import annotations

import dataclasses
import signal

import jax
import numpy as np
import pytest

from jstyle import engine, sharding, transfer
from jstyle.optimize import make_solver
from tests.helpers import PAPER_OBJECTIVE as OBJECTIVE

SOLVERS = {"lbfgs": make_solver("lbfgs"), "adam": make_solver("adam", learning_rate=0.05)}


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(1)
    return rng.random((32, 32, 3), dtype=np.float32), rng.random((32, 32, 3), dtype=np.float32)


def _stop_at(iteration: int):
    """An ``on_progress`` that asks for a stop once ``iteration`` iterations are done."""
    def on_progress(progress):
        if progress.iteration >= iteration:
            engine.request_stop()
    return on_progress


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_a_resumed_run_ends_where_an_uninterrupted_one_does(random_params, problem, name):
    content, style = problem
    solver = SOLVERS[name]
    whole = transfer.stylize(random_params, content, [style], OBJECTIVE, solver, iterations=8)
    with pytest.raises(engine.Interrupted) as stop:
        transfer.stylize(random_params, content, [style], OBJECTIVE, solver, iterations=8,
                         on_progress=_stop_at(3))
    first = stop.value.result
    assert first.stopped == "interrupted after iteration 3" and len(first.history) == 3
    assert first.state is not None  # the L-BFGS history (or Adam's moments) comes along
    leaves, structure = engine.state_leaves(first.state)  # as the resume file stores it
    template = engine.state_template(random_params, content, [style], None, None, OBJECTIVE,
                                     solver)
    state = engine.state_from_leaves(template, leaves, structure)
    rest = transfer.stylize(random_params, content, [style], OBJECTIVE, solver, iterations=5,
                            init=first.image, state=state, offset=3)
    np.testing.assert_allclose(first.history + rest.history, whole.history, rtol=1e-5)
    np.testing.assert_allclose(rest.image, whole.image, atol=1e-4)
    assert first.evaluations + rest.evaluations == whole.evaluations


SLICED = dataclasses.replace(OBJECTIVE, style_losses=(("sliced_wasserstein", 1.0),))


def test_redrawn_projections_resume_where_an_uninterrupted_run_ends(random_params, problem):
    """redraw_every: new projections (new targets) on every multiple of it, counted from
    the run's start, so a run resumed between two draws continues on the same one."""
    content, style = problem
    solver = SOLVERS["lbfgs"]
    fixed = transfer.stylize(random_params, content, [style], SLICED, solver, iterations=6)
    whole = transfer.stylize(random_params, content, [style], SLICED, solver, iterations=6,
                             redraw_every=2)
    assert whole.history[:2] == fixed.history[:2]  # one draw until the first redraw
    assert not np.allclose(whole.history[2:], fixed.history[2:], rtol=1e-4)
    # the start, each step's, and one to re-base the solver on each new draw (at 2 and 4)
    assert whole.evaluations == 1 + sum(whole.evaluations_history) + 2
    with pytest.raises(engine.Interrupted) as stop:
        transfer.stylize(random_params, content, [style], SLICED, solver, iterations=6,
                         redraw_every=2, on_progress=_stop_at(3))
    first = stop.value.result
    rest = transfer.stylize(random_params, content, [style], SLICED, solver, iterations=3,
                            init=first.image, state=first.state, offset=3, redraw_every=2)
    np.testing.assert_allclose(first.history + rest.history, whole.history, rtol=1e-5)
    np.testing.assert_allclose(rest.image, whole.image, atol=1e-4)
    assert first.evaluations + rest.evaluations == whole.evaluations


def test_a_stop_before_the_first_chunk_keeps_the_start(random_params, problem):
    content, style = problem
    with engine.stoppable(), pytest.raises(engine.Interrupted) as stop:
        engine.request_stop()  # as a Ctrl-C during compilation does
        transfer.stylize(random_params, content, [style], OBJECTIVE, SOLVERS["lbfgs"],
                         iterations=4, seed=2)
    result = stop.value.result
    assert result.history == [] and result.state is not None
    start = np.asarray(transfer.initial_image("noise", content, style, 2))
    np.testing.assert_array_equal(result.image, start)
    assert np.isfinite(result.terms["total"]) and not engine.stop_requested()


def test_ctrl_c_waits_for_the_chunk_boundary(random_params, problem):
    """Python's SIGINT handler is swapped for one that asks for the stop, so Ctrl-C never
    raises inside JAX; the run stops after the chunk it came in."""
    content, style = problem
    seen = []

    def on_progress(progress):
        seen.append(progress.iteration)
        if progress.iteration == 2:
            signal.raise_signal(signal.SIGINT)

    # Python's own handler, as in an interactive session (a background job, as CI may run
    # the suite, starts with SIGINT ignored).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(engine.Interrupted) as stop:
            transfer.stylize(random_params, content, [style], OBJECTIVE, SOLVERS["lbfgs"],
                             iterations=6, on_progress=on_progress)
        assert seen == [1, 2] and len(stop.value.result.history) == 2
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, previous)


def test_chunks_end_on_multiples_of_save_every_counted_from_the_start(random_params, problem):
    content, style = problem
    reports = []
    transfer.stylize(random_params, content, [style], OBJECTIVE, SOLVERS["adam"],
                     iterations=9, offset=3, save_every=4,
                     on_progress=lambda p: reports.append(3 + p.iteration))
    assert {4, 8, 12} <= set(reports)


def test_a_resumed_batch_ends_where_an_uninterrupted_one_does(random_params, problem):
    content, style = problem
    contents = np.stack([content, content[::-1]])
    mesh = sharding.make_mesh(sharding.BATCH_AXIS, jax.local_devices()[:1])
    solver = SOLVERS["lbfgs"]
    whole = sharding.stylize_batch(random_params, contents, [style], OBJECTIVE, solver,
                                   iterations=6, mesh=mesh)

    def stop_at_3(progress):
        if progress.iteration >= 3:
            engine.request_stop()

    with pytest.raises(engine.Interrupted) as stop:
        sharding.stylize_batch(random_params, contents, [style], OBJECTIVE, solver,
                               iterations=6, mesh=mesh, on_progress=stop_at_3)
    first = stop.value.results
    assert [len(r.history) for r in first] == [3, 3]
    rest = sharding.stylize_batch(random_params, contents, [style], OBJECTIVE, solver,
                                  iterations=6, mesh=mesh, init=np.stack([r.image for r in first]),
                                  states=[r.state for r in first], offsets=[3, 3])
    for a, b, c in zip(whole, first, rest, strict=True):
        np.testing.assert_allclose(b.history + c.history, a.history, rtol=1e-5)
        np.testing.assert_allclose(c.image, a.image, atol=1e-4)


def test_a_saved_state_of_another_solver_is_refused(random_params, problem):
    content, style = problem
    template = engine.state_template(random_params, content, [style], None, None, OBJECTIVE,
                                     SOLVERS["lbfgs"])
    adam = engine.state_template(random_params, content, [style], None, None, OBJECTIVE,
                                 SOLVERS["adam"])
    leaves, structure = engine.state_leaves(
        jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), adam))
    with pytest.raises(ValueError, match="another optimiser"):
        engine.state_from_leaves(template, leaves, structure)
    small = engine.state_template(random_params, content[:16], [style], None, None, OBJECTIVE,
                                  SOLVERS["lbfgs"])
    leaves, structure = engine.state_leaves(
        jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), small))
    with pytest.raises(ValueError, match="shape"):
        engine.state_from_leaves(template, leaves, structure)


def test_one_program_serves_every_weight_setting(random_params, problem):
    """alpha, beta and w_l are data to the compiled program (Targets.weights): objectives
    that differ only in their weights share one compiled chunk, and each run's loss is its
    own objective's."""
    import dataclasses

    import jax.numpy as jnp

    from jstyle.objective import compute_targets, loss_terms

    content, style = problem
    other = dataclasses.replace(
        OBJECTIVE, content_weight=3.0, style_weight=2e2,
        style_layers=tuple((n, 0.1 * (i + 1)) for i, (n, _) in enumerate(OBJECTIVE.style_layers)))
    engine._COMPILED.clear()
    results = {obj: transfer.stylize(random_params, content, [style], obj, SOLVERS["lbfgs"],
                                     iterations=2) for obj in (OBJECTIVE, other)}
    assert len(engine._COMPILED) == 1
    for obj, result in results.items():
        targets = compute_targets(random_params, content, [style], obj)._replace(weights=None)
        expected = loss_terms(jnp.asarray(result.image), random_params, targets, obj)
        assert result.terms["total"] == pytest.approx(float(expected["total"]), rel=1e-4)
    assert results[OBJECTIVE].terms["total"] != pytest.approx(results[other].terms["total"])


def test_chunk_size():
    assert engine.chunk_size(1) == 1
    assert engine.chunk_size(100) == 2
    assert engine.chunk_size(5000) == 20
