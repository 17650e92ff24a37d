"""Every BEAR_* variable is read in bear_classifier/settings.py, with one parser per type."""

import re
from pathlib import Path

import pytest

from bear_classifier.settings import ROOT, Settings, SettingsError


@pytest.mark.parametrize(
    "value, batch",
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("off", False),
    ],
)
def test_every_spelling_of_a_flag_means_the_same(value, batch):
    assert Settings.from_env({"BEAR_BATCH": value}).batch is batch  # BEAR_BATCH=true used to turn batching off
    assert Settings.from_env({"BEAR_DRAFT_JPEG": value}).draft_jpeg is batch
    assert Settings.from_env({"BEAR_ALLOW_UNPINNED": value}).allow_unpinned is batch


def test_defaults_without_any_variable():
    settings = Settings.from_env({})
    assert settings.batch and settings.max_batch_size == 16 and not settings.draft_jpeg
    assert settings.upload_ttl == 600 and settings.model_repo is None and settings.backend is None


def test_values_are_read():
    env = {
        "BEAR_MODEL_REPO": "me/bears",
        "BEAR_MODEL_REVISION": "a" * 40,
        "BEAR_UPLOAD_TTL": "60",
        "BEAR_REVIEW_DIR": "/tmp/r",
        "BEAR_CACHE": "/tmp/c",
        "BEAR_BACKEND": "torch",
        "BEAR_BATCH": "0",
    }
    settings = Settings.from_env(env)
    assert (settings.model_repo, settings.model_revision, settings.upload_ttl) == ("me/bears", "a" * 40, 60)
    assert settings.review_dir == Path("/tmp/r") and settings.cache == Path("/tmp/c")
    assert settings.backend == "torch" and settings.max_batch_size == 1


@pytest.mark.parametrize(
    "value, zero_gpu",
    [("true", True), ("True", True), ("1", True), ("t", True), ("false", False), ("", False), ("yes", False)],
)
def test_zero_gpu_is_read_as_the_spaces_package_reads_it(value, zero_gpu):
    """Hugging Face sets SPACES_ZERO_GPU=true on ZeroGPU; `spaces` decides by the same test whether ZeroGPU is on, so
    the app imports it exactly then, and a spelling `spaces` ignores does not stop the app."""
    assert Settings.from_env({"SPACES_ZERO_GPU": value}).zero_gpu is zero_gpu
    assert Settings.from_env({}).zero_gpu is False


@pytest.mark.parametrize(
    "env, words",
    [
        ({"BEAR_BATCH": "maybe"}, "BEAR_BATCH"),
        ({"BEAR_UPLOAD_TTL": "1h"}, "whole number"),
        ({"BEAR_BACKEND": "tensorrt"}, "onnx"),
    ],
)
def test_unusable_values_say_what_is_expected(env, words):
    with pytest.raises(SettingsError, match=words):
        Settings.from_env(env)


def test_no_other_module_reads_a_bear_variable():
    root = Path(__file__).resolve().parent.parent
    reads = re.compile(r"""(environ\.get\(|environ\[|getenv\()\s*["']BEAR_""")
    readers = [
        p.name
        for p in [*root.joinpath("bear_classifier").rglob("*.py"), root / "app.py"]
        if reads.search(p.read_text()) and p.name != "settings.py"
    ]
    assert readers == []


def test_decode_budgets_take_fractions_of_a_second():
    settings = Settings.from_env({"BEAR_DECODE_CPU_SECONDS": "0.5", "BEAR_DECODE_CPU_SECONDS_PER_MINUTE": "3"})
    assert settings.budget.cpu_seconds == 0.5 and settings.rates.decode_cpu_seconds_per_minute == 3
    with pytest.raises(SettingsError, match="BEAR_DECODE_CPU_SECONDS="):
        Settings.from_env({"BEAR_DECODE_CPU_SECONDS": "fast"})


def test_the_apps_files_stay_in_the_clone_by_default():
    """Nothing of the app's outlives the clone: its cache (weights, start-up verdicts, ONNX graphs) is inside it."""
    assert Settings.from_env({}).cache.is_relative_to(ROOT)
