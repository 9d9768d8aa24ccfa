"""Learned models: parameters, CPU time for a 1920x1080 frame through the tiled engine path, and (with a CUDA
device) GPU time and peak memory at 1920x1080 and 3840x2160.

CPU rows, all in one run on this machine:
* ``tile_full_s``: one forward of the FULL config (random weights) on one tile of the model's size, median of
  3 — the cost that dominates a frame;
* ``frame_tiny_s``: a whole 1920x1080 frame through the learned engine (guidance, Gaussian-merged 448/224
  tiles, foreground) with the TINY config: the pipeline's own overhead;
* ``frame_full_est_s``: tiles_per_frame x tile_full_s + the tiny run's non-model time — an estimate, labelled so.
Torch runs on one intra-op thread (the machine's 2 cores are shared; oversubscription makes 2 threads slower).

Writes bench/results/models.json and bench/results/models.md.
"""
from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugin"), str(ROOT / "server")]
RESULTS = ROOT / "bench" / "results"

import torch  # noqa: E402

from mattebox.contract import MatteRequest  # noqa: E402
from mattebox.engines import learned  # noqa: E402
from mattebox.models import registry  # noqa: E402
from mattebox.models.vit import count_parameters  # noqa: E402

CHANNELS = {"image": 3, "bg_aligned": 3, "fg_aligned": 3, "companion": 3, "trimap": 1, "warped_trimap": 1, "mask": 1}


def model_inputs(spec, size, device="cpu", dtype=torch.float32):
    h, w = size
    gen = torch.Generator().manual_seed(0)
    out = {}
    for name in spec.inputs:
        value = torch.rand(1, CHANNELS[name], h, w, generator=gen)
        if name == "mask":
            value = (value > 0.5).float()
        out[name] = value.to(device, dtype)
    return out


def portrait_request(size=(1080, 1920)):
    """A 1080p frame with a head-and-shoulders disc: the trimap band decides which tiles run."""
    h, w = size
    ys, xs = np.mgrid[:h, :w]
    alpha = (np.hypot((ys - h * 0.45) / 1.2, xs - w / 2) < h * 0.33).astype(np.float32)
    alpha[int(h * 0.7):, int(w * 0.25):int(w * 0.75)] = 1
    rng = np.random.default_rng(0)
    image = (alpha[..., None] * 0.7 + (1 - alpha[..., None]) * rng.random((h, w, 3)) * 0.5).astype(np.float32)
    return MatteRequest(image=image, mask=alpha, second=image.copy())


def tiny_engine(name):
    return type(f"Tiny{name}", (learned.ENGINES[name],), {"tiny": True})()


def time_call(fn, repeats=3):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def cpu_row(name):
    spec = registry.get_spec(name)
    torch.manual_seed(0)
    full = registry.build(name).eval()
    tile = spec.tile
    inputs = model_inputs(spec, (tile, tile))
    options = dict(learned.ENGINES[name].forward_options)
    with torch.inference_mode():
        full(**inputs, **options)  # warm-up
        tile_s = time_call(lambda: full(**inputs, **options))
    full = None  # free the full model before the engine run
    engine = tiny_engine(name)
    request = portrait_request()
    if name == "parallax":
        request.second = None  # the two-frame alignment is the twoframe module's cost, benchmarked there
    tiles = []
    started = time.perf_counter()
    result = engine.matte(request, lambda stage, done=0, total=0, message="": tiles.append(total)
                          if stage == "tiles" else None)
    frame_tiny = time.perf_counter() - started
    n_tiles = max(tiles) if tiles else 0
    non_model = frame_tiny - result.info["timings"]["inference"]
    return {"model": name, "params_full": spec.full_params,
            "params_tiny": count_parameters(registry.build(name, tiny=True)), "tile": tile,
            "tiles_1080p": n_tiles, "tile_full_s": round(tile_s, 3), "frame_tiny_s": round(frame_tiny, 2),
            "frame_full_est_s": round(n_tiles * tile_s + non_model, 1)}


