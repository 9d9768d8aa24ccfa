"""Segmentation-network guidance: the real torch loader with weights this test creates, and the fallback."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mattebox.contract import MatteRequest
from mattebox.engines.classical import ClassicalEngine
from tests.conftest import tree_env

torch = pytest.importorskip("torch")
from mattebox.matting import segmentation  # noqa: E402


def save_weights(path, head_bias: float, seed: int = 0):
    """A state dict of the real network, randomly initialised, with the head forced to a constant logit."""
    torch.manual_seed(seed)
    net = segmentation.build_network()
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    state["head.weight"].zero_()
    state["head.bias"].fill_(head_bias)
    np.savez(path, **{k: v.numpy() for k, v in state.items()})
    return state


@pytest.fixture
def scene():
    rng = np.random.default_rng(0)
    return rng.random((40, 56, 3)).astype(np.float32)


@pytest.mark.parametrize("bias, expected", [(8.0, 1.0), (-8.0, 0.0)])
def test_installed_weights_drive_the_automatic_mask(tmp_path, monkeypatch, scene, bias, expected):
    weights = tmp_path / "classical-segmentation.npz"
    save_weights(weights, bias)
    monkeypatch.setenv("MATTEBOX_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv(segmentation.WEIGHTS_ENV, str(weights))
    result = ClassicalEngine().matte(MatteRequest(image=scene))
    assert result.info["guidance"] == "auto:segmentation"
    np.testing.assert_array_equal(result.trimap, expected)
    np.testing.assert_array_equal(result.alpha, expected)


def test_loader_restores_every_tensor_and_the_mask_has_the_input_shape(tmp_path, scene):
    weights = tmp_path / "w.npz"
    state = save_weights(weights, 0.0, seed=3)
    net = segmentation.load_segmenter(weights)
    for name, value in net.state_dict().items():
        torch.testing.assert_close(value, state[name])
    pt = tmp_path / "w.pt"
    torch.save(state, pt)
    assert segmentation.load_segmenter(pt) is not None
    mask = segmentation.segmentation_mask(scene, weights)
    assert mask.shape == scene.shape[:2] and mask.dtype == np.float32
    np.testing.assert_allclose(mask, 0.5, atol=1e-6)  # zero head -> sigmoid(0)


def test_mismatched_weights_name_the_file(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{"head.weight": np.zeros((1, 3, 1, 1), np.float32)})
    with pytest.raises(ValueError, match="bad.npz"):
        segmentation.load_segmenter(bad)


def test_without_weights_grabcut_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("MATTEBOX_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv(segmentation.WEIGHTS_ENV, raising=False)
    assert segmentation.weights_path() is None


def test_classical_engine_import_does_not_import_torch():
    code = ("import sys; from mattebox.engines import get; get('classical'); "
            "import mattebox.matting.segmentation; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=tree_env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
