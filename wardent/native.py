"""Which build of the request path runs: mypyc's compiled modules, or their source.

setup.py compiles the per-request modules into one group and writes a manifest
(`_hot_path.json`) with the digest of each module's source. The group is used
only when the manifest says it was built from exactly the source beside it, for
this Python; otherwise every module of the group is imported from its `.py`
(all or none: compiled code refuses instances of the interpreted classes). So
an edited checkout runs what was edited, never a stale build, only slower until
it is rebuilt (`pip install -e .`, which scripts/test and scripts/up run).

`install()` runs from wardent/__init__.py, before any module of the group is
imported. WARDENT_PURE_PYTHON=1 forces the source (pdb, coverage, tests of
the fallback).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

PACKAGE_DIR = Path(__file__).resolve().parent
MANIFEST = PACKAGE_DIR / "_hot_path.json"
PURE_ENV = "WARDENT_PURE_PYTHON"


@dataclass(frozen=True)
class HotPathBuild:
    """What install() decided: `mode` is "compiled" or "source", `why` says why."""

    mode: str
    why: str
    modules: tuple[str, ...] = ()


class SourceFinder(importlib.abc.MetaPathFinder):
    """Imports the named modules from their `.py`, ahead of any compiled extension."""

    def __init__(self, names: Sequence[str], package_dir: Path = PACKAGE_DIR) -> None:
        self.names = frozenset(names)
        self.package_dir = package_dir

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        source = source_path(fullname, self.package_dir)
        if not source.is_file():
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def source_path(module: str, package_dir: Path = PACKAGE_DIR) -> Path:
    """wardent.transport.server → <package_dir>/transport/server.py"""
    parts = module.split(".")[1:]
    return package_dir.joinpath(*parts).with_suffix(".py")


def decide(manifest: Path = MANIFEST, environ: dict[str, str] | None = None) -> HotPathBuild:
    """Whether the compiled group may be used, from the manifest and the sources."""
    environ = dict(os.environ) if environ is None else environ
    package_dir = manifest.parent
    try:
        data = json.loads(manifest.read_text())
        modules: dict[str, str] = dict(data["modules"])
        python = tuple(data["python"])
    except FileNotFoundError:
        return HotPathBuild("source", "not compiled (no build manifest)")
    except (OSError, ValueError, KeyError, TypeError) as error:
        return HotPathBuild("source", f"unreadable build manifest: {error}")
    names = tuple(sorted(modules))
    if environ.get(PURE_ENV) == "1":
        return HotPathBuild("source", f"{PURE_ENV}=1", names)
    if python != tuple(sys.version_info[:2]):
        return HotPathBuild("source", f"compiled for Python {python}, running {sys.version}", names)
    for module, digest in modules.items():
        source = source_path(module, package_dir)
        try:
            current = hashlib.sha256(source.read_bytes()).hexdigest()
        except FileNotFoundError:
            continue  # an install without sources: only the build can run
        if current != digest:
            return HotPathBuild("source", f"{module} changed since it was compiled", names)
    return HotPathBuild("compiled", "built from this source", names)


_installed: HotPathBuild | None = None


def install() -> HotPathBuild:
    """Decide once per process; on "source", put the SourceFinder first in line."""
    global _installed
    if _installed is None:
        build = decide()
        if build.mode == "source" and build.modules:
            sys.meta_path.insert(0, SourceFinder(build.modules))
        _installed = build
    return _installed


def running() -> str:
    """ "compiled" or "source": what the imported request path actually is."""
    module = sys.modules.get("wardent.transport.server")
    if module is None:
        return install().mode
    return "source" if str(getattr(module, "__file__", "")).endswith(".py") else "compiled"
