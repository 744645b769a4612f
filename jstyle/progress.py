"""The progress bar of a run: iteration, total / content / style loss, objective evaluations,
iterations per second."""

from __future__ import annotations

import sys

from tqdm import tqdm

from jstyle.engine import BatchProgress, Progress


class ProgressBar:
    """A tqdm bar fed by :class:`jstyle.engine.Progress` reports (one per compiled chunk)."""

    def __init__(self, iterations: int, initial: int = 0, disable: bool = False) -> None:
        self._bar = tqdm(total=iterations, initial=initial, unit="it", disable=disable,
                         dynamic_ncols=True, desc="stylizing")

    def update(self, progress: Progress, offset: int = 0) -> None:
        """Advance to iteration ``offset + progress.iteration`` and show its losses."""
        t = progress.terms
        self._bar.set_postfix_str(
            f"loss {t['total']:.3e} content {t['content']:.3e} style {t['style']:.3e} "
            f"evals {progress.evaluations}",
            refresh=False,
        )
        self._bar.update(offset + progress.iteration - self._bar.n)

    def update_batch(self, progress: BatchProgress) -> None:
        """Advance to a data-parallel batch's iteration and show its images' losses."""
        losses = [v for v in progress.losses if v == v]  # NaN: an image not started
        if losses:
            self._bar.set_postfix_str(f"loss {min(losses):.3e} .. {max(losses):.3e}",
                                      refresh=False)
        self._bar.update(progress.iteration - self._bar.n)

    def write(self, message: str) -> None:
        """Print a line above the bar (to stderr), unless the bar is disabled."""
        if not self._bar.disable:
            self._bar.write(message, file=sys.stderr)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self._bar.close()
