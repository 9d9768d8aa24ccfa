"""The classical engine's compiled kernels as its modules call them: machine code compiled ahead of time from
:mod:`.kernels` when that build is present and current, else numba's JIT of the same source (issue #21).

``python -m mattebox.matting.aot build`` (run by the Makefile's install step) compiles every kernel of
:mod:`.kernels` for each argument-type signature in :data:`SIGNATURES` into the extension module ``_kernels_aot``
beside this file, with numba.pycc; the extension needs only numpy at run time. Importing numba and its first call
(typing context, cache load) cost ~0.45 s CPU and ~115 MiB of a `mattebox matte` process; loading the extension
costs under a millisecond.

Which path runs a call (docs/classical.md, "Which path runs the kernels"):

* the extension, when it was built from this :mod:`.kernels` source, this table, this numpy, this numba and this
  CPU (a key of all five is compiled into it: :func:`source_key`) and the call's argument types are a signature
  of the table (C-contiguous, aligned, writeable arrays of the listed dtype and rank; scalars as numba types
  them);
* numba's JIT (:mod:`.kernels`, imported on the first such call) otherwise: no extension, a stale one, a call
  with other argument types (recorded in :data:`fallbacks`; tests/test_kernels_aot.py fails when the engine's
  standard inputs make one), ``MATTEBOX_KERNELS=jit``, and always for the work over several blocks of rows on
  numba's threads (the kernels' ``_blocks`` twins, which :func:`in_blocks` picks for frames from
  2 × :data:`PARALLEL_PIXELS` pixels when there are several numba threads): pycc cannot compile ``prange``, and its
  functions hold the GIL.

Both paths compile the same source for the same CPU: their results are equal bit for bit (tested per kernel and
on a whole matte).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import platform
import threading
from pathlib import Path
from typing import Callable, Optional, Set, Tuple

import numpy as np

#: pixels per thread below which the Laplacian product stays on one thread: on a shared 2-core machine the second
#: thread's start and wait cost more than it saved at alphamatting-dev's 450k-pixel crops (bench/speed: alpha stage
#: 15.6 s with 2 threads at 200k, 12.6 s on one), and it pays at 1080p and 4K
PARALLEL_PIXELS = 500_000

#: every kernel the engine calls, with the argument types it passes (numba's signature syntax; all arrays
#: C-contiguous): the JIT dispatchers' ``.signatures`` after the classical tests and bench/speed.py's inputs
#: (alphamatting-dev with both trimaps, the three quality presets, the 1080p mask and 4K cases)
SIGNATURES = {
    "window_inverse": [("f4[:,:,::1]", "u1[:,::1]", "f8", "f8[:,:,::1]", "i8", "i8")],
    "laplacian_rows": [("f4[:,:,::1]", "f8[:,:,::1]", "u1[:,::1]", "u1[:,::1]", "f8[:,::1]", "f8[:,:,::1]",
                        "f8[:,::1]", "f8[:,::1]", "i8", "i8", "i8[:,::1]")],
    "laplacian_diagonal": [("f4[:,:,::1]", "f8[:,:,::1]", "u1[:,::1]", "f8[:,::1]", "i8", "i8")],
    "foreground_sweeps": [("f4[:,:,::1]", "f4[:,::1]", "f4[:,:,::1]", "f4[:,:,::1]", "f4[:,:,::1]", "f8", "f8",
                           "f8", "i8")],
    "best_colour_pairs": [("f4[:,::1]", "f4[:,:,::1]", "f4[:,:,::1]", "f8", "f8", "f4[::1]", "f4[::1]", "i8",
                           "i8")],
    "expand_label": [("f4[:,::1]", "i8[::1]", "f4[::1]", "i8[::1]", "i8", "f8", "f4", "f4[::1]", "i8", "i8")],
    "box_candidates": [("f4[:,::1]", "i8[::1]", "f4[:,::1]", "f4[:,::1]", "i8", "i8")],
    "zero_positions": [("u1[:,::1]", "i8[::1]")],
    "gather_nearest": [("f4[:,::1]", "i4[:,::1]", "i8[::1]", "i8[::1]", "f4[::1]", "i8[::1]", "i8", "i8")],
    "gather_colours": [("f4[:,::1]", "i8[::1]", "f4[:,::1]", "i8", "i8")],
    "label_weighted": [("f4[:,:,::1]", "f4[:,::1]", "f4", "f4[:,:,::1]", "i8", "i8")],
    "dot": [("f8[::1]", "f8[::1]")],
    "cg_update": [("f8[::1]", "f8[::1]", "f8[::1]", "f8[::1]", "f8[::1]", "f8")],
    "cg_direction": [("f8[::1]", "f8[::1]", "f8[::1]", "f8", "i8", "i8")],
    "restrict_and_shift": [("f8[::1]", "u1[::1]", "f8[::1]", "f8[::1]")],
    "solve_terms": [("u1[::1]", "f4[::1]", "f4[::1]", "f4[::1]", "f8", "f8[::1]", "f8[::1]", "f8[::1]", "f8[::1]",
                     "i8", "i8"),
                    # (the band-only operator's compact layout is float64)
                    ("u1[::1]", "f8[::1]", "f8[::1]", "f8[::1]", "f8", "f8[::1]", "f8[::1]", "f8[::1]", "f8[::1]",
                     "i8", "i8")],
    "affine_coefficients": [("f8[:,:,::1]", "f8[:,:,::1]", "f8[:,:,::1]", "f4[:,::1]", "f8", "f8[:,:,::1]", "i8",
                             "i8")],
    "affine_evaluate": [("f8[:,::1]", "f8[:,::1]", "f8[:,::1]", "f8[:,::1]", "f4[:,:,::1]", "f4[:,::1]", "i8",
                         "i8")],
    "galerkin_fine": [("f4[:,:,::1]", "f8[:,:,::1]", "u1[:,::1]", "u1[:,::1]", "f8[:,::1]", "f8[:,:,::1]",
                       "f8[:,::1]")],
    "galerkin_stencil": [("f8[:,:,::1]", "f8[:,:,::1]")],
    "stencil_apply": [("f8[:,:,::1]", "f8[:,::1]", "f8[:,::1]")],
}
#: return types of the kernels that return something (the others return nothing: numba's ``void``)
RETURNS = {"dot": "f8", "cg_update": "UniTuple(f8, 2)", "restrict_and_shift": "f8"}

#: the extension's module name (a file ``_kernels_aot<EXT_SUFFIX>`` beside this one; gitignored)
EXTENSION = "_kernels_aot"
#: numba's short dtype names used in :data:`SIGNATURES`, as numpy names them
_DTYPES = {"f4": "float32", "f8": "float64", "u1": "uint8", "i4": "int32", "i8": "int64", "b1": "bool"}
_FLOAT64, _INT64, _BOOL = np.dtype(np.float64), np.dtype(np.int64), np.dtype(np.bool_)

log = logging.getLogger(__name__)
#: (kernel, argument types) of the calls the extension did not cover though it was loaded (each logged once)
fallbacks: Set[Tuple[str, tuple]] = set()
#: why the extension is not used (None while it is, or before the first kernel call)
unavailable: Optional[str] = None
_extension = None  # the loaded module, False once known to be unusable, None before the first call
_loading = threading.Lock()
_parallel_ok = None  # whether the JIT's threading layer loaded (tried on the first product over several blocks)
_launching = threading.Lock()  # guards the threads' start (:func:`row_blocks`)


def arg_type(spec: str) -> tuple:
    """The run-time type of one argument of :data:`SIGNATURES` in numba's syntax: (dtype('float32'), 3) for a
    C-contiguous float32 array of rank 3 (``f4[:,:,::1]``), (dtype('float64'),) for a float64 scalar (``f8``)."""
    name, _, dims = spec.partition("[")
    if name not in _DTYPES or (dims and not dims.endswith("::1]")):
        raise ValueError(f"SIGNATURES: {spec!r} is not a scalar or C-contiguous array of {sorted(_DTYPES)}")
    dtype = np.dtype(_DTYPES[name])
    return (dtype, dims.count(",") + 1) if dims else (dtype,)


def type_of(value) -> Optional[tuple]:
    """:func:`arg_type`'s key for a value as a kernel receives it (numba's typing: a Python float is float64, an
    int int64); None for what no signature can cover (a strided, read-only or unaligned array; a byte-swapped
    dtype is another dtype). Called per argument of every call: dtype objects, not their names (3 µs each)."""
    if isinstance(value, np.ndarray):
        return (value.dtype, value.ndim) if value.flags.carray else None  # carray: C-contiguous, aligned, writeable
    if isinstance(value, bool):
        return (_BOOL,)
    if isinstance(value, float):
        return (_FLOAT64,)
    if isinstance(value, int):
        return (_INT64,)
    if isinstance(value, np.generic):
        return (value.dtype,)
    return None


def symbol(kernel: str, index: int) -> str:
    """The extension's name for a kernel's ``index``-th signature."""
    return f"{kernel}__{index}"


def _cpu() -> str:
    """The CPU the extension is compiled for (pycc's ``host``, as numba's JIT): its model and feature flags where
    /proc/cpuinfo tells them, else the platform's names. Another CPU may lack an instruction the code uses."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            first = f.read(1 << 16).split("\n\n")[0]
    except OSError:
        first = ""
    keep = ("model name", "flags", "Features", "CPU implementer", "CPU part")
    lines = [line for line in first.splitlines() if line.split(":")[0].strip() in keep]
    return "\n".join(lines) or f"{platform.machine()} {platform.processor()}"


