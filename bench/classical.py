"""Classical engine vs pymatting (cf, lkm, knn) on alphamatting-dev, both trimaps, same run, same images.

Each method runs in its own subprocess so its peak RSS is its own; per method we record every image's
SAD/MSE/Grad/Conn (Deep Image Matting semantics, :mod:`mattebox.evaluation`), seconds of the alpha estimate, the
process's peak RSS and its RSS after imports and warm-up (so the working memory of the method is visible apart from
the interpreter and libraries). Also:

* the 4K case: a 3840x2160 frame with a wide unknown band (alphamatting GT04 and its wide trimap scaled up),
  time and peak RSS of the classical engine (pymatting cf too with ``--peer-4k``: it needs many GiB);
* foreground: synthetic composites with known F (the alphamatting photos as F, their real alpha, two textured
  backgrounds made in code), foreground MSE of premultiplied αF for our multilevel and blur-fusion estimates and
  pymatting's estimate_foreground_ml, all given the true alpha.

Writes bench/results/classical.json and bench/results/classical.md. Run: ``python bench/classical.py``
(``--methods classical,cf`` for a subset, ``--images GT01,GT05`` for fewer images while iterating).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.support import RESULTS, ROOT  # noqa: E402  (and the checkout's packages on sys.path)

import numpy as np  # noqa: E402

TRIMAPS = ("trimap1", "trimap2")
PEERS = ("cf", "lkm", "knn")
METHODS = ("classical",) + PEERS
METRICS = ("sad", "mse", "grad", "conn")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _alpha_function(method: str, quality: str):
    """(prepare, estimate): prepare(srgb float64 H×W×3, trimap {0, .5, 1}) builds the method's input outside the
    timed region (for the engine: the linear-light request the server would decode); estimate(input) -> alpha."""
    if method == "classical":
        from mattebox.colour import srgb_to_linear
        from mattebox.contract import MatteRequest
        from mattebox.engines.classical import ClassicalEngine

        engine = ClassicalEngine()

        def prepare(image, trimap):
            return MatteRequest(image=srgb_to_linear(image.astype(np.float32)), trimap=trimap.astype(np.float32),
                                params={"quality": quality, "outputs": ["alpha"]})
        return prepare, lambda request: engine.matte(request).alpha
    import pymatting

    estimate = {"cf": pymatting.estimate_alpha_cf, "lkm": pymatting.estimate_alpha_lkm,
                "knn": pymatting.estimate_alpha_knn}[method]
    return (lambda image, trimap: (image, trimap)), (lambda args: estimate(*args))


def worker(method: str, names, quality: str) -> dict:
    """Runs in a subprocess: one method over every image and trimap."""
    from mattebox import evaluation as ev
    from mattebox.paths import alphamatting_dir

    data = alphamatting_dir()
    prepare, estimate = _alpha_function(method, quality)
    # warm-up on a small synthetic case (numba JIT for pymatting; first-call costs for everyone), not timed
    rng = np.random.default_rng(0)
    warm_image = rng.random((64, 64, 3))
    warm_trimap = np.full((64, 64), 0.5)
    warm_trimap[:, :16], warm_trimap[:, 48:] = 0.0, 1.0
    estimate(prepare(warm_image, warm_trimap))
    baseline = _peak_rss_mb()
    rows = []
    for trimap_dir in TRIMAPS:
        for name in names:
            image, gt, trimap = ev.load_sample(data, name, trimap_dir)
            prepared = prepare(image[..., :3].astype(np.float64) / 255.0, trimap.astype(np.float64))
            started = time.perf_counter()
            alpha = np.clip(estimate(prepared), 0, 1)
            seconds = time.perf_counter() - started
            rows.append({"image": name, "trimap": trimap_dir, "seconds": round(seconds, 3),
                         **{k: round(v, 5) for k, v in ev.all_metrics(alpha, gt, trimap).items()}})
    return {"method": method, "rows": rows, "rss_after_warmup_mb": round(baseline, 1),
            "peak_rss_mb": round(_peak_rss_mb(), 1)}


def worker_4k(method: str, quality: str) -> dict:
    """The 4K wide-band case: GT04 and its wide trimap scaled to 3840x2160."""
    import cv2

    from mattebox import evaluation as ev
    from mattebox.paths import alphamatting_dir

    image, gt, trimap = ev.load_sample(alphamatting_dir(), "GT04", "trimap2")
    size = (3840, 2160)
    srgb = cv2.resize(image[..., :3], size, interpolation=cv2.INTER_CUBIC).astype(np.float64) / 255.0
    trimap = cv2.resize(trimap, size, interpolation=cv2.INTER_NEAREST)
    gt = cv2.resize(gt, size, interpolation=cv2.INTER_LINEAR)
    prepare, estimate = _alpha_function(method, quality)
    prepared = prepare(srgb, trimap.astype(np.float64))
    del srgb
    baseline = _peak_rss_mb()
    started = time.perf_counter()
    alpha = np.clip(estimate(prepared), 0, 1)
    seconds = time.perf_counter() - started
    return {"method": method, "size": list(size), "unknown_pixels": int((trimap == 0.5).sum()),
            "seconds": round(seconds, 2), "rss_before_mb": round(baseline, 1), "peak_rss_mb": round(_peak_rss_mb(), 1),
            "sad": round(ev.sad(alpha, gt, trimap == 0.5), 2)}


def worker_foreground(names) -> dict:
    """Foreground MSE on synthetic composites with known F (linear light), given the true alpha."""
    import pymatting

    from mattebox import evaluation as ev
    from mattebox.colour import srgb_to_linear
    from mattebox.matting.foreground import blur_fusion, multilevel
    from mattebox.paths import alphamatting_dir
    from mattebox.synth.backgrounds import textured_background

    data = alphamatting_dir()
    methods = {"classical multilevel": multilevel, "classical blur_fusion": blur_fusion,
               "pymatting estimate_foreground_ml": lambda i, a: pymatting.estimate_foreground_ml(
                   i.astype(np.float64), a.astype(np.float64))}
    warm = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    for estimate in methods.values():  # first calls (numba JIT) are not timed
        estimate(warm, warm[..., 0])
    scores = {m: [] for m in methods}
    seconds = {m: 0.0 for m in methods}
    for index, name in enumerate(names):
        image, gt, trimap = ev.load_sample(data, name, "trimap2")
        fg_true = srgb_to_linear(image[..., :3] / 255.0)
        for seed in (1, 2):  # two different textured backgrounds per image
            bg = textured_background(gt.shape, np.random.default_rng(1000 * seed + index))
            a = gt.astype(np.float32)[..., None]
            composite = (a * fg_true + (1 - a) * bg).astype(np.float32)
            region = trimap == 0.5
            for method, estimate in methods.items():
                started = time.perf_counter()
                fg = estimate(composite, gt.astype(np.float32))
                seconds[method] += time.perf_counter() - started
                scores[method].append(ev.foreground_mse(fg, fg_true, gt, region))
    return {"composites": 2 * len(names),
            "methods": {m: {"foreground_mse": float(np.mean(scores[m])), "seconds": round(seconds[m], 2)}
                        for m in methods}}


def _spawn(*args) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "plugin"), str(ROOT / "server")]))
    out = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarise(run: dict) -> dict:
    rows = run["rows"]
    means = {k: float(np.mean([r[k] for r in rows])) for k in METRICS + ("seconds",)}
    for trimap_dir in TRIMAPS:
        means[f"sad_{trimap_dir}"] = float(np.mean([r["sad"] for r in rows if r["trimap"] == trimap_dir]))
    means["seconds_total"] = float(np.sum([r["seconds"] for r in rows]))
    return means


def markdown(result: dict) -> str:
    lines = [f"# Classical engine vs pymatting — alphamatting-dev ({result['images']}, both trimaps)", "",
             f"Quality preset: `{result['quality']}`. SAD/Grad/Conn ÷1000, MSE mean over unknown pixels "
             "(Deep Image Matting evaluation). Seconds: alpha estimate, summed over all images. Peak RSS: the "
             "method's own process; 'after warm-up' is the same process after imports and a small first call.", "",
             "| method | SAD | SAD t1 | SAD t2 | MSE | Grad | Conn | seconds | peak RSS MiB | after warm-up MiB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for method, run in result["methods"].items():
        m = run["mean"]
        lines.append(f"| {method} | {m['sad']:.2f} | {m['sad_trimap1']:.2f} | {m['sad_trimap2']:.2f} | "
                     f"{m['mse']:.4f} | {m['grad']:.2f} | {m['conn']:.2f} | {m['seconds_total']:.1f} | "
                     f"{run['peak_rss_mb']:.0f} | {run['rss_after_warmup_mb']:.0f} |")
    targets = result.get("targets")
    if targets:
        lines += ["", "| target | measured | goal | met |", "|---|---|---|---|"]
        for key, value in targets.items():
            lines.append(f"| {key} | {value['ratio']:.3f} | <= {value['goal']} | {'yes' if value['met'] else 'no'} |")
    if "4k" in result:
        lines += ["", "## 4K wide band (3840x2160, GT04 wide trimap scaled up)", "",
                  "| method | unknown px | seconds | peak RSS MiB | SAD |", "|---|---|---|---|---|"]
        for run in result["4k"]:
            lines.append(f"| {run['method']} | {run['unknown_pixels']:,} | {run['seconds']:.1f} | "
                         f"{run['peak_rss_mb']:.0f} | {run['sad']:.1f} |")
    if "foreground" in result:
        fg = result["foreground"]
        lines += ["", f"## Foreground ({fg['composites']} synthetic composites, known F, true alpha)", "",
                  "MSE of premultiplied αF over the wide trimap's unknown pixels, linear light.", "",
                  "| method | foreground MSE | seconds |", "|---|---|---|"]
        for method, value in fg["methods"].items():
            lines.append(f"| {method} | {value['foreground_mse']:.6f} | {value['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--images", help="comma-separated (default: all)")
    parser.add_argument("--quality", default="balanced", choices=("fast", "balanced", "best"))
    parser.add_argument("--skip-4k", action="store_true")
    parser.add_argument("--skip-foreground", action="store_true")
    parser.add_argument("--peer-4k", action="store_true", help="also run pymatting cf on the 4K case (many GiB)")
    parser.add_argument("--out", default=str(RESULTS / "classical"), help="output path without extension")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from mattebox.paths import alphamatting_dir

    data = alphamatting_dir()
    if data is None:
        print("bench/classical.py: alphamatting-dev not found (../shared/data/alphamatting-dev); skipped")
        return 0
    names = args.images.split(",") if args.images else sorted(p.stem for p in (data / "image").glob("*.png"))
    if args.worker:
        kind, _, method = args.worker.partition(":")
        out = {"alpha": lambda: worker(method, names, args.quality), "4k": lambda: worker_4k(method, args.quality),
               "foreground": lambda: worker_foreground(names)}[kind]()
        print(json.dumps(out))
        return 0

    common = ["--quality", args.quality] + (["--images", args.images] if args.images else [])
    result = {"images": f"{len(names)} images", "names": names, "quality": args.quality, "methods": {},
              "load_average_at_start": os.getloadavg(), "cpus": os.cpu_count()}
    for method in args.methods.split(","):
        print(f"{method} ...", file=sys.stderr, flush=True)
        run = _spawn("--worker", f"alpha:{method}", *common)
        run["mean"] = summarise(run)
        result["methods"][method] = run
    runs = result["methods"]
    if "classical" in runs and "cf" in runs:
        mine, cf = runs["classical"], runs["cf"]
        best_peer = min((m for m in PEERS if m in runs), key=lambda m: runs[m]["mean"]["sad"])
        ratios = {
            f"SAD vs best pymatting ({best_peer})": (mine["mean"]["sad"] / runs[best_peer]["mean"]["sad"], 0.9),
            "seconds vs pymatting cf": (mine["mean"]["seconds_total"] / cf["mean"]["seconds_total"], 1 / 3),
            "peak RSS vs pymatting cf": (mine["peak_rss_mb"] / cf["peak_rss_mb"], 0.5),
        }
        result["targets"] = {k: {"ratio": round(r, 3), "goal": round(g, 3), "met": r <= g} for k, (r, g) in
                             ratios.items()}
    if not args.skip_4k:
        print("4k ...", file=sys.stderr, flush=True)
        result["4k"] = [_spawn("--worker", "4k:classical", "--quality", args.quality)]
        if args.peer_4k:
            result["4k"].append(_spawn("--worker", "4k:cf"))
    if not args.skip_foreground:
        print("foreground ...", file=sys.stderr, flush=True)
        result["foreground"] = _spawn("--worker", "foreground:", *common)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result["load_average_at_end"] = os.getloadavg()
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
