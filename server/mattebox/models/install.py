"""``mattebox models pull NAME`` and ``mattebox models import NAME FILE``: get a published checkpoint
(sources.py), check it, convert it to ``<models dir>/NAME.safetensors`` + ``NAME.safetensors.sha256``.

Everything is written under the models folder: the download goes to ``.downloads/NAME.<ext>.part`` there (resumed
by the next pull when cut; download.py), is removed after conversion, and the converted file is written to a
temporary name and renamed, so an engine never sees half a file. The expected sha256 of the download comes, in
this order, from ``--sha256``, the sources table, the Hugging Face Hub's LFS listing, or the digest recorded by the
first download of that source (``NAME.source.json``, trust on first use; printed so users can pin it). The
converted tensors must match the registry model's every key and shape before they are installed.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, TextIO

from . import download as dl
from .sources import Source, get_source, hf_endpoint
from .weights import WeightsError, import_callable, models_dir, sha256_file, sidecar_path


@dataclass
class Installed:
    """What pull/import did, for the command's report."""
    source: str
    path: Path
    sha256: str  #: digest of the installed safetensors file (its sidecar)
    download_sha256: str  #: digest of the downloaded/imported file
    checked_against: str  #: where the expected download digest came from ("" = nothing to check against)
    parameters: int = 0


def read_checkpoint(path: Path) -> Dict:
    """A safetensors file, or a PyTorch ``.bin/.pt/.pth`` read with ``torch.load(weights_only=True)`` (tensors and
    containers only, never arbitrary pickled code), as a flat state dict."""
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError(f"{path} is not a readable safetensors file: {exc}") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for anything that is not plain tensors, EOFError, ...
        raise WeightsError(f"{path} is not a PyTorch checkpoint of plain tensors: {exc.__class__.__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} holds no flat dict of tensors")
    return state


def check_fits(source: Source, state: Dict, origin: Path) -> int:
    """Every key and shape of the registry model built with ``source.config`` (on the meta device, no memory)
    must be in ``state`` after the source's checkpoint filter, and nothing else; returns the parameter count."""
    import torch

    from . import registry
    from .weights import resolve_filter

    mapped = resolve_filter(source.checkpoint_filter)(state) if source.checkpoint_filter else state
    with torch.device("meta"):
        model = registry.build(source.model, **source.config)
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    got = {key: tuple(value.shape) for key, value in mapped.items()}
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    if missing or extra or wrong:
        def few(keys):
            return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
        parts = [f"{len(missing)} missing ({few(missing)})" if missing else "",
                 f"{len(extra)} unexpected ({few(extra)})" if extra else "",
                 f"{len(wrong)} of another shape ({few(wrong)})" if wrong else ""]
        raise WeightsError(f"{origin} does not fit {source.name} ({source.model} {source.config}): keys "
                           + "; ".join(p for p in parts if p))
    return sum(p.numel() for p in model.parameters())


def convert_into(source: Source, raw: Path, raw_sha256: str, checked_against: str,
                 converter: Optional[Callable] = None) -> Installed:
    """Convert ``raw`` with the source's converter, check it fits, write NAME.safetensors + sidecar atomically."""
    from .weights import save_weights

    folder = models_dir()
    state = (converter or import_callable(source.converter))(raw)
    parameters = check_fits(source, state, raw)
    final = folder / source.file
    temporary = folder / f".{source.file}.tmp"
    digest = save_weights(state, temporary, metadata={"source": source.name, "origin_sha256": raw_sha256})
    temporary.replace(final)
    sidecar_path(final).write_text(f"{digest}  {final.name}\n")
    return Installed(source.name, final, digest, raw_sha256, checked_against, parameters)


def _record_path(source: Source) -> Path:
    return models_dir() / f"{source.name}.source.json"


def _recorded_sha256(source: Source) -> str:
    path = _record_path(source)
    try:
        return str(json.loads(path.read_text()).get("sha256", ""))
    except (OSError, ValueError):
        return ""


