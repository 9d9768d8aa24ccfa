"""Build PP-Matting in paddlepaddle from a PaddleSeg checkout and write what mattebox's torch port is checked
against without paddle:

* ``server/mattebox/models/ppmatting_keys.json``: every state-dict name of PaddleSeg's PPMatting with HRNet_W18
  and HRNet_W48 and its shape in each, and their parameter counts (the converter's key table);
* ``tests/fixtures/ppmatting_parity.pdparams`` + ``.npz``: a reduced-width PP-Matting (the same depth, so the same
  names, with HRNet width 1 and narrowed SCB/HRDB) with seeded random weights, saved by ``paddle.save``, two
  inputs of different sizes and PaddleSeg's outputs (alpha = the eval forward, detail = sigmoid of the HRDB logit),
  and one 8-bit frame of no multiple of 32 through PaddleSeg's whole inference pipeline (resize, model, resize back).

PaddleSeg hard-codes the SCB and HRDB widths, so the reduced model runs PaddleSeg's own SCB/HRDB source with
only those width literals substituted (asserted to match exactly once each); every layer is PaddleSeg's.

Run it with paddle in its own venv (never the project's), e.g.::

    python3 -m venv /tmp/paddle-venv && /tmp/paddle-venv/bin/pip install paddlepaddle pymatting \
        opencv-python-headless pyyaml scipy scikit-image scikit-learn prettytable filelock six requests
    /tmp/paddle-venv/bin/python bench/support/make_ppmatting_fixture.py --paddleseg /path/to/PaddleSeg
"""
from __future__ import annotations

import argparse
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
KEYS_JSON = ROOT / "server" / "mattebox" / "models" / "ppmatting_keys.json"
FIXTURES = ROOT / "tests" / "fixtures"
#: the reduced model: HRNet widths (1, 2, 4, 8) with stage-1 bottlenecks of 4, full depth (fixture < 1 MB)
REDUCED_HRNET = dict(stage1_num_channels=[4], stage2_num_channels=[1, 2], stage3_num_channels=[1, 2, 4],
                     stage4_num_channels=[1, 2, 4, 8])
#: PaddleSeg width literal -> reduced one, in SCB / HRDB source (pattern, replacement)
REDUCED_WIDTHS = {
    "SCB": [(r"\[512 \+ in_channels, 512, 256, 128, 128, 64\]", "[16 + in_channels, 32, 16, 8, 8, 4]"),
            (r"\[512, 256, 128, 128, 64, 64\]", "[16, 16, 8, 8, 4, 4]"),
            (r"\[256, 128, 64, 64, 64, 3\]", "[16, 8, 4, 4, 4, 3]"),
            (r"PPModule\(in_channels,\s*512,", "PPModule(in_channels, 16,"),
            (r"conv_up_psp\(512,", "conv_up_psp(16,")],
    "HRDB": [(r"channels = \[64, 32, 16, 8\]", "channels = [8, 8, 8, 4]")],
}
#: the torch config that mirrors the reduced model (tests/test_ppmatting_port.py builds it)
REDUCED_TORCH = dict(hrnet_width=1, stage1_channels=4, psp_channels=16, scb_mid=[16, 16, 8, 8, 4, 4],
                     scb_out=[16, 8, 4, 4, 4, 3], hrdb_channels=[8, 8, 8, 4])
SIZES = [(64, 96), (96, 128)]
#: a frame of no multiple of 32 through PaddleSeg's predict pipeline: 70x101 -> LimitShort 64x92 -> 64x64
FRAME_SIZE, FRAME_MAX_SHORT = (70, 101), 64
SEED = 18


def reduced_class(module, name: str):
    """PaddleSeg's class ``name`` re-executed from its own source with the widths of REDUCED_WIDTHS."""
    source = inspect.getsource(getattr(module, name))
    for pattern, replacement in REDUCED_WIDTHS[name]:
        source, hits = re.subn(pattern, replacement, source)
        if hits != 1:
            raise SystemExit(f"PaddleSeg's {name} no longer contains {pattern!r} once ({hits} hits): update "
                             "REDUCED_WIDTHS")
    namespace = dict(vars(module))
    exec(compile(source, f"<reduced {name}>", "exec"), namespace)
    return namespace[name]


