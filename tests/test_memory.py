"""The memory estimate, and the refusal of a run that cannot fit."""

import json
import re
from pathlib import Path

import pytest

from jstyle import memory, tiling
from jstyle.config import Config, resolve
from jstyle.errors import JStyleError

BENCH = Path(__file__).resolve().parents[1] / "docs" / "bench"


@pytest.fixture(autouse=True)
def _fresh_auto_decisions(monkeypatch):
    monkeypatch.setattr(memory, "_AUTO", {})  # each test's memory, decided afresh


#: The measurements in docs/bench were made with XLA's convolutions.
XLA = Config(winograd=False)


def test_estimate_grows_with_the_image_and_the_lbfgs_history():
    c = XLA
    small, big = memory.estimate_bytes(384, 512, c), memory.estimate_bytes(768, 1024, c)
    assert memory.FIXED_BYTES < small < big
    # Past the fixed part, 4x the pixels is about 4x the memory.
    assert (big - memory.FIXED_BYTES) / (small - memory.FIXED_BYTES) == pytest.approx(4, rel=0.05)
    adam = resolve({"optimizer": "adam", "winograd": False})
    assert memory.estimate_bytes(768, 1024, adam) < big
    shallow = resolve({"style_layers": ["relu1_1"], "content_layers": ["relu1_2"],
                       "winograd": False})
    assert memory.estimate_bytes(768, 1024, shallow) < big


def _measured(name: str) -> dict:
    return json.loads((BENCH / name).read_text())


def test_estimate_matches_measured_peaks_within_a_fifth():
    """Peak RSS of one loss+gradient evaluation at 512 px and up, as ``python -m jstyle.bench``
    recorded it in docs/bench (smaller sizes are dominated by the fixed part)."""
    rows = [e for e in _measured("cpu-2core.json")["evaluations"] if e["width"] >= 512]
    assert rows
    for e in rows:
        estimate_mb = memory.estimate_bytes(e["height"], e["width"], XLA) / 2**20
        measured_mb = e["jax"]["peak_rss_mb"]
        assert abs(estimate_mb - measured_mb) / measured_mb < 0.2, (e["width"], estimate_mb)


def test_estimate_holds_with_and_without_remat():
    """Peak RSS of 5 L-BFGS iterations as ``python -m jstyle.bench.memory`` recorded it in
    docs/bench: remat changes it by a few per cent, so one estimate serves both."""
    rows = [r for r in _measured("memory-cpu-2core.json")["rows"] if r["width"] >= 512]
    assert {r["remat"] for r in rows} == {False, True}
    for r in rows:
        estimate_mb = memory.estimate_bytes(r["height"], r["width"], XLA) / 2**20
        measured_mb = r["peak_rss_mb"]
        assert abs(estimate_mb - measured_mb) / measured_mb < 0.2, (r["width"], measured_mb)


def test_winograd_adds_its_kept_kernels_and_one_layers_working_memory(monkeypatch):
    monkeypatch.setattr(memory, "_kernels",
                        lambda config: "winograd" if config.winograd else "xla")
    extra = memory.estimate_bytes(384, 512, Config()) - memory.estimate_bytes(384, 512, XLA)
    assert extra == int(memory.WINOGRAD_KERNEL_BYTES + memory.WINOGRAD_WORK * 384 * 512 * 256)
    # in tiles, the crop's first layer, not the image's
    tiled = (memory.estimate_bytes(3072, 4096, Config(), 512)
             - memory.estimate_bytes(3072, 4096, XLA, 512))
    assert memory.WINOGRAD_KERNEL_BYTES < tiled < extra * 4


def test_bfloat16_through_onednn_adds_its_kept_kernels(monkeypatch):
    monkeypatch.setattr(memory, "_kernels", lambda config: "bfloat16")
    bf16 = resolve({"size": 512, "precision": "bfloat16"})
    with_kept = memory.estimate_bytes(384, 512, bf16)
    monkeypatch.setattr(memory, "_kernels", lambda config: "xla")
    assert with_kept - memory.estimate_bytes(384, 512, bf16) == memory.BFLOAT16_KERNEL_BYTES


