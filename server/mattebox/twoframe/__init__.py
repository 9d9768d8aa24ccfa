"""Two-frame (parallax) matting: motion, alignment and the classical two-frame solve.

After "Parallax Portrait Matting" (shared/papers/parallax-portrait-matting.txt, §4.2); see docs/twoframe.md.
"""