def gpu_rows(name, sizes=((1080, 1920), (2160, 3840))):
    """GPU rows for one model (random FULL-config weights): the activation memory per input pixel measured on one
    batch of 4 tiles (what ``learned.BYTES_PER_PIXEL`` assumes when it sizes tiles from free memory), then for
    each frame size the tiled model pass exactly as the engine sizes it (``choose_tile_and_batch``), median of 3
    after a warm-up, with its peak memory. Model inputs only (the pair alignment is bench/twoframe.py's)."""
    if not torch.cuda.is_available():
        return [{"model": name, "gpu": "not measured: no device in this session"}]
    from mattebox.tiling import choose_tile_and_batch, cuda_free_bytes, tiled_apply, torch_tile_fn

    spec = registry.get_spec(name)
    device, amp = learned.pick_device("cuda")
    torch.manual_seed(0)
    model = registry.build(name).to(device).eval()
    options = dict(learned.ENGINES[name].forward_options)
    run = torch_tile_fn(lambda **t: model(**t, **options), device, amp, outputs=("alpha",))
    probe = {k: np.repeat(v.permute(0, 2, 3, 1).numpy(), 4, axis=0)
             for k, v in model_inputs(spec, (spec.tile, spec.tile)).items()}
    run(probe)  # warm-up (cuDNN/cuBLAS workspaces are not activations)
    torch.cuda.synchronize(device)
    resident = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    run(probe)
    measured_bpp = (torch.cuda.max_memory_allocated(device) - resident) / (4 * spec.tile ** 2)
    assumed_bpp = learned.BYTES_PER_PIXEL.get(name, 8000.0)
    rows = []
    for size in sizes:
        arrays = {k: v[0].permute(1, 2, 0).numpy() for k, v in model_inputs(spec, size).items()}
        tile, batch = choose_tile_and_batch(cuda_free_bytes(device), assumed_bpp, spec.tile)

        def frame(arrays=arrays, tile=tile, batch=batch):
            return tiled_apply(arrays, run, tile=tile, overlap=tile // 2, batch_size=batch)

        frame()  # warm-up
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        seconds = time_call(frame)
        rows.append({"model": name, "frame": f"{size[1]}x{size[0]}", "gpu": torch.cuda.get_device_name(device),
                     "autocast": str(amp), "tile": tile, "batch": batch, "seconds": round(seconds, 3),
                     "peak_gib": round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2),
                     "bytes_per_pixel_measured": round(measured_bpp), "bytes_per_pixel_assumed": assumed_bpp})
    model = run = None  # free this model's memory before the next one is measured
    torch.cuda.empty_cache()
    return rows


def write_report(report, results: Path = RESULTS) -> str:
    """models.{json,md} in ``results`` from a report {"machine", "cpu": rows, "gpu": rows, optional
    "gpu_source"}; returns the table (bench/device_session.py lands a GPU session's rows through it)."""
    results.mkdir(parents=True, exist_ok=True)
    (results / "models.json").write_text(json.dumps(report, indent=2) + "\n")
    machine = report["machine"]
    lines = ["# Learned models (bench/models.py)", "",
             f"CPU: torch {machine['torch']}, {machine['threads']} thread; random weights (timing only).", "",
             "| model | params (full) | tile | tiles @1080p | full config, 1 tile (s) | tiny config, whole 1080p "
             "frame (s) | full config 1080p, estimated (s) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["cpu"]:
        lines.append(f"| {r['model']} | {r['params_full'] / 1e6:.1f}M | {r['tile']} | {r['tiles_1080p']} | "
                     f"{r['tile_full_s']} | {r['frame_tiny_s']} | {r['frame_full_est_s']} |")
    measured = [r for r in report["gpu"] if "seconds" in r]
    lines += ["", "GPU" + (f" ({report['gpu_source']})" if report.get("gpu_source") else "") + ":", ""]
    if measured:
        lines += ["| model | frame | device | autocast | tile × batch | s | peak GiB | activation B/px measured "
                  "(assumed) |", "|---|---|---|---|---|---:|---:|---:|"]
        lines += [f"| {r['model']} | {r['frame']} | {r['gpu']} | {r['autocast']} | {r['tile']} × {r['batch']} | "
                  f"{r['seconds']} | {r['peak_gib']} | {r['bytes_per_pixel_measured']} "
                  f"({r['bytes_per_pixel_assumed']:.0f}) |" for r in measured]
    lines += [f"- {r['model']}: {r['gpu']}" for r in report["gpu"] if "seconds" not in r]
    table = "\n".join(lines) + "\n"
    (results / "models.md").write_text(table)
    return table


def model_names():
    names = [spec.name for spec in registry.matting_models()]
    try:
        import transformers  # noqa: F401
    except ImportError:
        names.remove("vitmatte")
    return names


def main() -> int:
    torch.set_num_threads(1)
    cpu, gpu = [], []
    for name in model_names():
        print(f"-- {name}", flush=True)
        cpu.append(cpu_row(name))
        gpu.extend(gpu_rows(name))
        print(cpu[-1], flush=True)
    report = {"machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                          "threads": torch.get_num_threads(), "python": platform.python_version()},
              "cpu": cpu, "gpu": gpu}
    print(write_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
