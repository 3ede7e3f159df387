"""The database tests run on both backends: this session runs them on one (PostgreSQL
when it answers), and this test reruns them in a subprocess on the other (SQLite)."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.tradesim.database import SQLITE_URL, session_is_postgres

ROOT = Path(__file__).resolve().parents[2]
NESTED = "TRADESIM_TEST_NESTED"


@pytest.mark.timeout(600)
def test_the_suite_also_passes_on_sqlite(tmp_path: Path) -> None:
    if os.environ.get(NESTED):
        pytest.skip("this is already the nested SQLite run")
    if not session_is_postgres():
        pytest.skip("this session itself runs the database tests on SQLite")
    report = tmp_path / "sqlite.xml"
    env = {**os.environ, "TRADESIM_TEST_DATABASE_URL": SQLITE_URL, NESTED: "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/tradesim",
            "-m",
            "not postgres",
            "-p",
            "no:cacheprovider",
            "-q",
            f"--junitxml={report}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None
    ran = int(suite.get("tests", "0")) - int(suite.get("skipped", "0"))
    assert ran >= 100, result.stdout[-2000:]
    assert int(suite.get("failures", "0")) == 0 and int(suite.get("errors", "0")) == 0