def _numba_version() -> bytes:
    """numba's version file, found without importing numba (importlib.metadata would cost ~60 ms)."""
    spec = importlib.util.find_spec("numba")
    version = Path(spec.origin).with_name("_version.py") if spec and spec.origin else None
    return version.read_bytes() if version and version.is_file() else b""


def source_key() -> int:
    """A 63-bit hash of what the extension's code depends on: kernels.py's source, :data:`SIGNATURES`,
    :data:`RETURNS`, numpy's version (the array ABI), numba's (its code generation: the JIT must give the same
    bits) and the CPU. The build compiles it into the extension (``source_key()``); at run time a different value
    means the extension is stale and is not used."""
    digest = hashlib.sha256()
    for part in (Path(__file__).with_name("kernels.py").read_bytes(), repr((SIGNATURES, RETURNS)).encode(),
                 np.__version__.encode(), _numba_version(), _cpu().encode()):
        digest.update(hashlib.sha256(part).digest())
    return int.from_bytes(digest.digest()[:8], "little") >> 1


def extension():
    """The extension module when it is present and current, else None (the reason in :data:`unavailable`).
    Loaded once per process, on the first kernel call (under a lock: the server calls kernels from several
    threads, and none may see a half-made decision)."""
    global _extension, unavailable
    if _extension is None:
        with _loading:
            if _extension is None:
                module, unavailable = _load()
                _extension = module or False
    return _extension or None


