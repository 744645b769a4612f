"""The progress bar (jstyle.progress): the phase it shows, preparing until a phase's first
report, and a clock that keeps running while nothing reports."""

from __future__ import annotations

import threading
import time

from jstyle.engine import BatchProgress, Progress
from jstyle.pipeline import Phase
from jstyle.progress import ProgressBar

TERMS = {"total": 3.0, "content": 1.0, "style": 2.0, "tv": 0.0}


def _report(iteration: int) -> Progress:
    return Progress(iteration, None, TERMS, [3.0], evaluations=iteration + 1)


def _phase(name: str, iterations: int) -> Phase:
    return Phase(0, name, 64, 48, 64, iterations, 1.0)


def test_the_bar_says_preparing_until_the_first_report():
    with ProgressBar(10, tick=0) as bar:
        assert bar.description == "stylizing: preparing"
        bar.update(_report(2))
        assert bar.description == "stylizing" and bar._bar.n == 2
        assert "evals 3" in bar._bar.postfix


def test_a_coarse_stage_has_its_own_count_then_the_full_size_takes_over():
    with ProgressBar(10, tick=0) as bar:
        listen = bar.phase(_phase("coarse stage 1/2", 4))
        assert bar.description == "coarse stage 1/2: preparing" and bar._bar.total == 4
        listen(_report(4))
        assert bar.description == "coarse stage 1/2" and bar._bar.n == 4
        assert bar.phase(_phase("full size", 10), done=3) is None  # on_progress reports it
        assert bar.description == "stylizing: preparing"
        assert (bar._bar.n, bar._bar.total, bar._bar.postfix) == (3, 10, "")
        bar.update(_report(2), offset=3)
        assert bar._bar.n == 5


def test_a_batch_report_ends_preparing_too():
    with ProgressBar(10, tick=0) as bar:
        bar.update_batch(BatchProgress(1, [2.0, float("nan")]))
        assert bar.description == "stylizing" and bar._bar.n == 1


def test_the_rate_counts_iterations_not_the_preparation():
    """A phase's first report comes after its targets and compilation: the rate (and the
    time left) starts there, from the second report's chunk; the clock does not restart."""
    now = [100.0]
    with ProgressBar(10, tick=0) as bar:
        bar._bar._time = lambda: now[0]
        bar.phase(_phase("full size", 10))
        now[0] += 60.0  # preparing: a minute
        bar.update(_report(2))
        assert bar._bar.format_dict["rate"] is None  # not 2 iterations a minute
        now[0] += 1.0  # two more iterations in a second
        bar.update(_report(4))
        assert bar._bar.format_dict["rate"] == 2.0
        assert bar._bar.format_dict["elapsed"] == 61.0


def test_the_clock_runs_while_nothing_reports_and_stops_with_the_bar(capsys):
    def ticking():
        return [t for t in threading.enumerate() if t.name == "jstyle-progress"]

    with ProgressBar(10, tick=0.01):
        time.sleep(0.2)
        assert len(ticking()) == 1
    drawn = capsys.readouterr().err
    assert drawn.count("stylizing: preparing") >= 5  # redrawn, not drawn once
    for _ in range(100):
        if not ticking():
            break
        time.sleep(0.01)
    assert not ticking()
    with ProgressBar(10, disable=True, tick=0.01) as quiet:  # --quiet: no bar, no thread
        assert not ticking()
        quiet.phase(_phase("coarse stage 1/1", 4))(_report(1))
        quiet.update_batch(BatchProgress(1, [2.0]))
        assert quiet.description == "coarse stage 1/1"
