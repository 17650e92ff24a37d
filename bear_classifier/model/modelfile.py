"""Reading a model.pkl that `export` wrote: its SHA-256, whether it can serve in this environment, and
loading it.

Unpickling runs code, so the SHA-256 is checked first; `check_servable` then reads the pickle's opcodes
(without unpickling) against the library versions its model card records, and `startup_check` makes one
plain `load_learner` + `learn.predict` in a child process before the app serves, so a model that cannot
serve here stops the start-up with a message that says what to do.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import pickletools
import platform
import subprocess
import sys
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from bear_classifier import files

if TYPE_CHECKING:
    from fastai.learner import Learner

PINNED = ("fastai", "fastcore", "fasttransform", "plum-dispatch", "torch", "torchvision", "timm", "pillow")


class ModelFileError(RuntimeError):
    """model.pkl is missing, altered, or cannot be loaded in this environment."""


def library_versions() -> dict[str, str]:
    """Versions that must match between the exporting and the loading environment."""
    versions = {"python": platform.python_version()}
    versions.update({name: importlib.metadata.version(name) for name in PINNED})
    return versions


def verify(path: Path, expected_sha256: str | None = None, file_sha256: str | None = None) -> str:
    """Before unpickling `path`: check that the file is there and, when `expected_sha256` is given, that its
    SHA-256 matches; returns its SHA-256. `file_sha256`: that SHA-256 when the caller has already computed
    it, so the file is not read again (the app's start-up computes it once for all its checks)."""
    _require_file(path)
    sha = file_sha256 or files.sha256(path)
    if expected_sha256 and sha != expected_sha256.lower():
        raise ModelFileError(f"{path} does not match the expected SHA-256 {expected_sha256}: refusing to unpickle it.")
    return sha


def _require_file(path: Path) -> None:
    if not Path(path).is_file():
        raise ModelFileError(
            f"No model file at {path}. Train one (training.ipynb, then python -m bear_classifier.training.promote runs/latest)"
            " or set BEAR_MODEL_REPO."
        )


def load(path: Path, expected_sha256: str | None = None, file_sha256: str | None = None) -> Learner:
    """`load_learner` on the CPU, after checking the file's SHA-256 when one is given (`verify`; `file_sha256`:
    the file's SHA-256 when the caller has already computed it)."""
    path = Path(path)
    if expected_sha256:
        verify(path, expected_sha256, file_sha256)
    else:
        _require_file(path)  # nothing to compare: the file is not hashed
    # Imported here, not at the top: a start that serves from the cache (`served`) never imports fastai or timm.
    import timm  # noqa: F401  the pickle needs it; a missing import otherwise shows as fastai #4115's 'res' error
    from fastai.learner import load_learner

    with _posix_paths_on_windows(), _pickle_warning_answered(path, verified=bool(expected_sha256)):
        try:
            return load_learner(path, cpu=True)
        except (AttributeError, ModuleNotFoundError, TypeError) as e:
            raise ModelFileError(
                f"{path} could not be loaded ({e}). It was probably written by other library versions: "
                f"install the ones recorded in its model card (this is Python {platform.python_version()})."
            ) from e


def import_modules(path: Path) -> None:
    """Import what unpickling `path` needs (timm, and the modules its pickle names: `pickled_modules`) without
    unpickling it: most of `load`'s time, which the app spends while `startup_check`'s child process runs."""
    import timm  # noqa: F401  see `load`

    for module in sorted(pickled_modules(path)):
        importlib.import_module(_module_name(module))


@contextmanager
def _pickle_warning_answered(path: Path, verified: bool) -> Iterator[None]:
    """fastai warns at every `load_learner` that a pickle can run code. When we have just checked the file's
    SHA-256, that warning is answered: one line says so instead. Otherwise fastai's warning stays."""
    if not verified:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "load_learner` uses Python's insecure pickle", UserWarning)
        yield
    print(f"Loaded {path.name}: its SHA-256 matched the expected one before it was unpickled.", file=sys.stderr)


@contextmanager
def _posix_paths_on_windows() -> Iterator[None]:
    """A learner exported on Linux holds PosixPath objects, which Windows cannot instantiate."""
    if sys.platform != "win32":
        yield
        return
    posix = pathlib.PosixPath
    pathlib.PosixPath = pathlib.WindowsPath  # type: ignore[misc]
    try:
        yield
    finally:
        pathlib.PosixPath = posix  # type: ignore[misc]


_BY_VALUE = {"_make_function", "_make_skeleton_class", "_make_skeleton_enum"}


