"""A real headless browser for page tests: a chromium driven by Playwright.

Why Playwright (PyPI) over ``chromium --dump-dom``: page tests need to wait for a condition,
click, read attributes and take screenshots, and Playwright does all of that in one
process over the DevTools protocol. It launches, in this order, a ``chromium`` on PATH (or
``/usr/bin/chromium``; ``make test`` installs Debian's with apt when run as root) or the
browser of Playwright's own ``python -m playwright install chromium``. With neither, a page
test fails with one line naming both installs: never a silent skip. ``python
tests/browser.py --found`` prints the browser it would use (exit 1: none), for ``make``.

API (``from browser import open_page, media_report``)::

    with open_page(path_or_url, wait="() => document.readyState === 'complete'") as page:
        page.click("button#go")                      # Playwright's sync Page
        page.wait_for_function("() => ...", timeout=10_000)
        page.get_attribute("img", "src")
        page.screenshot(path=tmp_path / "page.png")
        page.errors                                  # console errors, page errors, failed requests
        media_report(page)                           # every <img>/<audio>/<video>: src, loaded?

``open_page`` takes a file path (opened as ``file://``, as a user double-clicking it would)
or a URL (``http://127.0.0.1:PORT/``). The page it yields is Playwright's own
:class:`playwright.sync_api.Page` with one attribute added, ``errors``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
# as root, in a sandbox with no network: no setuid sandbox, no GPU, and none of the background
# connections (updates, sync, metrics) that a closed network refuses by the dozen
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required", "--mute-audio",
)

# how each media element tells it has loaded: an <img> by its natural width, an <audio> or
# <video> by its readyState (HAVE_METADATA = 1: the file was fetched and decoded far enough
# to know its duration) or its error
MEDIA_SCRIPT = """() => Array.from(document.querySelectorAll('img, audio, video')).map(e => ({
    tag: e.tagName.toLowerCase(),
    src: e.currentSrc || e.src || '',
    loaded: e.tagName === 'IMG' ? (e.complete && e.naturalWidth > 0) : e.readyState >= 1,
    failed: e.tagName === 'IMG' ? (e.complete && e.naturalWidth === 0) : e.error !== null,
    width: e.tagName === 'IMG' ? e.naturalWidth : null,
    duration: e.tagName === 'IMG' ? null : e.duration,
}))"""

MEDIA_SETTLED = "() => (" + MEDIA_SCRIPT + ")().every(m => m.loaded || m.failed)"


INSTALL = "sudo apt-get install chromium, or: python -m playwright install chromium"


def find_chromium() -> str | None:
    """A chromium on PATH (or Debian's), else Playwright's own download, else None."""
    for name in ("chromium", "chromium-browser", CHROMIUM):
        if found := shutil.which(name):
            return found
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            path = pw.chromium.executable_path
    except Exception:  # playwright missing or its driver broken: no browser from it
        return None
    return path if Path(path).is_file() else None


def chromium() -> str:
    """The browser's path, or a test failure naming the installs (never a silent skip)."""
    found = find_chromium()
    if found is None:
        pytest.fail(f"no headless chromium for the page tests: install one ({INSTALL})")
    return found


@contextmanager
def open_page(target: str | Path, wait: str | None = None, timeout_s: float = 15.0,
              viewport: tuple[int, int] = (1280, 900)) -> Iterator:
    """Open ``target`` (a file path or a URL) in a fresh headless chromium and yield the page.

    ``wait``: a JavaScript function (as text) that must return true before the page is
    handed over (e.g. ``MEDIA_SETTLED``). The page collects what went wrong in
    ``page.errors``: console errors, uncaught exceptions and failed requests (but a
    player's own abort once it has read enough).
    """
    from playwright.sync_api import sync_playwright

    url = target if isinstance(target, str) and "://" in target else Path(target).resolve().as_uri()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=list(FLAGS))
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.set_default_timeout(timeout_s * 1000)
            page.errors = []
            page.on("console", lambda m: m.type == "error" and page.errors.append(f"console: {m.text}"))
            page.on("pageerror", lambda e: page.errors.append(f"page: {e}"))
            page.on("requestfailed", lambda r: _aborted_media(r) or page.errors.append(f"request: {r.url} {r.failure}"))
            page.goto(url, wait_until="load")
            if wait:
                page.wait_for_function(wait, timeout=timeout_s * 1000)
            yield page
        finally:
            browser.close()


def _aborted_media(request) -> bool:
    """A player that stops fetching once it has what it needs (``preload="metadata"``) aborts
    its request: normal, not an error; a missing file fails with ERR_FILE_NOT_FOUND instead."""
    return request.resource_type == "media" and request.failure == "net::ERR_ABORTED"


def media_report(page) -> list[dict]:
    """Every ``<img>``, ``<audio>`` and ``<video>`` of the page: tag, resolved src, loaded,
    failed, an image's natural width and a recording's duration in seconds."""
    return page.evaluate(MEDIA_SCRIPT)


if __name__ == "__main__":  # `python tests/browser.py --found`: the browser the page tests use
    import sys

    path = find_chromium()
    print(path or f"none: {INSTALL}")
    sys.exit(0 if path else 1)
