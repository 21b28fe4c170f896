"""Finding and importing the code to grade: ``exercises/``, ``solutions/`` or any directory.

The learner edits ``exercises/ex05_gapfill.py`` and grades again from the same notebook kernel,
so every import here is *fresh*: a module already imported is reloaded from its file.

Where ``exercises/`` is: the first of the current directory and its parents that holds it (a
notebook's kernel usually runs in ``notebooks/``), else the checkout this ``labkit`` package was
imported from. A target that is a path to a directory (``labkit grade --target ~/mine``) is
imported as a package named after the directory.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import labkit

TARGETS = ("exercises", "solutions")


class TargetNotFound(LookupError):
    """No directory of that name was found to grade."""


def _candidates() -> list[Path]:
    cwd = Path.cwd()
    return [cwd, *cwd.parents, Path(labkit.__file__).resolve().parent.parent]


def locate(target: str) -> tuple[Path, str]:
    """``(root, package)``: import ``package`` with ``root`` on ``sys.path``."""
    path = Path(target).expanduser()
    if target not in TARGETS and path.is_dir():
        resolved = path.resolve()
        return resolved.parent, resolved.name
    for root in _candidates():
        if (root / target).is_dir() and (root / target / "__init__.py").is_file():
            return root.resolve(), target
    raise TargetNotFound(
        f"no {target}/ directory (with an __init__.py) in {Path.cwd()}, its parents, or the"
        " labkit checkout; run from the repository, or pass a directory"
    )


def _forget(package: str) -> None:
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[name]


def import_fresh(target: str, exercise: str) -> ModuleType:
    """Import ``<target>.<exercise>`` from its file now, reloading it if it was imported before.

    Raises whatever importing raises (``SyntaxError``, ``ImportError``, an error at module
    level): the caller reports it.
    """
    root, package = locate(target)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    loaded = sys.modules.get(package)
    if loaded is not None:
        where = [Path(p).resolve() for p in getattr(loaded, "__path__", [])]
        if (root / package).resolve() not in where:
            _forget(package)  # a package of that name from somewhere else
    importlib.invalidate_caches()
    name = f"{package}.{exercise}"
    module = sys.modules.get(name)
    if module is not None:
        _drop_bytecode(module)
        try:
            return importlib.reload(module)
        except ModuleNotFoundError:
            del sys.modules[name]
    return importlib.import_module(name)


def _drop_bytecode(module: ModuleType) -> None:
    """Delete the module's cached bytecode, so a reload compiles the file as it is now.

    A ``.pyc`` is trusted when the source's mtime (in whole seconds) and size match; an edit
    saved within the same second that keeps the size would otherwise be ignored.
    """
    source = getattr(module, "__file__", None)
    if not source or not source.endswith(".py"):
        return
    with contextlib.suppress(OSError, NotImplementedError, ValueError):
        Path(importlib.util.cache_from_source(source)).unlink(missing_ok=True)


def source_label(target: str, exercise: str) -> str:
    """``exercises/ex05_gapfill.py``, for reports."""
    try:
        _, package = locate(target)
    except TargetNotFound:
        package = target
    return f"{package}/{exercise}.py"