def test_winograd_estimate_matches_measured_peaks_within_a_fifth(monkeypatch):
    """Peak RSS of one evaluation with the convolutions by Winograd, as ``python -m
    jstyle.bench`` recorded it (jstyle 0.8, AVX-512 EPYC), at every size it measured."""
    monkeypatch.setattr(memory, "_kernels",
                        lambda config: "winograd" if config.winograd else "xla")
    record = _measured("cpu-2core-epyc-avx512bf16-v0.8.json")
    assert record["float32_convolutions"].startswith("onednn:")
    for e in record["evaluations"]:
        estimate_mb = memory.estimate_bytes(e["height"], e["width"], Config()) / 2**20
        measured_mb = e["jax"]["peak_rss_mb"]
        assert abs(estimate_mb - measured_mb) / measured_mb < 0.2, (e["width"], estimate_mb)


def test_a_run_that_cannot_fit_is_refused_with_the_estimate(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 2 * 2**30)
    c = resolve({"size": 4096, "tile_size": 0})
    with pytest.raises(JStyleError) as info:
        memory.check_memory(3072, 4096, c)
    message = str(info.value)
    assert "needs about" in message and "2.0 GiB are available" in message
    assert "smaller size (about" in message and "adam" in message and "tile_size: auto" in message
    assert memory.check_memory(96, 128, resolve({"size": 128})) > 0


