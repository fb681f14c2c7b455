"""Benchmarks, run from the repository root: `python -m bench.run` (against a bare
Flask app), `python -m bench.profile` (where a worker's time goes)."""
