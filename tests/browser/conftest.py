"""Browser tests: Debian's chromium driven by Playwright (never a downloaded browser),
against the whole stack started by tests/browser/stack.py.

Without chromium, Playwright or the built chart library the tests skip and say why;
under CI=true they fail instead. A failing test saves a screenshot, the page's HTML
and its console log, and prints where.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.stack import Stack, running_stack

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

ROOT = Path(__file__).resolve().parents[2]
CHART_LIBRARY = (
    ROOT / "tradesim" / "web" / "static" / "vendor" / "lightweight-charts.standalone.production.js"
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(
    os.environ.get("BROWSER_TEST_ARTIFACTS", Path(tempfile.gettempdir()) / "tradesim-browser")
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"CI=true requires the browser tests to run: {reason}")
    pytest.skip(reason)


def chromium_path() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(found, os.X_OK):
        _unavailable(
            "Debian's chromium is not installed (scripts/test installs it as root: "
            "apt-get install chromium)"
        )
    return found


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    chromium_path()  # skip before starting anything when there is no browser
    if not CHART_LIBRARY.is_file():
        _unavailable(
            "the chart library is not built: run `npm ci && npm run build` in frontend/ "
            "(scripts/test does)"
        )
    with running_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture
def browser_context(tmp_path: Path, stack: Stack) -> Iterator[BrowserContext]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install -e '.[dev,app]')")
    executable = chromium_path()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "chromium-profile"),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 860},
            locale="en-US",
            timezone_id="UTC",
        )
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            context.close()


class ConsoleLog(list[str]):
    pass


@pytest.fixture
def console() -> ConsoleLog:
    return ConsoleLog()


@pytest.fixture
def page(browser_context: BrowserContext, console: ConsoleLog) -> Page:
    page = browser_context.pages[0] if browser_context.pages else browser_context.new_page()
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    return page


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when != "call" or not report.failed:
        return report
    funcargs = getattr(item, "funcargs", {})
    page = funcargs.get("page")
    if page is None:
        return report
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stem = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid)
    saved = []
    try:
        page.screenshot(path=f"{stem}.png", full_page=True)
        saved.append(f"{stem}.png")
        Path(f"{stem}.html").write_text(page.content())
        saved.append(f"{stem}.html")
    except Exception as exc:  # a crashed page: still say so
        saved.append(f"(no screenshot: {exc})")
    console = funcargs.get("console")
    if console is not None:
        Path(f"{stem}.console.txt").write_text("\n".join(console))
        saved.append(f"{stem}.console.txt")
    stack = funcargs.get("stack")
    if stack is not None:
        Path(f"{stem}.logs.txt").write_text(stack.logs())
        saved.append(f"{stem}.logs.txt")
    message = "browser test failed; saved: " + ", ".join(saved) + f" (page was {page.url})"
    report.sections.append(("browser artifacts", message))
    reporter = item.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"\n{message}")
    return report
