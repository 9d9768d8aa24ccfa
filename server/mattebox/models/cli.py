"""``mattebox models``: list the registered learned models, their size, inputs and whether weights are installed.

Listing imports no torch (registry metadata and file checks only); ``--verify`` hashes installed files against
their expected sha256; ``--count`` builds each full config on torch's meta device to count parameters.
"""
from __future__ import annotations

import importlib
import json
import sys
from typing import Dict, List

from . import registry
from .weights import WeightsError, expected_sha256, models_dir, verify_file, weights_status


#: ``mattebox models pull NAME``: models with an installer, name -> "module" with add_arguments(parser) and run(args)
INSTALLERS = {"u2netp": "mattebox.models.u2netp_install"}


def add_arguments(parser) -> None:
    parser.add_argument("action", nargs="?", choices=["pull"], help="pull NAME: download and install its weights")
    parser.add_argument("name", nargs="?", help=f"model to pull: {', '.join(sorted(INSTALLERS))}")
    for module in sorted(set(INSTALLERS.values())):
        importlib.import_module(module).add_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--verify", action="store_true", help="check installed weights files' sha256")
    parser.add_argument("--count", action="store_true", help="count parameters by building each model (torch)")


def describe(verify: bool = False, count: bool = False) -> List[Dict]:
    rows = []
    for spec in registry.list_models():
        present, why, path = weights_status(spec)
        row = {"name": spec.name, "params": spec.full_params, "inputs": list(spec.inputs),
               "outputs": list(spec.outputs), "paper": spec.paper, "weights_present": present,
               "weights_path": str(path) if path else None, "why": why,
               "licence": spec.weights.licence if spec.weights else "", "description": spec.description}
        if verify and present and spec.weights is not None:
            try:
                verify_file(path, expected_sha256(spec))
                row["verified"] = True
            except WeightsError as exc:
                row["verified"], row["why"] = False, str(exc)
        if count:
            import torch

            from .vit import count_parameters
            with torch.device("meta"):
                row["params"] = count_parameters(registry.build(spec.name))
        rows.append(row)
    return rows


def run(args) -> int:
    if getattr(args, "action", None) == "pull":
        if args.name not in INSTALLERS:
            print(f"mattebox models pull: name: expected one of {', '.join(sorted(INSTALLERS))}, got {args.name!r}",
                  file=sys.stderr)
            return 2
        return importlib.import_module(INSTALLERS[args.name]).run(args)
    rows = describe(getattr(args, "verify", False), getattr(args, "count", False))
    if getattr(args, "json", False):
        print(json.dumps({"models_dir": str(models_dir()), "models": rows}, indent=2))
        return 0
    print(f"models folder: {models_dir()}  (set MATTEBOX_MODELS to change)")
    print(f"{'name':<12} {'params':>8}  {'weights':<8} inputs")
    for row in rows:
        state = "present" if row["weights_present"] else "missing"
        if row.get("verified") is False:
            state = "CORRUPT"
        print(f"{row['name']:<12} {row['params'] / 1e6:>7.1f}M  {state:<8} {', '.join(row['inputs'])}")
        print(f"{'':<12} {row['why'] or row['weights_path']}")
    return 0
