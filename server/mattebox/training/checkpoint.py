"""Checkpoint I/O for the trainer: model weights as safetensors through :mod:`mattebox.models.weights` (the one
place that reads and writes weight files), optimiser state as a torch file beside them.

Until ``mattebox.models.weights`` exists in this tree the trainer falls back to :func:`_write_safetensors` /
:func:`_read_safetensors`, a minimal implementation of the same file format (8-byte little-endian header length,
JSON header of dtype/shape/data_offsets, raw little-endian tensor bytes), so checkpoints are the same files either
way. Delete the fallback once the models package has landed everywhere.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Dict, Optional

import torch

_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
           torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}
_TORCH = {v: k for k, v in _DTYPES.items()}


def _write_safetensors(tensors: Dict[str, torch.Tensor], path: Path, metadata: Dict[str, str]) -> None:
    header: Dict[str, object] = {"__metadata__": dict(metadata)}
    blobs, offset = [], 0
    for name, tensor in tensors.items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        data = flat.view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        header[name] = {"dtype": _DTYPES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for blob in blobs:
            f.write(blob)


def _read_safetensors(path: Path) -> Dict[str, torch.Tensor]:
    raw = Path(path).read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    header.pop("__metadata__", None)
    body = raw[8 + length:]
    out = {}
    for name, spec in header.items():
        start, end = spec["data_offsets"]
        dtype = _TORCH[spec["dtype"]]
        flat = torch.frombuffer(bytearray(body[start:end]), dtype=torch.uint8) if end > start else \
            torch.empty(0, dtype=torch.uint8)
        out[name] = flat.view(dtype).reshape(spec["shape"]).clone()
    return out


def save_model(model: torch.nn.Module, path: Path, metadata: Optional[Dict[str, str]] = None) -> None:
    """Write the model's state dict as safetensors."""
    try:
        from ..models.weights import save_weights
    except ImportError:
        _write_safetensors(model.state_dict(), Path(path), metadata or {})
        return
    save_weights(model, path, metadata=metadata or {})


def load_model(model: torch.nn.Module, path: Path) -> None:
    """Load safetensors weights into the model (strict: every key must match)."""
    try:
        from ..models.weights import load_weights
    except ImportError:
        model.load_state_dict(_read_safetensors(Path(path)), strict=True)
        return
    load_weights(model, path)
