"""Who is calling, and how much each caller may spend: a fair share per client address, never per session.

Gradio's session hash is chosen by the caller, so a script takes a new one per request; the address is what
a caller cannot choose. On a Space every request arrives from Hugging Face's proxy, which names the visitor
in X-Forwarded-For: that header is read only there (`Settings.on_space`); anywhere else a caller could write
it. The proxy appends the address it saw, so the last entry is the one a caller cannot forge.

The counters are `limits`' sliding windows in memory (one process serves the app).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter


def address(host: str | None, headers: Iterable[tuple[str, str]], trust_forwarded: bool) -> str:
    """The client's address: the proxy's last X-Forwarded-For entry when `trust_forwarded`, else the
    connection's peer."""
    if trust_forwarded:
        for name, value in headers:
            if name.lower() == "x-forwarded-for" and value.strip():
                return value.split(",")[-1].strip()
    return host or "unknown"


def of_request(request: object, trust_forwarded: bool) -> str:
    """`address` of a `gr.Request` (or anything with `.client.host` and `.headers`)."""
    client = getattr(request, "client", None)
    headers = getattr(request, "headers", None) or {}
    return address(getattr(client, "host", None), dict(headers).items(), trust_forwarded)


@dataclass(frozen=True)
class Rates:
    """Per client address. Defaults: what an honest visitor clicking through the page never reaches."""

    joins_per_minute: int = 30
    predictions_per_minute: int = 20  # decodes: a photo answered before (same content) costs nothing
    upload_mb_per_minute: int = 100
    flags_per_hour: int = 10
    upload_share_mb: int = 250  # uploaded bytes per `upload_window_s`: a quarter of the upload folder
    upload_window_s: int = 600  # an upload's lifetime (BEAR_UPLOAD_TTL): what one client can hold at once


class Quotas:
    """Spend a client's share; False when it is used up (the caller is told to wait)."""

    def __init__(self, rates: Rates):
        self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        self.rates = rates
        self._items: dict[str, RateLimitItem] = {
            "join": parse(f"{rates.joins_per_minute}/minute"),
            "prediction": parse(f"{rates.predictions_per_minute}/minute"),
            "upload_kb": parse(f"{rates.upload_mb_per_minute * 1024}/minute"),
            "flag": parse(f"{rates.flags_per_hour}/hour"),
            "upload_held_kb": parse(f"{rates.upload_share_mb * 1024} per {rates.upload_window_s} seconds"),
        }

    def spend(self, kind: str, client: str, cost: int = 1) -> bool:
        return self._limiter.hit(self._items[kind], client, cost=max(1, cost))


WAIT = "You have sent many requests in a short time: please wait a minute and try again."