def by_value_code(path: Path) -> list[str]:
    """Names of the functions and classes that `path` (a `learn.export` file) carries as bytecode,
    read from the pickle's opcodes without unpickling it. Empty: the file has no code that depends
    on the Python minor."""
    return _scan(path)[0]


def pickled_modules(path: Path) -> set[str]:
    """The modules whose functions and classes `path` refers to by name: all must import here."""
    return _scan(path)[1]


def _scan(path: Path) -> tuple[list[str], set[str]]:
    with zipfile.ZipFile(path) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    maker = object()  # stands for cloudpickle's by-value constructors on the stack and in the memo
    memo: dict[int, object] = {}
    strings: list[str] = []  # STACK_GLOBAL's operands
    names: list[str] = []
    modules: set[str] = set()
    found = pending = 0  # by-value objects seen; those whose __qualname__ is still to come
    value: object = None
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[int(arg)] = value
            continue
        if op.name == "MEMOIZE":
            memo[len(memo)] = value
            continue
        previous, value = value, None
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
            value = arg
        elif op.name in ("BINGET", "LONG_BINGET", "GET"):
            value = memo.get(int(arg))
        elif op.name == "GLOBAL" or (op.name == "STACK_GLOBAL" and len(strings) >= 2):
            module, name = str(arg).split(" ", 1) if op.name == "GLOBAL" else strings[-2:]
            modules.add(module)
            if module.startswith("cloudpickle") and name in _BY_VALUE:
                value = maker
        if value is maker:
            found += 1
            pending += 1
        elif isinstance(value, str):
            strings.append(value)
            if previous == "__qualname__" and pending:
                pending -= 1
                if value not in names:
                    names.append(value)
    return names or (["<unnamed>"] if found else []), modules


def _module_name(module: str) -> str:
    """The module a pickled name refers to: protocol 2 writes Python 2 names (`__builtin__`) that pickle maps back."""
    import _compat_pickle

    return _compat_pickle.IMPORT_MAPPING.get(module, module)


def _importable(module: str) -> bool:
    module = _module_name(module)
    if module in sys.modules:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def minor(version: str) -> str:
    """ "3.11" of "3.11.9", "2.14" of "2.14.1+cpu": what a model file (or a Space) must match."""
    return ".".join(str(version).split(".")[:2])


def check_servable(path: Path, recorded: Mapping[str, str]) -> None:
    """Refuse, before unpickling, a model.pkl that cannot serve in this environment, with a message
    that says what to set. `recorded`: the versions its model card records (`versions`).

    A different Python minor matters only when the file carries bytecode (`by_value_code`); the
    libraries must match the recorded versions to the minor release (their pickled classes change
    between releases); a different patch release is accepted."""
    here = library_versions()
    problems = []
    code, modules = _scan(path) if Path(path).is_file() else ([], set())  # one read of the pickle for both checks
    missing = sorted(m for m in modules if not _importable(m))
    if missing:
        problems.append(
            f"it refers to modules that do not exist here: {', '.join(missing)} (written under Python "
            f"{recorded.get('python', '?')}, this is Python {here['python']}). Serve it on the Python minor that "
            f"wrote it, or re-export it there with this package's `export.reexport`"
        )
    py_recorded = recorded.get("python")
    if py_recorded and code and minor(py_recorded) != minor(here["python"]):
        problems.append(
            f"it was exported under Python {py_recorded} and carries bytecode for {', '.join(code)}, which only "
            f"runs on Python {minor(py_recorded)} (this is Python {here['python']}). Run the app on Python "
            f'{minor(py_recorded)} (on a Space: `python_version: "{minor(py_recorded)}"` in README.md\'s front '
            f"matter), or re-export it portably under Python {minor(py_recorded)}: "
            f"`python -c \"from bear_classifier import export; export.reexport('{path}')\"`"
        )
    wrong = {
        name: (want, here[name])
        for name, want in recorded.items()
        if name in here and name != "python" and minor(want) != minor(here[name])
    }
    if wrong:
        problems.append(
            "it was exported with other library releases: "
            + ", ".join(f"{n} {want} (installed: {have})" for n, (want, have) in wrong.items())
            + ". Install them: `pip install "
            + " ".join(f"{n}=={want}" for n, (want, _) in wrong.items())
            + "`"
        )
    if problems:
        raise ModelFileError(f"{path} cannot serve here: " + "; ".join(problems))


_SMOKE = """
import json, sys, warnings
warnings.filterwarnings("ignore")
import timm  # noqa: F401
from fastai.vision.all import load_learner
learn = load_learner(sys.argv[1], cpu=True)
for image in sys.argv[2:]:
    _, _, probs = learn.predict(image)
    answer = {"vocab": [str(v) for v in learn.dls.vocab], "probs": [float(p) for p in probs]}
    print("PREDICTED", json.dumps(answer))  # marked: fastai's progress bar writes to stdout too
"""


