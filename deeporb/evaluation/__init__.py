"""Evaluation: likelihood beside an n-gram baseline, music statistics per piece and across parts, set comparison."""
