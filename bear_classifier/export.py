"""Writing `model.pkl` and loading it back safely.

fastai 2.8 exports with cloudpickle, which stores by value (as bytecode) every function it cannot
find by name; bytecode only runs on the Python minor that wrote it. `export` pickles those functions
by reference instead (see `portable_pickle_module`), so model.pkl loads and predicts on any Python
minor with compatible fastai/timm/torch. We record those versions next to the model, `check_servable`
refuses a model that cannot serve here, and we verify a SHA-256 before unpickling, because
unpickling runs code.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import pathlib
import pickletools
import platform
import subprocess
import sys
import types
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from fastai.learner import Learner, load_learner

PINNED = ("fastai", "fastcore", "fasttransform", "plum-dispatch", "torch", "torchvision", "timm", "pillow")


class ModelFileError(RuntimeError):
    """model.pkl is missing, altered, or cannot be loaded in this environment."""


def library_versions() -> dict[str, str]:
    """Versions that must match between the exporting and the loading environment."""
    versions = {"python": platform.python_version()}
    versions.update({name: importlib.metadata.version(name) for name in PINNED})
    return versions


def save(learn: Learner, path: Path, portable: bool = True) -> str:
    """Export a CPU learner to `path`; returns its SHA-256.

    `portable` (the default): nothing in the file is Python bytecode, so it loads and predicts on any
    Python minor (plain `load_learner`, without this package); raises `ModelFileError` if something
    could only be stored by value (a function or class defined in a notebook or a `__main__`
    script: move it to an importable module). `portable=False` is fastai's own `learn.export`."""
    learn.dls.cpu()
    learn.model.cpu()
    path = Path(path).absolute()
    if not portable:
        learn.export(path)
        return sha256(path)
    learn.export(path, pickle_module=portable_pickle_module())
    return check_export(path)


def check_export(path: Path) -> str:
    """After `learn.export(path, pickle_module=portable_pickle_module())`: raise `ModelFileError` (and
    delete the file) if it still carries Python bytecode; returns its SHA-256."""
    path = Path(path)
    by_value = by_value_code(path)
    if by_value:
        path.unlink()
        raise ModelFileError(
            f"{path} would carry Python {sys.version_info.major}.{sys.version_info.minor} bytecode for "
            f"{', '.join(by_value)}: it would only load on that Python minor. Define these in an importable "
            f"module (not the notebook) and export again, or export with portable=False (and serve it on "
            f"this Python minor only)."
        )
    return sha256(path)


def sha256(path: str | Path) -> str:
    """The file's SHA-256, hex: what model cards record and what the app remembers answers by."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load(path: Path, expected_sha256: str | None = None) -> Learner:
    """`load_learner` on the CPU, after checking the file's SHA-256 when one is given."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(
            f"No model file at {path}. Train one (training.ipynb, then python -m bear_classifier.promote runs/latest) or set BEAR_MODEL_REPO."
        )
    if expected_sha256 and sha256(path) != expected_sha256.lower():
        raise ModelFileError(f"{path} does not match the expected SHA-256 {expected_sha256}: refusing to unpickle it.")
    import timm  # noqa: F401  the pickle needs it; a missing import otherwise shows as fastai #4115's 'res' error

    with _posix_paths_on_windows(), _pickle_warning_answered(path, verified=bool(expected_sha256)):
        try:
            return load_learner(path, cpu=True)
        except (AttributeError, ModuleNotFoundError, TypeError) as e:
            raise ModelFileError(
                f"{path} could not be loaded ({e}). It was probably written by other library versions: "
                f"install the ones recorded in its model card (this is Python {platform.python_version()})."
            ) from e


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


# --- Portability across Python minors -------------------------------------------------------------
#
# What cloudpickle stored by value in fastai's own export: `PILBase.create`, the type transform of
# every `ImageBlock`. It is a classmethod: the pipeline holds the bound method `PILImage.create`,
# which cloudpickle reduces to (its function, PILImage), and that function cannot be found under
# its name (`PILBase.create` gives a bound method, not the function), so cloudpickle ships its
# bytecode. Loaded on another minor the bytecode is garbage: a segfault (3.12) or a nonsense
# TypeError (3.13) at the first `learn.predict`. Plain pickle stores a bound method as
# `getattr(PILImage, "create")`, by name: that is what we do.


def _same_code(a: types.FunctionType, b: types.FunctionType) -> bool:
    return a is b or (a.__code__.co_code == b.__code__.co_code and a.__code__.co_names == b.__code__.co_names)


