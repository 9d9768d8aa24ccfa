"""Every trained model vs the classical engine, on the held-out synthetic set and on alphamatting-dev, plus the
two-frame vs single-frame ablation (the Parallax paper's Table 2 reports two frames roughly halving SAD).

Runs against whatever weights exist and says which models had none:

* models come from the model registry (``mattebox.models.registry``) when this tree has it;
* weights are the installed files the learned engines use (``mattebox.models.weights.models_dir()``:
  ``$MATTEBOX_MODELS`` or ``~/.cache/mattebox/models``, see docs/training.md) and training runs
  (``runs/*/final.safetensors`` whose ``final.json`` names the model);
* a model without weights is listed with ``"status": "no trained weights"`` and no scores — random
  initialisations are never scored as if they were models.

Two-frame models are scored twice on the held-out pairs: with the real second frame and with the image repeated
(the paper's "same frame" ablation, row 4). alphamatting-dev has no second frames, so it is single-frame only.
Writes bench/results/learned.{json,md}.

    python bench/learned.py [--heldout N] [--crop PX] [--max-side PX]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.support import ROOT, write_results  # noqa: E402  (and the checkout's packages on sys.path)
#: sample arrays that carry the second frame; removing them gives a two-frame model its single-frame case
SECOND_FRAME_INPUTS = ("bg_aligned", "fg_aligned", "companion", "warped_trimap")


def registry_models() -> tuple:
    """(names, note): the registry's model names, or () and why not."""
    try:
        from mattebox.models import registry
    except ImportError as exc:
        return (), f"no model registry in this tree ({exc})"
    return tuple(spec.name for spec in registry.matting_models()), ""


def find_weights(names) -> dict:
    """model name -> list of (weights path, run config or None): installed weights first (the learned engines'
    files under the models dir), then training runs (``runs/*/final.safetensors`` naming the model)."""
    found: dict = {}
    if names:
        from mattebox.models import registry
        from mattebox.models.weights import weights_status

        for name in names:
            present, _, path = weights_status(registry.get_spec(name))
            if present and path is not None and path.is_file():
                found.setdefault(name, []).append((path, None))
    for meta in sorted((ROOT / "runs").glob("*/final.json")):
        config = json.loads(meta.read_text()).get("config", {})
        weights = meta.with_suffix(".safetensors")
        if weights.is_file() and config.get("model"):
            found.setdefault(config["model"], []).append((weights, config))
    return found


