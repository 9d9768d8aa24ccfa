"""Every registry entry's TINY variant: shapes and ranges, eval determinism, gradients reach every parameter,
a few optimiser steps on one synthetic sample lower the loss, a checkpoint of another layout loads through a
filter function. Full configs' parameter counts are checked on the meta device (no memory)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from mattebox.models import registry  # noqa: E402
from mattebox.models.vit import count_parameters  # noqa: E402
from mattebox.models.weights import load_weights, rename_prefixes, save_weights  # noqa: E402



pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


MODELS = [spec.name for spec in registry.list_models()]
if "vitmatte" in MODELS:
    pytest.importorskip("transformers")

#: input name -> channels (colour inputs are normalised images, the rest guidance maps)
CHANNELS = {"image": 3, "bg_aligned": 3, "fg_aligned": 3, "companion": 3, "trimap": 1, "warped_trimap": 1, "mask": 1}


def synthetic_sample(spec, batch=2, size=(64, 96), seed=0):
    """Inputs for the spec's forward and a target alpha: a soft disc on a textured background."""
    gen = torch.Generator().manual_seed(seed)
    h, w = size
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    alpha = (1.0 - ((xs ** 2 + ys ** 2).sqrt() - 0.5) / 0.15).clamp(0, 1).expand(batch, 1, h, w).contiguous()
    inputs = {}
    for name in spec.inputs:
        if CHANNELS[name] == 3:
            inputs[name] = torch.randn(batch, 3, h, w, generator=gen) * 0.5 + alpha
        elif name == "mask":
            inputs[name] = (alpha > 0.5).float()
        else:  # trimaps
            inputs[name] = torch.where(alpha >= 1, 1.0, torch.where(alpha <= 0, 0.0, 0.5))
    return inputs, alpha


def training_loss(name, out, alpha):
    loss = F.l1_loss(out["alpha"], alpha)
    if name == "parallax":
        premultiplied = alpha * 0.7  # a grey foreground, premultiplied (parallax sec. 4.4 supervises αF)
        loss = loss + F.l1_loss(out["aux_alpha"], alpha)
        loss = loss + F.l1_loss(out["foreground"], premultiplied.expand(-1, 3, -1, -1))
    if name == "ppmatting":  # semantic CE over bg/transition/fg and detail L1 (pp-matting sec. 3.2)
        classes = torch.where(alpha >= 1, 2, torch.where(alpha <= 0, 0, 1)).squeeze(1).long()
        loss = loss + F.cross_entropy(out["semantic"], classes) + F.l1_loss(out["detail"], alpha)
    if name == "mask2alpha":  # confidence supervised by 1 − |α_p − α_g| (mask2alpha sec. 3.2)
        low = F.interpolate(alpha, size=out["alpha_low"].shape[-2:], mode="bilinear", align_corners=False)
        loss = loss + F.l1_loss(out["alpha_low"], low) + F.l1_loss(
            out["confidence"], 1 - (out["alpha_low"] - low).abs().detach())
    return loss


def tiny_model(name, seed, train=False):
    """(model, inputs, target alpha): the registry's tiny config of ``name``, seeded, in train or eval mode, and
    a synthetic batch of 2 for it."""
    torch.manual_seed(seed)
    model = registry.build(name, tiny=True).train(train)
    inputs, alpha = synthetic_sample(registry.get_spec(name))
    return model, inputs, alpha


@pytest.mark.parametrize("name", MODELS)
def test_outputs_have_input_size_and_unit_range(name):
    model, inputs, _ = tiny_model(name, seed=0, train=False)
    with torch.no_grad():
        out = model(**inputs)
    assert "alpha" in out
    for key in ("alpha", "foreground", "aux_alpha", "detail", "active"):
        if key in out:
            assert out[key].shape[-2:] == (64, 96) and out[key].shape[0] == 2, key
            assert torch.isfinite(out[key]).all() and out[key].min() >= 0 and out[key].max() <= 1, key
    assert out["alpha"].shape == (2, 1, 64, 96)


@pytest.mark.parametrize("name", MODELS)
def test_eval_is_deterministic(name):
    model, inputs, _ = tiny_model(name, seed=1, train=False)
    with torch.no_grad():
        first, second = model(**inputs)["alpha"], model(**inputs)["alpha"]
    assert torch.equal(first, second)


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_parameter(name):
    model, inputs, alpha = tiny_model(name, seed=2, train=True)
    training_loss(name, model(**inputs), alpha).backward()
    if name == "vitmatte":  # ViTDet zero-initialises each residual block's last norm (transformers' VitDet, as
        # detectron2): the branch behind it gets gradients from the second step on
        torch.optim.SGD(model.parameters(), lr=0.1).step()
        model.zero_grad()
        training_loss(name, model(**inputs), alpha).backward()
    # parameters a published architecture holds but never uses (PP-Matting: HRNet outputs PaddleSeg drops)
    unused = tuple(getattr(model, "unused_parameters", ()))
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())
               and not n.startswith(unused)]
    assert not missing, f"no gradient reaches {missing}"


