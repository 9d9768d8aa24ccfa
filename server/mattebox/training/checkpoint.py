"""Checkpoint I/O for the trainer: model weights as safetensors through :mod:`mattebox.models.weights` (the one
place that reads and writes weight files), optimiser state as a torch file beside them (see Trainer)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import torch


def save_model(model: torch.nn.Module, path: Path, metadata: Optional[Dict[str, str]] = None) -> str:
    """Write the model's state dict as safetensors; returns the file's sha256."""
    from ..models.weights import save_weights

    return save_weights(model, Path(path), metadata=metadata or {})


def load_model(model: torch.nn.Module, path: Path) -> None:
    """Load safetensors weights into the model (every key must match)."""
    from ..models.weights import load_weights

    load_weights(model, Path(path))
