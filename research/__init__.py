"""Finished research: scripts whose tables in BENCHMARKS.md decided something; each one's docstring opens with
what it found and the commit that produced its table. They re-run (`python -m research.<name>`), but nothing
re-measures the product here: bench/ does."""
