"""The solvers: L-BFGS's two-loop recursion against the BFGS formula, the pixel box, line
searches, evaluation counts, and the loss terms reported without another pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jstyle.objective import compute_targets, loss_terms
from jstyle.optimize import (
    BOX,
    LBFGS,
    LINE_SEARCHES,
    Adam,
    JaxoptLBFGS,
    make_solver,
    reduced_newton_step,
    run_steps,
    two_loop,
)
from jstyle.transfer import stylize
from tests.helpers import PAPER_OBJECTIVE

OBJECTIVE = PAPER_OBJECTIVE


def _quadratic(center: np.ndarray, scales: np.ndarray):
    """f(x) = 1/2 sum scales (x - center)^2, with terms as the objective's aux."""
    c, a = jnp.asarray(center), jnp.asarray(scales)

    def fun(x):
        value = 0.5 * jnp.sum(a * jnp.square(x - c))
        return value, {"total": value, "half": 0.5 * value}

    return fun


def test_two_loop_is_the_bfgs_inverse_hessian_product(rng):
    """Alg. 7.4 equals H_k q of the BFGS update applied pair by pair (eq. 6.17), with the ring
    buffer wrapped (7 pairs pushed into 4 slots: the 4 newest count)."""
    n, memory, pushed = 6, 4, 7
    s_all, y_all, S, Y, rho, gamma = _pairs(rng, n, memory, pushed)
    H = gamma * np.eye(n)
    for s, y in zip(s_all[-memory:], y_all[-memory:], strict=True):
        r = 1.0 / (s @ y)
        V = np.eye(n) - r * np.outer(y, s)
        H = V.T @ H @ V + r * np.outer(s, s)
    q = rng.standard_normal(n)
    f32 = [jnp.asarray(v, jnp.float32) for v in (q, S, Y, rho)]
    got = two_loop(*f32, jnp.asarray(pushed), jnp.asarray(gamma, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), H @ q, rtol=2e-4, atol=1e-5)


def test_two_loop_with_fewer_pairs_than_memory(rng):
    n = 5
    s, y = rng.standard_normal(n), rng.standard_normal(n)
    y = y if s @ y > 0 else -y
    S, Y = np.zeros((3, n)), np.zeros((3, n))
    S[0], Y[0] = s, y
    rho = np.array([1.0 / (s @ y), 0.0, 0.0])
    gamma = (s @ y) / (y @ y)
    r = 1.0 / (s @ y)
    V = np.eye(n) - r * np.outer(y, s)
    H = V.T @ (gamma * np.eye(n)) @ V + r * np.outer(s, s)
    q = rng.standard_normal(n)
    f32 = [jnp.asarray(v, jnp.float32) for v in (q, S, Y, rho)]
    got = two_loop(*f32, jnp.asarray(1), jnp.asarray(gamma, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), H @ q, rtol=2e-4, atol=1e-5)


def _bfgs_hessian(s_all: np.ndarray, y_all: np.ndarray, theta: float) -> np.ndarray:
    """B_k of the direct BFGS update (Nocedal & Wright, eq. 6.19) from theta I, pair by pair."""
    B = theta * np.eye(s_all.shape[1])
    for s, y in zip(s_all, y_all, strict=True):
        Bs = B @ s
        B = B - np.outer(Bs, Bs) / (s @ Bs) + np.outer(y, y) / (y @ s)
    return B


def _pairs(rng, n, memory, pushed):
    """Ring buffers of ``pushed`` curvature pairs of a quadratic, their products and scale."""
    A = rng.standard_normal((n, n))
    A = A @ A.T + n * np.eye(n)  # s.y > 0 for every pair
    s_all = rng.standard_normal((pushed, n))
    y_all = s_all @ A
    S, Y, rho = np.zeros((memory, n)), np.zeros((memory, n)), np.zeros(memory)
    for k in range(pushed):
        S[k % memory], Y[k % memory] = s_all[k], y_all[k]
        rho[k % memory] = 1.0 / (s_all[k] @ y_all[k])
    gamma = (s_all[-1] @ y_all[-1]) / (y_all[-1] @ y_all[-1])
    return s_all, y_all, S, Y, rho, gamma


@pytest.mark.parametrize("pushed", [2, 7], ids=["fewer-pairs-than-memory", "ring-wrapped"])
@pytest.mark.parametrize("capacity", [None, 2], ids=["gathered", "masked"])
def test_reduced_newton_step_minimises_the_model_over_the_free_pixels(rng, pushed, capacity):
    """L-BFGS-B's subspace step: with the active pixels moved by delta, the free pixels'
    step is -B_FF^-1 (g_F + B_FA delta_A) for the dense BFGS matrix of the stored pairs,
    whether the active pixels' products are gathered or (more than ``capacity``) masked."""
    n, memory = 10, 4
    s_all, y_all, S, Y, _, gamma = _pairs(rng, n, memory, pushed)
    B = _bfgs_hessian(s_all[-memory:], y_all[-memory:], 1.0 / gamma)
    g = rng.standard_normal(n)
    active = np.zeros(n, bool)
    active[[1, 4, 7]] = True
    delta = np.where(active, rng.standard_normal(n), 0.0)
    F, Act = np.flatnonzero(~active), np.flatnonzero(active)
    want = np.zeros(n)
    want[F] = -np.linalg.solve(B[np.ix_(F, F)], g[F] + B[np.ix_(F, Act)] @ delta[Act])
    gram = np.stack([S @ Y.T, S @ S.T, Y @ Y.T])
    f32 = [jnp.asarray(v, jnp.float32) for v in (g, delta)]
    got = reduced_newton_step(*f32, jnp.asarray(active), *(jnp.asarray(v, jnp.float32) for v in
                              (S, Y, gram)), jnp.asarray(pushed),
                              jnp.asarray(gamma, jnp.float32), capacity)
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-3, atol=2e-4 * np.abs(want).max())


