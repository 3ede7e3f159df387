"""loadtests/instructions.py: callgrind counts every phase, and the counts add up.

A proof that the counter works (valgrind runs the request path, one profile per
phase, the loop's cost subtracted), with only structural checks on the counts:
they are positive, the guards cost something, a browser's bigger request costs
more than wrk's, and the chain alone costs less than the difference the guards
make plus the path around them. Without valgrind it skips and says why (under
CI=true it fails: scripts/test installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests import instructions
from tests.support.processes import ROOT

COUNTER = ROOT / "loadtests" / "instructions.py"


def _need_valgrind() -> None:
    if shutil.which("valgrind") is None:
        reason = "valgrind is not installed (scripts/test installs it as root)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true requires the instruction counter to run: {reason}")
        pytest.skip(reason)


@pytest.mark.timeout(300)
def test_instruction_counts_of_every_phase(tmp_path: Path) -> None:
    _need_valgrind()
    out = tmp_path / "instructions.json"
    result = subprocess.run(
        [sys.executable, str(COUNTER), "--requests", "20", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    if result.returncode == 2 and "no symbol table" in result.stderr:
        pytest.skip(result.stderr.strip())  # a stripped Python binary: nothing to toggle on
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(out.read_text())
    figures = found["instructions_per_request"]
    assert set(figures) == {
        "chain",
        "wrk_guards_on",
        "wrk_guards_off",
        "browser_guards_on",
        "browser_guards_off",
    }
    assert found["loop_instructions"] > 0
    assert all(value > 1000 for value in figures.values()), figures
    assert figures["wrk_guards_on"] > figures["wrk_guards_off"], figures
    assert figures["browser_guards_on"] > figures["browser_guards_off"], figures
    assert figures["browser_guards_off"] > figures["wrk_guards_off"], figures
    assert figures["chain"] < figures["browser_guards_on"], figures
    assert "instructions per request" in result.stdout


@pytest.mark.timeout(300)
def test_nothing_counted_is_an_error_that_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python whose binary lacks the symbol to count inside (Debian's stripped
    python3) makes callgrind count nothing: a clear error, never a table of zeros."""
    _need_valgrind()
    monkeypatch.setattr(instructions, "TOGGLE", "no_such_function_anywhere")
    with pytest.raises(instructions.InstructionsError, match="counted nothing inside"):
        instructions.count(requests=1)
