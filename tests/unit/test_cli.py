from __future__ import annotations

import asyncio
import socket
import sys
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from wardent.admin.api import build_admin_app, start_admin
from wardent.admin.client import DEFAULT_ADMIN_URL, resolve_admin
from wardent.cli import main
from wardent.config.guard_settings import Bans
from wardent.config.load import ConfigError, load_settings
from wardent.config.schema import Address, Settings
from wardent.state.bans import BanTable
from wardent.state.keeper import BanKeeper
from wardent.state.store import BanStore

GOOD = """\
listen:
  public: "127.0.0.1:8080"
  admin: "127.0.0.1:9181"
upstream:
  url: "http://127.0.0.1:8000"
secrets:
  admin_token: {env: WARDENT_TEST_TOKEN}
"""

BROKEN = """\
listen:
  public: "127.0.0.1:8080"
  admin: "0.0.0.0:9180"
upstream:
  url: "https://app.example"
  read_timeout: soon
"""


@pytest.fixture
def good(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WARDENT_TEST_TOKEN", "t0ken")
    monkeypatch.delenv("WARDENT_ADMIN_URL", raising=False)
    monkeypatch.delenv("WARDENT_ADMIN_TOKEN", raising=False)
    path = tmp_path / "wardent.yaml"
    path.write_text(GOOD)
    return path


def test_check_a_good_file(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-c", str(good)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"wardent: configuration file {good} test is successful"
    assert "127.0.0.1:8080" in out[0]
    assert "http://127.0.0.1:8000" in out[0]


def test_check_a_broken_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "wardent.yaml"
    path.write_text(BROKEN)
    assert main(["check", "-c", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines[-1] == f"wardent: configuration file {path} test failed"
    assert any(line.startswith(f"{path}:3: listen.admin: ") for line in lines), lines
    assert any(line.startswith(f"{path}:5: upstream.url: ") for line in lines), lines
    assert any(line.startswith(f"{path}:6: upstream.read_timeout: ") for line in lines), lines


def test_check_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "absent.yaml"
    assert main(["check", "-c", str(path)]) == 1
    err = capsys.readouterr().err
    assert "cannot read" in err
    assert f"wardent: configuration file {path} test failed" in err


def test_check_needs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["check"])
    assert exit_info.value.code == 2
    assert "-c/--config" in capsys.readouterr().err


def test_run_calls_the_gateway(good: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int | None]] = []

    def run_gateway(config_path: str, workers: int | None) -> int:
        calls.append((config_path, workers))
        return 0

    fake = types.ModuleType("wardent.gateway")
    fake.run_gateway = run_gateway  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wardent.gateway", fake)
    assert main(["run", "-c", str(good), "--workers", "2"]) == 0
    assert main(["run", "-c", str(good)]) == 0
    assert calls == [(str(good), 2), (str(good), None)]


def test_run_refuses_zero_workers(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "-c", str(good), "--workers", "0"])
    assert "at least 1" in capsys.readouterr().err


# -- finding the admin API ------------------------------------------------------


def test_resolve_admin_default() -> None:
    assert resolve_admin(None, {}) == (DEFAULT_ADMIN_URL, None)


def test_resolve_admin_from_the_file(good: Path) -> None:
    environ = {"WARDENT_TEST_TOKEN": "t0ken"}
    assert resolve_admin(str(good), environ) == ("http://127.0.0.1:9181", "t0ken")


def test_resolve_admin_environment_wins(good: Path) -> None:
    environ = {
        "WARDENT_TEST_TOKEN": "t0ken",
        "WARDENT_ADMIN_URL": "unix:/run/wardent/admin.sock",
        "WARDENT_ADMIN_TOKEN": "from-env",
    }
    assert resolve_admin(str(good), environ) == ("unix:/run/wardent/admin.sock", "from-env")
    assert resolve_admin(None, {"WARDENT_ADMIN_TOKEN": "x"}) == (DEFAULT_ADMIN_URL, "x")


def test_resolve_admin_unix_listener(tmp_path: Path) -> None:
    path = tmp_path / "wardent.yaml"
    path.write_text(GOOD.replace('"127.0.0.1:9181"', '"unix:/run/wardent/admin.sock"'))
    url, _ = resolve_admin(str(path), {"WARDENT_TEST_TOKEN": "t0ken"})
    assert url == "unix:/run/wardent/admin.sock"


def test_resolve_admin_when_other_parts_do_not_validate(tmp_path: Path) -> None:
    # The operator's shell often lacks the service's other secrets, and a
    # reload of a broken file should still reach the server.
    path = tmp_path / "wardent.yaml"
    path.write_text(GOOD + "guards: {nonsense: 1}\n")
    assert resolve_admin(str(path), {"WARDENT_TEST_TOKEN": "t0ken"}) == (
        "http://127.0.0.1:9181",
        "t0ken",
    )


def test_resolve_admin_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        resolve_admin(str(tmp_path / "absent.yaml"), {})


# -- wardent reload ---------------------------------------------------------------


class Backend:
    def __init__(self, settings: Settings, keeper: BanKeeper | None = None) -> None:
        self.settings = settings
        self.errors: list[str] = []
        self.keeper = keeper

    def admin_token(self) -> bytes | None:
        return b"t0ken"

    async def upstream_reachable(self) -> bool:
        return True

    def render_metrics(self) -> bytes:
        return b""

    def rate_limits(self, key: str) -> dict[str, Any]:
        return {}

    async def reload(self) -> list[str]:
        return self.errors


@pytest.fixture
async def admin(good: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Backend]:
    backend = Backend(load_settings(good))
    runner = await start_admin(build_admin_app(backend), Address(host="127.0.0.1", port=0))
    host, port = runner.addresses[0][:2]
    monkeypatch.setenv("WARDENT_ADMIN_URL", f"http://{host}:{port}")
    monkeypatch.setenv("WARDENT_ADMIN_TOKEN", "t0ken")
    try:
        yield backend
    finally:
        await runner.cleanup()


async def test_reload_ok(admin: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    # The CLI runs its own event loop: give it a thread, as a separate process would.
    assert await asyncio.to_thread(main, ["reload"]) == 0
    assert capsys.readouterr().out == "wardent: configuration reloaded\n"


async def test_reload_failing(admin: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    admin.errors = ["wardent.yaml:5: upstream.url: expected http://HOST[:PORT]"]
    assert await asyncio.to_thread(main, ["reload"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == admin.errors[0]
    assert err[-1] == "wardent: reload failed; the old configuration keeps running"


async def test_reload_wrong_token(
    admin: Backend, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WARDENT_ADMIN_TOKEN", "wrong")
    assert await asyncio.to_thread(main, ["reload"]) == 1
    assert "HTTP 401: wrong admin token" in capsys.readouterr().err


def test_reload_unreachable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("WARDENT_ADMIN_URL", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("WARDENT_ADMIN_TOKEN", raising=False)
    assert main(["reload"]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach the admin API at http://127.0.0.1:{port}" in err
    assert "is wardent running?" in err


# -- wardent bans / wardent why ------------------------------------------------------


@pytest.fixture
async def bans_admin(
    good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[BanKeeper]:
    policy = Bans.model_validate({"max_violations": 5, "never_ban": ["192.0.2.0/24"]})
    keeper = BanKeeper(policy, BanTable(), BanStore(tmp_path / "bans.sqlite3"))
    await keeper.start()
    backend = Backend(load_settings(good), keeper)
    runner = await start_admin(build_admin_app(backend), Address(host="127.0.0.1", port=0))
    host, port = runner.addresses[0][:2]
    monkeypatch.setenv("WARDENT_ADMIN_URL", f"http://{host}:{port}")
    monkeypatch.setenv("WARDENT_ADMIN_TOKEN", "t0ken")
    try:
        yield keeper
    finally:
        await runner.cleanup()
        await keeper.stop()


async def cli(*argv: str) -> int:
    # The CLI runs its own event loop: give it a thread, as a separate process would.
    return await asyncio.to_thread(main, list(argv))


async def test_bans_add_list_remove(
    bans_admin: BanKeeper, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("bans", "list") == 0
    assert capsys.readouterr().out == "wardent: no bans in force\n"

    assert await cli("bans", "add", "203.0.113.7", "--for", "1h", "--reason", "scraping") == 0
    out = capsys.readouterr().out
    assert out.startswith("wardent: banned 203.0.113.7 until ")
    assert "(1h" in out or "(59m" in out
    assert bans_admin.table.get("203.0.113.7") is not None

    assert await cli("bans", "add", "2001:db8::/32", "--for", "30m") == 0
    capsys.readouterr()
    assert await cli("bans", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TARGET", "UNTIL", "(UTC)", "LEFT", "SOURCE", "COUNT", "REASON"]
    assert lines[1].startswith("2001:db8::/32 ")
    assert "banned by an operator" in lines[1]
    assert lines[2].startswith("203.0.113.7 ")
    assert lines[2].split()[-3:] == ["operator", "1", "scraping"]

    assert await cli("bans", "remove", "2001:db8::/32") == 0
    assert capsys.readouterr().out == "wardent: ban of 2001:db8::/32 removed\n"
    assert await cli("bans", "remove", "2001:db8::/32") == 1
    assert "HTTP 404: 2001:db8::/32 is not banned" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bans", "add", "example.com", "--for", "1h"], "HTTP 400: 'example.com' is not an IP"),
        (["bans", "add", "203.0.113.7", "--for", "soon"], "HTTP 400: duration: 'soon'"),
        (["bans", "add", "192.0.2.1", "--for", "1h"], "HTTP 409: 192.0.2.1 is in the never_ban"),
        (["bans", "remove", "203.0.113.0/99"], "HTTP 400: "),
        (["why", "203.0.113.0/24"], "HTTP 400: "),
    ],
)
async def test_refused_commands_exit_1(
    bans_admin: BanKeeper, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert await cli(*argv) == 1
    assert message in capsys.readouterr().err
    assert len(bans_admin.table) == 0


def test_bans_add_needs_a_duration(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bans", "add", "203.0.113.7"])
    assert exit_info.value.code == 2
    assert "--for" in capsys.readouterr().err


async def test_why(bans_admin: BanKeeper, capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli("why", "198.51.100.7") == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "client 198.51.100.7 (key 198.51.100.7)",
        "  banned:     no",
        "  violations: 0 of 5 in the last 10m",
        "  history:    none",
    ]

    bans_admin.report("198.51.100.7", "198.51.100.7", "rate_limit")
    await bans_admin.add_ban("198.51.100.0/24", 3600, "the whole range")
    assert await cli("why", "198.51.100.7") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "client 198.51.100.7 (key 198.51.100.7)"
    assert out[1].startswith("  banned:     until ")
    assert "operator, ban #1 of 198.51.100.0/24" in out[1]
    assert out[2] == "  reason:     the whole range"
    assert out[3] == "  violations: 1 of 5 in the last 10m"
    assert out[4].endswith("Z  rate_limit")
    assert out[5] == "  history (newest first):"
    assert "  ban  198.51.100.0/24  until " in out[6]
    assert out[6].endswith("operator  the whole range")

    assert await cli("why", "192.0.2.1") == 0
    assert "never_ban: yes" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv", [["bans", "list"], ["bans", "add", "1.2.3.4", "--for", "1h"], ["why", "1.2.3.4"]]
)
def test_bans_and_why_unreachable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("WARDENT_ADMIN_URL", f"http://127.0.0.1:{port}")
    assert main(argv) == 2
    assert "is wardent running?" in capsys.readouterr().err


async def test_bans_with_the_config_file(
    bans_admin: BanKeeper,
    good: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # -c FILE names the token; the URL still comes from the environment here
    # because the test's admin listener has a kernel-chosen port.
    monkeypatch.delenv("WARDENT_ADMIN_TOKEN")
    assert await cli("bans", "list", "-c", str(good)) == 0
    assert "no bans in force" in capsys.readouterr().out
