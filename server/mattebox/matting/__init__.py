"""The matting maths, apart from the engines that serve it: pymatting (Germer et al., "PyMatting: A Python
Library for Alpha Matting", JOSS 2020) keeps its kernels (``pymatting.laplacian``, ``pymatting.alpha``,
``pymatting.foreground``) apart from its applications in the same way, so that a solver can be used, tested and
benchmarked without the application around it.

Closed-form alpha (Levin et al. 2008) and its solver:
  :mod:`.laplacian` (matting Laplacian, band and crop operators), :mod:`.alpha` (presets, the coarse-to-fine
  solve), :mod:`.sampling` (known-colour sampling prior), :mod:`.kernels` (numba kernels they share; called through
  :mod:`.compiled`, which runs them from the ahead-of-time build of :mod:`.aot` or numba's JIT),
  :mod:`.multigrid` (an optional V-cycle preconditioner, off by default: measured not to pay).
Foreground: :mod:`.foreground` (multilevel, Germer et al. 2020; Blur-Fusion, Forte & Pitié 2021).
Guidance: :mod:`.guidance` (masks and saliency to trimaps, GrabCut), :mod:`.segmentation` (the optional
  segmentation networks; torch is imported only when one runs).
Known background: :mod:`.known_background` (clean plate or revealed background as a data term).
Motion and two frames: :mod:`.motion` (DIS optical flow, warps), :mod:`.align` (Parallax Portrait Matting's
  alignment of a second frame), :mod:`.twoframe` (the classical two-frame solve).

Users: the engines (``mattebox.engines.classical``, ``classical_pair``, ``learned``) are thin adapters from the
engine contract to these functions; ``mattebox.shots`` (key frames carried by flow), ``mattebox.training``
(foregrounds of real mattes, aligned pairs) and ``mattebox.evaluation`` call them directly. ``shots/flow.py``
stays in ``mattebox.shots``: the shot's flow cache and layered flow are used by shots alone and build on
:mod:`.motion`.

Nothing here imports an engine, a shot or training (tests/test_import_graph.py checks every cycle), and
nothing here imports torch at module level (the classical path stays torch-free,
tests/test_classical_segmentation.py). This ``__init__`` imports nothing, so importing one module does not
compile the numba kernels of another.
"""
