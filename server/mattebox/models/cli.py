"""``mattebox models``: the learned models, the published weights that exist for them, and getting those weights.

``mattebox models`` lists, torch-free, each model (size, inputs, whether weights are installed) and each
published checkpoint (source, licence of code and of weights with the training-data caveat, size, installed or
not, the command that gets it); ``--verify`` hashes installed files against their expected sha256; ``--count``
builds each full config on torch's meta device to count parameters. ``mattebox models pull NAME`` downloads and
installs a published checkpoint; ``mattebox models import NAME FILE`` installs one already on disk (install.py).
"""
from __future__ import annotations

import json
import sys
from typing import Dict, List

from . import registry
from .sources import SOURCES, is_installed
from .weights import WeightsError, models_dir, read_sidecar, resolve_weights, verify_file, weights_status


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--verify", action="store_true", help="check installed weights files' sha256")
    parser.add_argument("--count", action="store_true", help="count parameters by building each model (torch)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    pull = actions.add_parser("pull", help="download a published checkpoint from its official source and install "
                              "it (resumes a cut download; checks size and sha256)")
    pull.add_argument("name", help="a name from `mattebox models` (e.g. vitmatte-small-composition-1k)")
    pull.add_argument("--sha256", default="", help="pin the download's sha256 (64 hex digits)")
    pull.add_argument("--url", default="", help="download from this URL (a mirror) instead of the official one")
    pull.add_argument("--timeout", type=float, default=30.0, help="seconds without data before giving up "
                      "(default 30)")
    imp = actions.add_parser("import", help="install a published checkpoint already on disk (offline farms)")
    imp.add_argument("name", help="a name from `mattebox models`")
    imp.add_argument("file", help="the downloaded file (model.safetensors, pytorch_model.bin, NAME.pdparams) or "
                     "its folder")
    imp.add_argument("--sha256", default="", help="refuse the file unless it has this sha256")


def describe(verify: bool = False, count: bool = False) -> List[Dict]:
    """One row per registered model (engine)."""
    rows = []
    for spec in registry.list_models():
        present, why, path = weights_status(spec)
        resolved = resolve_weights(spec) if present else None
        row = {"name": spec.name, "params": spec.full_params, "inputs": list(spec.inputs),
               "outputs": list(spec.outputs), "paper": spec.paper, "weights_present": present,
               "weights_path": str(path) if path else None, "weights": resolved.label if resolved else None,
               "why": why, "licence": spec.weights.licence if spec.weights else "", "description": spec.description}
        if verify and resolved is not None and not resolved.folder:
            try:
                verify_file(resolved.path, resolved.sha256 or read_sidecar(resolved.path))
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


def describe_sources() -> List[Dict]:
    """One row per published checkpoint (sources.py)."""
    folder = models_dir()
    rows = []
    for source in SOURCES:
        installed = is_installed(source, folder)
        rows.append({"name": source.name, "model": source.model, "source": source.page(),
                     "download": source.download_url(), "code_licence": source.code_licence,
                     "weights_licence": source.weights_licence, "caveat": source.caveat, "size": source.size,
                     "installed": installed, "path": str(folder / source.file) if installed else None,
                     "command": "" if installed else source.pull_command(),
                     "offline": "" if installed else source.import_command()})
    return rows


def _print_listing(rows: List[Dict], weights: List[Dict]) -> None:
    print(f"models folder: {models_dir()}  (set MATTEBOX_MODELS to change)")
    print(f"{'model':<12} {'params':>8}  {'weights':<8} inputs")
    for row in rows:
        state = "present" if row["weights_present"] else "missing"
        if row.get("verified") is False:
            state = "CORRUPT"
        print(f"{row['name']:<12} {row['params'] / 1e6:>7.1f}M  {state:<8} {', '.join(row['inputs'])}")
        print(f"{'':<12} {row['why'] or (row['weights'] or '') + ': ' + row['weights_path']}")
    print("\npublished weights (installed with `mattebox models pull NAME`, or offline `mattebox models import NAME "
          "FILE`):")
    for row in weights:
        state = "installed" if row["installed"] else "not installed"
        print(f"\n{row['name']}  [{row['model']}, {row['size'] / 1e6:.0f} MB, {state}]")
        print(f"  source:  {row['source']}")
        print(f"  code:    {row['code_licence']}")
        print(f"  weights: {row['weights_licence']}")
        if row["caveat"]:
            print(f"  caveat:  {row['caveat']}")
        if row["installed"]:
            print(f"  file:    {row['path']}")
        else:
            print(f"  get it:  {row['command']}   (offline: {row['offline']})")


def _report(installed, verb: str) -> None:
    print(f"{verb} {installed.source} -> {installed.path}")
    if installed.parameters:
        print(f"  {installed.parameters:,} parameters; installed file sha256 {installed.sha256}")
    if installed.download_sha256:
        if installed.checked_against:
            checked = f"matches {installed.checked_against}"
        elif verb == "installed":
            checked = "recorded now (the source publishes none); pin it next time with --sha256"
        else:
            checked = ("not checked: compare it with the source's (Hugging Face shows it on the file's page) or "
                       "import with --sha256")
        print(f"  original file sha256 {installed.download_sha256} — {checked}")


def run(args) -> int:
    action = getattr(args, "action", None)
    if action in ("pull", "import"):
        from .download import DownloadError
        from .install import import_file, pull
        try:
            if action == "pull":
                _report(pull(args.name, args.sha256, args.url, args.timeout), "installed")
            else:
                _report(import_file(args.name, args.file, args.sha256), "imported")
        except KeyError as exc:
            print(f"mattebox models {action}: {exc.args[0]}", file=sys.stderr)
            return 2
        except (DownloadError, WeightsError, OSError) as exc:
            print(f"mattebox models {action} {args.name}: {exc}", file=sys.stderr)
            return 1
        return 0
    rows = describe(getattr(args, "verify", False), getattr(args, "count", False))
    weights = describe_sources()
    if getattr(args, "json", False):
        print(json.dumps({"models_dir": str(models_dir()), "models": rows, "weights": weights}, indent=2))
        return 0
    _print_listing(rows, weights)
    return 0
