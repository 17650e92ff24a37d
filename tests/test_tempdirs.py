"""A test run's temporary files stay inside the clone (tests/tempdirs.py): pytest's, this process's,
Gradio's client's and those of every process the tests start."""

import subprocess
import sys
import tempfile
from pathlib import Path

from gradio_client import client

from tests import tempdirs


def test_temp_folders_of_the_run_are_inside_the_clone(tmp_path):
    child = subprocess.run(
        [sys.executable, "-c", "import tempfile; print(tempfile.gettempdir())"],
        capture_output=True,
        text=True,
        check=True,
    )
    for folder in (tmp_path, Path(tempfile.gettempdir()), Path(child.stdout.strip()), Path(client.DEFAULT_TEMP_DIR)):
        assert folder.is_relative_to(tempdirs.RUN), folder
    assert tempdirs.RUN.is_relative_to(tempdirs.ROOT / "test-tmp")


def test_what_appears_in_the_system_temp_folder_is_found():
    probe = Path(tempfile.mkdtemp(dir=tempdirs.SYSTEM_TMP, prefix="bear-classifier-probe-"))
    try:
        assert probe in tempdirs.left_outside()
    finally:
        probe.rmdir()
