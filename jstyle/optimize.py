"""Optimisers of the image: L-BFGS (the paper's, two backends) and Adam.

Each solver is a small frozen dataclass with two pure methods, ``init(fun, x)``
and ``step(fun, x, state) -> (x, state, value, evaluations)``, where ``fun`` is
the scalar objective of the image and ``evaluations`` counts the objective-and-
gradient evaluations the step made. :func:`run_steps` runs up to ``chunk`` steps
inside one compiled program (a ``lax.fori_loop``), recording the loss and the
evaluations of every step, so the host sees the optimisation only between chunks,
when the progress bar updates.

L-BFGS backends:
  ``optax`` (default): ``optax.lbfgs`` with a zoom (strong Wolfe) line search.
    optax is maintained and carries L-BFGS on; jaxopt is no longer developed.
  ``jaxopt``: ``jaxopt.LBFGS``, the library the design names, same line search.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

Array = jax.Array
Fun = Callable[[Array], Array]

OPTIMIZERS = ("lbfgs", "adam")
LBFGS_BACKENDS = ("optax", "jaxopt")


@dataclasses.dataclass(frozen=True)
class OptaxLBFGS:
    """L-BFGS from optax with a zoom line search; ``memory``: pairs kept."""

    memory: int = 20

    def _tx(self) -> optax.GradientTransformationExtraArgs:
        return optax.lbfgs(memory_size=self.memory)

    def init(self, fun: Fun, x: Array) -> Any:
        return self._tx().init(x)

    def step(self, fun: Fun, x: Array, state: Any) -> tuple[Array, Any, Array, Array]:
        # The first step evaluates at x; later ones reuse what the line search stored.
        first = optax.tree_utils.tree_get(state, "count") == 0
        value, grad = optax.value_and_grad_from_state(fun)(x, state=state)
        updates, state = self._tx().update(grad, state, x, value=value, grad=grad, value_fn=fun)
        x = optax.apply_updates(x, updates)
        evaluations = optax.tree_utils.tree_get(state, "num_linesearch_steps") + first
        # The line search stored the objective at the new iterate.
        return x, state, optax.tree_utils.tree_get(state, "value"), evaluations


@dataclasses.dataclass(frozen=True)
class JaxoptLBFGS:
    """L-BFGS from jaxopt with its zoom line search; ``memory``: pairs kept."""

    memory: int = 20

    def _solver(self, fun: Fun):
        with warnings.catch_warnings():  # "no longer maintained": the module docstring says so
            warnings.simplefilter("ignore", DeprecationWarning)
            import jaxopt  # imported here: only this backend needs it, and it is slow to import

        return jaxopt.LBFGS(fun=fun, history_size=self.memory, linesearch="zoom")

    def init(self, fun: Fun, x: Array) -> Any:
        return self._solver(fun).init_state(x)

    def step(self, fun: Fun, x: Array, state: Any) -> tuple[Array, Any, Array, Array]:
        before = state.num_fun_eval
        x, state = self._solver(fun).update(x, state)
        return x, state, state.value, state.num_fun_eval - before


@dataclasses.dataclass(frozen=True)
class Adam:
    """Adam (optax), the memory-light alternative; ``value`` is the loss before the step."""

    learning_rate: float = 0.02

    def init(self, fun: Fun, x: Array) -> Any:
        return optax.adam(self.learning_rate).init(x)

    def step(self, fun: Fun, x: Array, state: Any) -> tuple[Array, Any, Array, Array]:
        value, grad = jax.value_and_grad(fun)(x)
        updates, state = optax.adam(self.learning_rate).update(grad, state, x)
        return optax.apply_updates(x, updates), state, value, jnp.ones((), jnp.int32)


Solver = OptaxLBFGS | JaxoptLBFGS | Adam


def make_solver(
    optimizer: str, *, lbfgs_backend: str = "optax", lbfgs_memory: int = 20,
    learning_rate: float = 0.02,
) -> Solver:
    """The solver a config names."""
    if optimizer == "adam":
        return Adam(learning_rate)
    if optimizer != "lbfgs":
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {optimizer!r}")
    if lbfgs_backend == "optax":
        return OptaxLBFGS(lbfgs_memory)
    if lbfgs_backend == "jaxopt":
        return JaxoptLBFGS(lbfgs_memory)
    raise ValueError(f"lbfgs_backend must be one of {LBFGS_BACKENDS}, not {lbfgs_backend!r}")


class Steps(NamedTuple):
    """What :func:`run_steps` returns."""

    x: Array  # the image after the last finite step
    state: Any  # the solver state (not meaningful after a failed step)
    history: Array  # (chunk,) loss after each step; NaN past the steps taken
    evaluations: Array  # (chunk,) objective evaluations of each step; 0 past them
    failed_at: Array  # index of the step whose loss or image was not finite, or -1
    rejected: Array  # that step's non-finite image (for diagnosis), else x


def run_steps(
    solver: Solver, fun: Fun, x: Array, state: Any, n: Array | int, chunk: int
) -> Steps:
    """Up to ``chunk`` solver steps (``n`` of them, ``n <= chunk``) in one loop.

    The loop stops at the first step whose loss or new image is not finite (NaN
    or inf); the image then stays the last finite one. Traceable: call it inside
    ``jax.jit`` with ``n`` dynamic, so one compiled program serves every chunk
    length.
    """

    def cond(carry):
        i, failed = carry[0], carry[-1]
        return (i < n) & (failed < 0)

    def body(carry):
        i, x, state, history, evaluations, rejected, failed = carry
        x_new, state, value, count = solver.step(fun, x, state)
        ok = jnp.isfinite(value) & jnp.all(jnp.isfinite(x_new))
        return (
            i + 1,
            jnp.where(ok, x_new, x),
            state,
            history.at[i].set(value),
            evaluations.at[i].set(count),
            jnp.where(ok, rejected, x_new),
            jnp.where(ok, failed, i),
        )

    carry = (
        jnp.zeros((), jnp.int32),
        x,
        state,
        jnp.full((chunk,), jnp.nan, dtype=x.dtype),
        jnp.zeros((chunk,), jnp.int32),
        x,
        jnp.full((), -1, jnp.int32),
    )
    _, x, state, history, evaluations, rejected, failed = jax.lax.while_loop(cond, body, carry)
    return Steps(x, state, history, evaluations, failed, rejected)
