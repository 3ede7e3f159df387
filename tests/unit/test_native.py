"""wardent/native.py: the compiled request path runs only when built from this source."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ROOT
from wardent import native

MODULES = ("wardent.context", "wardent.transport.server")


def _package(tmp_path: Path, python: tuple[int, int] | None = None) -> Path:
    """A package dir with two modules' sources and a manifest built from them."""
    package = tmp_path / "wardent"
    (package / "transport").mkdir(parents=True)
    digests = {}
    for module in MODULES:
        source = native.source_path(module, package)
        source.write_text(f"NAME = {module!r}\n")
        digests[module] = hashlib.sha256(source.read_bytes()).hexdigest()
    manifest = package / "_hot_path.json"
    version = list(python or sys.version_info[:2])
    manifest.write_text(json.dumps({"python": version, "modules": digests}))
    return manifest


def test_a_build_of_this_source_is_used(tmp_path: Path) -> None:
    build = native.decide(_package(tmp_path), environ={})
    assert build.mode == "compiled"
    assert build.modules == MODULES


def test_an_edited_module_sends_the_whole_group_to_source(tmp_path: Path) -> None:
    manifest = _package(tmp_path)
    (manifest.parent / "context.py").write_text("NAME = 'edited'\n")
    build = native.decide(manifest, environ={})
    assert build.mode == "source"
    assert "wardent.context changed" in build.why
    assert build.modules == MODULES  # all of them, not only the edited one


def test_no_manifest_a_broken_one_or_another_python_means_source(tmp_path: Path) -> None:
    assert native.decide(tmp_path / "missing.json", environ={}).mode == "source"
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert "unreadable" in native.decide(broken, environ={}).why
    other = native.decide(_package(tmp_path, python=(3, 99)), environ={})
    assert other.mode == "source"
    assert "(3, 99)" in other.why


def test_the_environment_can_force_the_source(tmp_path: Path) -> None:
    build = native.decide(_package(tmp_path), environ={"WARDENT_PURE_PYTHON": "1"})
    assert (build.mode, build.why) == ("source", "WARDENT_PURE_PYTHON=1")


def test_the_source_finder_imports_the_py_file(tmp_path: Path) -> None:
    manifest = _package(tmp_path)
    finder = native.SourceFinder(MODULES, manifest.parent)
    spec = finder.find_spec("wardent.transport.server", None)
    assert spec is not None and spec.origin == str(manifest.parent / "transport" / "server.py")
    assert finder.find_spec("wardent.gateway", None) is None  # not in the group


def _imported_from(env: dict[str, str]) -> list[str]:
    code = (
        "import wardent.transport.server as s, wardent.guards.chain as c, wardent.native as n;"
        "print(s.__file__); print(c.__file__); print(n.running())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def test_forced_source_is_what_gets_imported() -> None:
    env = {**os.environ, "WARDENT_PURE_PYTHON": "1"}
    server, chain, running = _imported_from(env)
    assert server.endswith("server.py") and chain.endswith("chain.py")
    assert running == "source"


def test_the_installed_build_is_compiled() -> None:
    """What `pip install -e .` (scripts/test, scripts/up) makes is the compiled build."""
    env = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    build = native.decide(environ=env)
    if build.mode != "compiled":
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true requires the compiled request path: {build.why}")
        pytest.skip(f"the request path is not compiled here: {build.why}")
    server, chain, running = _imported_from(env)
    assert server.endswith(".so") and chain.endswith(".so")
    assert running == "compiled"
