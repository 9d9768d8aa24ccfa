"""Alpha-free (trimap-only, known L1 + 10·DDC) vs supervised training on the same small CPU budget.

The same tiny network (configs/compare.json: a 4-level U-Net, image + trimap in), the same synthetic samples in
the same order, the same steps, batch and learning-rate schedule; only the objective differs:

* ``supervised``  — Parallax L_sep + L_laplacian + L_grad against the ground-truth alpha;
* ``alpha-free``  — known-region L1 against the trimap + 10 × DDC: the alpha labels are never read;
* ``known-only``  — the alpha-free paper's Table 4 row 1 (no DDC), to show what DDC itself contributes.

Each trained model is scored on the held-out synthetic set (fixed seeds, never trained on) and on alphamatting-dev
(both trimaps, run at most 256 px on the long side, scored at full size), next to the classical engine on the same
inputs. One CPU thread per run (fastest on the shared machine). Writes bench/results/training.{json,md}.

    python bench/training.py [--steps N] [--objectives supervised,alpha-free,known-only]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.support import RESULTS, ROOT, write_results  # noqa: E402  (and the checkout's packages on sys.path)
CONFIG = ROOT / "configs" / "compare.json"


def train_one(objective: str, steps: int, workdir: Path, kinds=None, eval_alphamatting: bool = True) -> dict:
    from mattebox.training.trainer import TrainConfig, Trainer

    values = json.loads(CONFIG.read_text())  # one recipe; the objective is the variable
    values.update(name=f"compare-{objective}", objective=objective, steps=steps, eval_every=steps,
                  checkpoint_every=steps, output=str(workdir / objective), threads=1,
                  eval_alphamatting=eval_alphamatting)
    if kinds:
        values["data"] = {**values["data"], "kinds": list(kinds)}
    config = TrainConfig.from_dict(values)
    trainer = Trainer(config, log=lambda message: None)
    started = time.perf_counter()
    result = trainer.train(resume=False)
    seconds = time.perf_counter() - started
    log = [json.loads(line) for line in (workdir / objective / "log.jsonl").read_text().splitlines()]
    return {"objective": objective, "steps": steps, "seconds": round(seconds, 1), "final_loss": log[-1],
            "evaluation": result["evaluation"], "uses_alpha_labels": objective == "supervised"}


def classical_reference(config_values: dict, kinds=None, alphamatting: bool = True) -> dict:
    from mattebox.training.data import DataConfig
    from mattebox.training.evaluate import (alphamatting_names, classical_predictor, evaluate_alphamatting,
                                            evaluate_heldout)

    predict = classical_predictor()
    data = {**config_values["data"], **({"kinds": list(kinds)} if kinds else {})}
    out = {"heldout": evaluate_heldout(predict, config_values["eval_heldout"], DataConfig.from_dict(data))["mean"]}
    if not alphamatting:
        return out
    names = alphamatting_names()
    out["alphamatting"] = (evaluate_alphamatting(predict, names, max_side=config_values["eval_max_side"])["mean"]
                           if names else "skipped: alphamatting-dev not found")
    return out


def ddc_per_image(count: int, iterations: int = 300) -> dict:
    """The losses alone, without a network: optimise α pixel by pixel (sigmoid logits, Adam) on held-out samples,
    from the trimap with 0.5 in the unknown band. Shows whether known + 10·DDC propagates alpha into the band
    (compare with the 0.5 start), independent of how fast a network learns it."""
    import numpy as np
    import torch

    from mattebox.evaluation import all_metrics
    from mattebox.training import losses
    from mattebox.training.data import DataConfig, heldout_samples

    base = json.loads(CONFIG.read_text())
    start_rows, optimised_rows = [], []
    for sample in heldout_samples(count, DataConfig.from_dict(base["data"])):
        image = torch.from_numpy(sample["image"].transpose(2, 0, 1))[None]
        trimap = torch.from_numpy(sample["trimap"])[None, None]
        logits = torch.where(trimap == 1, 4.0, torch.where(trimap == 0, -4.0, 0.0)).requires_grad_()
        optimiser = torch.optim.Adam([logits], lr=0.05)
        for _ in range(iterations):
            loss = sum(losses.alpha_free_loss(torch.sigmoid(logits), image, trimap).values())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        alpha = torch.sigmoid(logits).detach()[0, 0].numpy()
        start = np.where(sample["trimap"] == 0.5, 0.5, sample["trimap"]).astype(np.float32)
        start_rows.append(all_metrics(start, sample["alpha"], sample["trimap"]))
        optimised_rows.append(all_metrics(alpha, sample["alpha"], sample["trimap"]))
    mean = lambda rows: {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}  # noqa: E731
    return {"count": count, "iterations": iterations, "start_unknown_0.5": mean(start_rows),
            "optimised": mean(optimised_rows)}


def table(results: dict) -> str:
    lines = [f"# Alpha-free (DDC) vs supervised training, same CPU budget ({results['steps']} steps × batch "
             f"{results['batch_size']} of {results['crop']} px crops, tiny U-Net, image + trimap in)", ""]

    def row(name, labels, seconds, evaluation):
        held, am = evaluation.get("heldout", {}), evaluation.get("alphamatting", {})
        am = am if isinstance(am, dict) else {}
        fmt = lambda d, k, p: f"{d[k]:.{p}f}" if k in d else "-"  # noqa: E731
        return (f"| {name} | {labels} | {seconds} | {fmt(held, 'sad', 3)} | {fmt(held, 'mse', 4)} | "
                f"{fmt(held, 'grad', 3)} | {fmt(am, 'sad', 2)} | {fmt(am, 'mse', 4)} | {fmt(am, 'grad', 2)} |")

    for setting in results["settings"]:
        lines += [f"## Foregrounds: {setting['name']}", "",
                  "| objective | alpha labels | train s | held-out SAD | held-out MSE | held-out Grad | AM-dev SAD | "
                  "AM-dev MSE | AM-dev Grad |", "|---|---|---|---|---|---|---|---|---|"]
        for run in setting["runs"]:
            lines.append(row(run["objective"], "yes" if run["uses_alpha_labels"] else "no (trimap only)",
                             run["seconds"], run["evaluation"]))
        lines.append(row("classical engine (reference)", "n/a", "-", setting["classical"]))
        by = {r["objective"]: r["evaluation"].get("heldout", {}).get("sad") for r in setting["runs"]}
        if by.get("supervised") and by.get("alpha-free"):
            lines += ["", f"Held-out SAD alpha-free / supervised: **{by['alpha-free'] / by['supervised']:.2f}×** "
                          "(1.0 = as good as training with alpha labels)."]
        lines.append("")
    diagnostic = results.get("ddc_per_image")
    if diagnostic:
        lines += ["## The alpha-free losses alone (no network)", "",
                  f"α optimised pixel by pixel with known L1 + 10·DDC ({diagnostic['iterations']} Adam steps) on "
                  f"{diagnostic['count']} held-out samples: SAD {diagnostic['optimised']['sad']:.3f}, "
                  f"MSE {diagnostic['optimised']['mse']:.4f}, from SAD {diagnostic['start_unknown_0.5']['sad']:.3f}, "
                  f"MSE {diagnostic['start_unknown_0.5']['mse']:.4f} for the start (0.5 in the unknown band).", ""]
    lines += ["Held-out: synthetic samples with fixed seeds never used in training (SAD/Grad ÷ 1000 as DIM, over "
              "the trimap's unknown band). AM-dev: alphamatting-dev 8 images × 2 trimaps, models run at ≤ "
              f"{results['eval_max_side']} px and scored at full size. {results['machine']}.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--objectives", default="supervised,alpha-free,known-only")
    parser.add_argument("--diagnostic", type=int, default=4,
                        help="held-out samples for the per-image DDC optimisation (0 = skip)")
    parser.add_argument("--diagnostic-only", action="store_true",
                        help="only (re)compute the per-image DDC diagnostic into the existing results")
    parser.add_argument("--fur-objectives", default="supervised,alpha-free",
                        help="objectives also run on fur-only data, where thin structures share the body's colours "
                             "('' to skip)")
    args = parser.parse_args(argv)
    if args.diagnostic_only:
        results = json.loads((RESULTS / "training.json").read_text())
        results["ddc_per_image"] = ddc_per_image(args.diagnostic)
        write_results("training", results, table(results))
        return 0
    base = json.loads(CONFIG.read_text())
    settings = [("all procedural kinds", None, args.objectives), ("fur only", ("fur",), args.fur_objectives)]
    results_settings = []
    with tempfile.TemporaryDirectory() as workdir:
        for name, kinds, objectives in settings:
            if not objectives:
                continue
            runs = []
            for objective in objectives.split(","):
                print(f"[{name}] training {objective} for {args.steps} steps ...", flush=True)
                runs.append(train_one(objective, args.steps, Path(workdir) / str(len(results_settings)), kinds,
                                      eval_alphamatting=kinds is None))
                print(json.dumps(runs[-1]["evaluation"]), flush=True)
            results_settings.append({"name": name, "kinds": list(kinds) if kinds else None, "runs": runs,
                                     "classical": classical_reference(base, kinds, alphamatting=kinds is None)})
    import torch

    results = {"steps": args.steps, "batch_size": base["batch_size"], "crop": base["data"]["crop"],
               "model": base["model"], "model_options": base["model_options"], "lr": base["lr"],
               "eval_max_side": base["eval_max_side"], "settings": results_settings,
               "machine": f"{platform.machine()} CPU, 1 torch thread, torch {torch.__version__}",
               "command": "python bench/training.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    if args.diagnostic:
        results["ddc_per_image"] = ddc_per_image(args.diagnostic)
    write_results("training", results, table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
