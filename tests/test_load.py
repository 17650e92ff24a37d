"""The short version of the load/soak test (the long one: `python -m bench.soak`, in BENCHMARKS.md)."""

from tests.support import soak

MEMORY_BUDGET_MB = 2500  # the long soak plateaus well below this; a per-request leak would cross it


def test_short_soak(server):
    result = soak.run(server, requests=300, callers=16, bad_share=0.1)
    assert result.lost == []
    assert result.wrong == []
    assert max(result.rss_mb) < MEMORY_BUDGET_MB, result.rss_mb
    assert server.alive()
