"""The precise-roto check (``guidance.is_precise_roto``) against U^2-Net-p's own decision, mask by mask (issue #21).

The classical engine asks the image whether a user's mask is a precise roto before running the network; only a
mask the image does not vouch for goes on to ``tighten_mask``. That is safe while the check never passes a mask
the network would tighten. This bench measures the check's statistic (``edge_on_image_edge``) and the real
network's decision (``tighten_mask(mask, saliency) is None``) for rotos, softened, partial and shifted rotos,
loose lassos (``testing.lasso.loose_lasso``, 4 offsets x 4 seeds) and grown masks, on alphamatting-dev GT01-08 at
full size, bench/speed.py's 1080p portrait and synthetic pairs (``synth.pairs.make_pair``) at 960x540, 1920x1080
and 3840x2160; and the check's own CPU time on the 1080p portrait.

Needs the U^2-Net-p weights (``mattebox models pull u2netp``) and alphamatting-dev ($MATTEBOX_ALPHAMATTING).
Writes bench/results/roto_check.json and .md. Run: ``python bench/roto_check.py`` (~10 min on 2 cores;
``--small`` leaves out the 1080p and 4K synthetic pairs).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.support import write_results  # noqa: E402  (and the checkout's packages on sys.path)

import cv2  # noqa: E402
import numpy as np  # noqa: E402

LASSOS = ((5, 15), (10, 30), (20, 60), (40, 90))  #: (near, far) px off the subject
ROWS = (("true roto (α > 0.5)", "roto"), ("the roto Gaussian-softened (σ 2 px)", "soft"),
        ("the roto's top 60 % only (partial)", "partial"), ("the roto 2 px out", "roto+2"),
        ("the roto 2 px in", "roto-2"), ("the roto 5 px out", "roto+5"), ("the roto 5 px in", "roto-5"),
        ("loose lassos 5–15, 10–30, 20–60, 40–90 px off, 4 seeds each", "lasso"),
        ("α > 0.02 grown 10 / 20 / 40 px; a rounded lasso cutting in", "grown"))


def group(mask: str) -> str:
    """The table row of a mask name from :func:`masks`."""
    return "lasso" if mask.startswith("lasso") else "grown" if mask.startswith(("grown", "cut")) else mask


def masks(alpha: np.ndarray) -> dict:
    from mattebox.testing.lasso import loose_lasso

    def disc(r):
        return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))

    roto = (alpha > 0.5).astype(np.float32)
    out = {"roto": roto, "soft": np.clip(cv2.GaussianBlur(roto, (0, 0), 2), 0, 1)}
    for r in (2, 5):
        out[f"roto+{r}"], out[f"roto-{r}"] = cv2.dilate(roto, disc(r)), cv2.erode(roto, disc(r))
    out["partial"] = roto.copy()
    out["partial"][int(0.6 * roto.shape[0]):] = 0
    for near, far in LASSOS:
        for seed in range(4):
            out[f"lasso {near}-{far} seed {seed}"] = loose_lasso(alpha, seed=seed, near=near, far=far)
    for r in (10, 20, 40):
        out[f"grown {r}"] = cv2.dilate((alpha > 0.02).astype(np.float32), disc(r))
    out["cut"] = cv2.erode(cv2.dilate(roto, disc(40)), disc(60))
    return out


def frames(small: bool):
    """(name, sRGB image, alpha) for every frame, made one at a time."""
    from mattebox.colour import linear_to_srgb
    from mattebox.paths import alphamatting_dir
    from mattebox.synth.pairs import make_pair

    data = alphamatting_dir()
    if data is None:
        raise SystemExit("needs alphamatting-dev: set MATTEBOX_ALPHAMATTING")
    for i in range(1, 9):
        image = cv2.imread(str(data / "image" / f"GT0{i}.png"))[..., ::-1].astype(np.float32) / 255
        alpha = cv2.imread(str(data / "alpha" / f"GT0{i}.png"), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
        yield f"GT0{i}", image, alpha
    synthetic = [(7, (1080, 1920), False)] + [(100 + s, (540, 960), None) for s in range(1, 13)]
    if not small:
        synthetic += [(200 + s, (1080, 1920), None) for s in range(1, 7)]
        synthetic += [(s, (2160, 3840), None) for s in (301, 302)]
    for seed, size, real in synthetic:
        pair = make_pair(seed, size=size, real_alpha=real)
        yield f"make_pair({seed}) {size[1]}x{size[0]}", linear_to_srgb(pair.image), pair.alpha


def check_seconds() -> float:
    """Median CPU seconds of edge_on_image_edge on bench/speed.py's 1080p portrait and its roto."""
    from mattebox.colour import linear_to_srgb
    from mattebox.matting.guidance import edge_on_image_edge
    from mattebox.synth.pairs import make_pair

    pair = make_pair(7, size=(1080, 1920), real_alpha=False)
    image, roto = linear_to_srgb(pair.image), (pair.alpha > 0.5).astype(np.float32)
    times = []
    for _ in range(7):
        started = time.process_time()
        edge_on_image_edge(roto, image)
        times.append(time.process_time() - started)
    return float(np.median(times))


