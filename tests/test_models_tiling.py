"""The shared tiler (mattebox.tiling): exact constants, no seams, coverage, padding, sizing from memory."""
from __future__ import annotations

import numpy as np
import pytest

from mattebox.tiling import (TileMerger, choose_tile_and_batch, gaussian_window, plan_tiles, tile_starts,
                             tiled_apply)


def test_tile_starts_cover_the_axis_with_the_requested_overlap():
    starts = tile_starts(1080, 448, 224)
    assert starts[0] == 0 and starts[-1] + 448 == 1080
    assert all(b - a <= 224 for a, b in zip(starts, starts[1:]))
    assert tile_starts(448, 448, 224) == [0]
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(100, 32, 32)


def test_constant_model_merges_to_the_constant():
    image = np.random.default_rng(0).random((1080, 1920, 3)).astype(np.float32)
    calls = []

    def constant(batch):
        calls.append(len(batch["image"]))
        return {"alpha": np.full(batch["image"].shape[:3] + (1,), 0.3137, np.float32)}

    out = tiled_apply({"image": image}, constant, batch_size=4)["alpha"]
    assert out.shape == (1080, 1920, 1)
    np.testing.assert_allclose(out, 0.3137, rtol=0, atol=1e-6)
    assert sum(calls) == len(plan_tiles((1080, 1920))) and max(calls) == 4


def test_identity_model_has_no_seams():
    """A model that returns its input tile reproduces a smooth ramp exactly: no tile boundary is visible."""
    h, w = 700, 1000
    ramp = np.add.outer(np.linspace(0, 1, h), np.linspace(0, 2, w)).astype(np.float32)[..., None]
    out = tiled_apply({"x": ramp}, lambda b: {"y": b["x"]}, tile=256, overlap=128)["y"]
    np.testing.assert_allclose(out, ramp, atol=1e-5)
    # and the merged output's second differences are as small as the ramp's (no steps at tile borders)
    assert np.abs(np.diff(out[..., 0], 2, axis=1)).max() < 1e-4


def test_tile_dependent_offsets_blend_smoothly():
    """Each tile adds its own offset: the Gaussian merge turns tile borders into smooth transitions."""
    rng = np.random.default_rng(1)
    image = np.zeros((600, 900, 1), np.float32)

    def offset(batch):
        return {"y": batch["x"] + rng.random((len(batch["x"]), 1, 1, 1)).astype(np.float32)}

    out = tiled_apply({"x": image}, offset, tile=256, overlap=128)["y"][..., 0]
    assert np.abs(np.diff(out, axis=1)).max() < 0.05 and np.abs(np.diff(out, axis=0)).max() < 0.05


def test_small_images_are_padded_and_cropped_back():
    image = np.random.default_rng(2).random((50, 70, 3)).astype(np.float32)
    out = tiled_apply({"x": image}, lambda b: {"y": b["x"]}, tile=64, overlap=32)["y"]
    np.testing.assert_allclose(out, image, atol=1e-6)


def test_needed_mask_skips_tiles_and_fills_from_guidance():
    h, w = 512, 768
    needed = np.zeros((h, w), bool)
    needed[10:20, 10:20] = True
    seen = []

    def model(batch):
        seen.append(len(batch["x"]))
        return {"alpha": np.full(batch["x"].shape, 0.5, np.float32)}

    fill = {"alpha": np.ones((h, w, 1), np.float32)}
    out = tiled_apply({"x": np.zeros((h, w, 1), np.float32)}, model, tile=256, overlap=128, needed=needed,
                      fill=fill)["alpha"]
    assert sum(seen) == 1
    assert out[15, 15, 0] == pytest.approx(0.5) and out[-1, -1, 0] == 1.0


def test_progress_is_reported_per_batch_and_can_stop_the_run():
    class Stop(Exception):
        pass

    reports = []

    def progress(done, total):
        reports.append((done, total))
        if done >= 2:
            raise Stop

    with pytest.raises(Stop):
        tiled_apply({"x": np.zeros((600, 900, 1), np.float32)}, lambda b: {"y": b["x"]}, tile=256, overlap=128,
                    progress=progress)
    assert reports[:2] == [(1, reports[0][1]), (2, reports[0][1])] and reports[0][1] > 2


