"""The classical kernels compiled ahead of time (mattebox.matting.compiled and .aot, issue #21): the extension
serves every kernel call of the engine's standard inputs, gives numba's JIT results bit for bit, keeps numba out
of a `mattebox matte` process, and a build without a C compiler fails in one line without touching it.

The tests that need the extension skip where it is not built or stale (``python -m mattebox.matting.aot build``;
`make test` builds it at install).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mattebox.cli import main as cli
from mattebox.contract import MatteRequest
from mattebox.engines import get
from mattebox.imageio import write_png
from mattebox.matting import compiled
from mattebox.matting.alpha import SolverSettings, solve_alpha
from mattebox.matting.guidance import trimap_from_mask
from mattebox.synth.pairs import make_pair
from tests.conftest import tree_env
from tests.support.matte import matte_in_fresh_process

needs_extension = pytest.mark.skipif(not compiled.extension(), reason=f"kernels extension {compiled.unavailable}")
TABLE = [(kernel, i) for kernel, signatures in compiled.SIGNATURES.items() for i in range(len(signatures))]


@pytest.fixture(autouse=True)
def no_installed_weights(tmp_path, monkeypatch):
    """Mask guidance without this machine's segmentation weights (the classical path alone)."""
    monkeypatch.setenv("MATTEBOX_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MATTEBOX_SEGMENTATION_WEIGHTS", raising=False)


def engine_workload(folder: Path, patch: pytest.MonkeyPatch):
    """The standard inputs of every classical path: `mattebox matte` on PNG files (a synthetic hair composite
    with a trimap, a mask, the fast and best presets, a clean plate; a disc with a thin band, also on the band-only
    operator), the multigrid preconditioner, a random image with a random trimap, and a matte with its work
    in blocks of rows on two threads (what 1080p and larger frames do)."""
    def matte(plate: np.ndarray, option: str, guide: np.ndarray, *more: str):
        write_png(str(folder / "plate.png"), plate)
        write_png(str(folder / "guide.png"), guide)
        assert cli(["matte", str(folder / "plate.png"), option, str(folder / "guide.png"), *more,
                    "--out", str(folder / "out"), "--local", "--quiet"]) == 0

    pair = make_pair(3, size=(160, 224), real_alpha=False)
    matte(pair.image, "--trimap", pair.trimap)
    matte(pair.image, "--mask", (pair.alpha > 0.5).astype(np.float32))
    matte(pair.image, "--trimap", pair.trimap, "--quality", "fast")
    matte(pair.image, "--trimap", pair.trimap, "--quality", "best")
    matte(pair.image, "--background", pair.background)
    rng = np.random.default_rng(0)
    disc = (np.hypot(*np.mgrid[-240:240, -240:240]) < 200).astype(np.float32)
    plate = np.where(disc[..., None] > 0, np.float32([0.9, 0.5, 0.1]), np.float32([0.1, 0.2, 0.6]))
    plate = plate + 0.05 * rng.random(plate.shape, np.float32)
    matte(plate, "--trimap", trimap_from_mask(disc, band_width=4))
    solve_alpha(plate, trimap_from_mask(disc, band_width=4), SolverSettings(band_fraction=1.0))
    solve_alpha(pair.image, pair.trimap, SolverSettings(preconditioner="multigrid", multigrid_unknowns=500))
    noise = rng.random((90, 120, 3), np.float32)
    get("classical").matte(MatteRequest(image=noise, trimap=rng.choice(np.float32([0.0, 0.5, 1.0]), (90, 120))))
    patch.setattr(compiled, "row_blocks", lambda pixels, per_block=0: 2)
    get("classical").matte(MatteRequest(image=pair.image, trimap=pair.trimap))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """The arguments (copied before the call) of the first call of each (kernel, argument types) in
    :func:`engine_workload`, run through the extension when it is there."""
    calls = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MATTEBOX_CACHE", str(tmp_path_factory.mktemp("cache")))
        patch.delenv("MATTEBOX_SEGMENTATION_WEIGHTS", raising=False)
        patch.setattr(compiled, "fallbacks", set())
        def recording(kernel, call):
            def record(*args):
                key = (kernel, tuple(map(compiled.type_of, args)))
                if key not in calls:
                    calls[key] = [np.copy(a) if isinstance(a, np.ndarray) else a for a in args]
                return call(*args)
            return record

        for kernel in compiled.SIGNATURES:
            patch.setattr(compiled, kernel, recording(kernel, getattr(compiled, kernel)))
        engine_workload(tmp_path_factory.mktemp("workload"), patch)
        return calls, set(compiled.fallbacks)


