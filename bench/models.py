"""Learned models: parameters, CPU time and peak memory for a 1920x1080 frame through the engine with the real
config, ViTMatte tiled against untiled, and (with a CUDA device) GPU time and peak memory at 1920x1080 and
3840x2160.

Whole-frame rows (``frames``): each learned engine with its FULL published/paper config mattes a 1080p portrait
frame (mask guidance, the engine's default tiles) in a fresh process, so that ``ru_maxrss`` is that engine's own
peak; random weights installed the way users install theirs (ViTMatte through ``mattebox models import``, the
others as exported files) in a temporary models folder. ``tiling``: ViTMatte-S tiled (512/256) against untiled
(``tile: -1``, the reference pipeline) on the same frame, max and mean |delta alpha| in the unknown band; with
random weights this measures the architecture's sensitivity to tiling, not a trained net's (no weights can be
downloaded in this session; ``--weights-dir DIR`` uses a models folder with pulled ones).

CPU rows, all in one run on this machine:
* ``tile_full_s``: one forward of the FULL config (random weights) on one tile of the model's size, median of
  3 — the cost that dominates a frame;
* ``frame_tiny_s``: a whole 1920x1080 frame through the learned engine (guidance, Gaussian-merged 448/224
  tiles, foreground) with the TINY config: the pipeline's own overhead;
* ``frame_full_est_s``: tiles_per_frame x tile_full_s + the tiny run's non-model time — an estimate, labelled so.
Whole-frame models (PP-Matting, as PaddleSeg runs it) have one "tile": the frame at the size the engine resizes
1920x1080 to, timed once.
Torch runs on one intra-op thread (the machine's 2 cores are shared; oversubscription makes 2 threads slower).

Writes bench/results/models.json and bench/results/models.md. ``--frames-only`` re-measures the whole-frame and
tiling rows and keeps the other rows of models.json.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import tempfile
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.support import RESULTS, median_seconds  # noqa: E402  (and the checkout's packages on sys.path)

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


def whole_frame_size(spec, model, size=(1080, 1920)):
    """The size a whole-frame model (PP-Matting) runs a frame at, or None for tiled models."""
    if not spec.extras.get("whole_frame"):
        return None
    from mattebox.models.ppmatting import inference_sizes

    return inference_sizes(*size, model.max_short)[-1]


def cpu_row(name):
    spec = registry.get_spec(name)
    torch.manual_seed(0)
    full = registry.build(name).eval()
    whole = whole_frame_size(spec, full)
    tile = f"whole frame {whole[1]}x{whole[0]}" if whole else spec.tile
    inputs = model_inputs(spec, whole or (tile, tile))
    options = dict(learned.ENGINES[name].forward_options)
    with torch.inference_mode():
        full(**inputs, **options)  # warm-up
        cpu_started = time.process_time()
        tile_s = median_seconds(lambda: full(**inputs, **options), repeats=1 if whole else 3)
        tile_cpu_s = (time.process_time() - cpu_started) / (1 if whole else 3)
    full = None  # free the full model before the engine run
    engine = tiny_engine(name)
    request = portrait_request()
    if name == "parallax":
        request.second = None  # the two-frame alignment (matting/align.py) is benchmarked by bench/twoframe.py
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
            "frame_full_est_s": round(n_tiles * tile_s + non_model, 1),
            # CPU seconds of the full-config forward: what the wall time would be on an idle core
            "tile_full_cpu_s": round(tile_cpu_s, 3)}


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
    if whole_frame_size(spec, model):
        return whole_frame_gpu_rows(name, model, device, amp, sizes)
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
        seconds = median_seconds(frame)
        rows.append({"model": name, "frame": f"{size[1]}x{size[0]}", "gpu": torch.cuda.get_device_name(device),
                     "autocast": str(amp), "tile": tile, "batch": batch, "seconds": round(seconds, 3),
                     "peak_gib": round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2),
                     "bytes_per_pixel_measured": round(measured_bpp), "bytes_per_pixel_assumed": assumed_bpp})
    model = run = None  # free this model's memory before the next one is measured
    torch.cuda.empty_cache()
    return rows


def whole_frame_gpu_rows(name, model, device, amp, sizes):
    """GPU rows of a whole-frame model: its engine's predict (resize, forward, resize back), median of 3 after a
    warm-up, with peak memory."""
    from mattebox.models.ppmatting import predict

    spec = registry.get_spec(name)
    rows = []
    for size in sizes:
        srgb = np.random.default_rng(0).random((*size, 3), dtype=np.float32)
        predict(model, srgb, model.max_short, device, amp)  # warm-up
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        seconds = median_seconds(lambda srgb=srgb: predict(model, srgb, model.max_short, device, amp))
        whole = whole_frame_size(spec, model, size)
        rows.append({"model": name, "frame": f"{size[1]}x{size[0]}", "gpu": torch.cuda.get_device_name(device),
                     "autocast": str(amp), "tile": f"whole {whole[1]}x{whole[0]}", "batch": 1,
                     "seconds": round(seconds, 3),
                     "peak_gib": round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2),
                     "bytes_per_pixel_measured": round(torch.cuda.max_memory_allocated(device) / (whole[0] * whole[1])),
                     "bytes_per_pixel_assumed": None})  # the engine does not size anything from it
    torch.cuda.empty_cache()
    return rows
#: whole-frame rows: (engine, published weights name or "" for the registry's own file, tile param)
FRAME_RUNS = [("mask2alpha", "", 0), ("parallax", "", 0), ("ppmatting", "", 0),
              ("vitmatte", "vitmatte-small-composition-1k", 0), ("vitmatte", "vitmatte-small-composition-1k", -1),
              ("vitmatte", "vitmatte-base-composition-1k", 0)]


def install_random_weights(folder: Path) -> None:
    """Random FULL-config weights for every FRAME_RUNS entry, installed as users' would be (timing only)."""
    from mattebox.models.install import import_file
    from mattebox.models.sources import get_source
    from mattebox.models.vitmatte import load_vitmatte
    from mattebox.models.weights import export_weights, save_weights

    os.environ["MATTEBOX_MODELS"] = str(folder)
    for name, weights, _tile in FRAME_RUNS:
        torch.manual_seed(0)
        if weights and not (folder / get_source(weights).file).exists():
            raw = folder / "download.safetensors"
            save_weights(load_vitmatte(get_source(weights).config["variant"]).hf, raw)
            import_file(weights, raw)
            raw.unlink()
        elif not weights and not (folder / registry.get_spec(name).weights.file).exists():
            export_weights(registry.build(name), folder / registry.get_spec(name).weights.file)


