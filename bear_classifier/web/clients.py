"""Who is calling, and how much each caller may spend: a fair share per client, never per session.

Gradio's session hash is chosen by the caller, so a script takes a new one per request; the address is what
a caller cannot choose. Where it comes from (README "Client addresses"):
- Behind proxies, the address is the rightmost X-Forwarded-For entry that is not one of our own proxies
  (`Settings.trusted_proxies`, BEAR_TRUSTED_PROXIES: on a Space, loopback for Gradio's SSR Node proxy and the
  private ranges Hugging Face's proxies use; locally nothing, so a caller's own header is ignored). That walk is
  uvicorn's `forwarded_allow_ips` (its ProxyHeadersMiddleware, which joins several header lines in order and
  rewrites the connection's client before Gradio or we see it): `launch` hands it our setting, so Gradio's
  `gr.Request` and our shares agree. HF documents no X-Forwarded-For contract; `log_shape` tells us what a real
  Space sends.
- `X-IP-Token` never names a client. Gradio's own page asks huggingface.co for it and attaches it to queue joins
  itself, so the platform must pass a caller's header through, and its signature cannot be checked here (HF's key
  is not published with a contract): a script writing its own would get a new share per request. Its presence is
  only logged.
- Addresses are normalised (IPv4-mapped IPv6 is IPv4) and IPv6 counts per /64, the block one subscriber holds.

The counters live in memory (one process serves the app). Counts (joins, decodes, flags) use `limits`'
moving window, which keeps every hit's time: no burst at a window's edge gets twice the share. Costs (upload
kilobytes, decode milliseconds) use its sliding-window counter, which keeps two numbers per client where a
moving window would keep one entry per kilobyte.
"""

from __future__ import annotations

import hashlib
import ipaddress
import sys
import threading
import time
from collections.abc import Iterable

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

from bear_classifier import page
from bear_classifier.settings import Rates

IP_TOKEN = "x-ip-token"
SHAPES_LOGGED = 20
"""How many requests' header shapes are logged at start (then none): enough to learn the Space's proxies."""


def normalise(host: str | None) -> str:
    """One spelling per client: IPv4 as is, IPv4-mapped IPv6 as IPv4, other IPv6 as its /64; else as given."""
    try:
        ip = ipaddress.ip_address((host or "").strip().strip("[]").split("%")[0])
    except ValueError:
        return (host or "unknown")[:64]
    if ip.version == 6 and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def address(host: str | None, headers: Iterable[tuple[str, str]], trust_forwarded: bool) -> str:
    """The client: the connection's client as uvicorn resolved it from X-Forwarded-For (`forwarded_allow_ips`),
    normalised. On a Space (`trust_forwarded`) the first requests' header shapes are logged."""
    client = normalise(host)
    if trust_forwarded:
        _shapes.log(list(headers), client)
    return client


def of_request(request: object, trust_forwarded: bool) -> str:
    """`address` of a `gr.Request` (or anything with `.client.host` and `.headers`)."""
    client = getattr(request, "client", None)
    headers = getattr(request, "headers", None) or {}
    return address(getattr(client, "host", None), list(getattr(headers, "items", lambda: [])()), trust_forwarded)


class _Shapes:
    """Logs which identifying headers the first requests carried (hop counts, never values; the client hashed):
    the first real Space then says what its proxies send."""

    def __init__(self, limit: int):
        self.left = limit
        self._lock = threading.Lock()

    def log(self, headers: list[tuple[str, str]], client: str) -> None:
        with self._lock:
            if self.left <= 0:
                return
            self.left -= 1
        forwarded = [value for name, value in headers if name.lower() == "x-forwarded-for"]
        hops = sum(len(value.split(",")) for value in forwarded)
        token = "present" if any(name.lower() == IP_TOKEN for name, _ in headers) else "absent"
        digest = hashlib.sha256(client.encode()).hexdigest()[:8]
        print(
            f"client address: X-Forwarded-For {hops} entries in {len(forwarded)} lines, X-IP-Token {token}, "
            f"client #{digest}",
            file=sys.stderr,
            flush=True,
        )


_shapes = _Shapes(SHAPES_LOGGED)


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
        return page.DECODE_PAUSED if paused or not self._costs.test(self._items["decode_ms"], client) else None

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

SETTING_OF = {
    "join": "BEAR_JOINS_PER_MINUTE",
    "prediction": "BEAR_PREDICTIONS_PER_MINUTE",
    "upload_kb": "BEAR_UPLOAD_MB_PER_MINUTE",
    "flag": "BEAR_FLAGS_PER_HOUR",
    "decode_ms": "BEAR_DECODE_CPU_SECONDS_PER_MINUTE",
}
"""The setting that raises each share: every refusal names it, so whoever runs the app knows what to change."""


def wait(kind: str) -> str:
    """The refusal when `kind`'s share is used up."""
    return page.too_many_requests(SETTING_OF[kind])
