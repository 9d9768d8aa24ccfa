"""Matrix-free matting Laplacian (Levin, Lischinski, Weiss, "A Closed-Form Solution to Natural Image Matting",
PAMI 2008), applied with box filters as in He, Sun, Tang, "Fast Matting Using Large Kernel Matting Laplacian
Matrices", CVPR 2010, eqs. 11-13.

For windows w_k of (2r+1)² pixels with colour mean μ_k and covariance Σ_k, Levin's eq. 12 is

    L_ij = Σ_{k | i,j ∈ w_k} ( δ_ij − 1/|w| · (1 + (I_i − μ_k)ᵀ (Σ_k + ε/|w|·U)⁻¹ (I_j − μ_k)) ).

Expanding the sum gives, for any vector p (He et al.):

    a_k = Δ_k (mean_{w_k}(I p) − μ_k p̄_k),   b_k = p̄_k − a_kᵀ μ_k,   Δ_k = (Σ_k + ε/|w| U)⁻¹
    (L p)_i = n_i p_i − (Σ_{k ∋ i} a_k)ᵀ I_i − Σ_{k ∋ i} b_k

with n_i the number of windows containing i. Only windows lying fully inside the image are used, so the operator
is exactly Levin's L (symmetric positive semi-definite) and each application costs a fixed number of box
filters, whatever the window size. No matrix is ever stored: memory is a few dozen float32 images.
"""
from __future__ import annotations

import cv2
import numpy as np


def _box_mean(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over the (2r+1)² window centred at each pixel (values near the border are not used)."""
    return cv2.blur(x, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)


def _box_sum_valid(x: np.ndarray, r: int) -> np.ndarray:
    """Sum over the (2r+1)² window centred at each pixel, of values that are zero outside the valid centres."""
    return cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1), normalize=False, borderType=cv2.BORDER_CONSTANT)


class MattingLaplacian:
    """The matting Laplacian of an H×W×3 image (float32 in [0, 1]), applied matrix-free.

    ``eps`` is Levin's ε (regularises window covariances; 1e-7 in the paper), ``r`` the window radius (r=1:
    3×3 windows, as in the paper).
    """

    def __init__(self, image: np.ndarray, eps: float = 1e-7, r: int = 1):
        h, w = image.shape[:2]
        if h < 2 * r + 1 or w < 2 * r + 1:
            raise ValueError(f"image {w}x{h} is smaller than one {2 * r + 1}x{2 * r + 1} window")
        self.r = r
        self.image = np.ascontiguousarray(image, dtype=np.float32)
        size = float((2 * r + 1) ** 2)
        valid = np.zeros((h, w), np.float32)
        valid[r:h - r, r:w - r] = 1.0  # windows fully inside the image
        self.valid = valid
        self.window_count = _box_sum_valid(valid, r)  # n_i
        channels = [self.image[:, :, c] for c in range(3)]
        self.mean = np.stack([_box_mean(c, r) for c in channels], axis=-1)  # μ_k, H×W×3
        cov = np.empty((h, w, 3, 3), np.float64)
        for a in range(3):
            for b in range(a, 3):
                value = _box_mean(channels[a] * channels[b], r) - self.mean[:, :, a] * self.mean[:, :, b]
                cov[:, :, a, b] = cov[:, :, b, a] = value
        cov += (eps / size) * np.eye(3)
        self.inv_cov = np.linalg.inv(cov).astype(np.float32)  # Δ_k, H×W×3×3
        self.inv_cov *= valid[:, :, None, None]

    def apply(self, p: np.ndarray) -> np.ndarray:
        """L p for an H×W float32 vector p."""
        r = self.r
        mean_p = _box_mean(p, r)  # p̄_k
        mean_ip = np.stack([_box_mean(self.image[:, :, c] * p, r) for c in range(3)], axis=-1)
        cross = mean_ip - self.mean * mean_p[:, :, None]
        a = np.einsum("hwij,hwj->hwi", self.inv_cov, cross)  # a_k (zero outside valid windows)
        b = (mean_p - np.einsum("hwi,hwi->hw", a, self.mean)) * self.valid  # b_k
        sum_a = np.stack([_box_sum_valid(np.ascontiguousarray(a[:, :, c]), r) for c in range(3)], axis=-1)
        sum_b = _box_sum_valid(b, r)
        return self.window_count * p - np.einsum("hwi,hwi->hw", sum_a, self.image) - sum_b

    def diagonal(self) -> np.ndarray:
        """diag(L): n_i − Σ_{k∋i} (1 + (I_i − μ_k)ᵀ Δ_k (I_i − μ_k)) / |w| (for the Jacobi preconditioner)."""
        r = self.r
        size = float((2 * r + 1) ** 2)
        h, w = self.valid.shape
        total = np.zeros((h, w), np.float32)
        # Σ_k over the windows containing i, by shifting each window centre offset
        padded_inv = np.pad(self.inv_cov, ((r, r), (r, r), (0, 0), (0, 0)))
        padded_mean = np.pad(self.mean, ((r, r), (r, r), (0, 0)))
        padded_valid = np.pad(self.valid, r)
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                ys, xs = slice(r + dy, r + dy + h), slice(r + dx, r + dx + w)
                diff = self.image - padded_mean[ys, xs]
                quad = np.einsum("hwi,hwij,hwj->hw", diff, padded_inv[ys, xs], diff)
                total += padded_valid[ys, xs] * (1.0 - (1.0 + quad) / size)
        return total
