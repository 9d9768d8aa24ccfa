"""Shots: key-frame guidance carried by flow, temporal stability, chunk-independence, video metrics, and
`mattebox render --shot` end to end."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import cv2
import numpy as np
import pytest

from mattebox import evaluation as ev
from mattebox.colour import linear_to_srgb
from mattebox.imageio import read_gray, write_png
from mattebox.shots import Key, ShotSettings, matte_shot
from mattebox.shots.flow import ScaledFlow, ShotFlows, carry, nearest_index
from mattebox.shots.guidance import trimap_for_frame
from mattebox.synth.backgrounds import textured_background
from mattebox.synth.shots import make_shot
from mattebox.matting.guidance import trimap_from_mask
from mattebox.matting.motion import DISFlow, fill_nearest

from .conftest import tree_env


def moving_disc(length: int = 8, size=(96, 128), speed: float = 1.5, seed: int = 3):
    """A soft-edged textured disc sliding right over a texture that pans left: (frames linear, true alphas)."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = size
    canvas = textured_background((h, w + 4 * length), rng)
    skin = np.float32([0.9, 0.5, 0.2]) * (0.2 + 0.8 * textured_background((h, w), rng).mean(axis=2, keepdims=True))
    ys, xs = np.mgrid[:h, :w].astype(np.float32)
    frames, alphas = [], []
    for t in range(length):
        radius = np.hypot(xs - (40 + speed * t), ys - h / 2)
        alpha = np.clip(26.0 - radius, 0.0, 1.0).astype(np.float32)
        foreground = cv2.warpAffine(skin, np.float32([[1, 0, speed * t], [0, 1, 0]]), (w, h),
                                    borderMode=cv2.BORDER_REFLECT)
        background = canvas[:, 2 * t:2 * t + w]
        frames.append((alpha[..., None] * foreground + (1 - alpha[..., None]) * background).astype(np.float32))
        alphas.append(alpha)
    return frames, alphas


def test_a_mask_key_is_carried_onto_later_frames_with_a_band_around_the_moved_edge():
    frames, alphas = moving_disc()
    flows = ShotFlows(lambda f: linear_to_srgb(frames[f]), cache_pairs=10)
    trimap, how = trimap_for_frame(flows, 6, {0: Key("mask", (alphas[0] >= 0.5).astype(np.float32), 8)})
    truth = alphas[6]
    assert how == "propagated:0"
    assert np.all(truth[trimap == 1.0] > 0.5) and np.all(truth[trimap == 0.0] < 0.5)  # definite regions are right
    edge = (truth > 0.05) & (truth < 0.95)
    assert np.mean(trimap[edge] == 0.5) > 0.95  # the moved edge is inside the band (DIS lags a small disc a little)
    assert (trimap == 1.0).sum() > 900  # and the inside of the disc stays definite


def test_a_still_subject_keeps_about_the_key_band_however_far_the_key_is():
    frames, alphas = moving_disc(length=1)
    rng = np.random.default_rng(1)  # the same picture six frames on, with new sensor noise on each
    shot = [np.clip(frames[0] + rng.normal(0, 0.01, frames[0].shape), 0, 1).astype(np.float32) for _ in range(7)]
    mask = (alphas[0] >= 0.5).astype(np.float32)
    flows = ShotFlows(lambda f: linear_to_srgb(shot[f]), cache_pairs=10)
    trimap, _ = trimap_for_frame(flows, 6, {0: Key("mask", mask, 8)})
    # the flow's noise moves the edge by a fraction of a pixel: the band does not widen by a pixel each side for it
    assert (trimap == 0.5).sum() < (trimap_from_mask(mask, 8 + 2) == 0.5).sum()
    assert np.all(alphas[0][trimap == 1.0] > 0.5) and np.all(alphas[0][trimap == 0.0] < 0.5)


