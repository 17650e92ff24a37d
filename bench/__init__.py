"""Benchmarks and load tests. `python -m bench.run` measures everything and rewrites BENCHMARKS.md."""
