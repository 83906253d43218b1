"""Benchmarks of the torch and Flax twins on the same work; run ``python -m benchmarks``."""