def test_two_keys_bracket_a_frame_and_a_trimap_key_keeps_its_definite_regions_right():
    frames, alphas = moving_disc()
    trimaps = {k: np.where(alphas[k] >= 0.99, 1.0, np.where(alphas[k] <= 0.01, 0.0, 0.5)).astype(np.float32)
               for k in (0, 7)}
    for k in trimaps:  # a band like an artist's: a few px either side of the edge
        band = np.abs(alphas[k] - 0.5) < 0.5
        trimaps[k][cv2.dilate(band.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0] = 0.5
    flows = ShotFlows(lambda f: linear_to_srgb(frames[f]), cache_pairs=10)
    trimap, how = trimap_for_frame(flows, 4, {k: Key("trimap", v) for k, v in trimaps.items()})
    assert how == "propagated:0+7"
    truth = alphas[4]
    assert np.all(truth[trimap == 1.0] > 0.5) and np.all(truth[trimap == 0.0] < 0.5)
    assert np.mean(trimap[(truth > 0.05) & (truth < 0.95)] == 0.5) > 0.97


def test_a_key_frame_keeps_its_own_guidance():
    frames, alphas = moving_disc(length=3)
    trimap = np.where(alphas[1] > 0.5, 1.0, 0.0).astype(np.float32)
    trimap[(alphas[1] > 0) & (alphas[1] < 1)] = 0.5
    flows = ShotFlows(lambda f: linear_to_srgb(frames[f]))
    out, how = trimap_for_frame(flows, 1, {1: Key("trimap", trimap)})
    assert how == "key:trimap" and np.array_equal(out, trimap)


def test_a_half_resolution_flow_follows_a_shift_in_full_resolution_pixels():
    rng = np.random.default_rng(5)
    texture = linear_to_srgb(textured_background((120, 170), rng))
    target, source = texture[:, 10:10 + 128], texture[:, 13:13 + 128]  # target(p) = source(p − 3 px in x)
    flow = ScaledFlow(DISFlow(), 0.5).flow(target, source)
    assert flow.shape == (120, 128, 2) and flow.dtype == np.float32
    inner = flow[16:-16, 16:-16]
    assert abs(np.median(inner[..., 0]) + 3.0) < 0.2 and abs(np.median(inner[..., 1])) < 0.2
    with pytest.raises(ValueError, match="flow_scale"):
        ScaledFlow(DISFlow(), 0.0)


def test_shot_flows_borrow_the_pairs_another_computes_and_compute_the_rest():
    frames, _ = moving_disc(length=4)
    image = lambda f: linear_to_srgb(frames[f])  # noqa: E731
    full = ShotFlows(image)
    half = ShotFlows(image, flow_model=ScaledFlow(DISFlow(), 0.5), borrow=(full, lambda lower: lower >= 1))
    flow, confidence = half.span(0, 3)  # pair 0-1 its own, 1-2 and 2-3 borrowed
    assert half.computed == 2 and full.computed == 4
    np.testing.assert_array_equal(half.neighbour(2, 3)[0], full.neighbour(2, 3)[0])
    alone = ShotFlows(image, flow_model=ScaledFlow(DISFlow(), 0.5))
    assert not np.array_equal(half.neighbour(1, 0)[0], full.neighbour(1, 0)[0])
    np.testing.assert_array_equal(half.neighbour(1, 0)[0], alone.neighbour(1, 0)[0])
    assert flow.shape == (96, 128, 2) and confidence.shape == (96, 128)


def test_shot_flows_started_on_a_worker_thread_equal_those_computed_in_place():
    frames, _ = moving_disc(length=5)
    image = lambda f: linear_to_srgb(frames[f])  # noqa: E731
    plain = ShotFlows(image)
    with ThreadPoolExecutor(1) as pool:
        pooled = ShotFlows(image, pool=pool)
        for a, b in zip(pooled.span(4, 0), plain.span(4, 0)):  # four pairs started at once, taken from both ends
            np.testing.assert_array_equal(a, b)
    assert pooled.computed == plain.computed == 8
    np.testing.assert_array_equal(pooled.neighbour(1, 2)[0], plain.neighbour(1, 2)[0])


def test_one_nearest_index_carries_a_flow_and_its_confidence_as_nearest_filling_does():
    rng = np.random.default_rng(2)
    valid = rng.random((40, 50)) > 0.95
    flow, confidence = rng.random((40, 50, 2)).astype(np.float32), rng.random((40, 50)).astype(np.float32)
    carried_flow, carried_confidence = carry(flow, confidence, nearest_index(valid))
    np.testing.assert_array_equal(carried_flow, fill_nearest(flow, valid))
    np.testing.assert_array_equal(carried_confidence, fill_nearest(confidence, valid))


@pytest.fixture(scope="module")
def small_shot():
    return make_shot(2_000_010, size=(96, 128), length=9, real_alpha=False)


@pytest.fixture(scope="module")
def roto_run(small_shot):
    keys = {t: Key("trimap", small_shot.trimap(t)) for t in range(len(small_shot))}
    return list(matte_shot(lambda f: small_shot.frames[f], range(len(small_shot)), keys,
                           settings=ShotSettings(foreground=False)))


def test_the_temporal_prior_steadies_a_noisy_shot_without_losing_accuracy(small_shot, roto_run):
    regions = [small_shot.trimap(t) == 0.5 for t in range(len(small_shot))]
    alone = ev.video_metrics([r.independent for r in roto_run], small_shot.alphas, regions)
    steady = ev.video_metrics([r.alpha for r in roto_run], small_shot.alphas, regions)
    assert steady["dtssd"] < 0.85 * alone["dtssd"]
    assert steady["messddt"] < alone["messddt"]
    assert steady["sad"] <= 1.05 * alone["sad"]
    assert all(r.info["neighbours"] == (2 if r.frame in (0, 8) else 3 if r.frame in (1, 7) else 4)
               for r in roto_run)


def test_a_chunk_renders_exactly_what_the_whole_shot_renders(small_shot, roto_run):
    keys = {t: Key("trimap", small_shot.trimap(t)) for t in range(len(small_shot))}
    chunk = list(matte_shot(lambda f: small_shot.frames[f], range(len(small_shot)), keys, outputs=[4, 5],
                            settings=ShotSettings(foreground=False)))
    assert [r.frame for r in chunk] == [4, 5]
    for r in chunk:
        assert np.array_equal(r.alpha, roto_run[r.frame].alpha)


def test_sparse_keys_stay_close_to_an_animated_roto(small_shot, roto_run):
    regions = [small_shot.trimap(t) == 0.5 for t in range(len(small_shot))]
    keys = {t: Key("trimap", small_shot.trimap(t)) for t in (0, 8)}
    sparse = list(matte_shot(lambda f: small_shot.frames[f], range(len(small_shot)), keys,
                             settings=ShotSettings(foreground=False)))
    assert [r.info["guidance"] for r in sparse][1:3] == ["propagated:0+8"] * 2
    roto_sad = ev.video_metrics([r.independent for r in roto_run], small_shot.alphas, regions)["sad"]
    assert ev.video_metrics([r.alpha for r in sparse], small_shot.alphas, regions)["sad"] < 1.5 * roto_sad


def test_bad_shot_inputs_name_the_field():
    frames, alphas = moving_disc(length=3)
    read = frames.__getitem__
    with pytest.raises(ValueError, match="keys: frame 9"):
        next(matte_shot(read, [0, 1, 2], {9: Key("mask", alphas[0])}))
    with pytest.raises(ValueError, match="frames: expected consecutive"):
        next(matte_shot(read, [0, 2, 1], {0: Key("mask", alphas[0])}))
    with pytest.raises(ValueError, match="outputs: frame 5"):
        next(matte_shot(read, [0, 1, 2], {0: Key("mask", alphas[0])}, outputs=[5]))
    with pytest.raises(ValueError, match="key kind"):
        Key("roto", alphas[0])
    with pytest.raises(ValueError, match="workers: expected a whole number >= 0"):
        next(matte_shot(read, [0, 1, 2], {0: Key("mask", alphas[0])}, settings=ShotSettings(workers=-1)))


@pytest.mark.parametrize("workers, lookahead", [(0, 0), (2, 2)], ids=["in the walk's thread", "two threads ahead"])
def test_solving_ahead_on_threads_gives_the_same_mattes_bit_for_bit(small_shot, roto_run, workers, lookahead):
    """The independent solves on worker threads ahead of the walk (the default: one thread, one frame ahead) or in
    the walk's own thread: the same alphas and foregrounds, with an animated roto and with sparse keys."""
    read = small_shot.frames.__getitem__
    frames = range(len(small_shot))
    settings = ShotSettings(foreground=False, workers=workers, lookahead=lookahead)
    roto = {t: Key("trimap", small_shot.trimap(t)) for t in frames}
    for default, other in zip(roto_run, matte_shot(read, frames, roto, settings=settings)):
        assert np.array_equal(default.alpha, other.alpha) and np.array_equal(default.independent, other.independent)
    sparse = {t: Key("trimap", small_shot.trimap(t)) for t in (0, 8)}
    default = list(matte_shot(read, frames, sparse, outputs=[2, 3, 4]))
    other = list(matte_shot(read, frames, sparse, outputs=[2, 3, 4],
                            settings=replace(settings, foreground=True)))
    for a, b in zip(default, other):
        assert np.array_equal(a.alpha, b.alpha) and np.array_equal(a.foreground, b.foreground), a.frame


def test_an_abandoned_shot_leaves_no_solve_running(small_shot):
    """Frames are read and solved radius + lookahead ahead of the frame being steadied; closing the iterator
    mid-shot (a cancelled render) waits for the solves under way and ends their threads."""
    keys = {t: Key("trimap", small_shot.trimap(t)) for t in range(len(small_shot))}
    read = []
    before = set(threading.enumerate())
    shots = matte_shot(lambda f: read.append(f) or small_shot.frames[f], range(len(small_shot)), keys,
                       settings=ShotSettings(foreground=False, workers=2, lookahead=2))
    assert next(shots).frame == 0 and read == [0, 1, 2, 3, 4]
    solving = [thread for thread in set(threading.enumerate()) - before if thread.name.startswith("shot-solve")]
    assert solving
    shots.close()
    assert not any(thread.is_alive() for thread in solving)


def test_video_metrics_against_hand_computations():
    rng = np.random.default_rng(0)
    gt = [rng.random((16, 16)).astype(np.float32) for _ in range(3)]
    assert ev.dtssd(gt[1], gt[0], gt[1], gt[0]) == 0.0
    offset = [g + 0.1 for g in gt]  # a constant error does not flicker
    assert ev.dtssd(offset[1], offset[0], gt[1], gt[0]) == pytest.approx(0.0, abs=1e-4)
    flicker = [gt[0] + 0.1, gt[1] - 0.1]  # the error jumps by 0.2 everywhere
    assert ev.dtssd(flicker[1], flicker[0], gt[1], gt[0]) == pytest.approx(20.0, rel=1e-5)
    zero_flow = np.zeros((16, 16, 2), np.float32)
    # squared errors 0.01 then 0.04 at every pixel: |0.04 - 0.01| x 1000 = 30
    assert ev.messddt(gt[1] + 0.2, gt[0] + 0.1, gt[1], gt[0], flow=zero_flow) == pytest.approx(30.0, rel=1e-4)
    metrics = ev.video_metrics(offset, gt, [np.ones((16, 16), bool)] * 3)
    assert metrics["dtssd"] == pytest.approx(0.0, abs=1e-4) and metrics["sad"] == pytest.approx(0.0256, rel=1e-4)
    with pytest.raises(ValueError, match="equally long"):
        ev.video_metrics(offset, gt[:2], [np.ones((16, 16), bool)] * 3)


def _render(tmp_path, *extra):
    cmd = [sys.executable, "-m", "mattebox", "render", str(tmp_path / "plate.####.png"), "--frames", "1-6",
           "--alpha", str(tmp_path / "out" / "alpha.####.png"), "--foreground",
           str(tmp_path / "out" / "fg.####.png"), *extra]
    return subprocess.run(cmd, env=tree_env(), capture_output=True, text=True, timeout=600)


def test_render_a_shot_from_one_key_mask_in_chunks(tmp_path):
    frames, alphas = moving_disc(length=6)
    for t, image in enumerate(frames, start=1):
        write_png(str(tmp_path / f"plate.{t:04d}.png"), linear_to_srgb(image))
    write_png(str(tmp_path / "roto.png"), (alphas[0] >= 0.5).astype(np.float32))
    key = ["--key-mask", f"1={tmp_path / 'roto.png'}", "--band-width", "8"]
    first = _render(tmp_path, *key, "--chunk", "1/2")
    assert first.returncode == 0, first.stderr
    second = _render(tmp_path, *key, "--chunk", "2/2")
    assert second.returncode == 0, second.stderr
    assert "propagated:1" in second.stdout and "rendered 3" in second.stdout
    alpha6 = read_gray(str(tmp_path / "out" / "alpha.0006.png"))
    assert np.abs(alpha6 - alphas[5]).mean() < 0.03  # the disc was followed to the last frame
    whole_before = {t: (tmp_path / "out" / f"alpha.{t:04d}.png").read_bytes() for t in range(1, 7)}
    again = _render(tmp_path, *key)  # nothing changed: every frame is up to date
    assert again.returncode == 0 and "up to date 6" in again.stdout, again.stdout
    whole = _render(tmp_path, *key, "--force")  # one whole-shot render gives the chunks' files exactly
    assert whole.returncode == 0, whole.stderr
    assert all((tmp_path / "out" / f"alpha.{t:04d}.png").read_bytes() == whole_before[t] for t in range(1, 7))
    record = json.loads((tmp_path / "out" / "alpha.0003.png.json").read_text())
    assert record["info"]["engine"] == "classical-shot"


def test_render_shot_refuses_bad_keys_with_clear_errors(tmp_path):
    frames, _ = moving_disc(length=2)
    for t, image in enumerate(frames, start=1):
        write_png(str(tmp_path / f"plate.{t:04d}.png"), linear_to_srgb(image))
    bad = subprocess.run([sys.executable, "-m", "mattebox", "render", str(tmp_path / "plate.####.png"), "--frames",
                          "1-2", "--alpha", str(tmp_path / "a.####.png"), "--key-mask", "7=x.png"],
                         env=tree_env(), capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "frame 7 is not in --frames 1-2" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "mattebox", "render", str(tmp_path / "plate.####.png"), "--frames",
                          "1-2", "--alpha", str(tmp_path / "a.####.png"), "--key-trimap", "one=x.png"],
                         env=tree_env(), capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "expected FRAME=PATH" in bad.stderr and "Traceback" not in bad.stderr