def _importable_twin(func: types.FunctionType) -> tuple[object, str, bool] | None:
    """(owner, name, is_classmethod) such that `getattr(owner, name)` is `func` (or its bound
    method), found by `func`'s module and qualified name; None if there is no such thing. A copy
    that cloudpickle rebuilt from an older export counts when its bytecode is the same."""
    if "<locals>" in func.__qualname__ or func.__module__ in (None, "__main__"):
        return None
    try:
        owner: object = importlib.import_module(func.__module__)
    except Exception:
        return None
    *path, name = func.__qualname__.split(".")
    for part in path:
        owner = getattr(owner, part, None)
        if owner is None:
            return None
    try:
        raw = inspect.getattr_static(owner, name)
    except AttributeError:
        return None
    is_classmethod = isinstance(raw, classmethod)
    real = raw.__func__ if isinstance(raw, (classmethod, staticmethod)) else raw
    if not isinstance(real, types.FunctionType) or not _same_code(real, func):
        return None
    return owner, name, is_classmethod


def _public_stdlib_module(cls: type) -> str | None:
    """The public standard-library module that also exposes `cls`, when `cls.__module__` is a
    private submodule that other Python minors may not have (3.13 moved `pathlib.PosixPath` to
    `pathlib._local`; a pickle naming `pathlib._local` does not load on 3.11/3.12)."""
    module = getattr(cls, "__module__", None) or ""
    top, _, rest = module.partition(".")
    if not rest or top not in sys.stdlib_module_names or not any(p.startswith("_") for p in rest.split(".")):
        return None
    parent = sys.modules.get(top)
    return top if parent is not None and getattr(parent, cls.__qualname__, None) is cls else None


def _portable_pickler_class() -> type:
    import cloudpickle
    from cloudpickle.cloudpickle import _should_pickle_by_reference

    class PortablePickler(cloudpickle.Pickler):
        """cloudpickle, but functions that it would store by value are stored by name when they
        can be found by name (bound classmethods, copies of library functions), and standard-library
        classes by their public module (3.13's `pathlib._local.PosixPath` is `pathlib.PosixPath`)."""

        def reducer_override(self, obj):
            if isinstance(obj, type) and (public := _public_stdlib_module(obj)):
                return getattr, (importlib.import_module(public), obj.__qualname__)
            if isinstance(obj, types.ModuleType) and _should_pickle_by_reference(obj):
                return importlib.import_module, (obj.__name__,)  # not cloudpickle's `subimport`
            if isinstance(obj, types.MethodType) and isinstance(obj.__func__, types.FunctionType):
                func, owner = obj.__func__, obj.__self__
                if not _should_pickle_by_reference(func):
                    twin = getattr(owner, func.__name__, None)
                    if (
                        isinstance(twin, types.MethodType)
                        and twin.__self__ is owner
                        and _same_code(twin.__func__, func)
                    ):
                        return getattr, (owner, func.__name__)
            elif isinstance(obj, types.FunctionType) and not _should_pickle_by_reference(obj):
                found = _importable_twin(obj)
                if found:
                    owner, name, is_classmethod = found
                    if is_classmethod:  # the function itself: getattr(getattr(owner, name), "__func__")
                        return getattr, (getattr(owner, name), "__func__")
                    return getattr, (owner, name)
            return super().reducer_override(obj)

    return PortablePickler


def portable_pickle_module() -> types.SimpleNamespace:
    """A `pickle_module` for `learn.export`/`torch.save` that writes no bytecode for functions
    that can be found by name. Loading needs nothing special: plain pickle, plain `load_learner`."""
    import cloudpickle

    return types.SimpleNamespace(
        __name__="portable_cloudpickle", Pickler=_portable_pickler_class(), dump=cloudpickle.dump
    )


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


def _importable(module: str) -> bool:
    import _compat_pickle  # protocol 2 writes Python 2 names (`__builtin__`) that pickle maps back

    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    if module in sys.modules:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _minor(version: str) -> str:
    return ".".join(str(version).split(".")[:2])


