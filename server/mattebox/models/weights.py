"""Weights files: safetensors save/load with sha256 verification, checkpoint filters. Nothing is downloaded here
(``mattebox models pull`` downloads, install.py; matting never does).

Weights live under :func:`models_dir` (``$MATTEBOX_MODELS`` or ``<cache>/models``): a registry
:class:`~mattebox.models.registry.WeightsEntry`'s file (weights you trained), or a published checkpoint that
``mattebox models pull/import`` converted (sources.py), each with its ``.sha256`` sidecar. :func:`resolve_weights`
picks which one an engine loads; :func:`load_weights` refuses a missing or corrupt file with an error naming the
file and the expected hash. ``status`` helpers need no torch.
"""
from __future__ import annotations

import hashlib
import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from ..paths import cache_dir
from . import sources as _sources


class WeightsError(RuntimeError):
    """A weights file is missing, corrupt (hash mismatch) or does not fit the model."""


def models_dir() -> Path:
    """Folder holding installed weights: ``$MATTEBOX_MODELS`` or ``<mattebox cache>/models``."""
    env = os.environ.get("MATTEBOX_MODELS")
    return Path(env) if env else cache_dir() / "models"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(path: Path) -> Path:
    return Path(str(path) + ".sha256")


def read_sidecar(path: Path) -> str:
    """The digest recorded in ``<file>.sha256`` (WeightsError when there is none)."""
    side = sidecar_path(path)
    if not side.is_file():
        raise WeightsError(f"weights file {path} has no published sha256 and no {side.name} sidecar; install it with "
                           f"`mattebox models import` or export it with mattebox.models.weights.export_weights "
                           f"(both write the sidecar)")
    return side.read_text().split()[0].strip()


@dataclass(frozen=True)
class ResolvedWeights:
    """The weights an engine loads: the file, its expected digest, how to map its keys, the build overrides."""
    label: str  #: the source name, or the model name for locally trained weights / a save_pretrained folder
    path: Path
    sha256: str
    checkpoint_filter: str = ""
    config: Dict[str, Any] = field(default_factory=dict)
    folder: bool = False  #: a save_pretrained folder (ViTMatte), loaded by the model's own loader


def resolve_weights(spec, prefer: Optional[str] = None) -> Optional[ResolvedWeights]:
    """Which installed weights ``spec``'s engine uses, without hashing or torch: ``prefer`` (a source name from
    sources.py) when given; else the spec's own file (weights you trained), else the first installed published
    source, else a ``save_pretrained`` folder named by ``extras["folder"]``. None when nothing is installed."""
    folder = models_dir()
    if not prefer and spec.weights is not None and (folder / spec.weights.file).is_file():
        path = folder / spec.weights.file
        digest = spec.weights.sha256 or (read_sidecar(path) if sidecar_path(path).is_file() else "")
        return ResolvedWeights(spec.name, path, digest, spec.weights.checkpoint_filter)
    try:
        source = _sources.first_installed(spec.name, folder, prefer)
    except KeyError as exc:
        raise WeightsError(str(exc.args[0])) from None
    if source is not None:
        path = folder / source.file
        return ResolvedWeights(source.name, path, read_sidecar(path), source.checkpoint_filter, dict(source.config))
    if prefer:
        raise WeightsError(f"weights {prefer!r} are not installed in {folder}; run `mattebox models pull {prefer}`")
    legacy = spec.extras.get("folder")
    if legacy and (folder / legacy).is_dir():
        return ResolvedWeights(spec.name, folder / legacy, "", folder=True)
    return None


def weights_path(spec) -> Optional[Path]:
    """Where the spec's own weights file (locally trained; ``mattebox train --install`` writes it) or its
    ``save_pretrained`` folder goes; None when it has neither. Published checkpoints have their own files
    (sources.py); :func:`resolve_weights` says which file an engine loads."""
    if spec.weights is not None:
        return models_dir() / spec.weights.file
    folder = spec.extras.get("folder")
    return models_dir() / folder if folder else None


def expected_sha256(spec) -> str:
    """The digest a spec's own weights file must have: the registry's, else the export sidecar's."""
    if spec.weights is None:
        raise WeightsError(f"model {spec.name!r} has no weights entry")
    return spec.weights.sha256 or read_sidecar(models_dir() / spec.weights.file)


def weights_status(spec) -> Tuple[bool, str, Optional[Path]]:
    """(present, why-not, path) without hashing or importing torch (``mattebox models``, engine availability).
    The why-not names the folder and the command that gets weights, so hosts' engine menus can show it."""
    resolved = resolve_weights(spec)
    if resolved is not None:
        return True, "", resolved.path
    how = _sources.how_to_get(spec.name)
    path = weights_path(spec)
    if how:
        return False, f"weights not installed; {how}", path
    if path is None:
        return False, (f"no trained weights are published for {spec.name!r}; train them (docs/models.md) and add a "
                       f"weights entry"), None
    expected = f" (sha256 {spec.weights.sha256})" if spec.weights.sha256 else ""
    return False, f"weights not installed: {path}{expected}; train them (docs/training.md, `mattebox train`)", path