def _record(source: Source, url: str, digest: str) -> None:
    _record_path(source).write_text(json.dumps({"source": source.name, "url": url, "sha256": digest,
                                                "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                                               indent=2) + "\n")


def expected_download_sha256(source: Source, pinned: str = "", timeout: float = dl.DEFAULT_TIMEOUT):
    """(sha256, size, where from) the download must match; ("", 0, "") when nothing is known yet."""
    if pinned:
        return pinned.lower(), 0, "--sha256"
    if source.sha256:  # (Source.size is the listing's approximation: the server's Content-Length is checked)
        return source.sha256, 0, "the sources table"
    size = 0
    if source.hf_repo:
        digest, size = dl.hf_lfs_info(hf_endpoint(), source.hf_repo, source.revision, source.hf_file, timeout)
        if digest:
            return digest, size, f"Hugging Face's published sha256 of {source.hf_repo}/{source.hf_file}"
    recorded = _recorded_sha256(source)
    if recorded:
        return recorded, size, f"your first download ({_record_path(source).name})"
    return "", size, ""


def _check_sha256(value: str) -> str:
    value = value.strip().lower()
    if value and (len(value) != 64 or any(c not in "0123456789abcdef" for c in value)):
        raise WeightsError(f"--sha256 must be 64 hex digits, got {value!r}")
    return value


def pull(name: str, sha256: str = "", url: str = "", timeout: float = dl.DEFAULT_TIMEOUT,
         progress_stream: Optional[TextIO] = None) -> Installed:
    """Download the published checkpoint ``name`` (resuming a cut download), verify and install it."""
    source = get_source(name)
    pinned = _check_sha256(sha256)
    folder = models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if source.installer:  # returns the installed file's path
        return Installed(source.name, Path(import_callable(source.installer)(folder, None)), "", "", "its installer")
    converter = import_callable(source.converter)  # before downloading: a missing converter must not cost a download
    target_url = url or source.download_url()
    if not target_url:
        raise WeightsError(f"{name} has no download URL; give one with --url")
    expected, size, checked_against = expected_download_sha256(source, pinned, timeout)
    downloads = folder / ".downloads"
    downloads.mkdir(exist_ok=True)
    suffix = Path(source.hf_file or source.url).suffix or ".bin"
    raw = downloads / f"{source.name}{suffix}"
    digest = dl.download(target_url, raw, expected, size, timeout, progress_stream)
    try:
        installed = convert_into(source, raw, digest, checked_against, converter)
    finally:
        raw.unlink(missing_ok=True)
    if not checked_against:
        _record(source, target_url, digest)
    return installed


def import_file(name: str, path: Path, sha256: str = "") -> Installed:
    """Install ``path`` (the published file, already on disk: offline farms) as ``name``. A folder is searched for
    the source's file name (model.safetensors / pytorch_model.bin / NAME.pdparams)."""
    source = get_source(name)
    pinned = _check_sha256(sha256)
    path = Path(path).expanduser()
    if path.is_dir():
        candidates = [path / n for n in (source.hf_file, Path(source.url).name, "model.safetensors",
                                          "pytorch_model.bin") if n]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise WeightsError(f"{path} is a folder without {' or '.join(sorted({c.name for c in candidates}))}")
        path = found
    if not path.is_file():
        raise WeightsError(f"FILE {path} does not exist")
    folder = models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if source.installer:
        return Installed(source.name, Path(import_callable(source.installer)(folder, path)), "", sha256_file(path),
                         "its installer")
    digest = sha256_file(path)
    expected = pinned or source.sha256
    if expected and digest != expected:
        raise WeightsError(f"{path} has sha256 {digest}, expected {expected}: refused (not the published file)")
    return convert_into(source, path, digest, "--sha256" if pinned else ("the sources table" if expected else ""))
