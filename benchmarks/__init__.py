"""Performance benchmarks against reference baselines: `python -m benchmarks.run` (make bench)."""