def smoke_predict(
    path: Path,
    *images: Path,
    python: str | None = None,
    timeout: float = 300,
    meanwhile: Callable[[], object] | None = None,
) -> list[dict[str, float]]:
    """Load `path` with plain `load_learner` and run `learn.predict` on each of `images`, in a separate
    process (a segfault there cannot take the caller down; `python`: another interpreter, e.g. a Space's
    venv); returns {class: probability} per image. Raises `ModelFileError` with the child's last lines if it
    crashed or failed. `meanwhile`: the caller's own work, done while the child runs (it must not unpickle
    `path`: the child's verdict is not in yet)."""
    cmd = [
        python or sys.executable,
        "-c",
        _SMOKE,
        str(Path(path).absolute()),
        *(str(Path(i).absolute()) for i in images),
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    started = time.monotonic()
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=Path(path).absolute().parent
    ) as child:
        try:
            if meanwhile is not None:
                meanwhile()
            stdout, stderr = child.communicate(timeout=max(0.0, timeout - (time.monotonic() - started)))
        except subprocess.TimeoutExpired as e:
            child.kill()
            raise ModelFileError(
                f"{path}: {len(images)} prediction(s) took more than {timeout:.0f} s in a test process"
            ) from e
        except BaseException:
            child.kill()  # `meanwhile` failed: the child is not waited for
            raise
    done = subprocess.CompletedProcess(cmd, child.returncode, stdout, stderr)
    if done.returncode != 0:
        how = f"was killed by signal {-done.returncode}" if done.returncode < 0 else f"exited with {done.returncode}"
        tail = "\n".join((done.stderr or "").strip().splitlines()[-6:])
        raise ModelFileError(
            f"{path}: load_learner + learn.predict {how} under {python or 'Python ' + platform.python_version()}. "
            f"Check its recorded versions (`check_servable`).\n{tail}"
        )
    answers = [
        json.loads(line.removeprefix("PREDICTED "))
        for line in done.stdout.splitlines()
        if line.startswith("PREDICTED ")
    ]
    return [dict(zip(out["vocab"], out["probs"])) for out in answers]


def verdict_path(cache: Path, sha: str) -> Path:
    """Where the verdict of `startup_check`'s child process on the model with SHA-256 `sha` is kept."""
    return Path(cache) / "verdicts" / f"{sha}.json"


def startup_check(
    path: Path,
    recorded: Mapping[str, str],
    image: Path,
    expected_sha256: str | None = None,
    timeout: float = 300,
    cache: Path | None = None,
    file_sha256: str | None = None,
    meanwhile: Callable[[], object] | None = None,
) -> dict[str, float]:
    """What the app runs before serving: the SHA-256 (`verify`), `check_servable` (no unpickling),
    then one plain `load_learner` + `learn.predict(image)` in a child process (`smoke_predict`), so a
    model that would crash or fail at its first prediction stops the start-up with a message saying
    what to do, and takes only the child down. Returns the child's probabilities for `image`.

    `cache`: a folder where a passed check is remembered by the model's SHA-256, with this Python and
    these library versions (`library_versions`) and the image's SHA-256; a later start with the same
    file, environment and image reads the verdict instead of spawning the child again (the notebook
    runs the check once right after exporting). A failed check is never remembered. `file_sha256`: the
    file's SHA-256 when the caller has already computed it (`verify`). `meanwhile`: work done while the child
    process runs (`smoke_predict`), e.g. the app's own imports; called once, also when the verdict is remembered."""
    path = Path(path)
    sha = verify(path, expected_sha256, file_sha256)
    check_servable(path, recorded)
    key = {"sha256": sha, "versions": library_versions(), "image_sha256": files.sha256(image)}
    remembered = verdict_path(cache, sha) if cache else None
    if remembered and remembered.is_file():
        try:
            verdict = json.loads(remembered.read_text())
            probabilities = verdict["probabilities"] if verdict.get("key") == key else None
        except (OSError, ValueError, KeyError, AttributeError):
            probabilities = None  # unreadable: check again
        if probabilities is not None:
            if meanwhile is not None:
                meanwhile()  # outside the `try`: its own errors are never taken for an unreadable verdict
            return probabilities
    probabilities = smoke_predict(path, image, timeout=timeout, meanwhile=meanwhile)[0]
    if remembered:
        try:
            remembered.parent.mkdir(parents=True, exist_ok=True)
            tmp = remembered.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"key": key, "probabilities": probabilities}))
            tmp.replace(remembered)
        except OSError:
            pass  # a read-only cache only costs the next start the check
    return probabilities