@needs_extension
def test_the_extension_serves_every_kernel_call_of_the_standard_inputs(recorded):
    calls, fallbacks = recorded
    missing = [f"{kernel}: {types}" for kernel, types in sorted(fallbacks)]
    assert not missing, "calls the extension does not cover (add them to compiled.SIGNATURES):\n" + "\n".join(missing)
    table = {(kernel, tuple(map(compiled.arg_type, signature)))
             for kernel, signatures in compiled.SIGNATURES.items() for signature in signatures}
    assert table - set(calls) == set(), "signatures of the table no engine path uses"


@needs_extension
@pytest.mark.parametrize("kernel, index", TABLE, ids=[f"{k}-{i}" for k, i in TABLE])
def test_each_compiled_kernel_equals_the_jit_bit_for_bit(recorded, kernel, index):
    """The arguments the engine passed (from a synthetic composite and a random image), replayed through the
    extension and through numba's JIT: every array written and the value returned are the same bytes."""
    from mattebox.matting import kernels

    args = recorded[0][kernel, tuple(map(compiled.arg_type, compiled.SIGNATURES[kernel][index]))]
    ahead, jit = ([np.copy(a) if isinstance(a, np.ndarray) else a for a in args] for _ in range(2))
    returned = [getattr(compiled.extension(), compiled.symbol(kernel, index))(*ahead), getattr(kernels, kernel)(*jit)]
    assert np.asarray(returned[0]).tobytes() == np.asarray(returned[1]).tobytes()
    for position, (a, b) in enumerate(zip(ahead, jit)):
        if isinstance(a, np.ndarray):
            assert a.tobytes() == b.tobytes(), f"argument {position} differs"


@needs_extension
def test_a_whole_classical_matte_is_the_same_ahead_of_time_and_jit(monkeypatch):
    pair = make_pair(5, size=(120, 160), real_alpha=False)
    request = MatteRequest(image=pair.image, trimap=pair.trimap)
    ahead = get("classical").matte(request)
    monkeypatch.setattr(compiled, "_extension", False)  # what a process without the extension runs
    jit = get("classical").matte(request)
    for name in ("alpha", "foreground"):
        np.testing.assert_array_equal(getattr(ahead, name), getattr(jit, name), err_msg=name)


@needs_extension
@pytest.mark.parametrize("size", [(64, 96), (1000, 1100)], ids=["small", "in-blocks-on-two-threads"])
def test_a_classical_matte_with_the_extension_does_not_import_numba(tmp_path, size):
    """Neither a small frame nor a big one (1.1M pixels: its work in blocks on two threads) imports numba."""
    pair = make_pair(1, size=size, real_alpha=False)
    write_png(str(tmp_path / "plate.png"), pair.image)
    write_png(str(tmp_path / "trimap.png"), pair.trimap)
    _, modules = matte_in_fresh_process(str(tmp_path / "plate.png"), "--trimap", str(tmp_path / "trimap.png"),
                                        "--out", str(tmp_path / "out"), MATTEBOX_THREADS="2")
    assert not {m for m in modules if m.split(".")[0] in ("numba", "llvmlite")}
    assert (tmp_path / "out" / "plate_alpha.png").is_file()


