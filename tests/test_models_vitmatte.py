"""ViTMatte from Hugging Face: the engine's untiled output equals transformers' VitMatteForImageMatting fed by
VitMatteImageProcessor on the same (random, tiny) weights; the published small/base configs build with the
published weight files' parameter counts."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mattebox.contract import MatteRequest  # noqa: E402
from mattebox.engines import learned  # noqa: E402
from mattebox.models import vitmatte  # noqa: E402


class TinyViTMatte(learned.ViTMatteEngine):
    tiny = True


@pytest.fixture(autouse=True)
def empty_models_and_cache(tmp_path, monkeypatch, one_torch_thread):
    monkeypatch.setenv("MATTEBOX_MODELS", str(tmp_path / "models"))
    learned.MODEL_CACHE.clear()
    yield
    learned.MODEL_CACHE.clear()


def reference_alpha(hf_model, image_srgb: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """transformers' own pipeline: VitMatteImageProcessor (defaults: rescale 1/255, normalise mean = std = 0.5,
    pad to a multiple of 32) -> VitMatteForImageMatting -> crop to the input size. The processor is given 0..255
    values, the trimap as 0 / 127.5 / 255 so that its 1/255 rescale yields 0 / 0.5 / 1."""
    processor = transformers.VitMatteImageProcessor()
    inputs = processor(images=image_srgb * 255.0, trimaps=trimap * 255.0, return_tensors="pt")
    assert inputs["pixel_values"].shape[-2] % 32 == 0 and inputs["pixel_values"].shape[-1] % 32 == 0
    with torch.no_grad():
        alphas = hf_model(**inputs).alphas
    h, w = trimap.shape
    return alphas[0, 0, :h, :w].numpy()


@pytest.mark.parametrize("size", [(64, 96), (75, 101)])
def test_untiled_engine_equals_transformers_pipeline(size):
    rng = np.random.default_rng(1)
    h, w = size
    ys, xs = np.mgrid[:h, :w]
    disc = np.hypot(ys - h / 2, xs - w / 2)
    image = np.clip(rng.random((h, w, 3)) * 0.3 + (disc < 20)[..., None] * np.array([0.6, 0.3, 0.1]), 0, 1)
    trimap = np.where(disc < 14, 1.0, np.where(disc > 26, 0.0, 0.5)).astype(np.float32)
    engine = TinyViTMatte()
    hf = engine.model(torch.device("cpu")).hf  # the engine's cached model: randomise it so its output varies
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for tensor in list(hf.parameters()) + [b for b in hf.buffers() if b.is_floating_point()]:
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.2)
        for name, buffer in hf.named_buffers():
            if name.endswith("running_var"):  # variances stay positive
                buffer.uniform_(0.5, 1.5, generator=generator)
    request = MatteRequest(image=image.astype(np.float32), trimap=trimap, params={"tile": -1})
    result = engine.matte(request)
    expected = reference_alpha(hf, request.image_srgb, trimap)
    unknown = trimap == 0.5
    assert unknown.sum() > 1000 and expected[unknown].std() > 1e-3  # a real, varying prediction is compared
    np.testing.assert_allclose(result.alpha[unknown], expected[unknown], atol=1e-5)
    np.testing.assert_array_equal(result.alpha[~unknown], trimap[~unknown])  # known pixels keep the trimap
    # all-unknown trimap: every pixel is the network's
    everything = engine.matte(MatteRequest(image=image.astype(np.float32), trimap=np.full(size, 0.5, np.float32),
                                           params={"tile": -1}))
    np.testing.assert_allclose(everything.alpha, reference_alpha(hf, request.image_srgb,
                                                                 np.full(size, 0.5, np.float32)), atol=1e-5)
    assert everything.info["tile"] == -1


@pytest.mark.parametrize("variant", ["small", "base"])
def test_published_configs_build_with_the_published_parameter_counts(variant):
    with torch.device("meta"):
        model = vitmatte.load_vitmatte(variant)
    params = sum(p.numel() for p in model.parameters())
    assert params == vitmatte.PUBLISHED_PARAMS[variant]
    fp32_bytes = 4 * (params + sum(b.numel() for b in model.buffers() if b.is_floating_point()))
    if variant == "small":  # hustvl/vitmatte-small-*: 25.8M parameters, a 103 MB fp32 model.safetensors
        assert round(params / 1e6, 1) == 25.8 and 103.0e6 < fp32_bytes < 103.5e6
    else:  # ViTMatte-B: a 387 MB fp32 file
        assert 386e6 < fp32_bytes < 388e6
    config = vitmatte.vitmatte_config(variant)
    assert config.backbone_config.window_block_indices == [0, 1, 3, 4, 6, 7, 9, 10]
    assert config.backbone_config.residual_block_indices == [2, 5, 8, 11]
    assert config.backbone_config.window_size == 14 and config.backbone_config.num_channels == 4


def test_wrapper_keys_map_hugging_face_state_dicts_onto_the_engine_model():
    model = vitmatte.load_vitmatte("tiny")
    hf_state = {k: v for k, v in model.hf.state_dict().items() if not k.endswith("num_batches_tracked")}
    mapped = vitmatte.wrapper_keys(hf_state)
    assert set(mapped) == set(model.state_dict())
    model.load_state_dict(mapped)  # strict


def test_a_real_server_mattes_with_installed_weights_and_the_protocol_defaults(tmp_path, server_process):
    """Through the wire the protocol fills ``tile: 0``, which must mean 'choose', and ``weights`` names installed
    weights; hello says which engines are installed."""
    from mattebox_plugin.client import Client, JobFailed

    models = tmp_path / "models"
    torch.manual_seed(0)
    vitmatte.load_vitmatte("tiny").hf.save_pretrained(str(models / "vitmatte"))
    server = server_process(env={"MATTEBOX_MODELS": str(models), "OMP_NUM_THREADS": "1"})
    h, w = 80, 120
    ys, xs = np.mgrid[:h, :w]
    disc = np.hypot(ys - h / 2, xs - w / 2)
    trimap = np.where(disc < 20, 1.0, np.where(disc > 32, 0.0, 0.5)).astype(np.float32)
    image = np.random.default_rng(0).random((h, w, 3)).astype(np.float32)
    with Client(server.endpoint, timeout=60) as client:
        engines = {e["name"]: e for e in client.hello()["engines"]}
        assert engines["vitmatte"]["available"] and "get" not in engines["vitmatte"]
        assert engines["ppmatting"]["get"] == "mattebox models pull ppmatting-hrnet_w48-composition"
        result = client.submit(image=image, trimap=trimap, params={"engine": "vitmatte"}).result(timeout=120)
        assert result.alpha.shape == (h, w) and result.info["tile"] == 512 and result.info["weights"] == "vitmatte"
        with pytest.raises(JobFailed, match="weights 'vitmatte-base-composition-1k' are not installed"):
            client.submit(image=image, trimap=trimap, params={"engine": "vitmatte",
                                                              "weights": "vitmatte-base-composition-1k"}
                          ).result(timeout=120)
