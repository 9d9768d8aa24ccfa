"""One model-input definition for training and inference (mattebox.models.inputs, issue #19 item 2): the learned
engines and the trainer must hand a model the same tensors for the same pixels."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mattebox.engines.learned import ENGINES  # noqa: E402
from mattebox.models import registry  # noqa: E402
from mattebox.models.inputs import model_inputs, module_inputs, normalisation  # noqa: E402
from mattebox.training.trainer import build_model  # noqa: E402

TRAINED_LIKE_SERVED = ["parallax", "mask2alpha"] + (
    ["vitmatte"] if importlib.util.find_spec("transformers") is not None else [])


def _arrays(seed: int = 0):
    """A request's sRGB image and trimap as a learned engine's prepare returns them (H×W×C)."""
    rng = np.random.default_rng(seed)
    image = rng.random((24, 40, 3), dtype=np.float32)
    trimap = rng.choice(np.array([0.0, 0.5, 1.0], np.float32), size=(24, 40, 1))
    return {"image": image, "trimap": trimap}


def _as_batch(arrays):
    return {k: torch.from_numpy(np.ascontiguousarray(v.transpose(2, 0, 1)))[None] for k, v in arrays.items()}


@pytest.mark.parametrize("name", TRAINED_LIKE_SERVED)
def test_the_engine_and_the_trainer_give_a_model_the_same_inputs(name):
    arrays = _arrays()
    served = ENGINES[name]().model_inputs(arrays)
    trained = module_inputs(build_model(name, {"tiny": True}), _as_batch(arrays), training=False)
    assert sorted(served) == sorted(trained)
    for key, value in served.items():
        np.testing.assert_allclose(value, trained[key][0].numpy().transpose(1, 2, 0), atol=1e-6, err_msg=key)


def test_a_single_frame_request_feeds_the_two_frame_net_its_own_image_as_the_aligned_background():
    inputs = ENGINES["parallax"]().model_inputs(_arrays())
    np.testing.assert_array_equal(inputs["bg_aligned"], inputs["image"])
    assert "fg_aligned" not in inputs and "warped_trimap" not in inputs  # optional: the single-frame case


def test_vitmatte_is_normalised_as_its_image_processor_does_in_training_too():
    """ViTMatte has no weights entry; its 0.5/0.5 normalisation lived only in the engine, so training used
    ImageNet's. Both now read the spec."""
    assert normalisation(registry.get_spec("vitmatte")) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert normalisation(registry.get_spec("parallax")) == (registry.IMAGENET_MEAN, registry.IMAGENET_STD)


def test_ppmatting_normalises_itself_with_the_statistics_training_uses():
    from mattebox.models import ppmatting

    arrays = _arrays()
    served = ENGINES["ppmatting"]().model_inputs(arrays)
    np.testing.assert_array_equal(served["image"], arrays["image"])  # predict normalises after its resize
    assert normalisation(registry.get_spec("ppmatting")) == (tuple(ppmatting.MEAN), tuple(ppmatting.STD))


def test_mask_and_fine_alpha_are_derived_and_a_missing_input_is_named():
    batch = _as_batch({**_arrays(), "alpha": np.full((24, 40, 1), 0.25, np.float32)})
    made = model_inputs(("image", "mask", "fine_alpha"), batch, None, channel_axis=1, training=True)
    assert torch.equal(made["mask"], (batch["trimap"] >= 0.5).float())
    assert torch.equal(made["fine_alpha"], batch["alpha"])
    assert "fine_alpha" not in model_inputs(("image", "fine_alpha"), batch, None, channel_axis=1)
    with pytest.raises(KeyError, match="'second_view'"):
        model_inputs(("image", "second_view"), batch, None, channel_axis=1)
