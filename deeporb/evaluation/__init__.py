"""Evaluation: likelihood beside an n-gram baseline, music statistics, set comparison."""