def verify_file(path: Path, expected_sha256: str) -> None:
    """Raise :class:`WeightsError` naming the file and the expected hash if it is missing or differs."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} is missing (expected sha256 {expected_sha256}); install it there "
                           f"or set MATTEBOX_MODELS")
    _check_digest(path, sha256_file(path), expected_sha256)


def read_verified(path: Path, expected_sha256: str) -> bytes:
    """The whole file's bytes, checked like :func:`verify_file`; one read, so the bytes hashed are the bytes a
    caller loads (a small file such as U^2-Net-p's 4.6 MB ONNX graph)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"weights file {path} cannot be read ({exc.strerror}; expected sha256 "
                           f"{expected_sha256}); install it there or set MATTEBOX_MODELS") from None
    _check_digest(path, hashlib.sha256(data).hexdigest(), expected_sha256)
    return data


def _check_digest(path: Path, actual: str, expected_sha256: str) -> None:
    if actual != expected_sha256.lower():
        raise WeightsError(f"weights file {path} is corrupt or a different version: sha256 {actual}, expected "
                           f"{expected_sha256}")


def save_weights(model_or_state, path: Path, metadata: Optional[Dict[str, str]] = None) -> str:
    """Write a model's (or a state dict's) tensors as safetensors; returns the file's sha256."""
    from safetensors.torch import save_file

    state = model_or_state.state_dict() if hasattr(model_or_state, "state_dict") else model_or_state
    # safetensors refuses shared storage: store contiguous copies (tied weights are re-tied by load_state_dict)
    tensors = {key: value.detach().contiguous().clone() for key, value in state.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata or {})
    return sha256_file(path)


def export_weights(model_or_state, path: Path, metadata: Optional[Dict[str, str]] = None) -> str:
    """Save as safetensors and write the ``<file>.sha256`` sidecar (for locally trained weights)."""
    digest = save_weights(model_or_state, path, metadata)
    sidecar_path(Path(path)).write_text(f"{digest}  {Path(path).name}\n")
    return digest


def read_state_dict(path: Path, expected_sha256: Optional[str] = None, device: str = "cpu") -> Dict:
    """Read a safetensors file into a state dict, verifying the sha256 first when one is given."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if expected_sha256:
        verify_file(path, expected_sha256)
    elif not path.is_file():
        raise WeightsError(f"weights file {path} is missing")
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"weights file {path} is not a readable safetensors file: {exc}") from exc


def import_callable(name: str) -> Callable:
    """The function named ``"module:function"`` (checkpoint filters, converters, installers); a module that is not
    there (a converter from a branch not merged, a missing optional package) is a WeightsError saying so."""
    module_name, func_name = name.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise WeightsError(f"{module_name} is not available here ({exc}); this mattebox cannot convert these "
                           f"weights yet") from None
    return getattr(module, func_name)


def resolve_filter(name: str) -> Optional[Callable[[Dict], Dict]]:
    """The checkpoint filter named ``"module:function"`` in a WeightsEntry (None for "")."""
    return import_callable(name) if name else None


def load_weights(model, path: Path, expected_sha256: Optional[str] = None,
                 checkpoint_filter: Optional[Callable[[Dict], Dict]] = None, strict: bool = True):
    """Load a safetensors checkpoint into ``model`` (sha256-verified), mapping foreign layouts through
    ``checkpoint_filter(state_dict) -> state_dict`` (timm's ``checkpoint_filter_fn`` idea)."""
    state = read_state_dict(path, expected_sha256)
    if checkpoint_filter is not None:
        state = checkpoint_filter(state)
    return model.load_state_dict(state, strict=strict)


def load_spec_weights(model, spec, resolved: Optional[ResolvedWeights] = None):
    """Load installed weights into ``model`` (``resolved``, else :func:`resolve_weights`); WeightsError when they
    are absent, corrupt or do not fit."""
    resolved = resolved or resolve_weights(spec)
    if resolved is None:
        raise WeightsError(weights_status(spec)[1])
    digest = resolved.sha256 or read_sidecar(resolved.path)  # no digest at all: the sidecar's error says why
    try:
        return load_weights(model, resolved.path, digest, resolve_filter(resolved.checkpoint_filter))
    except RuntimeError as exc:
        if isinstance(exc, WeightsError):
            raise
        raise WeightsError(f"weights file {resolved.path} does not fit model {spec.name!r}: {exc}") from exc


def rename_prefixes(mapping: Dict[str, str]) -> Callable[[Dict], Dict]:
    """A checkpoint filter renaming key prefixes (``{"backbone.": "encoder."}``); keys without a match are kept."""
    def apply(state: Dict) -> Dict:
        out = {}
        for key, value in state.items():
            for old, new in mapping.items():
                if key.startswith(old):
                    key = new + key[len(old):]
                    break
            out[key] = value
        return out
    return apply


def split_qkv(state: Dict) -> Dict:
    """A checkpoint filter for ViT checkpoints storing separate q/k/v projections (``attn.q.weight`` ...):
    concatenates them into this project's fused ``attn.qkv`` layout (timm/DINO layout)."""
    import torch

    out = dict(state)
    for key in [k for k in state if k.endswith("attn.q.weight") or k.endswith("attn.q.bias")]:
        stem, kind = key.rsplit(".q.", 1)
        parts = [out.pop(f"{stem}.{p}.{kind}") for p in ("q", "k", "v")]
        out[f"{stem}.qkv.{kind}"] = torch.cat(parts, 0)
    return out
