from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from wardent.observe.app_log import JsonFormatter, configure_logging


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_with_extra_and_traceback(restore_root: None) -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    log = logging.getLogger("wardent.test")
    log.debug("not shown")
    log.info("reloaded %s", "wardent.yaml", extra={"routes": 3, "path": object()})
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("reload failed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "info"
    assert first["logger"] == "wardent.test"
    assert first["message"] == "reloaded wardent.yaml"
    assert first["routes"] == 3
    assert first["path"].startswith("<object object")  # unserialisable extras become str()
    assert first["time"].endswith("Z")
    assert second["level"] == "error"
    assert "ValueError: bad" in second["traceback"]


def test_configure_twice_replaces_the_handler(restore_root: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", stream=first)
    configure_logging("WARNING", stream=second)
    logging.getLogger("wardent.test").warning("once")
    logging.getLogger("wardent.test").info("filtered")
    assert first.getvalue() == ""
    assert len(second.getvalue().splitlines()) == 1


def test_unknown_level() -> None:
    with pytest.raises(ValueError, match="not one of"):
        configure_logging("loud")


def test_extra_keys_do_not_overwrite_the_base_fields() -> None:
    record = logging.LogRecord("wardent", logging.INFO, __file__, 1, "hello", None, None)
    record.level = "fake"
    payload = json.loads(JsonFormatter().format(record))
    assert payload["level"] == "info"
    assert payload["extra_level"] == "fake"
