"""PP-Matting ported from PaddleSeg: numerical parity with PaddleSeg's own model run in paddle (fixture written by
bench/support/make_ppmatting_fixture.py: a reduced-width PP-Matting with seeded random weights, its .pdparams and
its outputs at two input sizes), the key table against the torch model for HRNet-W18 and HRNet-W48, the
restricted unpickler, and whole-frame inference as PaddleSeg's predict does it."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mattebox.models import ppmatting_convert as convert  # noqa: E402
from mattebox.models.ppmatting import Conv2dSame, PPMatting, inference_sizes, predict  # noqa: E402
from mattebox.models.vit import count_parameters  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
PDPARAMS = FIXTURES / "ppmatting_parity.pdparams"
#: PaddleSeg's published sizes (its README / our key table): 24.5M and 86.3M, BatchNorm statistics included
PADDLESEG_PARAMETERS = {"hrnet_w18": 24_547_262, "hrnet_w48": 86_292_842}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def parity():
    data = np.load(FIXTURES / "ppmatting_parity.npz")
    model = PPMatting(**json.loads(str(data["config"]))).eval()
    model.load_state_dict(convert.convert_pdparams(PDPARAMS))  # strict: every key, every shape
    cases = [(data[f"image_{n}"].astype(np.float32), data[f"alpha_{n}"], data[f"detail_{n}"])
             for n in range(len([k for k in data.files if k.startswith("image_")]))]
    return model, cases


def test_fixture_is_small_and_has_two_input_sizes(parity):
    _, cases = parity
    assert len({case[0].shape for case in cases}) == 2
    assert PDPARAMS.stat().st_size + (FIXTURES / "ppmatting_parity.npz").stat().st_size < 1_000_000
    for _, alpha, _ in cases:  # fusion exercised: foreground, background and transition pixels all occur
        assert (alpha == 1).mean() > 0.05 and (alpha == 0).mean() > 0.05 and ((alpha > 0) & (alpha < 1)).mean() > 0.03


def test_alpha_matches_paddleseg_within_1e4_at_two_sizes(parity):
    model, cases = parity
    for image, alpha, _ in cases:
        with torch.no_grad():
            ours = model(torch.from_numpy(image))["alpha"].numpy()
        assert ours.shape == alpha.shape
        assert np.abs(ours - alpha).max() <= 1e-4, image.shape


def test_detail_map_matches_paddleseg_everywhere_in_float64(parity):
    """The detail map over the whole frame, not only where fusion shows it. In float32 this randomly initialised
    net amplifies rounding to ~4e-4 in torch alone (float32 vs float64), so the architecture is compared in
    float64, where torch lands within 4e-5 of paddle's float32."""
    model, cases = parity
    double = PPMatting(**json.loads(str(np.load(FIXTURES / "ppmatting_parity.npz")["config"]))).double().eval()
    double.load_state_dict(model.state_dict())
    for image, _, detail in cases:
        with torch.no_grad():
            ours = double(torch.from_numpy(image).double())["detail"].numpy()
        assert np.abs(ours - detail).max() <= 1e-4, image.shape


def test_symmetric_same_padding_would_break_parity(parity, monkeypatch):
    """The fixture sees Paddle's asymmetric 'same' padding: padding stride-2 convs by 1 on every side (torch's
    usual choice) moves alpha far beyond the tolerance."""
    model, cases = parity

    def symmetric(self, x):
        return torch.nn.functional.conv2d(x, self.weight, self.bias, self.stride, 1, self.dilation, self.groups)

    monkeypatch.setattr(Conv2dSame, "forward", symmetric)
    image, alpha, _ = cases[0]
    with torch.no_grad():
        ours = model(torch.from_numpy(image))["alpha"].numpy()
    assert np.abs(ours - alpha).max() > 1e-2


def test_conv2d_same_pads_like_paddle():
    """Paddle 'same', stride 2, 3×3: an even side pads (0, 1), an odd side (1, 1); output ceil(n / 2)."""
    conv = Conv2dSame(1, 1, 3, 2, 0, bias=False)
    torch.nn.init.ones_(conv.weight)
    with torch.no_grad():
        even = conv(torch.ones(1, 1, 4, 5))
    assert even.shape[-2:] == (2, 3)
    # rows: even height 4 -> taps rows (0..2) and (2..3 + pad); columns: odd width 5 -> (pad, 0, 1), (1..3), (3, 4, pad)
    assert even[0, 0].tolist() == [[6.0, 9.0, 6.0], [4.0, 6.0, 4.0]]


