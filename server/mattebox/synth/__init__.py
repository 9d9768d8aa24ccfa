"""Synthetic data made in code, deterministic by seed: backgrounds, foregrounds, composites, parallax pairs."""
