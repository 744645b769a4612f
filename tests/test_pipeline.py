"""A run's phases (jstyle.pipeline): coarse stages and the full size, each stopped and
continued in one place."""

from __future__ import annotations

import types

import numpy as np
import pytest

from jstyle import engine
from jstyle.config import resolve
from jstyle.inputs import Inputs
from jstyle.pipeline import phases, run_transfer
from jstyle.preprocessing import CAFFE

CONFIG = {"size": 64, "coarse_sizes": [32], "coarse_iterations": 4, "iterations": 4,
          "style_weight": 1e3}


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(3)
    return Inputs(rng.random((48, 64, 3), dtype=np.float32),
                  [rng.random((48, 64, 3), dtype=np.float32)], "noise", {})


@pytest.fixture(scope="module")
def weights(random_params):
    return types.SimpleNamespace(params=random_params, preprocessing=CAFFE)


def test_phases_scale_alpha_to_each_size():
    config = resolve({**CONFIG, "size": 128, "coarse_sizes": [32, 64]})
    plan = phases(config, 96, 128)
    assert [(p.name, p.width, p.height, p.coarse) for p in plan] == [
        ("coarse stage 1/2", 32, 24, True), ("coarse stage 2/2", 64, 48, True),
        ("full size", 128, 96, False)]
    assert plan[0].content_weight == pytest.approx(16.0) and plan[2].content_weight == 1.0


@pytest.mark.parametrize("where", ["coarse stage", "full size"])
def test_a_run_stopped_in_any_phase_resumes_to_the_uninterrupted_image(weights, inputs,
                                                                         where):
    config = resolve({**CONFIG, "preserve_color": "luminance"})
    whole = run_transfer(weights, inputs, config)
    assert whole.resume is None and not whole.interrupted

    def log(message):  # a coarse stage begins: Ctrl-C now
        if where == "coarse stage":
            engine.request_stop()

    def on_progress(progress):
        if where == "full size" and progress.iteration == 2:
            engine.request_stop()

    first = run_transfer(weights, inputs, config, log=log, on_progress=on_progress)
    assert first.interrupted and first.resume is not None
    assert first.phase.name == ("coarse stage 1/1" if where == "coarse stage" else "full size")
    assert first.result.image.shape == inputs.content.shape  # the full size, always
    assert np.isfinite(first.result.image).all()
    rest = run_transfer(weights, inputs, config, resume=first.resume)
    assert not rest.interrupted and rest.resume is None
    np.testing.assert_allclose(rest.result.image, whole.result.image, atol=1e-4)
    (resumed,), (uninterrupted,) = rest.stages, whole.stages
    np.testing.assert_allclose(resumed["history"], uninterrupted["history"], rtol=1e-5)
    assert resumed["complete"] and resumed["iterations"] == 4


def test_each_phase_is_announced_and_a_coarse_stage_reports_its_progress(weights, inputs):
    """``on_phase`` hears every phase before its work, with the iterations made before a
    resume; a coarse stage's reports go to what it returned, the full size's to
    ``on_progress``."""
    config = resolve({**CONFIG, "coarse_sizes": [32, 48]})
    heard = []

    def on_phase(phase, done):
        heard.append((phase.name, done))
        return (lambda p: heard.append((phase.name, "report", p.iteration))) \
            if phase.coarse else None

    def on_progress(progress):
        heard.append(("full size", "report", progress.iteration))
        if progress.iteration == 2:
            engine.request_stop()

    first = run_transfer(weights, inputs, config, on_phase=on_phase, on_progress=on_progress)
    assert [h for h in heard if len(h) == 2] == [
        ("coarse stage 1/2", 0), ("coarse stage 2/2", 0), ("full size", 0)]
    for stage in ("coarse stage 1/2", "coarse stage 2/2"):
        assert [h[2] for h in heard if h[0] == stage and len(h) == 3][-1] == 4
    heard.clear()
    run_transfer(weights, inputs, config, resume=first.resume, on_phase=on_phase,
                 on_progress=on_progress)
    assert heard[0] == ("full size", 2)


def test_a_non_finite_loss_in_a_coarse_stage_ends_the_run_there(weights, inputs):
    poisoned = inputs._replace(styles=[np.full_like(inputs.styles[0], 1e30)])
    outcome = run_transfer(weights, poisoned, resolve(CONFIG))
    assert not outcome.interrupted and outcome.phase.coarse
    assert outcome.result.stopped.startswith("coarse stage 1/1 (32 px): the loss became NaN")
    assert outcome.result.image.shape == inputs.content.shape
    assert np.isfinite(outcome.result.image).all()
    assert outcome.stages[0]["complete"] is False and outcome.resume.phase == 0


def test_coarse_to_fine_stages(random_params, rng):
    import types

    from jstyle.config import resolve
    from jstyle.inputs import Inputs
    from jstyle.pipeline import run_transfer

    weights = types.SimpleNamespace(params=random_params, preprocessing=CAFFE)
    content = rng.random((48, 64, 3), dtype=np.float32)
    style = rng.random((48, 64, 3), dtype=np.float32)
    config = resolve({"size": 64, "coarse_sizes": [32, 48], "coarse_iterations": 2,
                      "iterations": 1, "optimizer": "adam"})
    outcome = run_transfer(weights, Inputs(content, [style], "noise", {}), config)
    image, stages = outcome.result.image, outcome.stages
    assert image.shape == content.shape and np.isfinite(image).all()
    assert [(s["width"], s["height"], s["iterations"]) for s in stages] == [(32, 24, 2),
                                                                           (48, 36, 2)]
    # alpha scaled by the ratio of pixels, so each stage strikes the full size's balance
    assert stages[0]["content_weight"] == pytest.approx(4.0)
    assert stages[1]["content_weight"] == pytest.approx((48 * 64) / (36 * 48))


@pytest.mark.parametrize("override", [{"precision": "bfloat16"}, {"winograd": False},
                                      {"sharding": "spatial"}, {"tile_size": 256},
                                      {"style_scale": 2.0}, {"weights": "missing.h5"}])
def test_no_kernels_are_prepared_for_a_run_that_would_not_use_them(override, tmp_path,
                                                                   monkeypatch):
    from jstyle.pipeline import prepare_kernels

    monkeypatch.chdir(tmp_path)
    assert prepare_kernels(resolve({"size": 64, **override}), 48, 64) is None


def test_kernels_are_prepared_beside_the_start_of_a_run(real_weights, monkeypatch):
    """With the weights there, the preparation runs on a thread of its own and finishes;
    a resumed phase past the last is none (the run refuses it by itself)."""
    from jstyle import onednn
    from jstyle.pipeline import prepare_kernels

    started = []
    monkeypatch.setattr(onednn, "prepare_winograd",
                        lambda folder, jobs, cancel: started.append(len(jobs)))
    config = resolve({"size": 64, "weights": str(real_weights.path)})
    preparation = prepare_kernels(config, 48, 64)
    preparation.finish()
    assert started == [24] and not preparation.thread.is_alive()
    assert prepare_kernels(config, 48, 64, phase=5) is None