@pytest.mark.parametrize("variant,width", [("hrnet_w18", 18), ("hrnet_w48", 48)])
def test_key_table_matches_the_torch_model_one_to_one(variant, width):
    table = convert.key_table()
    with torch.device("meta"):
        model = PPMatting(**convert.torch_config(variant))
    assert model.backbone.widths[0] == width
    ours = {name: tuple(t.shape) for name, t in model.state_dict().items() if not name.endswith("num_batches_tracked")}
    theirs = {convert.torch_name(name): shape for name, shape in table["shapes"][variant].items()}
    assert ours == theirs
    statistics = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    assert count_parameters(model) + statistics == table["parameters"][variant] == PADDLESEG_PARAMETERS[variant]


def write_pickle(path, obj, protocol=4):
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


class _System:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        import os
        return os.system, (self.command,)


def test_a_pickle_calling_os_system_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "ran"
    path = write_pickle(tmp_path / "evil.pdparams", {"x": _System(f"touch {marker}")})
    with pytest.raises(convert.PdparamsError, match="refusing to load .*system"):
        convert.read_pdparams(path)
    assert not marker.exists()


def test_other_globals_are_refused_too(tmp_path):
    path = write_pickle(tmp_path / "eval.pdparams", {"x": np.float32(1.0)})  # numpy scalar: not an array
    with pytest.raises(convert.PdparamsError, match="refusing to load numpy"):
        convert.read_pdparams(path)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_arrays_and_the_name_map_read_at_every_protocol(tmp_path, protocol):
    arrays = convert.read_pdparams(PDPARAMS)
    data = dict(arrays, **{convert.NAME_MAP_KEY: {name: f"conv2d_{i}.w_0" for i, name in enumerate(arrays)}})
    again = convert.read_pdparams(write_pickle(tmp_path / "p.pdparams", data, protocol))
    assert list(again) == list(arrays) and all(np.array_equal(again[k], arrays[k]) for k in arrays)


def test_conversion_renames_batchnorm_statistics():
    state = convert.convert_pdparams(PDPARAMS)
    assert "backbone.conv_layer1_1._batch_norm.running_var" in state
    assert "backbone.conv_layer1_1._batch_norm._variance" not in state
    assert state["backbone.conv_layer1_1._batch_norm.num_batches_tracked"].item() == 0
    arrays = convert.read_pdparams(PDPARAMS)
    assert np.array_equal(state["scb.scb_stages.5.2.weight"].numpy(), arrays["scb.scb_stages.5.2.weight"])


def test_linear_weights_are_transposed_from_paddles_in_out_layout():
    weight = np.arange(6, dtype=np.float32).reshape(2, 3)  # Paddle Linear(2 -> 3) stores (in, out)
    assert convert.to_torch_array("head.fc.weight", weight).shape == (3, 2)
    assert np.array_equal(convert.to_torch_array("head.fc.weight", weight), weight.T)
    bias = np.ones(3, np.float32)
    assert np.array_equal(convert.to_torch_array("head.fc.bias", bias), bias)


