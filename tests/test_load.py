"""The short version of the load/soak test (the long one: `python -m bench.soak`)."""
from bench import soak


def test_short_soak(server):
    result = soak.run(server, requests=200, callers=16, bad_share=0.1)
    assert result.lost == []
    assert result.wrong == []
    assert result.rss_growth_last_half_mb < 150, result.rss_mb
    assert server.alive()
