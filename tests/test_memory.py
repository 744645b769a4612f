"""The memory estimate, and the refusal of a run that cannot fit."""

import pytest

from jstyle import memory
from jstyle.config import Config, resolve
from jstyle.errors import JStyleError


def test_estimate_grows_with_the_image_and_the_lbfgs_history():
    c = Config()
    small, big = memory.estimate_bytes(384, 512, c), memory.estimate_bytes(768, 1024, c)
    assert memory.FIXED_BYTES < small < big
    # Past the fixed part, 4x the pixels is about 4x the memory.
    assert (big - memory.FIXED_BYTES) / (small - memory.FIXED_BYTES) == pytest.approx(4, rel=0.05)
    adam = resolve({"optimizer": "adam"})
    assert memory.estimate_bytes(768, 1024, adam) < big
    shallow = resolve({"style_layers": ["relu1_1"], "content_layers": ["relu1_2"]})
    assert memory.estimate_bytes(768, 1024, shallow) < big


def test_estimate_matches_measured_peaks_within_a_fifth():
    # Peak RSS of one loss+gradient evaluation, measured by python -m jstyle.bench (README).
    for (h, w), measured_mb in {(384, 512): 1308, (768, 1024): 2661}.items():
        estimate_mb = memory.estimate_bytes(h, w, Config()) / 2**20
        assert abs(estimate_mb - measured_mb) / measured_mb < 0.2, (h, w, estimate_mb)


def test_a_run_that_cannot_fit_is_refused_with_the_estimate(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 2 * 2**30)
    c = resolve({"size": 4096})
    with pytest.raises(JStyleError) as info:
        memory.check_memory(3072, 4096, c)
    message = str(info.value)
    assert "needs about" in message and "2.0 GiB are available" in message
    assert "smaller size (about" in message and "adam" in message
    assert memory.check_memory(96, 128, resolve({"size": 128})) > 0


def test_available_memory_is_known_here():
    assert memory.available_bytes() > 2**28
