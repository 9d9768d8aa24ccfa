"""mattebox server: request loop, job queue, engines, image I/O, evaluation, benchmarks and training.

Nothing heavy is imported here: the classical path never imports torch.
"""
import os as _os

# OpenCV reads EXR only when this is set before its first EXR call; EXR is the compositing interchange format.
_os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
try:  # the protocol needs msgpack, which a training-only machine (bench/device_session.py) may lack
    from mattebox_plugin.protocol import DEFAULT_LIMITS as _DEFAULT_LIMITS
except ImportError:
    _DEFAULT_LIMITS = None
if _DEFAULT_LIMITS is not None:
    # OpenCV reads its decode guard once, when it is loaded: the server's default max_pixels, also the budget
    # imageio checks image headers against before decoding (imageio.pixel_budget); set the variable to raise both.
    _os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(_DEFAULT_LIMITS["max_pixels"]))

__version__ = "0.1.0"
