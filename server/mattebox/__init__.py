"""mattebox server: request loop, job queue, engines, image I/O, evaluation, benchmarks and training.

Nothing heavy is imported here: the classical path never imports torch.
"""
import os as _os

from mattebox_plugin.protocol import DEFAULT_LIMITS as _DEFAULT_LIMITS

# OpenCV reads EXR only when this is set before its first EXR call; EXR is the compositing interchange format.
_os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
# OpenCV reads its decode guard once, when it is loaded: the same pixel budget as the server's default max_pixels
# (image headers are checked before decoding, imagesize.py; this covers the formats that module does not parse).
_os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(_DEFAULT_LIMITS["max_pixels"]))

__version__ = "0.1.0"
