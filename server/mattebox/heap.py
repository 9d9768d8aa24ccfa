"""glibc's heap (the C allocator numpy's arrays come from), where mattebox tunes it: two calls, both no-ops where
the C library is not glibc (macOS, Windows, musl).

:func:`trim` gives the heap's free pages back to the system (``malloc_trim``): the alpha solve calls it before its
peak. :func:`hold_freed_memory` is for a process that mattes one frame and exits (`mattebox matte`): glibc's
defaults hand every array over 128 KiB to its own ``mmap`` until frees have raised that threshold (up to 32 MiB),
and give the top of the heap back whenever 128 KiB of it is free, so each new temporary of a matte is fresh pages
that the kernel zeroes on first touch. Fixing the threshold at its maximum and keeping freed memory (man mallopt:
M_MMAP_THRESHOLD, M_TRIM_THRESHOLD) reuses the pages instead: a 1080p roto's `mattebox matte` 1.44 → 1.36 s wall,
0.46 → 0.32 s of system time, peak RSS the same (378 MiB); 4K the same time, peak RSS 1405-1433 → 1343 MiB
(:func:`trim` still runs). Only from :data:`HOLD_PIXELS` on: alphamatting-dev's 0.45-megapixel frames gained no
time and 20-65 MiB of peak RSS (freed holes the next, differently sized arrays did not fit). Not for a server,
which would keep a big job's pages for good.
"""
from __future__ import annotations

import ctypes

#: mallopt's parameters (glibc's malloc.h) and the values :func:`hold_freed_memory` sets
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20  #: glibc's largest (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit): bigger arrays are still mmapped
TRIM_THRESHOLD = 1 << 30  #: freed memory at the top of the heap is kept up to this much
HOLD_PIXELS = 1_000_000  #: the frame size (pixels) from which `mattebox matte` holds freed memory

_libc = None  # the C library once looked up (False where it has no malloc_trim / mallopt: not glibc)


def _glibc():
    global _libc
    if _libc is None:
        try:
            libc = ctypes.CDLL(None)
            _libc = libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else False
        except (AttributeError, OSError, TypeError):  # no CDLL(None) (Windows)
            _libc = False
    return _libc


def trim() -> None:
    """Give the heap's free pages back to the system (``malloc_trim(0)``). Arrays below the mmap threshold live on
    the heap, and the holes the earlier stages' allocations leave there stay resident: at 4K the finest level's
    CG, the peak, started ~50-90 MiB higher than its own arrays need (1552 MiB whole-process peak; 1489 with
    this)."""
    libc = _glibc()
    if libc:
        libc.malloc_trim(0)


def hold_freed_memory() -> bool:
    """For a one-frame process: arrays up to :data:`MMAP_THRESHOLD` from the heap from the start, and freed memory
    kept for the next array (see the module's docstring). True where it took (glibc)."""
    libc = _glibc()
    return bool(libc) and bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
