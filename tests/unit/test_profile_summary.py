"""loadtests/profile_wardent.py's summary of py-spy's collapsed stacks."""

from __future__ import annotations

from loadtests.profile_wardent import summarise

RAW = "\n".join(
    [
        "main (wardent/cli.py:10);run (wardent/gateway.py:20);write (wardent/upstream.py:30) 6",
        "main (wardent/cli.py:10);run (wardent/gateway.py:21);record (wardent/gateway.py:40) 3",
        "main (wardent/cli.py:10) 1",
        "garbage line without a count",
    ]
)


def test_self_and_inclusive_shares_per_function_not_per_line() -> None:
    text = summarise(RAW, top=10)
    lines = text.splitlines()
    assert lines[0] == "10 samples"
    start = lines.index("self %  function") + 1
    own = lines[start : lines.index("", start)]
    assert own[0].split() == ["60.0", "write", "(upstream.py)"]
    assert own[1].split() == ["30.0", "record", "(gateway.py)"]
    inclusive = lines[lines.index("total %  function") + 1 :]
    # run appears on two lines (20 and 21) and counts once per sample.
    assert ["90.0", "run", "(gateway.py)"] in [line.split() for line in inclusive]
    assert ["100.0", "main", "(cli.py)"] in [line.split() for line in inclusive]


def test_no_samples_says_why() -> None:
    assert "no samples" in summarise("", top=5)
