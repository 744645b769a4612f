"""The progress bar of a run: the phase it is in, iteration, total / content / style loss,
objective evaluations, iterations per second.

Before a phase's first chunk the bar reads ``<phase>: preparing`` (its targets, the style
losses' draws, ``balance: auto``'s measurement and the compilation: seconds at 512 px,
minutes at 4096 px), and on a terminal its clock keeps running meanwhile, so a long setup
or a long chunk never looks like a hang. The rate and the time left count iterations only:
they start again at a phase's first report, which came after its preparation.
"""

from __future__ import annotations

import sys
import threading

from tqdm import tqdm
from tqdm.std import EMA

from jstyle.engine import BatchProgress, Progress

#: Seconds between redraws of the bar's clock while no chunk reports (on a terminal).
TICK_S = 1.0
#: The full-size phase's name on the bar.
STYLIZING = "stylizing"


class ProgressBar:
    """A tqdm bar fed by :class:`jstyle.engine.Progress` reports (one per compiled chunk),
    with the phase of the run it is in (:meth:`phase`). ``tick``: seconds between redraws of
    its clock while nothing reports (default :data:`TICK_S` on a terminal, never
    elsewhere, where each redraw would add a line to a log)."""

    def __init__(self, iterations: int, initial: int = 0, disable: bool = False,
                 tick: float | None = None) -> None:
        self._name = STYLIZING
        self._described = self._preparing()  # (a disabled tqdm keeps no description)
        self._bar = tqdm(total=iterations, initial=initial, unit="it", disable=disable,
                         dynamic_ncols=True, desc=self._described)
        self._closed = threading.Event()
        if tick is None:
            tick = TICK_S if getattr(sys.stderr, "isatty", lambda: False)() else 0.0
        if tick > 0 and not disable:
            threading.Thread(target=self._tick, args=(tick,), daemon=True,
                             name="jstyle-progress").start()

    def _preparing(self) -> str:
        return f"{self._name}: preparing"

    def _tick(self, seconds: float) -> None:
        while not self._closed.wait(seconds):
            self._bar.refresh()

    @property
    def description(self) -> str:
        """What the bar says it is doing (``<phase>: preparing`` or the phase's name)."""
        return self._described

    def _describe(self, text: str) -> None:
        self._described = text
        self._bar.set_description_str(text, refresh=False)

    def phase(self, phase, done: int = 0):
        """A phase of the run starts (a :class:`jstyle.pipeline.Phase`, ``done`` of its
        iterations made before a resume): the bar counts its iterations, under its name.
        Returns what hears a coarse stage's reports (None for the full size, whose reports
        the caller's ``on_progress`` passes on), as ``run_transfer``'s ``on_phase`` asks."""
        self._name = phase.name if phase.coarse else STYLIZING
        self._describe(self._preparing())
        self._bar.set_postfix_str("", refresh=False)
        self._bar.total = phase.iterations
        self._restart(done, clock=True)
        return self.update if phase.coarse else None

    def _restart(self, n: int, clock: bool) -> None:
        """Count from iteration ``n`` with fresh rate estimates (as tqdm's ``reset`` does,
        without drawing the bar before ``n`` is set), and the clock from now if ``clock``."""
        bar = self._bar
        bar.initial = bar.n = bar.last_print_n = n  # the rate counts iterations from here
        if bar.disable:  # (a disabled tqdm keeps no clock)
            return
        bar.last_print_t = bar._time()
        if clock:
            bar.start_t = bar.last_print_t
        bar._ema_dn, bar._ema_dt, bar._ema_miniters = (EMA(bar.smoothing) for _ in "abc")
        bar.refresh()

    def _advance(self, n: int) -> None:
        """To iteration ``n``. A phase's first report ends its preparation and restarts the
        rate (and so the time left) from there: the targets and the compilation took no
        iteration's time. The clock goes on."""
        bar = self._bar
        if self._described == self._name:
            bar.update(n - bar.n)
            return
        self._describe(self._name)
        self._restart(n, clock=False)

    def update(self, progress: Progress, offset: int = 0) -> None:
        """Advance to iteration ``offset + progress.iteration`` and show its losses."""
        t = progress.terms
        self._bar.set_postfix_str(
            f"loss {t['total']:.3e} content {t['content']:.3e} style {t['style']:.3e} "
            f"evals {progress.evaluations}",
            refresh=False,
        )
        self._advance(offset + progress.iteration)

    def update_batch(self, progress: BatchProgress) -> None:
        """Advance to a data-parallel batch's iteration and show its images' losses."""
        losses = [v for v in progress.losses if v == v]  # NaN: an image not started
        if losses:
            self._bar.set_postfix_str(f"loss {min(losses):.3e} .. {max(losses):.3e}",
                                      refresh=False)
        self._advance(progress.iteration)

    def write(self, message: str) -> None:
        """Print a line above the bar (to stderr), unless the bar is disabled."""
        if not self._bar.disable:
            self._bar.write(message, file=sys.stderr)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self._closed.set()
        self._bar.close()
