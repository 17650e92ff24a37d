"""`python -m bear_classifier.batch.classify`: folders, globs and files in, a row per photo out, bad files as
rows, --resume, Ctrl-C, every output format, and the Ray engine's rows equal to the local engine's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from bear_classifier.batch import classify, results
from bear_classifier.model import decoding
from bear_classifier.settings import ROOT, Settings
from tests.conftest import EXAMPLES_DIR, FIXTURE_BEARS, VOCAB
from tests.support import hard_inputs

TOLERANCE = 1e-5  # batches of other sizes change the last float bits of a probability


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory) -> Path:
    """Files a collection really has: empty, not an image, truncated, a README, a photo in a subfolder."""
    folder = tmp_path_factory.mktemp("bad")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("not a photo")
    grizzly = (EXAMPLES_DIR / "grizzly_bear.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(grizzly[: len(grizzly) // 3])
    (folder / "README.txt").write_text("not looked at: folders are searched for image files only")
    (folder / "nested").mkdir()
    (folder / "nested" / "Grizzly.JPG").write_bytes(grizzly)
    return folder


@pytest.fixture
def model(monkeypatch, predictor):
    """The in-process runs share the session's predictor instead of loading the model again (and its batch size
    is the app's again after each: `classify.run` sets its own)."""
    monkeypatch.setattr(classify, "load_predictor", lambda settings: predictor)
    monkeypatch.setattr(predictor, "max_batch_size", predictor.max_batch_size)
    return predictor


def inputs(bad_folder: Path) -> list[str]:
    return classify.photo_paths([str(EXAMPLES_DIR), str(FIXTURE_BEARS), str(bad_folder)])


def by_path(rows: list[dict]) -> dict[str, dict]:
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)), "a photo has two rows"
    return {r["path"]: r for r in rows}


def assert_same_rows(got: list[dict], expected: list[dict]) -> None:
    got_rows, expected_rows = by_path(got), by_path(expected)
    assert got_rows.keys() == expected_rows.keys()
    for path, want in expected_rows.items():
        for name, value in want.items():
            if isinstance(value, float):
                assert got_rows[path][name] == pytest.approx(value, abs=TOLERANCE), (path, name)
            else:
                assert got_rows[path][name] == value, (path, name)


def test_paths_from_folders_globs_and_files(bad_folder):
    found = classify.photo_paths([str(bad_folder), str(EXAMPLES_DIR / "cat.jpg"), str(EXAMPLES_DIR / "*.jpg")])
    assert str(bad_folder / "nested" / "Grizzly.JPG") in found  # recursive, any case of the extension
    assert not any(p.endswith("README.txt") for p in found)  # a folder is searched for image files only
    assert found.count(str(EXAMPLES_DIR / "cat.jpg")) == 1  # named twice, one row
    assert len([p for p in found if p.startswith(str(EXAMPLES_DIR))]) == len(list(EXAMPLES_DIR.glob("*.jpg")))
    assert classify.photo_paths([str(bad_folder / "README.txt")]) == [str(bad_folder / "README.txt")]
    with pytest.raises(classify.UsageError, match="no such file or folder"):
        classify.photo_paths([str(bad_folder / "missing")])
    with pytest.raises(classify.UsageError, match="matches no file"):
        classify.photo_paths([str(bad_folder / "*.png")])


def test_rows_are_the_apps_answers_and_bad_files_are_rows(model, bad_folder, tmp_path):
    files = inputs(bad_folder)
    summary = classify.run(files, tmp_path / "r.csv", Settings(), workers=2, progress=False)
    rows = by_path(results.read_rows(tmp_path / "r.csv", model.vocab))
    assert list(rows) == files  # the local engine keeps the input order
    assert summary.photos == len(files) and summary.refused == 3
    assert rows[str(bad_folder / "empty.jpg")]["error"] == "The file is empty."
    for name in ("notes.jpg", "truncated.jpg"):
        assert "not an image we can read" in rows[str(bad_folder / name)]["error"]
        assert rows[str(bad_folder / name)]["label"] is None
    for path in [f for f in files if not f.startswith(str(bad_folder / "n")) and "/bad" not in f]:
        app = model.predict(path)  # the app's path: open_image(path) on the inference thread
        assert rows[path]["label"] == app.label and rows[path]["out_of_domain"] == app.out_of_domain
        assert rows[path]["prob_grizzly"] == pytest.approx(app.probabilities["grizzly"], abs=TOLERANCE)
        assert rows[path]["ood_score"] == pytest.approx(app.ood_score, abs=TOLERANCE)
        assert rows[path]["error"] is None
    assert summary.labels.total() + summary.flagged == len(files) - 3