def test_wrong_checkpoints_get_clear_errors(tmp_path):
    arrays = convert.read_pdparams(PDPARAMS)
    missing = dict(arrays)
    missing.pop("hrdb.detail_conv.weight")
    with pytest.raises(convert.PdparamsError, match="1 missing names .*detail_conv"):
        convert.convert_state(missing)
    extra = dict(arrays, **{"head.weight": np.zeros(3, np.float32)})
    with pytest.raises(convert.PdparamsError, match="1 unexpected names .*head.weight"):
        convert.convert_state(extra)
    with pytest.raises(convert.PdparamsError, match="not PP-Matting hrnet_w18: .*other widths"):
        convert.convert_state(arrays, "hrnet_w18")
    with pytest.raises(convert.PdparamsError, match="variant must be one of"):
        convert.convert_state(arrays, "hrnet_w99")
    with pytest.raises(convert.PdparamsError, match="expected a float numpy array"):
        convert.read_pdparams(write_pickle(tmp_path / "s.pdparams", {"a": "text"}))
    with pytest.raises(convert.PdparamsError, match="expected a dict of arrays"):
        convert.read_pdparams(write_pickle(tmp_path / "l.pdparams", [np.zeros(2, np.float32)]))
    truncated = tmp_path / "cut.pdparams"
    truncated.write_bytes(PDPARAMS.read_bytes()[:5000])
    with pytest.raises(convert.PdparamsError, match="not a .pdparams pickle"):
        convert.read_pdparams(truncated)
    with pytest.raises(convert.PdparamsError, match="cannot read"):
        convert.read_pdparams(tmp_path / "absent.pdparams")


def test_inference_sizes_follow_paddlesegs_val_transforms():
    # LimitShort(512): 1080×1920 -> 512×910 (rounded), then ResizeToIntMult(32) -> 512×896
    assert inference_sizes(1080, 1920, 512) == [(1080, 1920), (512, 910), (512, 896)]
    assert inference_sizes(700, 500, 1536) == [(700, 500), (672, 480)]
    assert inference_sizes(20, 50, None) == [(20, 50), (32, 32)]  # PaddleSeg would give 0; 32 is the least


def test_predict_runs_a_whole_frame_of_any_size(parity):
    model, _ = parity
    rng = np.random.default_rng(0)
    srgb = rng.uniform(0, 1, (70, 101, 3)).astype(np.float32)
    alpha = predict(model, srgb, max_short=64)
    assert alpha.shape == (70, 101) and alpha.dtype == np.float32 and 0 <= alpha.min() and alpha.max() <= 1
    with pytest.raises(ValueError, match="H×W×3"):
        predict(model, srgb[..., 0])


def test_predict_matches_paddlesegs_inference_pipeline_on_an_odd_frame(parity):
    """A 70×101 8-bit frame through PaddleSeg's predict (LimitShort 64 -> 64×92, ResizeToIntMult -> 64×64,
    Normalize, model, reverse_transform back through 64×92 to 70×101) against ours."""
    model, _ = parity
    data = np.load(FIXTURES / "ppmatting_parity.npz")
    frame, expected = data["frame"], data["frame_alpha"]
    assert frame.shape[:2] == expected.shape == (70, 101)
    assert inference_sizes(70, 101, int(data["frame_max_short"])) == [(70, 101), (64, 92), (64, 64)]
    ours = predict(model, frame.astype(np.float32) / 255, max_short=int(data["frame_max_short"]))
    assert np.abs(ours - expected).max() <= 1e-4


def test_predict_equals_the_model_on_an_exact_multiple_of_32(parity):
    """No resize at a multiple of 32: predict is normalise (mean = std = 0.5) + forward."""
    model, cases = parity
    image, alpha, _ = cases[0]
    srgb = image[0].transpose(1, 2, 0) * 0.5 + 0.5
    assert np.abs(predict(model, srgb) - alpha[0, 0]).max() <= 1e-4


def test_the_engine_mattes_a_whole_frame_through_the_contract():
    from mattebox.contract import MatteRequest
    from mattebox.engines import learned

    class TinyPPMatting(learned.PPMattingEngine):
        tiny = True

    image = np.random.default_rng(1).uniform(0, 1, (50, 90, 3)).astype(np.float32)
    reports = []
    result = TinyPPMatting().matte(MatteRequest(image=image, params={"max_short": 32}),
                                   lambda stage, done=0, total=0, message="": reports.append(stage))
    assert result.alpha.shape == (50, 90) and result.info["whole_frame"] == [32, 32]
    assert "tiles" in reports
    default = TinyPPMatting().matte(MatteRequest(image=image))  # the model's max_short (PaddleSeg W48: 1536)
    assert default.info["max_short"] == 1536 and default.info["whole_frame"] == [32, 64]
    with pytest.raises(ValueError, match="max_short"):
        TinyPPMatting().matte(MatteRequest(image=image, params={"max_short": "big"}))
