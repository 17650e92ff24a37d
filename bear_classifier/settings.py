"""Every BEAR_* environment variable (and SPACE_ID and SPACES_ZERO_GPU, which Spaces set), read in this one module with one parser per
type; and where the app lives.

app.py reads `Settings.from_env()` once and passes values down; library code takes arguments, except
`imagenet.cache_dir`, which fastai's weight loading calls with none to pass (it calls `Settings.from_env()` too).
README's configuration table lists the same variables.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from bear_classifier.model.decoding import Budget

ROOT = Path(__file__).resolve().parent.parent
"""Where app.py, model.pkl and the examples live."""
EXAMPLES_DIR = ROOT / "examples"
Backend = Literal["onnx", "torch"]
"""What runs the network: ONNX Runtime, or PyTorch as fastai's model is."""

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


class SettingsError(ValueError):
    """A BEAR_* variable has a value we cannot use; the message names it and what it accepts."""


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    if value is None:
        return default
    if value.strip().lower() in TRUE:
        return True
    if value.strip().lower() in FALSE:
        return False
    raise SettingsError(f"{name}={value!r}: use 1/true/yes/on or 0/false/no/off.")


def _number(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if value is None or not value.strip():
        return default
    try:
        return int(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r}: a whole number is expected.") from None


def _decimal(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name)
    if value is None or not value.strip():
        return default
    try:
        return float(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r}: a number is expected (such as 1 or 0.5).") from None


def _spaces_flag(env: Mapping[str, str], name: str) -> bool:
    """A flag Hugging Face sets, read as the `spaces` package reads it (spaces/config.py): we must agree with it on
    whether ZeroGPU is on, and a value it ignores must not stop the app."""
    return env.get(name, "").lower() in ("1", "t", "true")


def _proxies(env: Mapping[str, str], name: str, default: str) -> str:
    """Comma-separated addresses and CIDR blocks, checked here: uvicorn silently ignores what it cannot parse."""
    value = env.get(name, default).strip()
    for entry in filter(None, (part.strip() for part in value.split(","))):
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise SettingsError(f"{name}: {entry!r} is not an address or CIDR block (e.g. 10.0.0.0/8).") from None
    return value


def _text(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name, "").strip() or None


SPACE_SHARES = {
    "BEAR_JOINS_PER_MINUTE": 30,
    "BEAR_PREDICTIONS_PER_MINUTE": 20,
    "BEAR_UPLOAD_MB_PER_MINUTE": 100,
    "BEAR_FLAGS_PER_HOUR": 10,
    "BEAR_DECODE_CPU_SECONDS_PER_MINUTE": 10.0,
}
"""Each client's shares on a Space (public): what an honest visitor clicking through the page never reaches."""
LOCAL_SHARES = {
    "BEAR_JOINS_PER_MINUTE": 3000,
    "BEAR_PREDICTIONS_PER_MINUTE": 3000,
    "BEAR_UPLOAD_MB_PER_MINUTE": 3000,
    "BEAR_FLAGS_PER_HOUR": 1000,
    "BEAR_DECODE_CPU_SECONDS_PER_MINUTE": 600.0,
}
"""`python app.py` on your own machine: one user scripting the API (gradio_client, a folder of photos) never meets
these; they still stop a runaway loop from filling the disk."""
SPACE_PROXIES = "127.0.0.0/8,::1,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7"
"""Trusted proxies on a Space: loopback (Gradio's SSR Node proxy) and the private ranges a platform's own proxies
use; a visitor's address is public, so it is never one of these."""


def _default_review_dir() -> Path:
    """A Storage Bucket mounted at /data keeps flags across Space restarts; else ./review."""
    return Path("/data/review") if Path("/data").is_dir() else Path("review")


@dataclass(frozen=True)
class Rates:
    """Per client address. Defaults: what an honest visitor clicking through the page never reaches."""

    joins_per_minute: int = 30
    predictions_per_minute: int = 20  # decodes: a photo answered before (same content) costs nothing
    upload_mb_per_minute: int = 100
    flags_per_hour: int = 10
    decode_cpu_seconds_per_minute: float = 10.0  # an honest visitor's 20 photos a minute take under 2 s
    decode_pause_s: int = 60  # how long a client's decodes are refused after a budget kill or past its share (0: not)


@dataclass(frozen=True)
class Settings:
    model_repo: str | None = None  # BEAR_MODEL_REPO: Hub model repo to load model.pkl from
    model_revision: str | None = None  # BEAR_MODEL_REVISION: the commit SHA to pin it to
    model_sha256: str | None = None  # BEAR_MODEL_SHA256: expected SHA-256 of the pickle (default: its card's)
    allow_unpinned: bool = False  # BEAR_ALLOW_UNPINNED: accept a branch name as revision
    review_dir: Path = Path("review")  # BEAR_REVIEW_DIR: where flags go
    review_max_mb: int = 500  # BEAR_REVIEW_MAX_MB: review folder cap; new flags are refused beyond it
    feedback_repo: str | None = None  # BEAR_FEEDBACK_REPO: private Hub dataset the review folder syncs to
    upload_ttl: int = 600  # BEAR_UPLOAD_TTL: seconds before uploaded photos are deleted
    upload_max_mb: int = 1000  # BEAR_UPLOAD_MAX_MB: all uploads together; beyond it uploads wait for the sweep
    decode_workers: int | None = None  # BEAR_DECODE_WORKERS: decoder processes (default: from CPUs and memory)
    decode_cpu_seconds: float = 3.0  # BEAR_DECODE_CPU_SECONDS: CPU budget of one decode (a 50 MP PNG: 0.8-1.2 s)
    # BEAR_DECODE_CPU_SECONDS_PER_MINUTE: decoding CPU time per client address; past it, or after a photo stopped
    # at its budget, that client's decodes pause for a minute
    decode_cpu_seconds_per_minute: float = 10.0
    decode_memory_mb: int = 768  # BEAR_DECODE_MEMORY_MB: memory budget of one decoder process
    # Each client's shares (defaults: SPACE_SHARES on a Space, LOCAL_SHARES elsewhere)
    joins_per_minute: int = 30  # BEAR_JOINS_PER_MINUTE: queue joins per client address
    predictions_per_minute: int = 20  # BEAR_PREDICTIONS_PER_MINUTE: decoded photos per client address
    upload_mb_per_minute: int = 100  # BEAR_UPLOAD_MB_PER_MINUTE: uploaded bytes per client address
    flags_per_hour: int = 10  # BEAR_FLAGS_PER_HOUR: stored flags per client address
    # BEAR_TRUSTED_PROXIES: comma-separated addresses/CIDRs of our own proxies (uvicorn's forwarded_allow_ips); the
    # client is the rightmost X-Forwarded-For entry outside them. Default: SPACE_PROXIES on a Space, else none
    trusted_proxies: str = ""
    upload_unused_ttl: int = 60  # BEAR_UPLOAD_UNUSED_TTL: seconds an upload no prediction used is kept
    streams_per_client: int = 8  # BEAR_STREAMS_PER_CLIENT: requests (streams included) open at once per address
    streams_total: int = 256  # BEAR_STREAMS_TOTAL: requests open at once in all (each holds a file descriptor)
    queued_per_client: int = 2  # BEAR_QUEUED_PER_CLIENT: events per client address in the queue at once
    decode_pause_s: int = 60  # BEAR_DECODE_PAUSE_SECONDS: how long a client's decodes pause after its budget
    batch: bool = True  # BEAR_BATCH: share forward passes between concurrent requests
    draft_jpeg: bool = False  # BEAR_DRAFT_JPEG: decode large JPEGs at reduced size
    backend: Backend | None = None  # BEAR_BACKEND: "onnx" or "torch" (default: ONNX Runtime when installed)
    # BEAR_CACHE: pretrained weights, start-up verdicts, ONNX graphs; in the clone (gitignored), so that nothing of
    # the app's outlives the clone
    cache: Path = ROOT / ".cache"
    space_id: str | None = None  # SPACE_ID: set by Hugging Face Spaces (owner/name) when running on one
    zero_gpu: bool = False  # SPACES_ZERO_GPU: set by Hugging Face on ZeroGPU hardware (`zerogpu`)

    @property
    def on_space(self) -> bool:
        """Behind Hugging Face's proxy, so X-Forwarded-For names the client."""
        return self.space_id is not None

    @property
    def max_batch_size(self) -> int:
        return 16 if self.batch else 1

    @property
    def requests_at_once(self) -> int:
        """Gradio's concurrency limit: requests inside `classify_image` at once (decodes wait for the decoder pool,
        forward passes share batches). Each address may have `queued_per_client` events waiting on its decodes:
        with 16 slots, eight addresses' costly photos held them all and an honest photo waited in Gradio's queue
        (`python -m bench.hostile crowd`). `launch` gives Gradio threads of its own for them (`max_threads`)."""
        return 32

    @property
    def requests_for_new_clients(self) -> int:
        """Of `requests_at_once`, what clients outside the decoders' express lane may hold (`limits.AtOnce`): 8 stay
        free for visitors whose photos decoded quickly, however many addresses keep costly photos queued."""
        return self.requests_at_once - 8

    @property
    def rates(self) -> Rates:
        """Each client's shares (of the upload folder: `uploads.UploadFolder`)."""
        return Rates(
            self.joins_per_minute,
            self.predictions_per_minute,
            self.upload_mb_per_minute,
            self.flags_per_hour,
            decode_cpu_seconds_per_minute=self.decode_cpu_seconds_per_minute,
            decode_pause_s=self.decode_pause_s,
        )

    @property
    def budget(self) -> Budget:
        return Budget(self.decode_cpu_seconds, self.decode_memory_mb)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        space_id = _text(env, "SPACE_ID")
        shares = SPACE_SHARES if space_id else LOCAL_SHARES
        backend = _text(env, "BEAR_BACKEND")
        if backend not in (None, *get_args(Backend)):  # the one check: `predictor.network` takes it as it is
            raise SettingsError(f"BEAR_BACKEND={backend!r}: use 'onnx' or 'torch'.")
        return cls(
            model_repo=_text(env, "BEAR_MODEL_REPO"),
            model_revision=_text(env, "BEAR_MODEL_REVISION"),
            model_sha256=_text(env, "BEAR_MODEL_SHA256"),
            allow_unpinned=_flag(env, "BEAR_ALLOW_UNPINNED", False),
            review_dir=Path(_text(env, "BEAR_REVIEW_DIR") or _default_review_dir()),
            review_max_mb=_number(env, "BEAR_REVIEW_MAX_MB", cls.review_max_mb),
            feedback_repo=_text(env, "BEAR_FEEDBACK_REPO"),
            upload_ttl=_number(env, "BEAR_UPLOAD_TTL", cls.upload_ttl),
            upload_max_mb=_number(env, "BEAR_UPLOAD_MAX_MB", cls.upload_max_mb),
            decode_workers=_number(env, "BEAR_DECODE_WORKERS", 0) or None,
            decode_cpu_seconds=_decimal(env, "BEAR_DECODE_CPU_SECONDS", cls.decode_cpu_seconds),
            decode_cpu_seconds_per_minute=_decimal(
                env, "BEAR_DECODE_CPU_SECONDS_PER_MINUTE", shares["BEAR_DECODE_CPU_SECONDS_PER_MINUTE"]
            ),
            decode_memory_mb=_number(env, "BEAR_DECODE_MEMORY_MB", cls.decode_memory_mb),
            joins_per_minute=_number(env, "BEAR_JOINS_PER_MINUTE", shares["BEAR_JOINS_PER_MINUTE"]),
            predictions_per_minute=_number(env, "BEAR_PREDICTIONS_PER_MINUTE", shares["BEAR_PREDICTIONS_PER_MINUTE"]),
            upload_mb_per_minute=_number(env, "BEAR_UPLOAD_MB_PER_MINUTE", shares["BEAR_UPLOAD_MB_PER_MINUTE"]),
            flags_per_hour=_number(env, "BEAR_FLAGS_PER_HOUR", shares["BEAR_FLAGS_PER_HOUR"]),
            upload_unused_ttl=_number(env, "BEAR_UPLOAD_UNUSED_TTL", cls.upload_unused_ttl),
            streams_per_client=_number(env, "BEAR_STREAMS_PER_CLIENT", cls.streams_per_client),
            streams_total=_number(env, "BEAR_STREAMS_TOTAL", cls.streams_total),
            queued_per_client=_number(env, "BEAR_QUEUED_PER_CLIENT", cls.queued_per_client),
            decode_pause_s=_number(env, "BEAR_DECODE_PAUSE_SECONDS", cls.decode_pause_s),
            batch=_flag(env, "BEAR_BATCH", True),
            draft_jpeg=_flag(env, "BEAR_DRAFT_JPEG", False),
            backend=backend,
            cache=Path(_text(env, "BEAR_CACHE") or cls.cache),
            trusted_proxies=_proxies(env, "BEAR_TRUSTED_PROXIES", SPACE_PROXIES if space_id else ""),
            space_id=space_id,
            zero_gpu=_spaces_flag(env, "SPACES_ZERO_GPU"),
        )