def _load():
    """(the extension module or None, why not)."""
    if os.environ.get("MATTEBOX_KERNELS", "auto") == "jit":
        return None, "MATTEBOX_KERNELS=jit"
    try:
        from . import _kernels_aot as module
    except ImportError as exc:
        return None, f"not built ({exc}): python -m mattebox.matting.aot build"
    if module.source_key() != source_key():
        return None, ("stale (kernels.py, the signature table, numpy, numba or the CPU changed since it was "
                      "built): python -m mattebox.matting.aot build")
    return module, None


def _jit():
    """numba's JIT of the kernels (imports numba: ~0.15 s, and ~0.3 s more on the first call)."""
    from . import kernels

    return kernels


def _dispatcher(kernel: str) -> Callable:
    """The function the engine calls for ``kernel``: the extension's symbol for the arguments' types, or the JIT."""
    symbols = {tuple(arg_type(spec) for spec in signature): symbol(kernel, i)
               for i, signature in enumerate(SIGNATURES[kernel])}

    def call(*args):
        module = _extension if _extension is not None else extension()
        if module:
            types = tuple(map(type_of, args))
            name = symbols.get(types)
            if name is not None:
                return getattr(module, name)(*args)
            if (kernel, types) not in fallbacks:
                fallbacks.add((kernel, types))
                log.info("kernels: %s%s is not in compiled.SIGNATURES; numba's JIT runs it", kernel, types)
        return getattr(_jit(), kernel)(*args)

    call.__name__ = call.__qualname__ = kernel
    call.__doc__ = f"kernels.{kernel}, ahead-of-time compiled where its argument types allow (see this module)."
    return call


