"""Who is calling, and how much each caller may spend: a fair share per client, never per session.

Gradio's session hash is chosen by the caller, so a script takes a new one per request; the address is what
a caller cannot choose. Where it comes from (README "Client addresses"):
- Behind proxies, the address is the rightmost X-Forwarded-For entry that is not one of our own proxies
  (`Settings.trusted_proxies`, BEAR_TRUSTED_PROXIES: on a Space, loopback for Gradio's SSR Node proxy and the
  private ranges Hugging Face's proxies use; locally nothing, so a caller's own header is ignored). That walk is
  uvicorn's `forwarded_allow_ips` (its ProxyHeadersMiddleware, which joins several header lines in order and
  rewrites the connection's client before Gradio or we see it): app.py hands it our setting, so Gradio's
  `gr.Request` and our shares agree. HF documents no X-Forwarded-For contract; `log_shape` tells us what a real
  Space sends.
- On a Space, `X-IP-Token` (the per-visitor token HF's proxy sets, hub-docs spaces-zerogpu) names the visitor
  where present: it holds when several hops share one address. Its signature is HF's and is not checked here:
  should a caller's own X-IP-Token ever reach the app, that caller could pick a new share per request, which the
  logged header shapes of a real Space would show (README, "Verified only against stand-ins").
- Addresses are normalised (IPv4-mapped IPv6 is IPv4) and IPv6 counts per /64, the block one subscriber holds.

The counters are `limits`' sliding windows in memory (one process serves the app).
"""

from __future__ import annotations

import hashlib
import ipaddress
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter

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
    """The client: on a Space (`trust_forwarded`) its X-IP-Token where present, else the connection's client as
    uvicorn resolved it from X-Forwarded-For (`forwarded_allow_ips`), normalised."""
    headers = list(headers)
    client = normalise(host)
    if trust_forwarded:
        token = next((value.strip() for name, value in headers if name.lower() == IP_TOKEN and value.strip()), None)
        if token:
            client = "ip-token:" + hashlib.sha256(token.encode()).hexdigest()[:16]
    _shapes.log(headers, client)
    return client


def of_request(request: object, trust_forwarded: bool) -> str:
    """`address` of a `gr.Request` (or anything with `.client.host` and `.headers`)."""
    client = getattr(request, "client", None)
    headers = getattr(request, "headers", None) or {}
    return address(getattr(client, "host", None), dict(headers).items(), trust_forwarded)


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


SETTING_OF = {
    "join": "BEAR_JOINS_PER_MINUTE",
    "prediction": "BEAR_PREDICTIONS_PER_MINUTE",
    "upload_kb": "BEAR_UPLOAD_MB_PER_MINUTE",
    "upload_held_kb": "BEAR_UPLOAD_MAX_MB",
    "flag": "BEAR_FLAGS_PER_HOUR",
}
"""The setting that raises each share: every refusal names it, so whoever runs the app knows what to change."""


def wait(kind: str) -> str:
    """The refusal when `kind`'s share is used up."""
    return (
        "You have sent many requests in a short time: please wait a minute and try again. "
        f"(Running this app yourself? {SETTING_OF[kind]} raises this limit.)"
    )