@pytest.mark.parametrize("name", MODELS)
def test_overfitting_one_sample_lowers_the_loss(name):
    model, inputs, alpha = tiny_model(name, seed=3, train=True)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        optimiser.zero_grad()
        loss = training_loss(name, model(**inputs), alpha)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert min(losses[-3:]) < 0.8 * losses[0], losses


@pytest.mark.parametrize("name", MODELS)
def test_foreign_checkpoint_layout_loads_through_a_filter(name, tmp_path):
    """A DDP-style checkpoint ('module.' + 'net.' prefixes) loads through rename_prefixes; outputs match."""
    spec = registry.get_spec(name)
    torch.manual_seed(4)
    source = registry.build(name, tiny=True).eval()
    foreign = {"module.net." + key: value for key, value in source.state_dict().items()}
    path = tmp_path / "foreign.safetensors"
    digest = save_weights(foreign, path)
    torch.manual_seed(5)
    target = registry.build(name, tiny=True).eval()
    with pytest.raises(RuntimeError):  # the raw layout does not fit
        load_weights(target, path, digest)
    load_weights(target, path, digest, checkpoint_filter=rename_prefixes({"module.net.": ""}))
    inputs, _ = synthetic_sample(spec, batch=1)
    with torch.no_grad():
        assert torch.equal(source(**inputs)["alpha"], target(**inputs)["alpha"])


def test_parallax_full_config_has_the_papers_parameter_count():
    """Parallax paper sec. 5.1: two ViT-S + ViTMatte head, 38.6M parameters in total."""
    with torch.device("meta"):
        model = registry.build("parallax")
    count = count_parameters(model)
    assert abs(count - 38.6e6) / 38.6e6 < 0.02, count
    assert count == registry.get_spec("parallax").full_params


@pytest.mark.parametrize("name", MODELS)
def test_registry_full_params_match_the_built_model(name):
    with torch.device("meta"):
        model = registry.build(name)
    assert count_parameters(model) == registry.get_spec(name).full_params


def test_ppmatting_full_config_is_paddlesegs_hrnet_w48():
    """PaddleSeg's published count for PP-Matting HRNet-W48 is 86.3M; Paddle counts BatchNorm statistics too."""
    with torch.device("meta"):
        model = registry.build("ppmatting")
    assert model.backbone.widths == [48, 96, 192, 384]
    statistics = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    assert count_parameters(model) + statistics == 86_292_842


def test_mask2alpha_region_weights_follow_the_mask():
    from mattebox.models.mask2alpha import region_relevance

    mask = torch.zeros(1, 1, 32, 48)
    mask[..., :, :16] = 1  # first patch column foreground
    mask[..., :16, 16:20] = 1  # an edge patch
    rel = region_relevance(mask, 16).view(2, 3)
    assert rel[:, 0].tolist() == [2.0, 2.0] and rel[:, 2].tolist() == [0.5, 0.5]
    assert rel[0, 1] == 1.0 and rel[1, 1] == 0.5


def test_mask2alpha_sparse_recovery_leaves_confident_pixels_alone():
    """With tau close to 1 no pixel is active: the output is exactly the upsampled low-res alpha."""
    torch.manual_seed(6)
    model = registry.build("mask2alpha", tiny=True, tau=0.999).eval()
    inputs, _ = synthetic_sample(registry.get_spec("mask2alpha"), batch=1)
    with torch.no_grad():
        out = model(**inputs)
    up = F.interpolate(out["alpha_low"], size=(64, 96), mode="bilinear", align_corners=False).clamp(0, 1)
    assert out["active"].sum() == 0 and torch.equal(out["alpha"], up)


def test_mask2alpha_loads_a_dino_style_checkpoint_from_scratch_layout():
    from mattebox.models.mask2alpha import dino_checkpoint_filter

    torch.manual_seed(7)
    model = registry.build("mask2alpha", tiny=True)
    enc = model.encoder.state_dict()
    dino = {k: torch.randn_like(v) for k, v in enc.items()}
    dino["patch_embed.proj.weight"] = torch.randn(32, 3, 16, 16)
    dino["pos_embed"] = torch.randn(1, 197, 32)
    dino["head.weight"] = torch.randn(10, 32)
    result = model.load_state_dict(dino_checkpoint_filter(dino), strict=False)
    assert not result.unexpected_keys and all(not k.startswith("encoder.") for k in result.missing_keys)
    weight = model.encoder.patch_embed.proj.weight
    assert torch.equal(weight[:, :3], dino["patch_embed.proj.weight"]) and not weight[:, 3].any()


def test_parallax_runs_single_frame_without_the_foreground_cue():
    torch.manual_seed(8)
    model = registry.build("parallax", tiny=True).eval()
    image = torch.randn(1, 3, 32, 48)
    trimap = torch.full((1, 1, 32, 48), 0.5)
    with torch.no_grad():
        out = model(image, image, trimap, predict_aux=False)
    assert set(out) == {"alpha", "foreground"}
    with pytest.raises(ValueError, match="trimap must be B×1×H×W"):
        model(image, image, image)
    with pytest.raises(ValueError, match="companion"):
        model(image, image, trimap, fg_aligned=image)