def score(predict, heldout: int, data_config, names, max_side, second_frame: bool = True) -> dict:
    from mattebox.training.evaluate import evaluate_alphamatting, evaluate_heldout

    def single(image, trimap, sample):
        return predict(image, trimap, {k: v for k, v in sample.items() if k not in SECOND_FRAME_INPUTS})

    chosen = predict if second_frame else single
    out = {"heldout": evaluate_heldout(chosen, heldout, data_config)["mean"]}
    out["alphamatting"] = (evaluate_alphamatting(predict, names, max_side=max_side)["mean"] if names
                           else "skipped: alphamatting-dev not found")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heldout", type=int, default=24, help="held-out synthetic samples")
    parser.add_argument("--crop", type=int, default=256, help="held-out sample size")
    parser.add_argument("--max-side", type=int, default=None,
                        help="run alphamatting-dev at most this size, every method alike (scored at full size)")
    args = parser.parse_args(argv)

    import torch

    from mattebox.training.checkpoint import load_model
    from mattebox.training.data import DataConfig
    from mattebox.training.evaluate import alphamatting_names, classical_predictor, model_predictor
    from mattebox.models.inputs import input_names as model_input_names
    from mattebox.training.trainer import build_model

    names_in_registry, registry_note = registry_models()
    weights = find_weights(names_in_registry)
    try:
        from mattebox.models.weights import models_dir
        weights_dir = models_dir()
    except ImportError:
        weights_dir = Path("(no models package)")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        import mattebox.synth.pairs  # noqa: F401
        import mattebox.matting.align  # noqa: F401
        pairs_available = True
    except ImportError:
        pairs_available = False
    # held-out parallax pairs carry aligned second frames: two-frame models use them, the rest ignore them
    data_config = DataConfig(crop=args.crop, two_frame=pairs_available)
    am_all = alphamatting_names()

    started = time.perf_counter()
    rows = [{"model": "classical", "weights": None, "frames": 1,
             **score(classical_predictor(), args.heldout, data_config, am_all, args.max_side)}]
    models = []
    for name in sorted(set(names_in_registry) | set(weights)):
        candidates = weights.get(name, [])
        entry = {"model": name, "in_registry": name in names_in_registry,
                 "weights": [str(p) for p, _ in candidates]}
        if not candidates:
            entry["status"] = "no trained weights"
            models.append(entry)
            continue
        path, run_config = candidates[0]
        options = (run_config or {}).get("model_options", {})
        model = build_model(name, options).to(device)
        load_model(model, path)
        train_names = tuple((run_config or {}).get("data", {}).get("alphamatting_foregrounds", ()))
        am_names = [n for n in am_all if n not in train_names]
        predict = model_predictor(model, device)
        two_frame = bool({"bg_aligned", "fg_aligned"} & set(model_input_names(model)))
        entry.update(status="evaluated", evaluated_weights=str(path), two_frame=two_frame,
                     alphamatting_excluded=list(train_names))
        label = name
        if run_config:
            label = (f"{name} ({Path(path).parent.name}: {run_config.get('steps')} steps, "
                     f"{'tiny' if options.get('tiny') else 'full'}, {run_config.get('objective')})")
        rows.append({"model": label, "weights": str(path), "frames": 2 if two_frame else 1,
                     **score(predict, args.heldout, data_config, am_names, args.max_side)})
        if two_frame:
            rows.append({"model": label, "weights": str(path), "frames": "1 (same frame twice)",
                         **score(predict, args.heldout, data_config, am_names, args.max_side, second_frame=False)})
        models.append(entry)

    results = {"pairs_available": pairs_available, "registry": list(names_in_registry), "registry_note": registry_note,
               "weights_dir": str(weights_dir), "models": models, "rows": rows,
               "heldout": args.heldout, "crop": args.crop, "max_side": args.max_side,
               "seconds": round(time.perf_counter() - started, 1),
               "machine": f"{platform.machine()}, {device.type}, torch {torch.__version__}"}
    write_results("learned", results, table(results))
    return 0


def table(results: dict) -> str:
    lines = ["# Learned models vs the classical engine", "",
             f"Held-out synthetic: {results['heldout']} {'parallax pairs' if results['pairs_available'] else 'samples'}"
             f" of {results['crop']} px (fixed seeds, never trained on; flow-aligned second frames for two-frame "
             "models). AM-dev: alphamatting-dev, both trimaps, minus any image a model trained on, every method run "
             f"{'at full size' if not results['max_side'] else 'at ≤ %d px' % results['max_side']} and scored at "
             "full size. SAD/Grad ÷ 1000 over the unknown band.", "",
             "| model | frames | held-out SAD | held-out MSE | held-out Grad | AM-dev SAD | AM-dev MSE | AM-dev Grad |",
             "|---|---|---|---|---|---|---|---|"]
    for row in results["rows"]:
        held = row["heldout"]
        am = row["alphamatting"] if isinstance(row["alphamatting"], dict) else {}
        fmt = lambda d, k, p: f"{d[k]:.{p}f}" if k in d else "-"  # noqa: E731
        lines.append(f"| {row['model']} | {row['frames']} | {fmt(held, 'sad', 3)} | {fmt(held, 'mse', 4)} | "
                     f"{fmt(held, 'grad', 3)} | {fmt(am, 'sad', 2)} | {fmt(am, 'mse', 4)} | {fmt(am, 'grad', 2)} |")
    if any(row["frames"] != 1 for row in results["rows"]) and not results.get("pairs_available"):
        lines += ["", "Two-frame rows: this tree has no synthetic pair generator, so the held-out samples carry no "
                      "second frame and both rows ran the single-frame case."]
    missing = [m["model"] for m in results["models"] if m["status"] == "no trained weights"]
    lines.append("")
    if results["registry_note"]:
        lines.append(f"Registry: {results['registry_note']}.")
    lines.append(f"Models with no trained weights (not scored): {', '.join(missing) if missing else 'none'}. "
                 f"Weights looked up in {results['weights_dir']} and runs/*/final.safetensors.")
    command = f"python bench/learned.py --heldout {results['heldout']} --crop {results['crop']}" + (
        f" --max-side {results['max_side']}" if results["max_side"] else "")
    lines += ["", f"{results['machine']}, {results['seconds']} s. Command: `{command}`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
