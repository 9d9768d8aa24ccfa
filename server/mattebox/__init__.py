"""mattebox server: request loop, job queue, engines, image I/O, evaluation, benchmarks and training.

Nothing heavy is imported here: the classical path never imports torch.
"""
__version__ = "0.1.0"
