"""Builds Wardent with its request path compiled by mypyc (pyproject.toml has the rest).

The modules in HOT_PATH run once or more per request. mypyc compiles the same
typed source to C: measured with `loadtests/bench.py`, a third less CPU per
request than the interpreter (README, "Performance"). The compiled modules are
one group, loaded all together or not at all: wardent/native.py falls back to
the source when the build is missing, incomplete or older than the source.

WARDENT_PURE_PYTHON=1 skips compiling (no C compiler, or debugging with pdb).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HOT_PATH = (
    "wardent/context.py",
    "wardent/identify.py",
    "wardent/runtime.py",
    "wardent/guards/ban.py",
    "wardent/guards/body_limit.py",
    "wardent/guards/chain.py",
    "wardent/guards/crawlers.py",
    "wardent/guards/origin_secret.py",
    "wardent/guards/rate_limit.py",
    "wardent/guards/stripe_check.py",
    "wardent/observe/access_log.py",
    "wardent/observe/exchange.py",
    "wardent/observe/metrics.py",
    "wardent/state/bans.py",
    "wardent/state/buckets.py",
    "wardent/transport/http.py",
    "wardent/transport/server.py",
    "wardent/transport/upstream.py",
    "wardent/transport/write_batch.py",
)
GROUP = "wardent._hot_path"  # the shared library: wardent/_hot_path__mypyc.*.so
MANIFEST = "_hot_path.json"  # in the package: what was compiled, from which source

ROOT = Path(__file__).resolve().parent


def _module(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class BuildHotPath(build_ext):
    """build_ext, then the manifest wardent/native.py checks before using the build.

    The extensions are optional: without a compiler the build warns and Wardent
    runs from source; the manifest is written only when every module compiled.
    """

    def run(self) -> None:
        super().run()
        if not self.extensions:
            return
        built = [Path(self.get_ext_fullpath(ext.name)) for ext in self.extensions]
        package = Path(self.get_ext_fullpath(GROUP + "__mypyc")).parent
        manifest = package / MANIFEST
        if not all(path.exists() for path in built):
            manifest.unlink(missing_ok=True)
            print(
                "warning: the hot path did not compile; Wardent will run it from source "
                "(slower; see docs/operations.md, Deploy)",
                file=sys.stderr,
            )
            return
        manifest.write_text(
            json.dumps(
                {
                    "python": list(sys.version_info[:2]),
                    "modules": {_module(path): _digest(ROOT / path) for path in HOT_PATH},
                },
                indent=1,
                sort_keys=True,
            )
            + "\n"
        )


def _extensions() -> list[object]:
    if os.environ.get("WARDENT_PURE_PYTHON") == "1":
        return []
    from mypyc.build import mypycify

    extensions = mypycify(
        [
            # Not the project's [tool.mypy] (strict, with the Django plugin for the
            # app): compiling needs types, not the linter's settings.
            "--config-file",
            os.devnull,
            "--ignore-missing-imports",
            *HOT_PATH,
        ],
        group_name=GROUP,
        opt_level="3",
    )
    for extension in extensions:
        extension.optional = True
    return list(extensions)


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildHotPath})