for _kernel in SIGNATURES:
    globals()[_kernel] = _dispatcher(_kernel)


def _launch_threads() -> None:
    """Start numba's threads with a tiny parallel product; sets :data:`_parallel_ok`."""
    global _parallel_ok
    kernels = _jit()
    # OpenMP's threads spin after each parallel block, waiting for the next (300k rounds by default, libgomp):
    # on a shared machine that is CPU taken from everyone else, and on a busy one the waiting thread spins while
    # the other is descheduled. Passive threads sleep at once; waking them costs microseconds against blocks of
    # milliseconds (a 4K `mattebox matte` at load ~5: 15.5 s of CPU spinning, 14.0 s passive, wall no slower).
    # libgomp reads it when it loads, here; set only meanwhile (the user's setting wins), so that a torch loaded
    # later (its own libgomp) keeps its default.
    user_policy = os.environ.get("OMP_WAIT_POLICY")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:  # a tiny product launches the threads
        kernels.laplacian_apply(np.zeros((3, 3, 3), np.float32), np.zeros((6, 3, 3)), np.zeros((3, 3), np.uint8),
                                np.zeros((3, 3), np.uint8), np.zeros((3, 3)), np.zeros((2, 3, 4, 5)),
                                np.zeros((2, 7, 5)), np.zeros((3, 3)), np.tile(np.array([0, 3], np.int64), (3, 1)))
        _parallel_ok = True
    except ValueError:  # "No threading layer could be loaded"
        _parallel_ok = False
    finally:
        if user_policy is None:
            del os.environ["OMP_WAIT_POLICY"]


def row_blocks(pixels: int) -> int:
    """How many blocks of rows a product over ``pixels`` pixels runs in: one per numba thread
    (``NUMBA_NUM_THREADS``), each of at least :data:`PARALLEL_PIXELS`; 1 when no thread-safe layer loads. Below
    2 × PARALLEL_PIXELS it is 1 without importing numba (the one-block kernels are ahead-of-time compiled); the
    first call that gives more than one starts numba's threads."""
    if pixels < 2 * PARALLEL_PIXELS:
        return 1
    _jit()  # first: importing it chooses the threading layer numba's threads will start with
    import numba

    blocks = max(1, min(numba.get_num_threads(), pixels // PARALLEL_PIXELS))
    if blocks > 1 and _parallel_ok is None:
        with _launching:  # the server's job threads may ask at once
            if _parallel_ok is None:
                _launch_threads()
    return blocks if _parallel_ok else 1


def in_blocks(items: int, kernel: str) -> Callable:
    """The function to call for ``kernel``'s work over ``items`` pixels: the kernel of this module (ahead of time
    compiled where it can be) when :func:`row_blocks` gives one block, else its JIT twin ``kernel + "_blocks"``
    (:mod:`.kernels`, ``prange`` on numba's threads) with the number of blocks bound as its first argument: the
    same call (and the same result, bit for bit) either way."""
    blocks = row_blocks(items)
    if blocks == 1:
        return globals()[kernel]
    return functools.partial(getattr(_jit(), f"{kernel}_blocks"), blocks)


def __getattr__(name: str):
    """What :mod:`.kernels` holds besides the table's kernels: ``RADIUS`` (from the extension when it is used,
    without numba) and the JIT-only ``laplacian_apply`` (the parallel product)."""
    if name == "RADIUS" and extension():
        return _extension.radius()
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(_jit(), name)
