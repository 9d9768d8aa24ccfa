"""The classical engine (no weights, CPU): the embedded default that always works."""
from .engine import ClassicalEngine

__all__ = ["ClassicalEngine"]