def peak_rss_gib() -> float:
    """This process's peak resident set (VmHWM). Not ru_maxrss: Linux carries that over from the parent at fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2 ** 20  # kB -> GiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def frame_child(name: str, weights: str, tile: int) -> dict:
    """In a fresh process: one 1080p frame through the engine; seconds, and peak RSS over the import baseline."""
    torch.set_num_threads(1)
    baseline = peak_rss_gib()
    request = portrait_request()
    request.second = None  # the pair alignment is bench/twoframe.py's cost
    request.params.update(tile=tile, weights=weights)
    engine = learned.ENGINES[name]()
    started = time.perf_counter()
    result = engine.matte(request)
    seconds = time.perf_counter() - started
    peak = peak_rss_gib()
    unknown = result.trimap == 0.5
    np.save(os.environ["MATTEBOX_BENCH_ALPHA"], result.alpha)
    return {"engine": name, "weights": result.info.get("weights"), "tile": result.info["tile"],
            "seconds": round(seconds, 1), "load_s": round(result.info["timings"]["load"], 1),
            "peak_rss_gib": round(peak, 2), "import_rss_gib": round(baseline, 2),
            "unknown_fraction": round(float(unknown.mean()), 3),
            "load_average": round(os.getloadavg()[0], 1)}  # the box is shared: other work inflates the seconds


def frame_rows(weights_dir: str = "") -> tuple:
    """(rows, tiling): every FRAME_RUNS entry in its own process; ViTMatte-S tiled vs untiled alphas compared."""
    rows, alphas = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(weights_dir or scratch)
        if not weights_dir:
            install_random_weights(folder)
        for name, weights, tile in FRAME_RUNS:
            out = Path(scratch) / f"{name}-{weights}-{tile}.npy"
            env = dict(os.environ, MATTEBOX_MODELS=str(folder), MATTEBOX_BENCH_ALPHA=str(out))
            print(f"-- frame {name} {weights} tile={tile}", flush=True)
            child = subprocess.run([sys.executable, __file__, "--frame-child", name, weights, str(tile)], env=env,
                                   capture_output=True, text=True)
            if child.returncode:
                rows.append({"engine": name, "weights": weights, "tile": tile,
                             "error": (child.stderr.strip().splitlines() or ["?"])[-1]})
            else:
                rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
                alphas[(weights, tile)] = np.load(out)
            print(rows[-1], flush=True)
    small = "vitmatte-small-composition-1k"
    tiling = {}
    if (small, 0) in alphas and (small, -1) in alphas:
        trimap = learned.ViTMatteEngine.guidance_trimap(portrait_request())
        band = trimap == 0.5
        delta = np.abs(alphas[(small, 0)] - alphas[(small, -1)])
        tiling = {"weights": small + (" (random init)" if not weights_dir else ""), "frame": "1920x1080",
                  "tile": next(r["tile"] for r in rows if r.get("weights") == small and r["tile"] != -1),
                  "band_pixels": int(band.sum()), "max_abs_delta": round(float(delta[band].max()), 4),
                  "mean_abs_delta": round(float(delta[band].mean()), 5),
                  "alpha_std_untiled": round(float(alphas[(small, -1)][band].std()), 4)}
    return rows, tiling


def write_report(report, results: Path = RESULTS) -> str:
    """models.{json,md} in ``results`` from a report {"machine", "cpu": rows, "gpu": rows, optional
    "gpu_source"}; returns the table (bench/device_session.py lands a GPU session's rows through it)."""
    results.mkdir(parents=True, exist_ok=True)
    (results / "models.json").write_text(json.dumps(report, indent=2) + "\n")
    machine = report["machine"]
    lines = ["# Learned models (bench/models.py)", "",
             f"CPU: torch {machine['torch']}, {machine['threads']} thread; random weights (timing only).", "",
             "| model | params (full) | tile | tiles @1080p | full config, 1 tile or whole frame (s) | tiny config, "
             "whole 1080p frame (s) | full config 1080p, estimated (s) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["cpu"]:
        lines.append(f"| {r['model']} | {r['params_full'] / 1e6:.1f}M | {r['tile']} | {r['tiles_1080p']} | "
                     f"{r['tile_full_s']} | {r['frame_tiny_s']} | {r['frame_full_est_s']} |")
    loaded = [f"- {r['model']}: the full-config forward took {r['tile_full_cpu_s']} CPU s against "
              f"{r['tile_full_s']} s wall: measured on a loaded machine" for r in report["cpu"]
              if r.get("tile_full_cpu_s") and r["tile_full_s"] > 1.5 * r["tile_full_cpu_s"]]
    lines += [""] + loaded if loaded else []


    if report.get("frames"):
        lines += ["", "Whole 1920x1080 frame through the engine, FULL config, random weights, CPU, 1 thread, each "
                  "engine in its own process (peak RSS includes Python + torch: the import baseline is given):", "",
                  "| engine | weights | tile | s | of which load (s) | peak RSS GiB | after imports GiB | machine load "
                  "avg |", "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in report["frames"]:
            if "error" in r:
                lines.append(f"| {r['engine']} | {r['weights']} | {r['tile']} | failed: {r['error']} | | | | |")
                continue
            tile = "untiled" if r["tile"] == -1 else r["tile"]
            lines.append(f"| {r['engine']} | {r['weights']} | {tile} | {r['seconds']} | {r['load_s']} | "
                         f"{r['peak_rss_gib']} | {r['import_rss_gib']} | {r.get('load_average', '')} |")
    if report.get("tiling"):
        t = report["tiling"]
        lines += ["", f"ViTMatte tiled ({t['tile']} px, half overlap, Gaussian merge) against untiled on "
                  f"{t['frame']}, {t['weights']}, {t['band_pixels']} unknown pixels: max |delta alpha| "
                  f"{t['max_abs_delta']}, mean {t['mean_abs_delta']} (untiled alpha's std there "
                  f"{t['alpha_std_untiled']})."]
        if t["alpha_std_untiled"] < 1e-3:
            lines += ["Uninformative: these weights predict a constant alpha, so tiling cannot change it. Measure "
                      "with published weights: `mattebox models pull vitmatte-small-composition-1k` and "
                      "`python bench/models.py --frames-only --weights-dir ~/.cache/mattebox/models`."]
    measured = [r for r in report["gpu"] if "seconds" in r]
    lines += ["", "GPU" + (f" ({report['gpu_source']})" if report.get("gpu_source") else "") + ":", ""]
    if measured:
        lines += ["| model | frame | device | autocast | tile × batch | s | peak GiB | activation B/px measured "
                  "(assumed) |", "|---|---|---|---|---|---:|---:|---:|"]
        lines += [f"| {r['model']} | {r['frame']} | {r['gpu']} | {r['autocast']} | {r['tile']} × {r['batch']} | "
                  f"{r['seconds']} | {r['peak_gib']} | {r['bytes_per_pixel_measured']}"
                  + (f" ({r['bytes_per_pixel_assumed']:.0f})" if r["bytes_per_pixel_assumed"] is not None else "")
                  + " |" for r in measured]
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


def main(argv=None) -> int:
    import argparse

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--frame-child"]:  # internal: one engine's whole frame in a fresh process (frame_rows)
        print(json.dumps(frame_child(argv[1], argv[2], int(argv[3]))))
        return 0
    parser = argparse.ArgumentParser(description="Learned models: parameters, CPU and GPU timings.")
    parser.add_argument("--only", nargs="+", metavar="MODEL", help="measure these models and keep the other rows "
                        "of bench/results/models.json (measured on the same machine)")
    parser.add_argument("--frames-only", action="store_true", help="re-measure only the whole-frame and tiling rows")
    parser.add_argument("--weights-dir", default="", help="installed weights to time (default: random, installed "
                        "in a scratch folder)")
    args = parser.parse_args(argv)
    weights_dir = args.weights_dir
    if args.frames_only:
        report = json.loads((RESULTS / "models.json").read_text())
        report["frames"], report["tiling"] = frame_rows(weights_dir)
        print(write_report(report))
        return 0
    torch.set_num_threads(1)
    names = args.only or model_names()
    cpu, gpu = [], []
    for name in names:
        print(f"-- {name}", flush=True)
        cpu.append(cpu_row(name))
        gpu.extend(gpu_rows(name))
        print(cpu[-1], flush=True)
    if args.only:
        kept = json.loads((RESULTS / "models.json").read_text())
        cpu = sorted([r for r in kept["cpu"] if r["model"] not in names] + cpu, key=lambda r: r["model"])
        gpu = sorted([r for r in kept["gpu"] if r["model"] not in names] + gpu, key=lambda r: r["model"])
    report = {"machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                          "threads": torch.get_num_threads(), "python": platform.python_version()},
              "cpu": cpu, "gpu": gpu}
    report["frames"], report["tiling"] = frame_rows(weights_dir)
    print(write_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