def test_the_size_said_to_fit_does(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 6 * 2**30)
    for settings in ({"tile_size": 0}, {"tile_size": "auto"}, {"tile_size": 256}):
        c = resolve({"size": 8192, **settings})
        with pytest.raises(JStyleError, match=r"about (\d+) px fits") as info:
            memory.check_memory(6144, 8192, c)
        fits = int(re.search(r"about (\d+) px fits", str(info.value))[1])
        assert 512 < fits < 8192
        assert memory.check_memory(fits * 3 // 4, fits, resolve({"size": fits, **settings}))


def test_tiles_bound_the_network_and_leave_the_image_sized_part():
    c = resolve({"size": 4096})
    whole = memory.estimate_bytes(3072, 4096, c, 0)
    tiled = memory.estimate_bytes(3072, 4096, c, 512)
    assert tiled < whole / 3
    image = 3072 * 4096 * 3 * 4
    assert tiled > (2 * c.lbfgs_memory + 4) * image  # the history stays whole
    assert memory.estimate_bytes(384, 512, c, 512) == memory.estimate_bytes(384, 512, c, 0)


def test_auto_tiles_only_what_does_not_fit_in_the_budget(monkeypatch):
    have = 16 * 2**30
    monkeypatch.setattr(memory, "available_bytes", lambda: have)
    c = resolve({"size": 4096, "winograd": False})
    assert memory.tile_size(384, 512, c) == 0  # fits whole
    # 2048 px: more than half the memory whole, but within WHOLE_BUDGET: no tiles
    whole = memory.estimate_bytes(1536, 2048, c, 0)
    assert memory.TILE_BUDGET * have < whole <= memory.WHOLE_BUDGET * have
    assert memory.tile_size(1536, 2048, c) == 0
    tile = memory.tile_size(3072, 4096, c)
    assert tile >= memory.MIN_TILE
    assert memory.estimate_bytes(3072, 4096, c, tile) <= memory.TILE_BUDGET * have
    bigger = tile + tiling.grid(("relu4_2", "relu5_1"))  # the next candidate
    assert memory.estimate_bytes(3072, 4096, c, bigger) > memory.TILE_BUDGET * have
    record = memory.tiling_record(3072, 4096, c)
    assert record["tile_size"] == "auto" and record["used"] == tile and record["tiles"] > 1
    assert record["halo"] == tiling.halo(("relu4_2", "relu5_1"))
    # what cannot be tiled is not
    assert memory.tile_size(3072, 4096, resolve({"style_loss": "mean_std"})) == 0
    assert memory.tile_size(3072, 4096, resolve({"sharding": "spatial"})) > 0  # tiles per device
    assert memory.tile_size(3072, 4096, resolve({"tile_size": 0})) == 0
    assert memory.tile_size(3072, 4096, resolve({"tile_size": 300})) == 300


@pytest.mark.parametrize("height,width", [(3072, 4096), (777, 5000), (6000, 300)])
def test_a_smaller_tile_never_needs_more(height, width):
    """What tile_size: auto's bisection relies on: the estimate never falls as the tile
    grows (so the largest tile that fits is found without trying every one)."""
    c = resolve({"size": max(height, width)})
    g = tiling.grid(("relu4_2", "relu5_1"))
    needs = [memory.estimate_bytes(height, width, c, t)
             for t in range(memory.MIN_TILE, max(height, width) + g, g)]
    assert needs == sorted(needs) and needs[0] < needs[-1]


def test_a_run_too_large_even_in_tiles_names_the_history(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 4 * 2**30)
    c = resolve({"size": 8192, "lbfgs_memory": 50})
    with pytest.raises(JStyleError) as info:
        memory.check_memory(6144, 8192, c)
    message = str(info.value)
    assert "(in tiles of" in message and "lower lbfgs_memory" in message
    assert "\n" not in message


def test_available_memory_is_known_here():
    assert memory.available_bytes() > 2**28


def test_memory_benchmark_table_compares_remat_with_plain():
    from jstyle.bench.memory import markdown

    mb = 2**20
    rows = [{"size": 512, "width": 512, "height": 384, "remat": False, "estimate_bytes": 1243 * mb,
             "peak_rss_mb": 1300.0, "xla_temp_bytes": 400 * mb, "seconds_per_iteration": 4.0},
            {"size": 512, "width": 512, "height": 384, "remat": True, "estimate_bytes": 1243 * mb,
             "peak_rss_mb": 1170.0, "xla_temp_bytes": 300 * mb, "seconds_per_iteration": 5.0},
            {"size": 1024, "width": 1024, "height": 768, "remat": True, "error": "timed out"}]
    table = markdown(rows).splitlines()
    assert table[2] == "| 512x384 | off | 1243 | 1300 | 400 | 4.00 |  |"
    assert table[3] == "| 512x384 | on | 1243 | 1170 | 300 | 5.00 | -10%, -25%, +25% |"
    assert table[4].startswith("| 1024x768 | on | n/a | n/a | n/a | n/a |")
    assert table[-1] == "Failed measurements: 1024 px remat True: timed out"


def test_auto_takes_all_the_memory_before_the_smallest_tile(monkeypatch):
    # At 4096 px the L-BFGS history alone (6.6 GB) overruns half of 10 GiB: auto then plans
    # for all of it with tiles as large as fit, not for half of it with the smallest.
    have = 10 * 2**30
    monkeypatch.setattr(memory, "available_bytes", lambda: have)
    c = resolve({"size": 4096})
    assert memory.estimate_bytes(3072, 4096, c, memory.MIN_TILE) > memory.TILE_BUDGET * have
    tile = memory.tile_size(3072, 4096, c)
    assert tile > 4 * memory.MIN_TILE
    assert memory.estimate_bytes(3072, 4096, c, tile) <= have
    assert memory.check_memory(3072, 4096, c)


def test_auto_decides_once_per_image_size(monkeypatch):
    have = [16 * 2**30]
    monkeypatch.setattr(memory, "available_bytes", lambda: have[0])
    c = resolve({"size": 4096})
    first = memory.tile_size(3072, 4096, c)
    have[0] = 10 * 2**30  # another process took memory meanwhile
    assert memory.tile_size(3072, 4096, c) == first == memory.tiling_record(3072, 4096, c)["used"]
    assert memory.tile_size(1536, 2048, c) != first  # another size decides for itself