def randomise(model, rng: np.random.Generator) -> None:
    """Seeded weights that keep activations O(1): He-normal convs, BatchNorm with non-trivial statistics."""
    for name, tensor in model.state_dict().items():
        shape = tuple(tensor.shape)
        if name.endswith("_mean"):
            value = rng.uniform(-0.2, 0.2, shape)
        elif name.endswith("_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) == 4:
            value = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        elif name.endswith("weight"):  # BatchNorm scale
            value = rng.uniform(0.5, 1.5, shape)
        else:  # biases
            value = rng.uniform(-0.2, 0.2, shape)
        tensor.set_value(value.astype(np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paddleseg", required=True, type=Path, help="a PaddleSeg checkout (has Matting/)")
    args = parser.parse_args()
    sys.path[:0] = [str(args.paddleseg), str(args.paddleseg / "Matting")]
    import paddle
    import paddle.nn.functional as F
    import ppmatting.models.ppmatting as pm
    from ppmatting.models.backbone import hrnet

    paddle.set_device("cpu")
    commit = subprocess.run(["git", "-C", str(args.paddleseg), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"

    # -- the key table -----------------------------------------------------------------------------------------
    tables, counts = {}, {}
    for variant, builder in (("hrnet_w18", hrnet.HRNet_W18), ("hrnet_w48", hrnet.HRNet_W48)):
        state = pm.PPMatting(builder()).state_dict()
        tables[variant] = {k: list(v.shape) for k, v in state.items()}
        counts[variant] = int(sum(np.prod(v.shape) for v in state.values()))
    if list(tables["hrnet_w18"]) != list(tables["hrnet_w48"]):
        raise SystemExit("HRNet_W18 and HRNet_W48 PPMatting have different key lists")
    table = {"source": f"PaddleSeg {commit}: Matting/ppmatting/models/ppmatting.py PPMatting with "
                       "Matting/ppmatting/models/backbone/hrnet.py HRNet_W18 / HRNet_W48 (paddle.save layout)",
             "generated_by": "bench/support/make_ppmatting_fixture.py",
             "variants": ["hrnet_w18", "hrnet_w48"],
             "parameters": counts,  # Paddle counts BatchNorm statistics as parameters
             "keys": [[k, tables["hrnet_w18"][k], tables["hrnet_w48"][k]] for k in tables["hrnet_w18"]]}
    KEYS_JSON.write_text("{\n" + ",\n".join(
        f' "{key}": ' + (json.dumps(value, separators=(",", ":")) if key != "keys" else
                         "[\n" + ",\n".join("  " + json.dumps(row, separators=(",", ":")) for row in value) + "\n ]")
        for key, value in table.items()) + "\n}\n")
    print(f"{KEYS_JSON.relative_to(ROOT)}: {len(table['keys'])} keys, parameters {counts}")

    # -- the parity fixture ------------------------------------------------------------------------------------
    original = pm.SCB, pm.HRDB
    pm.SCB, pm.HRDB = reduced_class(pm, "SCB"), reduced_class(pm, "HRDB")
    try:
        paddle.seed(SEED)
        model = pm.PPMatting(hrnet.HRNet(**REDUCED_HRNET))
    finally:
        pm.SCB, pm.HRDB = original
    if list(model.state_dict()) != list(tables["hrnet_w18"]):
        raise SystemExit("the reduced model's keys differ from PaddleSeg's full model")
    rng = np.random.default_rng(SEED)
    randomise(model, rng)
    model.eval()
    captured = {}
    model.hrdb.register_forward_post_hook(lambda layer, inputs, out: captured.update(detail=F.sigmoid(out)))
    model.scb.register_forward_post_hook(lambda layer, inputs, out: captured.update(semantic=out[-1]))
    # float16-representable inputs, stored as float16 (exactly), run in float32
    images = [rng.uniform(-1.0, 1.0, (1, 3, h, w)).astype(np.float16) for h, w in SIZES]
    # shift the 3 class logits (on the first input) so that fg and bg occur and ~40% is transition (detail)
    with paddle.no_grad():
        model({"img": paddle.to_tensor(images[0].astype(np.float32))})
    logits = captured["semantic"].numpy()[0]
    bias = -logits.mean(axis=(1, 2))
    logits = logits + bias[:, None, None]
    bias[1] -= np.quantile(logits[1] - np.maximum(logits[0], logits[2]), 0.6)
    head = model.scb.scb_stages[-1][-1].bias
    head.set_value((head.numpy() + bias).astype(np.float32))
    arrays = {}
    for n, ((h, w), image) in enumerate(zip(SIZES, images)):
        with paddle.no_grad():
            alpha = model({"img": paddle.to_tensor(image.astype(np.float32))}).numpy()
        classes = np.bincount(captured["semantic"].numpy().argmax(1).ravel(), minlength=3) / (h * w)
        print(f"{h}x{w}: class fractions fg/transition/bg {np.round(classes, 3)}")
        arrays.update({f"image_{n}": image, f"alpha_{n}": alpha.astype(np.float32),
                       f"detail_{n}": captured["detail"].numpy().astype(np.float32)})
    # a frame through PaddleSeg's own inference pipeline (core/predict.py: val transforms LimitShort +
    # ResizeToIntMult(32) + Normalize, the model, reverse_transform): 8-bit values given as float32 so that both
    # sides resize the same numbers; LoadImages swaps BGR to RGB, so the frame goes in as BGR
    from ppmatting import transforms as T
    from ppmatting.core.predict import preprocess, reverse_transform

    frame = rng.integers(0, 256, FRAME_SIZE + (3,), dtype=np.uint8)
    pipeline = T.Compose([T.LoadImages(), T.LimitShort(max_short=FRAME_MAX_SHORT), T.ResizeToIntMult(mult_int=32),
                          T.Normalize()])
    data = preprocess(img=np.ascontiguousarray(frame[..., ::-1], dtype=np.float32), transforms=pipeline)
    with paddle.no_grad():
        frame_alpha = reverse_transform(model(data), data["trans_info"]).numpy()[0, 0]
    print(f"frame {FRAME_SIZE} through {[tuple(size) for _, size in data['trans_info']]}")
    arrays.update(frame=frame, frame_alpha=frame_alpha.astype(np.float32), frame_max_short=FRAME_MAX_SHORT)
    FIXTURES.mkdir(exist_ok=True)
    # paddle.save of the arrays: PaddleSeg's layout without the "StructuredToParameterName@@" name map that
    # saving Tensors adds (174 KiB here; the converter's tests cover it with a small file of their own)
    weights = {name: tensor.numpy() for name, tensor in model.state_dict().items()}
    paddle.save(weights, str(FIXTURES / "ppmatting_parity.pdparams"))
    np.savez_compressed(FIXTURES / "ppmatting_parity.npz", config=json.dumps(REDUCED_TORCH),
                        paddleseg=commit, **arrays)
    for path in (FIXTURES / "ppmatting_parity.pdparams", FIXTURES / "ppmatting_parity.npz"):
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
