"""Every test session gets its own MDD_BENCH_HOME so caches never leak between runs; browser tests share
one way to find and start a headless Chromium."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def bench_home(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("mdd_home")
    old = os.environ.get("MDD_BENCH_HOME")
    os.environ["MDD_BENCH_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("MDD_BENCH_HOME", None)
    else:
        os.environ["MDD_BENCH_HOME"] = old


@pytest.fixture(scope="module")
def smoke():
    """(the smoke protocol, its shapes dataset); a test module with its own `smoke` fixture overrides it."""
    from mdd_bench.data import load_dataset
    from mdd_bench.protocol import load_protocol

    protocol = load_protocol("smoke")
    return protocol, load_dataset("shapes", protocol, progress=False)


def _chromium() -> str | None:
    for candidate in (os.environ.get("MDD_BENCH_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through Playwright, one per test module. Without Chromium a browser test skips,
    unless MDD_BENCH_REQUIRE_BROWSER is set (CI sets it)."""
    executable = _chromium()
    if executable is None:
        if os.environ.get("MDD_BENCH_REQUIRE_BROWSER"):
            pytest.fail(
                "MDD_BENCH_REQUIRE_BROWSER is set but no chromium was found (apt-get install chromium)"
            )
        pytest.skip("no chromium found (apt-get install chromium); set MDD_BENCH_REQUIRE_BROWSER to fail")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def open_page(browser):
    """Open a local HTML file in a new tab and check its load: no console or page error, nothing fetched
    but `file:` and `data:` URLs. Returns the tab and its live error list, to check again at the end."""

    def open_(path: Path, **options):
        tab = browser.new_page(**options)
        errors: list[str] = []
        tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        requests: list[str] = []
        tab.on("request", lambda request: requests.append(request.url))
        tab.goto(path.as_uri())
        tab.wait_for_load_state("load")
        assert errors == []
        assert all(url.startswith(("file:", "data:")) for url in requests), requests
        return tab, errors

    return open_
