"""Optimisers of the image: L-BFGS (the paper's) inside the pixel box, and Adam.

The image is a picture: every pixel value lies in [0, 1]. The solvers keep it there
(``bounds=(0, 1)``), so the image the optimiser reports on is the image the user gets;
an unconstrained optimiser (``bounds=None``) drifts outside, and the clipping at save time
then undoes part of its work (see the README's "Quality" section for the measurement).

Each solver is a small frozen dataclass with two pure methods:
``init(fun, x) -> (x, state)`` (``x`` projected into the box and evaluated once) and
``step(fun, x, state) -> (x, state, value, terms, evaluations)``, where ``fun(x)`` returns
``(loss, terms)`` -- the scalar objective and a pytree of auxiliary values (eq. 7's loss
terms) of the same point, so that a run reports its loss terms without evaluating anything
the optimiser did not need -- and ``evaluations`` counts the objective-and-gradient
evaluations the step made. :func:`run_steps` runs up to ``chunk`` steps inside one
compiled program (a ``lax.while_loop``), so the host sees the optimisation only between
chunks.

L-BFGS backends:
  ``jstyle`` (default): :class:`LBFGS`, L-BFGS in the box written here. Its direction is
    L-BFGS-B's: the pixels that a steepest-descent step of the estimate's scale would put on
    a bound go there (a Cauchy point whose path stops after one step), and the others take
    the Newton step of the quadratic model restricted to them
    (:func:`reduced_newton_step`, through the compact representation); its step a move
    along the projected path ``clip(x + t d, 0, 1)``; line search ``backtracking`` (Armijo
    on that path, usually one evaluation per iteration) or ``none`` (the unit step, one
    evaluation per iteration). Without the box it is plain L-BFGS (the two-loop
    recursion).
  ``jaxopt``: ``jaxopt.LBFGSB`` (Byrd, Lu, Nocedal & Zhu's L-BFGS-B: Cauchy point and
    subspace minimisation) in the box, ``jaxopt.LBFGS`` without it; line search ``zoom``
    (strong Wolfe), ``backtracking`` or ``none``.

References:
  Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional Neural Networks",
  CVPR 2016 (L-BFGS on the pixels).
  Nocedal & Wright, "Numerical Optimization", 2nd ed., 2006: alg. 7.4 (the two-loop
  recursion), eq. 7.20 (the initial scaling), alg. 3.1 (backtracking), 3.5-3.6 (zoom).
  Byrd, Lu, Nocedal & Zhu, "A Limited Memory Algorithm for Bound Constrained
  Optimization", SIAM J. Sci. Comput. 16(5), 1995 (L-BFGS-B: the Cauchy point, sec. 4,
  and the subspace minimisation, sec. 5).
  Byrd, Nocedal & Schnabel, "Representations of Quasi-Newton Matrices and their Use in
  Limited Memory Methods", Math. Programming 63, 1994 (the compact form, eq. 3.5).
  Bertsekas, "Projected Newton Methods for Optimization Problems with Simple
  Constraints", SIAM J. Control Optim. 20(2), 1982 (an active set from a scaled gradient
  step).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jstyle.options import BOUNDS, LBFGS_BACKENDS, LINE_SEARCHES, OPTIMIZERS

__all__ = ["BOX", "LBFGS", "LBFGSState", "JaxoptLBFGS", "Adam", "AdamState", "Solver",
    "Steps", "make_solver", "for_spatial_split", "run_steps", "two_loop", "compact_form",
    "updated_gram", "reduced_newton_step", "OPTIMIZERS", "LBFGS_BACKENDS", "LINE_SEARCHES",
    "BOUNDS"]

Array = jax.Array
#: The objective as the solvers see it: the image -> (loss, auxiliary terms).
Fun = Callable[[Array], tuple[Array, Any]]

#: The pixel box of ``bounds: box``.
BOX = (0.0, 1.0)

#: Armijo's sufficient-decrease constant (Nocedal & Wright, eq. 3.4) and the backtracking
#: factor and trial limit.
ARMIJO_C1 = 1e-4
BACKTRACK_FACTOR = 0.5
MAX_BACKTRACKS = 12


def _project(x: Array, bounds: tuple[float, float] | None) -> Array:
    return x if bounds is None else jnp.clip(x, *bounds)


def _vdot(a: Array, b: Array) -> Array:
    return jnp.sum(a * b)


class LBFGSState(NamedTuple):
    """:class:`LBFGS`'s state: the current point's loss, gradient and terms, the last
    ``memory`` pairs (s, y) in a ring buffer (slot ``count % memory`` is the next), and their
    inner products (kept up to date pair by pair, so a step never recomputes them)."""

    value: Array
    grad: Array
    terms: Any
    s: Array  # (memory, *x.shape)
    y: Array  # (memory, *x.shape)
    rho: Array  # (memory,) 1 / (y . s)
    count: Array  # pairs stored so far (all time)
    gamma: Array  # the initial inverse-Hessian scale s.y / y.y (eq. 7.20)
    gram: Array  # (3, memory, memory): s_i . y_j, s_i . s_j, y_i . y_j by slot (box only)


def two_loop(q: Array, s: Array, y: Array, rho: Array, count: Array, gamma: Array) -> Array:
    """H q, the L-BFGS inverse-Hessian estimate applied to ``q`` (Nocedal & Wright, alg. 7.4),
    from the ring buffers ``s``, ``y``, ``rho`` holding ``min(count, memory)`` pairs."""
    memory = s.shape[0]
    stored = jnp.minimum(count, memory)

    def newest_first(i, carry):
        q, alphas = carry
        j = (count - 1 - i) % memory
        alpha = jnp.where(i < stored, rho[j] * _vdot(s[j], q), 0.0)
        return q - alpha * y[j], alphas.at[j].set(alpha)

    q, alphas = jax.lax.fori_loop(0, memory, newest_first, (q, jnp.zeros((memory,), q.dtype)))
    r = gamma * q

    def oldest_first(i, r):
        j = (count - stored + i) % memory
        beta = rho[j] * _vdot(y[j], r)
        return r + jnp.where(i < stored, alphas[j] - beta, 0.0) * s[j]

    return jax.lax.fori_loop(0, memory, oldest_first, r)


def compact_form(gram: Array, count: Array, gamma: Array) -> tuple[Array, Array]:
    """The compact representation of the L-BFGS Hessian estimate, ``B = theta I - W M W^T``
    with ``W = [Y, theta S]`` (Byrd, Nocedal & Schnabel 1994, eq. 3.5), in the ring buffers'
    slot order, from the pairs' inner products ``gram`` (:class:`LBFGSState`): returns
    ``(theta, M)``, ``M`` of shape ``(2 memory, 2 memory)`` with the rows and columns of
    empty slots zero (they then add nothing).

    ``M = [[-D, L^T], [L, theta S^T S]]^-1``, ``D`` the diagonal of ``S^T Y`` and ``L`` its
    part where the first pair is newer than the second (the strictly lower triangle in
    chronological order, here picked out by each slot's age)."""
    sy, ss = gram[0], gram[1]
    memory = sy.shape[0]
    stored = jnp.minimum(count, memory)
    rank = (jnp.arange(memory) - (count - stored)) % memory  # 0 = the oldest stored pair
    valid = rank < stored
    theta = 1.0 / gamma
    pair = valid[:, None] & valid[None, :]
    lower = jnp.where((rank[:, None] > rank[None, :]) & pair, sy, 0.0)
    d_inv = jnp.where(valid, 1.0 / jnp.where(valid, jnp.diag(sy), 1.0), 0.0)
    # Block elimination on the diagonal D (L-BFGS-B's own route, more stable in float32
    # than inverting the indefinite whole): T = theta S^T S + L D^-1 L^T is positive
    # definite, and M = [[-D^-1 + D^-1 L^T T^-1 L D^-1, D^-1 L^T T^-1], [T^-1 L D^-1, T^-1]].
    t = theta * ss + (lower * d_inv[None, :]) @ lower.T
    eye = jnp.eye(memory, dtype=sy.dtype)
    t = jnp.where(pair, t, eye)
    t_inv = jnp.where(pair, jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(t), True), eye),
                      0.0)
    dl = d_inv[:, None] * lower.T  # D^-1 L^T
    top = jnp.concatenate([-jnp.diag(d_inv) + dl @ t_inv @ dl.T, dl @ t_inv], axis=1)
    bottom = jnp.concatenate([t_inv @ dl.T, t_inv], axis=1)
    return theta, jnp.concatenate([top, bottom], axis=0)


