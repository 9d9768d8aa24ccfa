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
  standard inputs make one), ``MATTEBOX_KERNELS=jit``.

Both paths compile the same source for the same CPU: their results are equal bit for bit (tested per kernel and
on a whole matte).

Big frames use every core (:func:`in_blocks`, :func:`run_blocks`): from 2 × :data:`PARALLEL_PIXELS` pixels (2 ×
:data:`STREAMING_PIXELS` for the kernels that only stream memory) a kernel's range of rows (or items) is cut into
one block per thread (:func:`threads`), run at once on Python threads —
the kernels release the GIL, compiled either way — with the same result bit for bit. No numba is needed for that
(its own threads cost a ~0.5 s start in every process that used them: a 1080p `mattebox matte` was faster on one
core).
"""
from __future__ import annotations

import functools
import hashlib
import concurrent.futures
import importlib.util
import logging
import os
import platform
import threading
from pathlib import Path
from typing import Callable, Optional, Set, Tuple

import numpy as np

#: pixels per thread below which a kernel's work stays on the calling thread. A block's hand-off to a worker thread
#: costs ~35 µs, against ~1.3 ms of the Laplacian product per 100k pixels (compute-bound: two threads halve it), but
#: on alphamatting-dev's crops (<= 450k pixels) blocks from 200k left 16 whole `mattebox matte` processes' wall time
#: as it was (10.0 vs 10.1 s: start-up and I/O dominate) for 6 % more CPU; at 1080p 100k, 200k and 250k are alike
PARALLEL_PIXELS = 250_000
#: … for the matting Laplacian's product (:class:`.laplacian.MattingLaplacian`, in units of its
#: :attr:`.laplacian.ProductRegion.cost`): dense arithmetic on a few planes, it halves on two threads from small
#: sizes on (a 1080p roto's levels, blocks of equal work: 8.5 → 4.5 ms at 760k, 2.2 → 1.3 ms at 194k, 0.63 → 0.5 ms
#: at 50k), and a solve runs it thousands of times: the hand-off (~35 µs) is paid back from here. The same for
#: its set-up (Δ_k and diag(L), heavier per window still: the 1080p roto's level 1, 194k, 10.1 → 7.0 and
#: 9.5 → 4.8 ms)
PRODUCT_PIXELS = 50_000
#: … for the kernels that do a few operations per element loaded (CG's vector updates and sums, the set-up's
#: gathers and copies): memory-bound, they gain from a second thread only on big vectors (2 × 192k elements: 1.4×
#: slower on two threads; 755k: 1.4× faster; 3.8M: 1.8× faster, this 2-core machine)
STREAMING_PIXELS = 500_000
#: the kernels :data:`STREAMING_PIXELS` applies to
STREAMING = frozenset({"dot", "cg_update", "cg_direction", "restrict_and_shift", "solve_terms", "gather_nearest",
                       "gather_colours", "gather_runs", "scatter_runs", "expand_label"})

#: every kernel the engine calls, with the argument types it passes (numba's signature syntax; all arrays
#: C-contiguous): the JIT dispatchers' ``.signatures`` after the classical tests and bench/speed.py's inputs
#: (alphamatting-dev with both trimaps, the three quality presets, the 1080p mask and 4K cases)
SIGNATURES = {
    "window_inverse": [("f4[:,:,::1]", "u1[:,::1]", "f8", "f8[:,:,::1]", "i8[::1]", "i8[:,::1]", "i8", "i8")],
    "laplacian_rows": [("f4[:,:,::1]", "f8[:,:,::1]", "u1[:,::1]", "u1[:,::1]", "f8[:,::1]", "f8[:,:,::1]",
                        "f8[:,::1]", "f8[::1]", "i8", "i8", "i8[::1]", "i8[:,::1]", "i8[::1]", "i8[:,::1]")],
    "laplacian_diagonal": [("f4[:,:,::1]", "f8[:,:,::1]", "u1[:,::1]", "f8[:,::1]", "i8", "i8")],
    "foreground_sweeps": [("f4[:,:,::1]", "f4[:,::1]", "f4[:,:,::1]", "f4[:,:,::1]", "f4[:,:,::1]", "f8", "f8",
                           "f8", "i8")],
    "best_colour_pairs": [("f4[:,::1]", "f4[:,:,::1]", "f4[:,:,::1]", "f8", "f8", "f4[::1]", "f4[::1]", "i8",
                           "i8")],
    "expand_label": [("f4[:,::1]", "i8[::1]", "f4[::1]", "i8[::1]", "i8", "f8", "f4", "f4[::1]", "i8", "i8")],
    "box_candidates": [("f4[:,:,::1]", "f4[:,::1]", "f4", "i8[::1]", "i8[::1]", "i8[::1]", "i8[::1]", "i8", "i8", "i8",
                        "f8[:,:,::1]", "f4[:,:,::1]")],
    "zero_positions": [("u1[:,::1]", "i8[::1]")],
    "gather_nearest": [("f4[:,::1]", "i4[:,::1]", "i8[::1]", "i8[::1]", "f4[::1]", "i8[::1]", "i8", "i8")],
    "gather_colours": [("f4[:,::1]", "i8[::1]", "f4[:,::1]", "i8", "i8")],
    "gather_runs": [("f4[::1]", "i8[:,::1]", "f8[::1]", "i8", "i8"), ("f8[::1]", "i8[:,::1]", "f8[::1]", "i8", "i8")],
    "scatter_runs": [("f8[::1]", "i8[:,::1]", "f8[::1]", "i8", "i8")],
    "dot": [("f8[::1]", "f8[::1]")],
    "dot_chunks": [("f8[::1]", "f8[::1]", "f8[::1]", "i8", "i8")],
    "cg_update": [("f8[::1]", "f8[::1]", "f8[::1]", "f8[::1]", "f8[::1]", "f8")],
    "cg_update_chunks": [("f8[::1]", "f8[::1]", "f8[::1]", "f8[::1]", "f8[::1]", "f8", "f8[:,::1]", "i8", "i8")],
    "cg_direction": [("f8[::1]", "f8[::1]", "f8[::1]", "f8", "i8", "i8")],
    "restrict_and_shift": [("f8[::1]", "u1[::1]", "f8[::1]", "f8[::1]")],
    "restrict_and_shift_chunks": [("f8[::1]", "u1[::1]", "f8[::1]", "f8[::1]", "f8[::1]", "i8", "i8")],
    "foreground_half_sweep": [("f4[:,:,::1]", "f4[:,::1]", "f4[:,:,::1]", "f4[:,:,::1]", "f4[:,:,::1]", "f8", "f8",
                               "f8", "i8", "i8", "i8")],
    "solve_terms": [("u1[::1]", "f4[::1]", "f4[::1]", "f4[::1]", "f8", "f8[::1]", "f8[::1]", "f8[::1]", "f8[::1]",
                     "i8", "i8"),
                    # (the band-only operator's compact layout is float64)
                    ("u1[::1]", "f8[::1]", "f8[::1]", "f8[::1]", "f8", "f8[::1]", "f8[::1]", "f8[::1]", "f8[::1]",
                     "i8", "i8")],
    "affine_coefficients": [("f4[:,:,::1]", "f4[:,::1]", "f8", "f8[:,:,::1]", "i8", "i8")],
    "affine_upsample_evaluate": [("f8[:,:,::1]", "i8[:,::1]", "f8[:,::1]", "i8[:,::1]", "f8[:,::1]", "f4[:,:,::1]",
                                  "f4[:,::1]", "i8", "i8")],
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
_pool = None  # the kernels' worker threads (:func:`run_blocks`), made on first use, with the pid that made them
_pool_lock = threading.Lock()
_local = threading.local()  # .inline: this thread runs a task of run_tasks (its work in blocks stays on it)


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


def threads() -> int:
    """Threads a kernel's work may run on: ``MATTEBOX_THREADS`` when set (>= 1), else the CPUs this process may
    run on."""
    value = os.environ.get("MATTEBOX_THREADS", "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise ValueError(f"MATTEBOX_THREADS: expected a whole number of threads, got {value!r}") from None
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # (no sched_getaffinity: macOS, Windows)
        return os.cpu_count() or 1


def row_blocks(pixels: int, per_block: int = PARALLEL_PIXELS) -> int:
    """How many blocks a kernel's work over ``pixels`` pixels runs in: one per thread (:func:`threads`), each of at
    least ``per_block`` pixels; 1 below 2 × per_block."""
    if pixels < 2 * per_block:
        return 1
    return max(1, min(threads(), pixels // per_block))


def _workers() -> concurrent.futures.ThreadPoolExecutor:
    """The worker threads, :func:`threads` − 1 of them (the caller runs a block too), made on first use once per
    process (a forked child makes its own: its parent's threads are not in it). Blocks beyond them wait their turn
    (the same result, later)."""
    global _pool
    pool = _pool
    if pool is None or pool[1] != os.getpid():
        with _pool_lock:
            if _pool is None or _pool[1] != os.getpid():
                _pool = (concurrent.futures.ThreadPoolExecutor(max(1, threads() - 1),
                                                               thread_name_prefix="mattebox-kernels"), os.getpid())
            pool = _pool
    return pool[0]


def run_blocks(work: Callable, blocks: int, start: int, stop: int, cost: Optional[np.ndarray] = None) -> list:
    """``work(block, lo, hi)`` for each of ``blocks`` near-equal blocks [lo, hi) of [start, stop), the first on the
    calling thread and the others at the same time on the worker threads; their results in block order. Each
    block is waited for (an error in one is raised after all have ended: none is left writing into the caller's
    arrays). Inside a task of :func:`run_tasks` every block runs on the task's thread, one after another.
    ``cost``: the work before each row (cumulative, ``stop − start + 1`` non-decreasing values from 0) when rows
    differ in work: the blocks then hold near-equal work instead of near-equal rows."""
    if cost is None:
        cuts = [start + (stop - start) * b // blocks for b in range(blocks + 1)]
    else:
        shares = [cost[-1] * b // blocks for b in range(blocks + 1)]
        cuts = [start + int(np.searchsorted(cost, share)) for share in shares[:-1]] + [stop]
    bounds = list(zip(cuts[:-1], cuts[1:]))
    if blocks == 1 or getattr(_local, "inline", False):
        return [work(b, lo, hi) for b, (lo, hi) in enumerate(bounds)]
    pool = _workers()
    others = [pool.submit(work, b, *bounds[b]) for b in range(1, blocks)]
    try:
        first = work(0, *bounds[0])
    finally:
        concurrent.futures.wait(others)
    return [first] + [future.result() for future in others]


def run_tasks(pixels: int, *tasks: Callable) -> list:
    """Independent ``tasks`` (callables of no arguments) of a frame of ``pixels`` pixels; their results in order.
    At once, one per thread, where the frame is big enough to run its kernels in blocks (:func:`row_blocks`), else
    one after another. A task's own work in blocks stays on its thread (no thread waits for a worker that is busy
    with another task)."""
    if row_blocks(pixels) == 1:
        return [task() for task in tasks]

    def run(index, _lo, _hi):
        outer, _local.inline = getattr(_local, "inline", False), True
        try:
            return tasks[index]()
        finally:
            _local.inline = outer

    return run_blocks(run, len(tasks), 0, len(tasks))


def _ranges(kernel: str, blocks: int, *args):
    """``kernel(*args)``, whose last two arguments are a range of rows or items, in ``blocks`` blocks of it."""
    function = globals()[kernel]
    *leading, start, stop = args
    run_blocks(lambda _, lo, hi: function(*leading, lo, hi), blocks, start, stop)


def _chunk_sums(kernel: str, blocks: int, size: int, width: int, *args):
    """``kernel + "_chunks"``'s per-chunk sums over a vector of ``size`` elements, the chunks in ``blocks`` blocks,
    added in order: the serial kernel's sums bit for bit (``width``: how many sums each chunk has)."""
    chunks = -(-size // constant("SUM_CHUNK"))
    sums = np.empty((chunks, width)) if width > 1 else np.empty(chunks)
    function = globals()[kernel + "_chunks"]
    run_blocks(lambda _, first, last: function(*args, sums, first, last), min(blocks, chunks), 0, chunks)
    totals = [0.0] * width
    for row in sums.reshape(chunks, width):
        for k in range(width):
            totals[k] += float(row[k])
    return totals


def _dot(blocks, a, b):
    return _chunk_sums("dot", blocks, a.size, 1, a, b)[0]


def _cg_update(blocks, x, r, p, ap, precond, step):
    return tuple(_chunk_sums("cg_update", blocks, x.size, 2, x, r, p, ap, precond, step))


def _restrict_and_shift(blocks, lv, mask, shift, v):
    return _chunk_sums("restrict_and_shift", blocks, v.size, 1, lv, mask, shift, v)[0]


def _foreground_sweeps(blocks, image, alpha, fg, bg, plate, plate_weight, eps_r, omega, iterations):
    """kernels.foreground_sweeps with each half sweep (one colour of the red-black order, whose pixels do not read
    each other) in ``blocks`` blocks of rows."""
    for _ in range(iterations):
        for colour in range(2):
            _ranges("foreground_half_sweep", blocks, image, alpha, fg, bg, plate, plate_weight, eps_r, omega, colour,
                    0, alpha.shape[0])


#: the kernels whose work over several blocks is not just their range cut up (sums added in order; the
#: foreground's sweeps, one half sweep at a time)
_IN_BLOCKS = {"dot": _dot, "cg_update": _cg_update, "restrict_and_shift": _restrict_and_shift,
              "foreground_sweeps": _foreground_sweeps}


def in_blocks(items: int, kernel: str, per_block: Optional[int] = None) -> Callable:
    """The function to call for ``kernel``'s work over ``items`` pixels, with the kernel's own arguments: the kernel
    itself when :func:`row_blocks` gives one block, else the same work in that many blocks at once on the worker
    threads (:func:`run_blocks`), with the same result bit for bit. ``per_block``: the least work per block
    (default :data:`STREAMING_PIXELS` for the :data:`STREAMING` kernels, else :data:`PARALLEL_PIXELS`)."""
    blocks = row_blocks(items, per_block or (STREAMING_PIXELS if kernel in STREAMING else PARALLEL_PIXELS))
    if blocks == 1:
        return globals()[kernel]
    if kernel in _IN_BLOCKS:
        return functools.partial(_IN_BLOCKS[kernel], blocks)
    return functools.partial(_ranges, kernel, blocks)


def constant(name: str) -> int:
    """A constant of :mod:`.kernels` (``RADIUS``, ``SUM_CHUNK``): the value compiled into the extension when it is
    used (without numba), else the JIT module's."""
    module = extension()
    return getattr(module, name.lower())() if module else getattr(_jit(), name)


def __getattr__(name: str):
    """What :mod:`.kernels` holds besides the table's kernels: its constants (:func:`constant`)."""
    if name in ("RADIUS", "SUM_CHUNK"):
        return constant(name)
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(_jit(), name)
