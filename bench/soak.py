"""Load/soak test, the long run: many concurrent callers of `python app.py` on loopback, a share of them
hostile (`tests.support.soak`, which the test suite runs short in tests/test_load.py). Bounded in requests
and time; loopback only.

    python -m bench.soak --requests 2000 --callers 16     # the long run (BENCHMARKS.md)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tests.support.appserver import ONE_ADDRESS, AppServer
from tests.support.soak import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--callers", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = AppServer(Path(tmp), **ONE_ADDRESS)
        try:
            started = server.rss_mb()
            result = run(server, args.requests, args.callers)
            ended = server.rss_mb()
        finally:
            server.stop()
    print(
        f"{result.requests} requests, {args.callers} callers, {result.seconds:.0f} s: "
        f"{len(result.wrong)} wrong, {len(result.lost)} lost; server RSS (MB) per tenth: "
        f"{[round(m) for m in result.rss_mb]}"
    )
    print(
        f"Server RSS after start-up {started:.0f} MB, after the run {ended:.0f} MB: growth {ended - started:+.0f} MB."
    )
    for problem in result.lost + result.wrong:
        print(" ", problem)


if __name__ == "__main__":
    main()
