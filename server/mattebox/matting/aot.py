"""Build the classical kernels ahead of time: ``python -m mattebox.matting.aot build`` (the Makefile's install step).

numba.pycc compiles each kernel of :mod:`.kernels` (the one source; no second implementation) once per signature
of :data:`.compiled.SIGNATURES` into the extension module ``_kernels_aot`` beside :mod:`.compiled`, for this CPU
(``host``, as numba's JIT compiles), with ``source_key()``, ``radius()`` and ``sum_chunk()`` compiled in:
:mod:`.compiled` loads it at run time instead of importing numba, and only while the key matches. ``status``
says which path runs. Each kernel's wrapper releases the GIL (``nogil``), so several threads run kernels at once.

Without a C compiler (or with any other build failure) the command prints one line saying so, keeps the compiler's
output in a log file, and exits with status 1; the kernels then compile with numba's JIT at first use, as before.
pycc is numba's "pending deprecation" AOT compiler; on a numba without it the build fails the same way.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import sysconfig
import tempfile
import time
import traceback
import warnings
from pathlib import Path

from . import compiled


@contextlib.contextmanager
def _output_to(path: Path):
    """Send this process's stdout and stderr, the C compiler's included, to ``path`` (file descriptors 1 and 2)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


@contextlib.contextmanager
def _fresh_flags_per_function():
    """Compile each exported function with its own copy of pycc's compiler flags, as the JIT compiles each
    dispatcher. pycc shares one Flags object across its exports, and numba's inliner sets ``enable_ssa = False``
    on the flags it is given (numba/core/inline_closurecall.py, run_untyped_passes): after the first kernel that
    inlines ``symmetric_inverse``, every later one would be typed without SSA, which fails on window_inverse (a
    name bound to an int and then a float) and could type others differently from the JIT."""
    import numba.pycc.compiler as pycc_compiler

    shared = pycc_compiler.compile_extra

    def compile_extra(typingctx, targetctx, func, args, return_type, flags, *rest, **options):
        flags = flags.copy()
        flags.release_gil = True  # numba's nogil: compiled.run_blocks runs a kernel on several threads at once
        return shared(typingctx, targetctx, func, args, return_type, flags, *rest, **options)

    pycc_compiler.compile_extra = compile_extra
    try:
        yield
    finally:
        pycc_compiler.compile_extra = shared


def _compile(build_dir: Path) -> Path:
    """pycc over every signature of the table, into ``build_dir``; the extension's path."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NumbaPendingDeprecationWarning: pycc is what this module is for
        from numba.pycc import CC
        from numba.pycc.platform import external_compiler_works

    if not external_compiler_works():  # checked first: the LLVM half of the build takes ~10 s before it is needed
        named = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
        raise RuntimeError(f"no working C and C++ compiler ({named}; CC and CXX choose others)")

    from . import kernels

    cc = CC(compiled.EXTENSION, source_module=kernels)
    cc.output_dir = str(build_dir)
    cc.target_cpu = "host"  # numba's JIT compiles for the host too: same instructions, same speed, same bits
    for kernel, signatures in compiled.SIGNATURES.items():
        function = getattr(kernels, kernel).py_func
        for i, arguments in enumerate(signatures):
            returns = compiled.RETURNS.get(kernel, "void")
            cc.export(compiled.symbol(kernel, i), f"{returns}({', '.join(arguments)})")(function)
    key, radius, sum_chunk = compiled.source_key(), kernels.RADIUS, kernels.SUM_CHUNK
    cc.export("source_key", "i8()")(lambda: key)
    cc.export("radius", "i8()")(lambda: radius)
    cc.export("sum_chunk", "i8()")(lambda: sum_chunk)
    # pycc makes a scratch folder of its own and leaves it behind when a build fails: put it inside ours (removed)
    saved, tempfile.tempdir = tempfile.tempdir, str(build_dir)
    try:
        with _fresh_flags_per_function():
            cc.compile()
    finally:
        tempfile.tempdir = saved
    return build_dir / cc.output_file


def build(quiet: bool = False) -> int:
    """Compile the extension beside :mod:`.compiled` (replacing any older one); 0 on success, else 1 with a
    one-line note on stderr (the compiler's output and the traceback kept in a log file it names)."""
    started = time.perf_counter()
    handle, log = tempfile.mkstemp(prefix="mattebox-aot-build-", suffix=".log")
    os.close(handle)
    try:
        with tempfile.TemporaryDirectory(prefix="mattebox-aot-") as build_dir:
            with _output_to(Path(log)):
                built = _compile(Path(build_dir))
            target = Path(compiled.__file__).with_name(built.name)
            # copied under a name of its own, then renamed over the old one: atomic, so a running process keeps
            # the file it loaded and two builds at once cannot mix their halves
            handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f"{target.name}.", suffix=".tmp")
            os.close(handle)
            shutil.copyfile(built, partial)
            shutil.copymode(built, partial)  # (mkstemp made it private to this user)
            os.replace(partial, target)
    except Exception as exc:  # noqa: BLE001 -- any failure leaves the JIT path; the log has the details
        with open(log, "a") as f:
            traceback.print_exc(file=f)
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        print(f"mattebox: classical kernels not compiled ahead of time ({type(exc).__name__}: {reason}; log {log}); "
              "they compile with numba at first use instead", file=sys.stderr)
        return 1
    os.unlink(log)
    if not quiet:
        print(f"mattebox: classical kernels compiled ahead of time in {time.perf_counter() - started:.0f} s "
              f"-> {target}")
    return 0


def status() -> str:
    """Which path the kernels take in this environment, in one line."""
    module = compiled.extension()
    if module:
        return f"ahead-of-time ({Path(module.__file__).name}, current)"
    return f"numba JIT (extension {compiled.unavailable})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mattebox.matting.aot",
                                     description="Build the classical kernels ahead of time (the Makefile's install "
                                                 "step), or say which path runs them (docs/classical.md).")
    sub = parser.add_subparsers(dest="command", required=True)
    build_parser = sub.add_parser("build", help="compile the extension (~15-40 s, needs a C compiler)")
    build_parser.add_argument("--quiet", action="store_true", help="print only a failure")
    sub.add_parser("status", help="say whether the extension is present and current")
    args = parser.parse_args(argv)
    if args.command == "build":
        return build(args.quiet)
    print(status())
    return 0


if __name__ == "__main__":
    sys.exit(main())
