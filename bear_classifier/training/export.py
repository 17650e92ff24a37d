"""Writing `model.pkl` so that it loads on any Python minor (reading it back: `modelfile`).

fastai 2.8 exports with cloudpickle, which stores by value (as bytecode) every function it cannot
find by name; bytecode only runs on the Python minor that wrote it. `save` pickles those functions
by reference instead (see `portable_pickle_module`), so model.pkl loads and predicts on any Python
minor with compatible fastai/timm/torch, with plain `load_learner`.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from pathlib import Path

from fastai.learner import Learner

from bear_classifier import files
from bear_classifier.model.modelfile import ModelFileError, by_value_code, load


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
        return files.sha256(path)
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
    return files.sha256(path)


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


def reexport(path: Path, target: Path | None = None) -> str:
    """Load a model.pkl (under the Python minor that wrote it) and write it again portably, to
    `target` (default: in place); returns the new SHA-256 (the model card's `sha256` must follow).
    The probabilities do not change: same weights, same transforms."""
    path = Path(path)
    learn = load(path)
    target = Path(target or path)
    with files.replacing(target) as partial:
        sha = save(learn, partial)
    return sha
