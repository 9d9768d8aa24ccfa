"""Process and device facts for status, doctor and benchmarks (no heavy imports)."""
from __future__ import annotations

import importlib.util
import os
import resource
import sys
from typing import Dict


def memory_usage() -> Dict[str, int]:
    """Resident set size now and at peak, in bytes (Linux /proc; getrusage elsewhere)."""
    out = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key = "rss" if line.startswith("VmRSS") else "peak_rss"
                    out[key] = int(line.split()[1]) * 1024
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["peak_rss"] = peak if sys.platform == "darwin" else peak * 1024
    return out


def resolve_device(requested: str = "auto") -> str:
    """'auto' -> 'cuda' when an NVIDIA driver and torch are present, else 'cpu'. Never imports torch."""
    if requested != "auto":
        return requested
    has_torch = importlib.util.find_spec("torch") is not None
    has_driver = os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidia0")
    return "cuda" if has_torch and has_driver else "cpu"
