"""mattebox server: request loop, job queue, engines, image I/O, evaluation, benchmarks and training.

Nothing heavy is imported here: the classical path never imports torch.
"""
import os as _os

# OpenCV reads EXR only when this is set before its first EXR call; EXR is the compositing interchange format.
_os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")

__version__ = "0.1.0"
