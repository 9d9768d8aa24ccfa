"""A loose lasso as an artist draws it in GIMP: the subject's outline grown by a margin that wanders along it."""
from __future__ import annotations

import cv2
import numpy as np


def loose_lasso(alpha: np.ndarray, seed: int = 0, near: int = 20, far: int = 60) -> np.ndarray:
    """H x W float32 {0, 1}: everything with alpha > 0.02, grown by ``near``, ``(near + far) / 2`` or ``far`` px,
    chosen per cell of a 4 x 4 grid (seeded), so the lasso runs 20-60 px off the subject's edge by default."""
    rng = np.random.default_rng(seed)
    subject = (alpha > 0.02).astype(np.uint8)
    grown = [cv2.dilate(subject, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
             for r in (near, (near + far) // 2, far)]
    pick = cv2.resize(rng.integers(0, 3, (4, 4)).astype(np.float32), alpha.shape[::-1],
                      interpolation=cv2.INTER_NEAREST).astype(int)
    return np.choose(pick, grown).astype(np.float32)
