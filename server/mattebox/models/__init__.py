"""Learned matting models behind one registry (docs/models.md).

Importing this package (and :mod:`.registry`) never imports torch: listing models and checking whether their
weights are installed is torch-free. Constructors import their architecture module lazily.
"""
from .registry import ModelSpec, WeightsEntry, get_spec, list_models, register_model  # noqa: F401