def updated_gram(gram: Array, s: Array, y: Array, slot: Array) -> Array:
    """``gram`` after the pair in ``slot`` of the buffers ``s``, ``y`` was replaced: its row
    and column of each of the three products (four passes over the buffers)."""
    memory = s.shape[0]
    flat_s, flat_y = s.reshape(memory, -1), y.reshape(memory, -1)
    new_s, new_y = flat_s[slot], flat_y[slot]
    s_y_row, y_col = flat_y @ new_s, flat_s @ new_y  # s_slot . y_j, s_i . y_slot
    s_s, y_y = flat_s @ new_s, flat_y @ new_y
    sy = gram[0].at[slot, :].set(s_y_row).at[:, slot].set(y_col)
    ss = gram[1].at[slot, :].set(s_s).at[:, slot].set(s_s)
    yy = gram[2].at[slot, :].set(y_y).at[:, slot].set(y_y)
    return jnp.stack([sy, ss, yy])


def reduced_newton_step(g: Array, delta: Array, active: Array, s: Array, y: Array, gram: Array,
                        count: Array, gamma: Array, capacity: int | None = None) -> Array:
    """L-BFGS-B's subspace step (Byrd, Lu, Nocedal & Zhu 1995, sec. 5): with the pixels on
    ``active`` moved by ``delta`` (to their bounds), the free pixels' step
    ``-B_FF^-1 (g_F + B_FA delta_A)`` that minimises the quadratic model over them; zero on
    ``active``. ``B_FF^-1`` through the compact form and the Sherman-Morrison-Woodbury
    formula: ``(1/theta) I + (1/theta^2) W_F^T (I - (1/theta) M W_F W_F^T)^-1 M W_F``.

    ``W_F W_F^T`` is the pairs' products ``gram`` less those over the active pixels, which
    are gathered (at most ``capacity`` of them, default a sixteenth of the pixels; more, or
    any with ``capacity`` 0, are masked in one pass over the buffers), so a step costs a
    few passes over the pairs."""
    memory = s.shape[0]
    theta, m = compact_form(gram, count, gamma)
    flat_s, flat_y = s.reshape(memory, -1), y.reshape(memory, -1)
    a = active.reshape(-1)
    n = a.shape[0]
    capacity = max(1, n // 16) if capacity is None else min(capacity, n)

    def products(sa, ya, da):
        return (jnp.stack([sa @ ya.T, sa @ sa.T, ya @ ya.T]),
                jnp.concatenate([ya @ da, theta * (sa @ da)]))

    def gathered():
        index = jnp.nonzero(a, size=capacity, fill_value=0)[0]
        keep = (jnp.arange(capacity) < jnp.sum(a)).astype(g.dtype)
        return products(flat_s[:, index] * keep, flat_y[:, index] * keep,
                        delta.reshape(-1)[index] * keep)

    def masked():
        return products(jnp.where(a, flat_s, 0.0), jnp.where(a, flat_y, 0.0),
                        jnp.where(a, delta.reshape(-1), 0.0))

    if capacity == 0:
        on_active, w_delta = masked()
    else:
        on_active, w_delta = jax.lax.cond(jnp.sum(a) <= capacity, gathered, masked)
    sy, ss, yy = gram - on_active
    wfw = jnp.block([[yy, theta * sy.T], [theta * sy, theta * theta * ss]])  # W_F^T W_F
    # r = g_F - [W p]_F with p = M W^T delta, so W_F^T r = W^T g_F - W_F^T W_F p, and the
    # step is -(g_F / theta + [W (u / theta^2 - p / theta)]_F): two passes over the pairs.
    p = m @ w_delta
    g_free = jnp.where(a, 0.0, g.reshape(-1))
    w_r = jnp.concatenate([flat_y @ g_free, theta * (flat_s @ g_free)]) - wfw @ p
    u = jnp.linalg.solve(jnp.eye(2 * memory, dtype=g.dtype) - m @ wfw / theta, m @ w_r)
    q = u / (theta * theta) - p / theta
    w_q = flat_y.T @ q[:memory] + theta * (flat_s.T @ q[memory:])
    step = -(g_free / theta + jnp.where(a, 0.0, w_q))
    return step.reshape(g.shape)


def _evaluate(fun: Fun, x: Array) -> tuple[Array, Any, Array]:
    (value, terms), grad = jax.value_and_grad(fun, has_aux=True)(x)
    return value, terms, grad


@dataclasses.dataclass(frozen=True)
class LBFGS:
    """L-BFGS in the box (see the module docstring): ``memory`` pairs kept, ``line_search``
    ``"backtracking"`` or ``"none"``, ``bounds`` the box (None: unconstrained L-BFGS).

    The first step, with no curvature known yet, moves a unit Euclidean distance along
    the (projected) steepest descent, as L-BFGS-B's does; after it the unit step of the
    scaled quasi-Newton direction is tried first. A pair whose curvature s.y is not
    positive is not stored (the estimate stays positive definite); a direction that is not
    one of descent falls back to the projected gradient.
    """

    memory: int = 20
    line_search: str = "backtracking"
    bounds: tuple[float, float] | None = BOX
    #: The active pixels' products: gathered (False: masked, every pass elementwise, so an
    #: image split by rows over devices is never gathered; :func:`for_spatial_split`).
    gather_active: bool = True

    #: ``step``'s value and terms are those of the point it moved to.
    reports_new_point = True
    #: Objective evaluations ``init`` makes.
    init_evaluations = 1

    def init(self, fun: Fun, x: Array) -> tuple[Array, LBFGSState]:
        x = _project(x, self.bounds)
        value, terms, grad = _evaluate(fun, x)
        zeros = jnp.zeros((self.memory, *x.shape), x.dtype)
        state = LBFGSState(value, grad, terms, zeros, zeros, jnp.zeros((self.memory,), x.dtype),
                           jnp.zeros((), jnp.int32), jnp.ones((), x.dtype),
                           jnp.zeros((3, self.memory, self.memory), x.dtype))
        return x, state

    def rebase(self, fun: Fun, x: Array, state: LBFGSState) -> LBFGSState:
        """The state at ``x`` for a changed objective ``fun`` (new targets: ``redraw_every``'s
        projections): its value, gradient and terms evaluated anew (one evaluation), so that
        the line search compares values of one objective; the curvature pairs are kept (of
        the same loss under other projections, a curvature estimate as good as any)."""
        value, terms, grad = _evaluate(fun, x)
        return state._replace(value=value, grad=grad, terms=terms)

    def _direction(self, x: Array, state: LBFGSState) -> Array:
        g = state.grad
        first = state.count == 0
        if self.bounds is None:
            held = jnp.zeros(x.shape, bool)
            d = -two_loop(g, state.s, state.y, state.rho, state.count, state.gamma)
        else:
            low, high = self.bounds
            held = ((x <= low) & (g > 0)) | ((x >= high) & (g < 0))
            # The active set: the pixels a steepest-descent step of the estimate's own scale
            # would put on their bound (L-BFGS-B's Cauchy point, with its path cut short at
            # one step); they go there, and the rest take the reduced Newton step.
            scaled = x - state.gamma * g
            active = jnp.where(first, held,
                               ((g > 0) & (scaled <= low)) | ((g < 0) & (scaled >= high)))
            delta = jnp.where(active, jnp.where(g > 0, low, high) - x, 0.0)
            d = jnp.where(active, delta, reduced_newton_step(
                g, delta, active, state.s, state.y, state.gram, state.count, state.gamma,
                None if self.gather_active else 0))
        steepest = jnp.where(held, 0.0, -g)
        d = jnp.where(first | ~(_vdot(g, d) < 0), steepest, d)
        # No curvature yet: a first step of unit length (L-BFGS-B's choice).
        norm = jnp.sqrt(_vdot(d, d))
        return jnp.where(first, d / jnp.maximum(norm, 1e-30), d)

    def step(self, fun: Fun, x: Array, state: LBFGSState):
        d = self._direction(x, state)
        trial = _project(x + d, self.bounds)
        value, terms, grad = _evaluate(fun, trial)
        evaluations = jnp.ones((), jnp.int32)
        if self.line_search == "backtracking":
            def insufficient(carry):
                _, trial, value, _, _, tries = carry
                armijo = value <= state.value + ARMIJO_C1 * _vdot(state.grad, trial - x)
                return ~(armijo & jnp.isfinite(value)) & (tries < MAX_BACKTRACKS)

            def shorter(carry):
                t, _, _, _, _, tries = carry
                t = t * BACKTRACK_FACTOR
                trial = _project(x + t * d, self.bounds)
                return (t, trial, *_evaluate(fun, trial), tries + 1)

            _, trial, value, terms, grad, backtracks = jax.lax.while_loop(
                insufficient, shorter,
                (jnp.ones((), x.dtype), trial, value, terms, grad, jnp.zeros((), jnp.int32)))
            evaluations = evaluations + backtracks
        elif self.line_search != "none":
            raise ValueError(f"line_search must be one of {LINE_SEARCHES['jstyle']}, not "
                             f"{self.line_search!r}")
        s, y = trial - x, grad - state.grad
        sy, yy = _vdot(s, y), _vdot(y, y)
        # L-BFGS-B's test: curvature below machine precision times the decrease the step
        # promised (both in the loss's own units) is not stored.
        promised = -_vdot(state.grad, s)
        keep = (sy > jnp.finfo(x.dtype).eps * promised) & (sy > 0) & jnp.isfinite(sy) & (yy > 0)
        slot = state.count % self.memory
        pairs_s = state.s.at[slot].set(jnp.where(keep, s, state.s[slot]))
        pairs_y = state.y.at[slot].set(jnp.where(keep, y, state.y[slot]))
        gram = state.gram
        if self.bounds is not None:  # only the box's subspace step reads them
            gram = jax.lax.cond(keep, lambda: updated_gram(gram, pairs_s, pairs_y, slot),
                                lambda: gram)
        new = LBFGSState(
            value, grad, terms, pairs_s, pairs_y,
            state.rho.at[slot].set(jnp.where(keep, 1.0 / jnp.where(keep, sy, 1.0),
                                             state.rho[slot])),
            state.count + keep.astype(jnp.int32),
            jnp.where(keep, sy / jnp.where(keep, yy, 1.0), state.gamma),
            gram,
        )
        return trial, new, value, terms, evaluations


@dataclasses.dataclass(frozen=True)
class JaxoptLBFGS:
    """jaxopt's L-BFGS-B in the box (``jaxopt.LBFGSB``), its L-BFGS without one
    (``jaxopt.LBFGS``); ``line_search`` ``zoom``, ``backtracking`` or ``none`` (a unit
    step, jaxopt's ``stepsize=1``)."""

    memory: int = 20
    line_search: str = "zoom"
    bounds: tuple[float, float] | None = BOX

    reports_new_point = True
    init_evaluations = 1

    def _solver(self, fun: Fun):
        with warnings.catch_warnings():  # jaxopt says it is no longer developed; it works
            warnings.simplefilter("ignore", DeprecationWarning)
            import jaxopt  # imported here: only this backend needs it, and it is slow to import

        options = {"fun": fun, "has_aux": True, "history_size": self.memory,
                   "maxiter": 1 << 30, "tol": 0.0}
        if self.line_search == "none":
            options["stepsize"] = 1.0
        else:
            options["linesearch"] = self.line_search
        if self.bounds is None:
            return jaxopt.LBFGS(**options)
        return jaxopt.LBFGSB(**options)

    def _box(self, x: Array):
        if self.bounds is None:
            return ()
        return ((jnp.full_like(x, self.bounds[0]), jnp.full_like(x, self.bounds[1])),)

    def init(self, fun: Fun, x: Array) -> tuple[Array, Any]:
        x = _project(x, self.bounds)
        return x, self._solver(fun).init_state(x, *self._box(x))

    def rebase(self, fun: Fun, x: Array, state: Any) -> Any:
        """The state at ``x`` for a changed objective ``fun``: jaxopt's afresh (one
        evaluation; its state holds no history that can be kept apart from its value)."""
        return self.init(fun, x)[1]

    def step(self, fun: Fun, x: Array, state: Any):
        before = state.num_fun_eval
        x, state = self._solver(fun).update(x, state, *self._box(x))
        # jaxopt's projected step can land a rounding error (~1e-13) outside the box.
        x = _project(x, self.bounds)
        return x, state, state.value, state.aux, jnp.asarray(state.num_fun_eval - before,
                                                            jnp.int32)


class AdamState(NamedTuple):
    """:class:`Adam`'s state: optax's, and the iteration count."""

    inner: Any


@dataclasses.dataclass(frozen=True)
class Adam:
    """Adam (optax), the memory-light alternative, each step projected into the box
    (projected gradient descent with Adam's step). Its ``value`` and ``terms`` are those of
    the point the step started from (Adam evaluates once per step, before moving)."""

    learning_rate: float = 0.02
    bounds: tuple[float, float] | None = BOX

    #: ``step``'s value and terms belong to the point before the step, not after it.
    reports_new_point = False
    init_evaluations = 0

    def _adam(self):
        import optax  # imported here: only Adam needs it, and an L-BFGS run starts sooner

        return optax, optax.adam(self.learning_rate)

    def init(self, fun: Fun, x: Array) -> tuple[Array, AdamState]:
        x = _project(x, self.bounds)
        return x, AdamState(self._adam()[1].init(x))

    def rebase(self, fun: Fun, x: Array, state: AdamState) -> AdamState:
        """The state for a changed objective: Adam's moments as they are (it evaluates its
        objective at each step, and keeps no value)."""
        return state

    def step(self, fun: Fun, x: Array, state: AdamState):
        value, terms, grad = _evaluate(fun, x)
        optax, adam = self._adam()
        updates, inner = adam.update(grad, state.inner, x)
        x = _project(optax.apply_updates(x, updates), self.bounds)
        return x, AdamState(inner), value, terms, jnp.ones((), jnp.int32)


Solver = LBFGS | JaxoptLBFGS | Adam


def for_spatial_split(solver: Solver) -> Solver:
    """``solver`` as it runs on an image split by rows over devices: nothing it does may
    gather the image (L-BFGS masks its active pixels instead of gathering them)."""
    if isinstance(solver, LBFGS) and solver.gather_active:
        return dataclasses.replace(solver, gather_active=False)
    return solver


def make_solver(
    optimizer: str, *, lbfgs_backend: str = "jstyle", lbfgs_memory: int = 20,
    learning_rate: float = 0.02, line_search: str | None = None, bounds: str = "box",
) -> Solver:
    """The solver a config names (``line_search`` None: the backend's default)."""
    if bounds not in BOUNDS:
        raise ValueError(f"bounds must be one of {BOUNDS}, not {bounds!r}")
    box = BOX if bounds == "box" else None
    if optimizer == "adam":
        return Adam(learning_rate, box)
    if optimizer != "lbfgs":
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {optimizer!r}")
    if lbfgs_backend not in LBFGS_BACKENDS:
        raise ValueError(f"lbfgs_backend must be one of {LBFGS_BACKENDS}, not "
                         f"{lbfgs_backend!r}")
    allowed = LINE_SEARCHES[lbfgs_backend]
    line_search = line_search or allowed[0]
    if line_search not in allowed:
        raise ValueError(f"line_search {line_search!r} is not one of the {lbfgs_backend} "
                         f"backend's: {', '.join(allowed)}")
    cls = LBFGS if lbfgs_backend == "jstyle" else JaxoptLBFGS
    return cls(lbfgs_memory, line_search, box)


class Steps(NamedTuple):
    """What :func:`run_steps` returns."""

    x: Array  # the image after the last finite step
    state: Any  # the solver state (not meaningful after a failed step)
    history: Array  # (chunk,) loss after each step; NaN past the steps taken
    evaluations: Array  # (chunk,) objective evaluations of each step; 0 past them
    terms: Any  # the loss terms the last finite step reported
    failed_at: Array  # index of the step whose loss or image was not finite, or -1
    rejected_terms: Any  # that step's loss terms (for diagnosis), else ``terms``


def run_steps(
    solver: Solver, fun: Fun, x: Array, state: Any, n: Array | int, chunk: int
) -> Steps:
    """Up to ``chunk`` solver steps (``n`` of them, ``n <= chunk``) in one ``while_loop``.

    The loop stops at the first step whose loss or new image is not finite (NaN
    or inf); the image then stays the last finite one. Traceable: call it inside
    ``jax.jit`` with ``n`` dynamic, so one compiled program serves every chunk
    length.
    """
    shapes = jax.eval_shape(fun, x)[1]
    no_terms = jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), shapes)

    def cond(carry):
        i, failed = carry[0], carry[-2]
        return (i < n) & (failed < 0)

    def body(carry):
        i, x, state, history, evaluations, terms, failed, rejected = carry
        x_new, state, value, new_terms, count = solver.step(fun, x, state)
        ok = jnp.isfinite(value) & jnp.all(jnp.isfinite(x_new))
        keep = _tree_where(ok)
        return (
            i + 1,
            jnp.where(ok, x_new, x),
            state,
            history.at[i].set(value),
            evaluations.at[i].set(count),
            keep(new_terms, terms),
            jnp.where(ok, failed, i),
            keep(rejected, new_terms),
        )

    carry = (
        jnp.zeros((), jnp.int32),
        x,
        state,
        jnp.full((chunk,), jnp.nan, dtype=x.dtype),
        jnp.zeros((chunk,), jnp.int32),
        no_terms,
        jnp.full((), -1, jnp.int32),
        no_terms,
    )
    _, x, state, history, evaluations, terms, failed, rejected = jax.lax.while_loop(
        cond, body, carry)
    return Steps(x, state, history, evaluations, terms, failed, rejected)


def _tree_where(ok: Array) -> Callable[[Any, Any], Any]:
    """``where(ok, a, b)`` over two pytrees of one structure."""
    return lambda a, b: jax.tree.map(lambda u, v: jnp.where(ok, u, v), a, b)