def check_servable(path: Path, recorded: Mapping[str, str]) -> None:
    """Refuse, before unpickling, a model.pkl that cannot serve in this environment, with a message
    that says what to set. `recorded`: the versions its model card records (`versions`).

    A different Python minor matters only when the file carries bytecode (`by_value_code`); the
    libraries must match the recorded versions to the minor release (their pickled classes change
    between releases); a different patch release is accepted."""
    here = library_versions()
    problems = []
    missing = sorted(m for m in pickled_modules(path) if not _importable(m)) if Path(path).is_file() else []
    if missing:
        problems.append(
            f"it refers to modules that do not exist here: {', '.join(missing)} (written under Python "
            f"{recorded.get('python', '?')}, this is Python {here['python']}). Serve it on the Python minor that "
            f"wrote it, or re-export it there with this package's `export.reexport`"
        )
    py_recorded = recorded.get("python")
    code = by_value_code(path) if Path(path).is_file() else []
    if py_recorded and code and _minor(py_recorded) != _minor(here["python"]):
        problems.append(
            f"it was exported under Python {py_recorded} and carries bytecode for {', '.join(code)}, which only "
            f"runs on Python {_minor(py_recorded)} (this is Python {here['python']}). Run the app on Python "
            f'{_minor(py_recorded)} (on a Space: `python_version: "{_minor(py_recorded)}"` in README.md\'s front '
            f"matter), or re-export it portably under Python {_minor(py_recorded)}: "
            f"`python -c \"from bear_classifier import export; export.reexport('{path}')\"`"
        )
    wrong = {
        name: (want, here[name])
        for name, want in recorded.items()
        if name in here and name != "python" and _minor(want) != _minor(here[name])
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


def smoke_predict(path: Path, *images: Path, python: str | None = None, timeout: float = 300) -> list[dict[str, float]]:
    """Load `path` with plain `load_learner` and run `learn.predict` on each of `images`, in a separate
    process (a segfault there cannot take the caller down; `python`: another interpreter, e.g. a Space's
    venv); returns {class: probability} per image. Raises `ModelFileError` with the child's last lines if it
    crashed or failed."""
    cmd = [
        python or sys.executable,
        "-c",
        _SMOKE,
        str(Path(path).absolute()),
        *(str(Path(i).absolute()) for i in images),
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=Path(path).absolute().parent
        )
    except subprocess.TimeoutExpired as e:
        raise ModelFileError(
            f"{path}: {len(images)} prediction(s) took more than {timeout:.0f} s in a test process"
        ) from e
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
) -> dict[str, float]:
    """What the app runs before serving: the SHA-256 (when given), `check_servable` (no unpickling),
    then one plain `load_learner` + `learn.predict(image)` in a child process (`smoke_predict`), so a
    model that would crash or fail at its first prediction stops the start-up with a message saying
    what to do, and takes only the child down. Returns the child's probabilities for `image`.

    `cache`: a folder where a passed check is remembered by the model's SHA-256, with this Python and
    these library versions (`library_versions`) and the image's SHA-256; a later start with the same
    file, environment and image reads the verdict instead of spawning the child again (the notebook
    runs the check once right after exporting). A failed check is never remembered."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(
            f"No model file at {path}. Train one (training.ipynb, then python -m bear_classifier.promote runs/latest)"
            " or set BEAR_MODEL_REPO."
        )
    sha = sha256(path)
    if expected_sha256 and sha != expected_sha256.lower():
        raise ModelFileError(f"{path} does not match the expected SHA-256 {expected_sha256}: refusing to unpickle it.")
    check_servable(path, recorded)
    key = {"sha256": sha, "versions": library_versions(), "image_sha256": sha256(image)}
    remembered = verdict_path(cache, sha) if cache else None
    if remembered and remembered.is_file():
        try:
            verdict = json.loads(remembered.read_text())
            if verdict.get("key") == key:
                return verdict["probabilities"]
        except (OSError, ValueError, KeyError):
            pass  # unreadable: check again
    probabilities = smoke_predict(path, image, timeout=timeout)[0]
    if remembered:
        try:
            remembered.parent.mkdir(parents=True, exist_ok=True)
            tmp = remembered.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"key": key, "probabilities": probabilities}))
            tmp.replace(remembered)
        except OSError:
            pass  # a read-only cache only costs the next start the check
    return probabilities


def reexport(path: Path, target: Path | None = None) -> str:
    """Load a model.pkl (under the Python minor that wrote it) and write it again portably, to
    `target` (default: in place); returns the new SHA-256 (the model card's `sha256` must follow).
    The probabilities do not change: same weights, same transforms."""
    path = Path(path)
    learn = load(path)
    target = Path(target or path)
    tmp = target.with_suffix(".portable.tmp")
    sha = save(learn, tmp)
    tmp.replace(target)
    return sha