def markdown(rows: list, seconds: float) -> str:
    from mattebox.matting.guidance import ROTO_SHARE

    lines = ["# The precise-roto check against U^2-Net-p's decision", "",
             "Command: `python bench/roto_check.py`. Statistic: `guidance.edge_on_image_edge` (share of the mask's "
             f"edge on an image edge); at >= {ROTO_SHARE} the network is skipped. The network's decision: "
             "`tighten_mask(mask, saliency) is None` (take the mask as drawn).", "",
             f"Frames: {len({r['frame'] for r in rows})}. The check's own time on the 1080p portrait: "
             f"{1000 * seconds:.0f} ms CPU (median of 7).", "",
             "| masks | n | statistic min / median / max | skip the network | network says precise |"
             " highest a mask the network tightens |", "|---|---:|---|---:|---:|---:|"]
    for title, key in ROWS:
        members = [r for r in rows if group(r["mask"]) == key]
        shares = sorted(r["share"] for r in members)
        tightened = [r["share"] for r in members if not r["network_precise"]]
        lines.append(f"| {title} | {len(members)} | {shares[0]:.3f} / {shares[len(shares) // 2]:.3f} / "
                     f"{shares[-1]:.3f} | {sum(s >= ROTO_SHARE for s in shares)} | "
                     f"{sum(r['network_precise'] for r in members)} | "
                     f"{f'{max(tightened):.3f}' if tightened else '—'} |")
    wrong = [r for r in rows if r["share"] >= ROTO_SHARE and not r["network_precise"]]
    lassos = max(r["share"] for r in rows if group(r["mask"]) in ("lasso", "grown"))
    tightened = max((r["share"] for r in rows if not r["network_precise"]), default=0.0)
    lines += ["", f"Masks the check skips but the network would tighten (the matte would change): **{len(wrong)}**"
              + (": " + ", ".join(f"{r['frame']} {r['mask']}" for r in wrong) if wrong else "") + ". "
              f"Highest statistic of a lasso or grown mask: {lassos:.3f} ({ROTO_SHARE / max(lassos, 1e-9):.0f}x under "
              f"the threshold); of any mask the network tightens: {tightened:.3f}.", "",
              "| frame | true roto's statistic |", "|---|---:|"]
    lines += [f"| {r['frame']} | {r['share']:.3f} |" for r in rows if r["mask"] == "roto"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="leave out the 1080p and 4K synthetic pairs")
    args = parser.parse_args(argv)
    from mattebox.matting import segmentation
    from mattebox.matting.guidance import edge_on_image_edge, tighten_mask

    weights = segmentation.u2netp_weights()
    if weights is None:
        raise SystemExit("needs U^2-Net-p: run `mattebox models pull u2netp`")
    rows = []
    for frame, image, alpha in frames(args.small):
        saliency = segmentation.u2netp_mask(image, weights)
        for name, mask in masks(alpha).items():
            rows.append({"frame": frame, "mask": name, "share": round(edge_on_image_edge(mask, image), 4),
                         "network_precise": tighten_mask(mask, saliency) is None})
        print(frame, file=sys.stderr, flush=True)
    seconds = check_seconds()
    write_results("roto_check", {"rows": rows, "check_cpu_seconds_1080p": seconds}, markdown(rows, seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