def test_without_the_extension_the_kernels_run_on_numba(monkeypatch):
    monkeypatch.setattr(compiled, "_extension", None)
    monkeypatch.setenv("MATTEBOX_KERNELS", "jit")
    a = np.arange(5.0)
    assert compiled.dot(a, a) == 30.0 and compiled.extension() is None
    assert compiled.unavailable == "MATTEBOX_KERNELS=jit" and compiled.RADIUS == 1


@needs_extension
def test_a_stale_extension_is_not_used(monkeypatch):
    """The key compiled into the extension covers kernels.py's source: an edit there (here: another key) leaves
    the extension unused until it is rebuilt."""
    monkeypatch.setattr(compiled, "_extension", None)
    monkeypatch.setattr(compiled, "source_key", lambda: -1)
    monkeypatch.delenv("MATTEBOX_KERNELS", raising=False)
    assert compiled.extension() is None
    assert compiled.unavailable.startswith("stale")


def test_uncovered_argument_types_fall_back_to_the_jit(monkeypatch):
    """A call the table does not list (a float32 dot, a strided array) runs on numba and is recorded."""
    monkeypatch.setattr(compiled, "fallbacks", set())
    a = np.arange(6.0, dtype=np.float32)
    assert compiled.dot(a, a) == 55.0
    b = np.arange(12.0)[::2]
    assert compiled.dot(b, b) == float(np.dot(b, b))
    if compiled.extension():
        assert compiled.fallbacks == {("dot", (None, None)), ("dot", ((np.dtype(np.float32), 1),) * 2)}


def test_signatures_are_parsed_as_numba_types_them():
    assert compiled.arg_type("f4[:,:,::1]") == ("float32", 3) and compiled.arg_type("i8") == ("int64",)
    assert compiled.type_of(np.zeros((2, 3), np.uint8)) == ("uint8", 2) and compiled.type_of(1.5) == ("float64",)
    assert compiled.type_of(np.float32(1)) == ("float32",) and compiled.type_of(3) == ("int64",)
    assert compiled.type_of(np.zeros((4, 4))[:, ::2]) is None  # strided: numba's 'A' layout, not in the table
    with pytest.raises(ValueError, match="C-contiguous"):
        compiled.arg_type("f8[:, :]")


def test_a_build_without_a_c_compiler_says_so_in_one_line_and_keeps_the_extension(tmp_path):
    before = [(p.name, p.stat().st_mtime_ns) for p in Path(compiled.__file__).parent.glob(f"{compiled.EXTENSION}*")]
    env = tree_env(CC=str(tmp_path / "no-cc"), CXX=str(tmp_path / "no-cxx"), TMPDIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "mattebox.matting.aot", "build"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 1 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "not compiled ahead of time" in lines[0] and "compiler" in lines[0], out.stderr
    assert "numba at first use" in lines[0]
    after = [(p.name, p.stat().st_mtime_ns) for p in Path(compiled.__file__).parent.glob(f"{compiled.EXTENSION}*")]
    assert after == before


@needs_extension
def test_a_compiled_kernel_lets_other_threads_run_python_while_it_works():
    """The extension's kernels release the GIL (aot.py builds them nogil), which compiled.run_blocks needs to run
    blocks on two cores: while a kernel call runs on another thread, this thread keeps running Python. The witness
    is a half-done call: cg_direction writes p from its first element to its last, and this thread sees the first
    written and the last not yet — which it never can while the call holds the GIL. A busy machine may give this
    thread no core during a call, so calls are repeated (up to 50)."""
    import threading

    n = 10_000_000
    kernel = getattr(compiled.extension(), compiled.symbol("cg_direction", 0))
    ones = np.ones(n)
    for _ in range(50):
        p = np.zeros(n)
        worker = threading.Thread(target=kernel, args=(p, ones, ones, 0.0, 0, n))  # p = 1·1 + 0·p, in order
        worker.start()
        seen = False
        while worker.is_alive() and not seen:
            seen = p[0] == 1.0 and p[-1] == 0.0  # (read in this order: the first written, then the last not yet)
        worker.join()
        if seen:
            return
    pytest.fail("no kernel call was ever seen half done from another thread: the kernel holds the GIL")
