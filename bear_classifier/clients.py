"""Who is calling, and how much each caller may spend: a fair share per client address, never per session.

Gradio's session hash is chosen by the caller, so a script takes a new one per request; the address is what
a caller cannot choose. On a Space every request arrives from Hugging Face's proxy, which names the visitor
in X-Forwarded-For: that header is read only there (`Settings.on_space`); anywhere else a caller could write
it. The proxy appends the address it saw, so the last entry is the one a caller cannot forge.

The counters live in memory (one process serves the app). Counts (joins, decodes, flags) use `limits`'
moving window, which keeps every hit's time: no burst at a window's edge gets twice the share. Costs (upload
kilobytes, decode milliseconds) use its sliding-window counter, which keeps two numbers per client where a
moving window would keep one entry per kilobyte.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter


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
    decode_cpu_seconds_per_minute: float = 10.0  # an honest visitor's 20 photos a minute take under 2 s
    decode_pause_s: int = 60  # how long a client's decodes are refused after a budget kill or past its share (0: not)


class Quotas:
    """Spend a client's share; False when it is used up (the caller is told to wait)."""

    def __init__(self, rates: Rates):
        storage = MemoryStorage()
        self._counts = MovingWindowRateLimiter(storage)
        self._costs = SlidingWindowCounterRateLimiter(storage)
        self.rates = rates
        self._items: dict[str, RateLimitItem] = {
            "join": parse(f"{rates.joins_per_minute}/minute"),
            "prediction": parse(f"{rates.predictions_per_minute}/minute"),
            "flag": parse(f"{rates.flags_per_hour}/hour"),
            "upload_kb": parse(f"{rates.upload_mb_per_minute * 1024}/minute"),
            "decode_ms": parse(f"{max(1, round(rates.decode_cpu_seconds_per_minute * 1000))}/minute"),
        }
        self._paused: dict[str, float] = {}  # client -> when its decodes are taken again (time.monotonic)
        self._lock = threading.Lock()

    def spend(self, kind: str, client: str, cost: int = 1) -> bool:
        limiter = self._costs if kind in COSTS else self._counts
        return limiter.hit(self._items[kind], client, cost=max(1, cost))

    def decode_refusal(self, client: str) -> str | None:
        """Why `client`'s next photo is not decoded (its decodes are paused), or None."""
        with self._lock:
            paused = self._paused.get(client, 0) > time.monotonic()
        return DECODE_PAUSED if paused or not self._costs.test(self._items["decode_ms"], client) else None

    def decode_spent(self, client: str) -> float:
        """CPU seconds `client`'s decodes took in the last minute (the sliding window's estimate)."""
        item = self._items["decode_ms"]
        return (item.amount - self._costs.get_window_stats(item, client).remaining) / 1000

    def charge_decode(self, client: str, cpu_seconds: float, over_budget: bool) -> None:
        """Charge a decode's CPU time to `client`; past its share a minute, or stopped at the per-photo budget,
        its decodes pause for `Rates.decode_pause_s`."""
        within = self._costs.hit(self._items["decode_ms"], client, cost=max(1, round(cpu_seconds * 1000)))
        if (within and not over_budget) or not self.rates.decode_pause_s:
            return
        now = time.monotonic()
        with self._lock:
            self._paused = {c: until for c, until in self._paused.items() if until > now}  # forget the past ones
            self._paused[client] = now + self.rates.decode_pause_s


COSTS = {"upload_kb", "decode_ms"}
"""The shares counted in amounts (kilobytes, milliseconds) rather than requests."""

WAIT = "You have sent many requests in a short time: please wait a minute and try again."
DECODE_PAUSED = (
    "Your photos have used this server's decoding time for now (a photo over BEAR_DECODE_CPU_SECONDS, or more "
    "than BEAR_DECODE_CPU_SECONDS_PER_MINUTE a minute): please wait a minute, and send ordinary JPEG or PNG photos."
)
