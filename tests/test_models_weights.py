"""Weights files (safetensors + sha256), engine availability without weights, the learned engines end to end
with tiny models (tiling, progress, cancellation), the model LRU and the torch-free ``mattebox models``."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from mattebox.contract import JobCancelled, MatteRequest  # noqa: E402
from mattebox.engines import learned  # noqa: E402
from mattebox.models import registry  # noqa: E402
from mattebox.models.weights import (WeightsError, export_weights, load_spec_weights, load_weights,  # noqa: E402
                                     save_weights, sha256_file, weights_status)


@pytest.fixture(autouse=True)
def models_dir(tmp_path, monkeypatch, one_torch_thread):
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("MATTEBOX_MODELS", str(folder))
    learned.MODEL_CACHE.clear()
    yield folder
    learned.MODEL_CACHE.clear()


def tiny_model(name="parallax", seed=0):
    torch.manual_seed(seed)
    return registry.build(name, tiny=True).eval()


def test_save_and_load_round_trip_with_hash(tmp_path):
    model = tiny_model()
    path = tmp_path / "w.safetensors"
    digest = save_weights(model, path)
    assert digest == sha256_file(path) and len(digest) == 64
    other = tiny_model(seed=1)
    load_weights(other, path, digest)
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), k


def test_missing_file_names_the_file_and_expected_hash(tmp_path):
    with pytest.raises(WeightsError, match=r"nope\.safetensors is missing \(expected sha256 ab12"):
        load_weights(tiny_model(), tmp_path / "nope.safetensors", "ab12" * 16)


def test_corrupt_file_names_the_file_and_both_hashes(tmp_path):
    path = tmp_path / "w.safetensors"
    digest = save_weights(tiny_model(), path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=rf"w\.safetensors is corrupt .*expected {digest}"):
        load_weights(tiny_model(), path, digest)


def test_unreadable_file_without_hash_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"not a safetensors file at all")
    with pytest.raises(WeightsError, match="junk.safetensors is not a readable safetensors file"):
        load_weights(tiny_model(), path)


def test_exported_weights_make_the_engine_available_and_load(models_dir):
    spec = registry.get_spec("parallax")
    engine = learned.ParallaxEngine()
    ok, why = engine.availability()
    assert not ok and "parallax.safetensors" in why
    model = registry.build("parallax", tiny=True)
    export_weights(model, models_dir / "parallax.safetensors")
    assert weights_status(spec)[0] and engine.availability() == (True, "")
    fresh = registry.build("parallax", tiny=True)
    load_spec_weights(fresh, spec)  # verified through the .sha256 sidecar
    (models_dir / "parallax.safetensors.sha256").write_text("0" * 64 + "  parallax.safetensors\n")
    with pytest.raises(WeightsError, match="corrupt"):
        load_spec_weights(fresh, spec)


def test_weights_of_the_wrong_architecture_are_refused_with_the_file_name(models_dir):
    export_weights(registry.build("mask2alpha", tiny=True), models_dir / "parallax.safetensors")
    with pytest.raises(WeightsError, match="does not fit model 'parallax'"):
        load_spec_weights(registry.build("parallax", tiny=True), registry.get_spec("parallax"))


class TinyParallax(learned.ParallaxEngine):
    tiny = True


class TinyMask2Alpha(learned.Mask2AlphaEngine):
    tiny = True


def disc_request(size=(96, 160), **params):
    h, w = size
    ys, xs = np.mgrid[:h, :w]
    alpha = np.clip(1.0 - (np.hypot(ys - h / 2, xs - w / 2) - 30) / 5, 0, 1).astype(np.float32)
    image = (alpha[..., None] * np.array([0.8, 0.3, 0.2]) + (1 - alpha[..., None]) * 0.1).astype(np.float32)
    params.setdefault("tile", 64)
    return MatteRequest(image=image, mask=(alpha > 0.5).astype(np.float32), params=params)


@pytest.mark.parametrize("engine_class", [TinyParallax, TinyMask2Alpha])
def test_learned_engine_mattes_through_the_contract_with_tiles(engine_class):
    reports = []
    result = engine_class().matte(disc_request(), lambda stage, done=0, total=0, message="": reports.append(
        (stage, done, total)))
    assert result.alpha.shape == (96, 160) and result.foreground.shape == (96, 160, 3)
    assert result.info["tile"] == 64 and result.info["device"] == "cpu" and result.info["autocast"] == "off"
    tiles = [r for r in reports if r[0] == "tiles"]
    assert tiles and tiles[-1][1] == tiles[-1][2] and len(tiles) == tiles[-1][2]
    if engine_class is TinyParallax:  # known trimap regions are exact
        assert result.alpha[0, 0] == 0.0 and result.alpha[48, 80] == 1.0


def test_learned_engine_survives_running_out_of_device_memory():
    """A model that runs out of memory above one tile per batch: the engine still mattes, with the same alpha as
    one tile at a time, and reports the batch it really used."""
    import torch

    class OutOfMemoryAboveOne(TinyMask2Alpha):
        def model(self, device, resolved=None):
            inner = super().model(device)

            def forward(**tensors):
                if next(iter(tensors.values())).shape[0] > 1:
                    raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
                return inner(**tensors)
            return forward

    squeezed = OutOfMemoryAboveOne().matte(disc_request(tile_batch=4))
    reference = TinyMask2Alpha().matte(disc_request(tile_batch=1))
    assert squeezed.info["tile_batch"] == 1
    np.testing.assert_allclose(squeezed.alpha, reference.alpha, atol=1e-6)


def test_cancel_between_tiles_stops_the_job():
    seen = []

    def progress(stage, done=0, total=0, message=""):
        if stage == "tiles":
            seen.append(done)
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        TinyMask2Alpha().matte(disc_request(tile_batch=1), progress)
    assert seen == [1]


def test_lru_evicts_least_recently_used_above_the_cap():
    cache = learned.ModelCache(cap_bytes=1)
    a = cache.get(("a", "cpu"), lambda: tiny_model("parallax"))
    cache.get(("b", "cpu"), lambda: tiny_model("mask2alpha"))
    assert cache.keys() == [("b", "cpu")]  # the newest always stays, even alone above the cap
    big = learned.ModelCache(cap_bytes=1 << 30)
    assert big.get(("a", "cpu"), lambda: a) is a and big.get(("a", "cpu"), lambda: None) is a
    big.get(("b", "cpu"), lambda: tiny_model("mask2alpha"))
    big.get(("a", "cpu"), lambda: None)
    assert big.keys() == [("b", "cpu"), ("a", "cpu")]
    big.cap_bytes = big.total_bytes - 1
    big.get(("c", "cpu"), lambda: tiny_model("ppmatting"))
    assert ("b", "cpu") not in big.keys() and ("c", "cpu") in big.keys()


def test_engines_are_offered_and_report_why_they_are_unavailable():
    from mattebox import engines

    rows = {row["name"]: row for row in engines.describe_all()}
    for name in ("parallax", "ppmatting", "mask2alpha", "vitmatte"):
        assert rows[name]["kind"] == "learned" and rows[name]["available"] is False and rows[name]["why"]


def test_models_listing_needs_no_torch(models_dir):
    code = ("import sys, argparse; from mattebox.models import cli; p = argparse.ArgumentParser(); "
            "cli.add_arguments(p); cli.run(p.parse_args(['--json'])); assert 'torch' not in sys.modules")
    from tests.conftest import tree_env

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=tree_env(), check=True)
    listing = json.loads(out.stdout)
    assert {m["name"] for m in listing["models"]} >= {"parallax", "ppmatting", "mask2alpha", "vitmatte"}
    assert listing["models_dir"] == str(models_dir)
    assert all(m["weights_present"] is False for m in listing["models"])


def test_vitmatte_tiny_config_saved_to_disk_reloads_and_serves(models_dir):
    pytest.importorskip("transformers")
    from mattebox.models.vitmatte import load_vitmatte
    from mattebox.models.weights import sha256_file as digest

    torch.manual_seed(9)
    model = load_vitmatte("tiny").eval()
    folder = models_dir / "vitmatte"
    model.hf.save_pretrained(str(folder))
    engine = learned.ViTMatteEngine()
    assert engine.availability() == (True, "")
    reloaded = load_vitmatte(folder=folder).eval()
    image, trimap = torch.randn(1, 3, 64, 64), torch.full((1, 1, 64, 64), 0.5)
    with torch.no_grad():
        assert torch.equal(model(image, trimap)["alpha"], reloaded(image, trimap)["alpha"])
    result = engine.matte(disc_request(size=(64, 96), tile=64))
    assert result.alpha.shape == (64, 96) and result.info["model"] == "vitmatte"
    (folder / "model.safetensors.sha256").write_text(digest(folder / "model.safetensors"))
    load_vitmatte(folder=folder)
    (folder / "model.safetensors.sha256").write_text("f" * 64)
    with pytest.raises(WeightsError, match="model.safetensors is corrupt"):
        load_vitmatte(folder=folder)
    (folder / "config.json").unlink()
    with pytest.raises(WeightsError, match="needs config.json"):
        load_vitmatte(folder=folder)


def test_split_qkv_filter_loads_separate_projection_checkpoints(tmp_path):
    from mattebox.models.weights import split_qkv

    model = tiny_model("parallax")
    foreign = {}
    for key, value in model.state_dict().items():
        if ".attn.qkv." in key:
            stem, kind = key.split(".qkv.")
            for name, part in zip("qkv", value.chunk(3, 0)):
                foreign[f"{stem}.{name}.{kind}"] = part
        else:
            foreign[key] = value
    path = tmp_path / "separate.safetensors"
    digest = save_weights(foreign, path)
    target = tiny_model("parallax", seed=3)
    load_weights(target, path, digest, checkpoint_filter=split_qkv)
    for key, value in model.state_dict().items():
        assert torch.equal(value, target.state_dict()[key]), key


def test_parallax_engine_feeds_the_two_frame_alignment_to_the_net(monkeypatch):
    """With a second frame the engine calls the real mattebox.matting.align.align_pair(image, second, trimap) and
    passes its background-/foreground-aligned views, companion and warped trimap to the net."""
    from mattebox.matting import align

    calls = []
    real_align = align.align_pair

    def align_pair(image, second, trimap):
        calls.append((image.shape, second.shape, trimap.shape))
        return real_align(image, second, trimap)

    monkeypatch.setattr(align, "align_pair", align_pair)
    request = disc_request()
    request.second = np.roll(request.image, 3, axis=1)
    seen = {}
    engine = TinyParallax()
    original = engine.model

    def spy_model(device, resolved=None):
        model = original(device, resolved)

        def forward(**tensors):
            seen.update({k: getattr(v, "shape", v) for k, v in tensors.items()})
            return model(**tensors)
        return forward

    monkeypatch.setattr(engine, "model", spy_model)
    result = engine.matte(request)
    assert calls == [((96, 160, 3), (96, 160, 3), (96, 160))]
    assert set(seen) == {"image", "bg_aligned", "trimap", "fg_aligned", "companion", "warped_trimap", "predict_aux"}
    assert result.alpha.shape == (96, 160)


def test_a_trimap_without_unknown_pixels_runs_no_tile():
    request = disc_request()
    request.trimap = (request.mask > 0.5).astype(np.float32)
    request.mask = None
    stages = []
    result = TinyParallax().matte(request, lambda stage, done=0, total=0, message="": stages.append(stage))
    assert "tiles" not in stages and np.array_equal(result.alpha, request.trimap)


def test_tile_overlap_is_used_and_checked_against_the_tile():
    """params.tile_overlap reaches the tiler (another overlap, another merge) and one not below the tile size is
    refused naming the param, through the server's mapping of engine refusals (contract.InputError)."""
    from mattebox.contract import InputError

    half = TinyMask2Alpha().matte(disc_request(tile=64, tile_overlap=-1))
    small = TinyMask2Alpha().matte(disc_request(tile=64, tile_overlap=8))
    assert small.info["tile"] == 64 and not np.array_equal(half.alpha, small.alpha)
    with pytest.raises(InputError) as err:
        TinyMask2Alpha().matte(disc_request(tile=64, tile_overlap=64))
    assert err.value.field == "params.tile_overlap"