def test_reduced_newton_step_with_every_pixel_free_is_the_two_loop_direction(rng):
    n, memory, pushed = 8, 3, 5
    _, _, S, Y, rho, gamma = _pairs(rng, n, memory, pushed)
    gram = jnp.asarray(np.stack([S @ Y.T, S @ S.T, Y @ Y.T]), jnp.float32)
    gamma = jnp.asarray(gamma, jnp.float32)
    g = jnp.asarray(rng.standard_normal(n), jnp.float32)
    S, Y, rho = (jnp.asarray(v, jnp.float32) for v in (S, Y, rho))
    got = reduced_newton_step(g, jnp.zeros_like(g), jnp.zeros(n, bool), S, Y, gram,
                              jnp.asarray(pushed), gamma)
    want = -two_loop(g, S, Y, rho, jnp.asarray(pushed), gamma)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-3,
                               atol=2e-4 * float(jnp.abs(want).max()))


def test_the_state_keeps_the_pairs_products_up_to_date(rng):
    """After steps that wrap the ring buffer, the state's products are the buffers'."""
    center = rng.uniform(-0.5, 1.5, (6, 6, 3)).astype(np.float32)
    fun = _quadratic(center, rng.uniform(0.5, 4.0, center.shape).astype(np.float32))
    solver = LBFGS(3, "backtracking")
    x, state = solver.init(fun, jnp.full(center.shape, 0.5, jnp.float32))
    step = jax.jit(lambda x, s: solver.step(fun, x, s)[:2])
    for _ in range(5):
        x, state = step(x, state)
    assert int(state.count) > 3
    S, Y = (np.asarray(v, np.float64).reshape(3, -1) for v in (state.s, state.y))
    want = np.stack([S @ Y.T, S @ S.T, Y @ Y.T])
    np.testing.assert_allclose(np.asarray(state.gram), want, rtol=1e-4,
                               atol=1e-5 * np.abs(want).max())


SOLVERS = [LBFGS(10, "backtracking"), LBFGS(10, "none"), JaxoptLBFGS(10, "zoom"),
           JaxoptLBFGS(10, "backtracking"), Adam(0.05)]
IDS = ["jstyle-backtracking", "jstyle-none", "jaxopt-zoom", "jaxopt-backtracking", "adam"]


@pytest.mark.parametrize("solver", SOLVERS, ids=IDS)
def test_box_constrained_minimum_of_a_quadratic(solver, rng):
    """The minimiser of a separable quadratic in the box is its centre clipped: the solvers
    find it, and never leave the box on the way."""
    center = rng.uniform(-0.5, 1.5, (8, 8, 3)).astype(np.float32)
    scales = rng.uniform(0.5, 4.0, (8, 8, 3)).astype(np.float32)
    fun = _quadratic(center, scales)
    x, state = solver.init(fun, jnp.full(center.shape, 0.5, jnp.float32))
    step = jax.jit(lambda x, s: solver.step(fun, x, s)[:2])
    for _ in range(400 if isinstance(solver, Adam) else 60):
        x, state = step(x, state)
        assert float(x.min()) >= BOX[0] and float(x.max()) <= BOX[1]
    np.testing.assert_allclose(np.asarray(x), np.clip(center, *BOX), atol=2e-3)


@pytest.mark.parametrize("solver", [LBFGS(10, "backtracking", None), JaxoptLBFGS(10, "zoom", None),
                                    Adam(0.05, None)], ids=["jstyle", "jaxopt", "adam"])
def test_unbounded_solvers_reach_the_centre(solver, rng):
    center = rng.uniform(-0.5, 1.5, (6, 6, 3)).astype(np.float32)
    fun = _quadratic(center, np.ones_like(center))
    x, state = solver.init(fun, jnp.full(center.shape, 0.5, jnp.float32))
    step = jax.jit(lambda x, s: solver.step(fun, x, s)[:2])
    for _ in range(400 if isinstance(solver, Adam) else 30):
        x, state = step(x, state)
    np.testing.assert_allclose(np.asarray(x), center, atol=2e-3)
    assert float(x.min()) < 0 and float(x.max()) > 1