def test_window_is_positive_and_peaks_in_the_centre():
    w = gaussian_window(448)
    assert w.min() > 0 and w[224, 224] == w.max() and w[0, 0] < w[224, 0] < w[224, 224]


def test_merger_rejects_nothing_silently_and_averages():
    merger = TileMerger((4, 6), 4)
    tiles = plan_tiles((4, 6), 4, 2)
    for value, tile in zip((1.0, 3.0), tiles):
        merger.add(tile, {"a": np.full((4, 4), value)})
    out = merger.result()["a"][..., 0]
    assert out[0, 0] == 1.0 and out[0, 5] == 3.0 and 1.0 < out[0, 2] < 3.0


def test_tile_and_batch_follow_free_memory():
    assert choose_tile_and_batch(None, 1000.0) == (448, 1)
    tile, batch = choose_tile_and_batch(80 * 2 ** 30, 6000.0)
    assert tile == 448 and batch == 16
    tile, batch = choose_tile_and_batch(2 * 2 ** 30, 6000.0)
    assert tile == 448 and 1 <= batch < 16
    tile, batch = choose_tile_and_batch(200 * 2 ** 20, 6000.0)
    assert batch == 1 and 224 <= tile < 448 and tile % 32 == 0


def test_torch_batched_tiles_match_one_at_a_time():
    torch = pytest.importorskip("torch")
    from mattebox.tiling import torch_tile_fn

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 1, 3, padding=1).eval()
    run = torch_tile_fn(lambda image: {"alpha": torch.sigmoid(conv(image))}, "cpu", None)
    image = np.random.default_rng(3).random((300, 420, 3)).astype(np.float32)
    one = tiled_apply({"image": image}, run, tile=128, overlap=64, batch_size=1)["alpha"]
    many = tiled_apply({"image": image}, run, tile=128, overlap=64, batch_size=5)["alpha"]
    assert one.shape == (300, 420, 1) and np.allclose(one, many, atol=1e-6)
    # interior pixels (away from tile borders' padding effects) equal the untiled convolution
    with torch.no_grad():
        whole = torch.sigmoid(conv(torch.from_numpy(image.transpose(2, 0, 1))[None]))[0, 0].numpy()
    assert np.abs(one[2:-2, 2:-2, 0] - whole[2:-2, 2:-2]).max() < 0.05


def test_out_of_memory_halves_the_batch_and_keeps_the_result():
    """A batch that does not fit is halved and retried; the smaller size is kept for the following batches, and
    the merged result is the one-tile-at-a-time result."""
    torch = pytest.importorskip("torch")
    from mattebox.tiling import torch_tile_fn

    attempts = []

    def forward(image):
        attempts.append(image.shape[0])
        if image.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return {"alpha": image.mean(1, keepdim=True)}

    image = np.random.default_rng(5).random((300, 420, 3)).astype(np.float32)
    run = torch_tile_fn(forward, "cpu")
    merged = tiled_apply({"image": image}, run, tile=128, overlap=64, batch_size=8)["alpha"]
    one = tiled_apply({"image": image}, torch_tile_fn(forward, "cpu"), tile=128, overlap=64)["alpha"]
    assert np.array_equal(merged, one)
    assert run.batch_limit == 2
    assert attempts[:3] == [8, 4, 2] and max(attempts[3:]) == 2  # no further failed attempts after the first


def test_a_tile_that_never_fits_names_the_tile_param():
    torch = pytest.importorskip("torch")
    from mattebox.tiling import torch_tile_fn

    def forward(image):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    with pytest.raises(MemoryError, match=r"one 128×128 tile does not fit.*'tile' param"):
        tiled_apply({"image": np.zeros((200, 200, 3), np.float32)}, torch_tile_fn(forward, "cpu"), tile=128,
                    overlap=64, batch_size=4)