def test_a_copy_is_answered_from_its_bytes_without_a_decode(model, tmp_path, monkeypatch):
    """Two copies of one photo under other names: one decode and one forward pass, the same row for both; the
    empty files, equal bytes too, each get the empty file's error."""
    folder = tmp_path / "copies"
    (folder / "sub").mkdir(parents=True)
    grizzly = (EXAMPLES_DIR / "grizzly_bear.jpg").read_bytes()
    (folder / "a.jpg").write_bytes(grizzly)
    (folder / "sub" / "a copy.jpg").write_bytes(grizzly)
    (folder / "black.jpg").write_bytes((EXAMPLES_DIR / "black_bear.jpg").read_bytes())
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "sub" / "empty.jpg").write_bytes(b"")
    decoded: list[str] = []
    decode = decoding.DecoderPool.decode

    def counted(pool, path, client=""):
        decoded.append(path)
        return decode(pool, path, client)

    monkeypatch.setattr(decoding.DecoderPool, "decode", counted)
    files = classify.photo_paths([str(folder)])
    summary = classify.run(files, tmp_path / "r.csv", Settings(), workers=2, progress=False)
    rows = by_path(results.read_rows(tmp_path / "r.csv", model.vocab))
    assert len(decoded) == 2 and summary.repeats == 1 and summary.photos == 5
    first, copy = rows[str(folder / "a.jpg")], rows[str(folder / "sub" / "a copy.jpg")]
    assert first["label"] == "grizzly" and {**copy, "path": first["path"]} == first
    assert rows[str(folder / "sub" / "empty.jpg")]["error"] == "The file is empty."
    assert "1 answered from an earlier copy of the same bytes" in summary.text()
    assert 0 < summary.model_waited_s < summary.seconds  # at least for the first decode; the summary says how long
    assert "The model waited" in summary.text()


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_every_format_holds_the_same_rows(model, bad_folder, tmp_path, suffix):
    files = inputs(bad_folder)
    classify.run(files, tmp_path / "r.csv", Settings(), workers=1, progress=False)
    classify.run(files, tmp_path / f"r{suffix}", Settings(), workers=1, progress=False)
    csv_rows = results.read_rows(tmp_path / "r.csv", model.vocab)
    assert_same_rows(results.read_rows(tmp_path / f"r{suffix}", model.vocab), csv_rows)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_resume_classifies_only_what_has_no_row(model, bad_folder, tmp_path, suffix):
    files, out = inputs(bad_folder), tmp_path / f"r{suffix}"
    classify.run(files[:10], out, Settings(), workers=1, progress=False)
    first = results.read_rows(out, model.vocab)
    with pytest.raises(results.ResultsError, match="--resume"):
        classify.run(files, out, Settings(), workers=1, progress=False)
    if suffix == ".csv":  # a run killed mid-write: the half line is dropped and that photo classified again
        with out.open("a") as file:
            file.write(f"{files[10]},grizzly,0.1")
    summary = classify.run(files, out, Settings(), workers=1, resume=True, progress=False)
    assert summary.skipped == 10 and summary.photos == len(files) - 10
    rows = results.read_rows(out, model.vocab)
    assert rows[:10] == first and [r["path"] for r in rows] == files


def test_ctrl_c_leaves_a_complete_parquet_file(model, bad_folder, tmp_path, monkeypatch):
    """In process: Ctrl-C after the first batch; the batch in hand is written, the file closed."""
    local_rows = classify.local_rows

    def interrupted_after_one_batch(*args):
        for n, batch in enumerate(local_rows(*args)):
            if n == 1:
                os.kill(os.getpid(), signal.SIGINT)
            yield batch

    monkeypatch.setattr(classify, "local_rows", interrupted_after_one_batch)
    files, out = inputs(bad_folder), tmp_path / "r.parquet"
    summary = classify.run(files, out, Settings(), workers=1, progress=False)
    assert summary.interrupted and summary.photos == 2 * classify.ROWS_AT_ONCE < len(files)
    assert [r["path"] for r in results.read_rows(out, model.vocab)] == files[: summary.photos]
    assert not out.with_name("r.parquet.partial").exists()


