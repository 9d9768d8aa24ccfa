"""mattebox server: request loop, job queue, engines, image I/O, evaluation, benchmarks and training.

Nothing heavy is imported here: the classical path never imports torch.
"""
import os as _os

# OpenCV reads EXR only when this is set before its first EXR call; EXR is the compositing interchange format.
_os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
# numpy asks the kernel for transparent huge pages on every large array (madvise); where THP defrag is "madvise"
# (the kernel's default) each first touch may compact memory synchronously. Measured on a 4K `mattebox matte`
# (docs/classical.md "Speed"): 17.4 s of CPU with it, 14.8-15.8 s without (system time), same peak RSS and output.
# Read when numpy is first imported, which is after this in a mattebox process; the user's setting wins.
_os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
try:  # the protocol needs msgpack, which a training-only machine (bench/device_session.py) may lack
    from mattebox_plugin.protocol import DEFAULT_LIMITS as _DEFAULT_LIMITS
except ImportError:
    _DEFAULT_LIMITS = None
if _DEFAULT_LIMITS is not None:
    # OpenCV reads its decode guard once, when it is loaded: the server's default max_pixels, also the budget
    # imageio checks image headers against before decoding (imageio.pixel_budget); set the variable to raise both.
    _os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(_DEFAULT_LIMITS["max_pixels"]))

__version__ = "0.1.0"
