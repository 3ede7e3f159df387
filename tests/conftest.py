"""Shared fixtures: real upstream and gateway processes on kernel-chosen ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import Upstream, Wardent, running_wardent


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    process = Upstream()
    yield process
    process.stop()


@pytest.fixture
def wardent(tmp_path: Path, upstream: Upstream) -> Iterator[Wardent]:
    with running_wardent(tmp_path, upstream.url) as process:
        yield process
