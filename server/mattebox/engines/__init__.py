"""Engine registry: name -> factory, imported lazily so listing engines never imports torch.

Each entry names a module and a class implementing :class:`mattebox.contract.Engine`. Learned engines register
their models in :mod:`mattebox.models.registry`; this table lists the engines the server offers.
"""
from __future__ import annotations

import importlib
import os
from typing import Dict, List

from ..contract import Engine

#: engine name -> "module:Class". The first available one in AUTO_ORDER serves engine='auto'.
ENGINE_SPECS: Dict[str, str] = {
    "classical": "mattebox.engines.classical:ClassicalEngine",
    "classical-pair": "mattebox.engines.classical_pair:ClassicalPairEngine",
    "passthrough": "mattebox.engines.passthrough:PassthroughEngine",
    # learned models (mattebox.models.registry); available once their weights are installed
    "parallax": "mattebox.engines.learned:ParallaxEngine",
    "ppmatting": "mattebox.engines.learned:PPMattingEngine",
    "mask2alpha": "mattebox.engines.learned:Mask2AlphaEngine",
    "vitmatte": "mattebox.engines.learned:ViTMatteEngine",
}
#: engine 'auto' picks the first available of these when the request carries a second frame
AUTO_PAIR_ORDER: List[str] = ["classical-pair"]
AUTO_ORDER: List[str] = ["classical"]

_instances: Dict[str, Engine] = {}

# Site engines: MATTEBOX_ENGINES="name=package.module:Class,other=..." adds engines without editing this table.
for _entry in filter(None, os.environ.get("MATTEBOX_ENGINES", "").split(",")):
    _name, _, _spec = _entry.partition("=")
    ENGINE_SPECS[_name.strip()] = _spec.strip()


def register(name: str, spec: str, auto_rank: int = -1) -> None:
    """Add an engine (plug-in packages call this); auto_rank >= 0 inserts it into the 'auto' order."""
    ENGINE_SPECS[name] = spec
    if auto_rank >= 0 and name not in AUTO_ORDER:
        AUTO_ORDER.insert(auto_rank, name)


def get(name: str) -> Engine:
    """The engine instance for ``name`` (created once). Raises KeyError for unknown names."""
    if name not in ENGINE_SPECS:
        raise KeyError(name)
    if name not in _instances:
        module_name, class_name = ENGINE_SPECS[name].split(":")
        _instances[name] = getattr(importlib.import_module(module_name), class_name)()
    return _instances[name]


def resolve(name: str, request_inputs=()) -> Engine:
    """Map 'auto' to the best available engine for the given input names (a request with 'second' gets a
    two-frame engine); otherwise return the named engine."""
    if name != "auto":
        return get(name)
    order = (AUTO_PAIR_ORDER + AUTO_ORDER) if "second" in request_inputs else AUTO_ORDER
    for candidate in order:
        try:
            engine = get(candidate)
        except Exception:
            continue
        if engine.availability()[0]:
            return engine
    return get("classical")


def describe_all() -> List[dict]:
    """Every engine's description; an engine whose module fails to import is listed as unavailable, with why."""
    out = []
    for name in ENGINE_SPECS:
        try:
            out.append(get(name).describe())
        except Exception as exc:  # a broken optional engine must not break hello
            out.append({"name": name, "kind": "unknown", "description": "", "uses": [], "available": False,
                        "why": f"cannot load {ENGINE_SPECS[name]}: {exc.__class__.__name__}: {exc}"})
    return out