def test_cli_ctrl_c_then_resume(tmp_path):
    """The real command: Ctrl-C (SIGINT to the process group, as a terminal sends it) mid-run leaves a
    valid CSV and exit code 130; --resume then finishes with each photo once."""
    folder = tmp_path / "many"
    folder.mkdir()
    photos = sorted(FIXTURE_BEARS.rglob("*.jpg"))
    for n in range(300):  # enough photos that the run is still going when interrupted, each of other bytes (a copy
        # would be answered from memory) and a file of its own (a folder's links out are not followed)
        picture = Image.open(photos[n % len(photos)]).convert("RGB")
        picture.save(folder / f"{n:03d}.jpg", quality=60 + n // len(photos))
    out = tmp_path / "r.csv"
    run = subprocess.Popen(
        [sys.executable, "-m", "bear_classifier.batch.classify", str(folder), "--out", str(out), "--no-progress"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so the signal reaches it and its workers only
    )
    deadline = time.monotonic() + 300
    while (not out.exists() or len(out.read_text().splitlines()) < 20) and time.monotonic() < deadline:
        assert run.poll() is None, run.communicate()
        time.sleep(0.1)
    os.killpg(run.pid, signal.SIGINT)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr[-2000:]
    assert "--resume" in stdout
    written = results.read_rows(out, VOCAB)
    assert 16 <= len(written) < 300 and all(r["label"] for r in written)

    resumed = subprocess.run(
        [sys.executable, "-m", "bear_classifier.batch.classify", str(folder), "--out", str(out), "--resume"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{len(written)} skipped" in resumed.stdout
    assert sorted(r["path"] for r in results.read_rows(out, VOCAB)) == sorted(str(p) for p in folder.iterdir())


def test_ray_engine_gives_the_local_rows(model, bad_folder, tmp_path):
    try:
        import ray
    except ImportError:
        pytest.skip("ray is not installed: pip install -r requirements-scale.txt")
    files = inputs(bad_folder)
    classify.run(files, tmp_path / "local.csv", Settings(), workers=2, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")  # loopback only
    try:
        summary = classify.run(files, tmp_path / "ray.csv", Settings(), engine="ray", workers=2, progress=False)
    finally:
        ray.shutdown()
    assert summary.photos == len(files) and summary.refused == 3
    assert_same_rows(
        results.read_rows(tmp_path / "ray.csv", model.vocab), results.read_rows(tmp_path / "local.csv", model.vocab)
    )


def test_ray_engine_without_ray_says_how_to_install(monkeypatch, tmp_path):
    from bear_classifier.batch import classify_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where it is not installed
    with pytest.raises(classify.UsageError, match="requirements-scale.txt"):
        next(classify_ray.ray_rows([str(EXAMPLES_DIR / "cat.jpg")], Settings(), 1))


def test_a_hostile_folder_gives_an_error_row_per_bad_file_and_reads_nothing_outside(model, tmp_path):
    """A 64 GB sparse file crashed the run with MemoryError (and --resume again at the same file); a JPEG with a
    junk byte took 30 s of CPU and was labelled "teddy"; a symlink to /etc/shadow was opened."""
    folder = tmp_path / "hostile"
    folder.mkdir()
    with open(folder / "huge.jpg", "wb") as huge:
        huge.truncate(64 * 2**30)  # sparse: no disk used
    (folder / "slow.jpg").write_bytes(hard_inputs.many_scans_jpeg(scans=27))  # over a 0.5 s budget at 50 MP
    (folder / "junk.jpg").write_bytes(hard_inputs.junk_byte_jpeg())
    (folder / "rle.bmp").write_bytes(hard_inputs.rle_bmp())
    (folder / "escape.jpg").symlink_to("/etc/passwd")
    (folder / "bear.jpg").write_bytes((EXAMPLES_DIR / "grizzly_bear.jpg").read_bytes())
    out, settings = tmp_path / "r.csv", Settings(decode_cpu_seconds=0.5)
    files = classify.photo_paths([str(folder)])
    assert str(folder / "escape.jpg") not in files
    summary = classify.run(files, out, settings, workers=2, progress=False)
    rows = by_path(results.read_rows(out, model.vocab))
    assert summary.refused == 4 and rows[str(folder / "bear.jpg")]["label"] == "grizzly"
    assert "over 256 MB" in rows[str(folder / "huge.jpg")]["error"]
    assert rows[str(folder / "slow.jpg")]["error"] == decoding.TOO_SLOW
    assert "JPEG structure" in rows[str(folder / "junk.jpg")]["error"]
    assert "slow to decode" in rows[str(folder / "rle.bmp")]["error"]
    resumed = classify.run(files, out, settings, workers=2, resume=True, progress=False)
    assert resumed.skipped == len(files) and resumed.photos == 0
    assert "symlinks that lead out of a folder are not followed" in " ".join(
        subprocess.run(
            [sys.executable, "-m", "bear_classifier.batch.classify", "--help"], capture_output=True, text=True, cwd=ROOT
        ).stdout.split()
    )