@pytest.mark.parametrize("solver", SOLVERS, ids=IDS)
def test_run_steps_reports_the_terms_of_its_last_point(solver, rng):
    """The terms come from the objective's own aux: those of the iterate the solver moved to
    (L-BFGS), or of the point its last step started from (Adam)."""
    center = rng.uniform(0, 1, (4, 5, 3)).astype(np.float32)
    fun = _quadratic(center, np.full_like(center, 2.0))
    x0, state = solver.init(fun, jnp.zeros(center.shape, jnp.float32))
    steps = jax.jit(lambda x, s: run_steps(solver, fun, x, s, 5, 8))(x0, state)
    assert int(steps.failed_at) == -1
    assert np.isnan(np.asarray(steps.history[5:])).all()
    assert list(np.asarray(steps.evaluations[5:])) == [0, 0, 0]
    last = float(steps.history[4])  # the value the fifth step reported
    np.testing.assert_allclose(float(steps.terms["total"]), last, rtol=1e-6)
    np.testing.assert_allclose(float(steps.terms["half"]), 0.5 * last, rtol=1e-6)
    if solver.reports_new_point:  # of the image the step moved to
        np.testing.assert_allclose(last, float(fun(steps.x)[0]), rtol=1e-5)
    else:  # Adam: of the image it moved from, so the final image's loss is lower
        assert float(fun(steps.x)[0]) < last


def test_evaluations_per_iteration(random_params, rng):
    """No line search: exactly one evaluation per iteration; backtracking: at least one; the
    initial evaluation counted once."""
    content, style = (rng.random((32, 48, 3), dtype=np.float32) for _ in range(2))
    plain = stylize(random_params, content, [style], OBJECTIVE, LBFGS(5, "none"), iterations=6)
    assert plain.evaluations_history == [1] * 6 and plain.evaluations == 7
    searched = stylize(random_params, content, [style], OBJECTIVE, LBFGS(5), iterations=6)
    assert len(searched.evaluations_history) == 6
    assert min(searched.evaluations_history) >= 1
    assert searched.evaluations == 1 + sum(searched.evaluations_history)
    adam = stylize(random_params, content, [style], OBJECTIVE, Adam(0.05), iterations=6)
    assert adam.evaluations == 6


@pytest.mark.parametrize("solver", SOLVERS, ids=IDS)
def test_every_solver_lowers_the_loss_inside_the_box(random_params, rng, solver):
    content, style = (rng.random((32, 48, 3), dtype=np.float32) for _ in range(2))
    reports = []
    result = stylize(random_params, content, [style], OBJECTIVE, solver, iterations=12,
                     save_every=5, on_progress=reports.append)
    assert len(result.history) == 12
    assert result.history[-1] < 0.5 * result.history[0]
    assert result.image.min() >= 0.0 and result.image.max() <= 1.0
    # Chunks end on every multiple of save_every, and at the end.
    assert {5, 10, 12} <= {r.iteration for r in reports}
    assert [r.evaluations for r in reports] == sorted(r.evaluations for r in reports)
    # The terms the progress display shows are the optimiser's own, of its last point.
    for r in reports:
        assert r.terms["total"] == pytest.approx(r.history[-1], rel=1e-5)
    # The result's terms are those of the final image, and the delivered ones of its 8 bits.
    targets = compute_targets(random_params, content, [style], OBJECTIVE)
    final = float(loss_terms(jnp.asarray(result.image), random_params, targets,
                             OBJECTIVE)["total"])
    assert result.terms["total"] == pytest.approx(final, rel=1e-4)
    from jstyle.preprocessing import delivered

    received = float(loss_terms(jnp.asarray(delivered(result.image)), random_params, targets,
                                OBJECTIVE)["total"])
    assert result.delivered["total"] == pytest.approx(received, rel=1e-5)


def test_lbfgs_beats_adam_per_evaluation(random_params, rng):
    content, style = (rng.random((32, 48, 3), dtype=np.float32) for _ in range(2))
    lbfgs = stylize(random_params, content, [style], OBJECTIVE, LBFGS(10), iterations=10)
    adam = stylize(random_params, content, [style], OBJECTIVE, Adam(0.02),
                   iterations=lbfgs.evaluations)
    assert lbfgs.terms["total"] < adam.terms["total"]


def test_make_solver():
    assert make_solver("lbfgs") == LBFGS(20, "backtracking", BOX)
    assert make_solver("lbfgs", line_search="none", bounds="none") == LBFGS(20, "none", None)
    assert make_solver("lbfgs", lbfgs_backend="jaxopt", lbfgs_memory=5) == \
        JaxoptLBFGS(5, "zoom", BOX)
    assert make_solver("adam", learning_rate=0.1) == Adam(0.1, BOX)
    assert set(LINE_SEARCHES["jstyle"]) == {"backtracking", "none"}
    with pytest.raises(ValueError, match="not one of the jstyle backend's"):
        make_solver("lbfgs", line_search="zoom")
    with pytest.raises(ValueError):
        make_solver("sgd")
    with pytest.raises(ValueError):
        make_solver("lbfgs", bounds="clip")
