"""A real headless Chromium for browser tests: Debian's ``chromium`` and ``chromium-driver`` (scripts/deps.sh installs
them, so ``make test`` has them on a fresh machine) driven by Selenium against ``/usr/bin/chromedriver``.

Nothing is ever downloaded: the driver's path is given to ``Service`` (so Selenium Manager is skipped), the browser's
to ``options.binary_location``, and ``SE_OFFLINE=true`` is set for any code path that would still reach Selenium
Manager. Chromium's own background traffic (component updates, sync, default apps, safe browsing lists) is off, and
its host resolver answers only for ``localhost`` and IP literals: a page that names another host fails to load
instead of reaching out.

API::

    with chromium() as driver:            # a selenium.webdriver.Chrome, 1280x900, implicit waits off
        driver.get(url)
        wait_for(driver, "form#login")    # -> the element, once present and visible
        wait_text(driver, "Signed in")    # -> the element of the page whose text contains it
        screenshot(driver, tmp_path / "page.png")  # a 1280x900 PNG

    with asgi_server(app) as base_url: ...    # an ASGI app under uvicorn in a thread, on a free loopback port

and the ``browser`` fixture (tests/conftest.py): one Chromium per test module, since starting one takes about a
second (see ``chromium``). Tests that share it should start from a known state: ``driver.delete_all_cookies()`` and a
fresh ``driver.get(...)``.

A missing browser or driver is an error (``BrowserMissing``), never a skip: the test set-up installs them.

Async tests (pytest-asyncio, ``asyncio_mode = auto``, one session loop): every Selenium call blocks until the browser
answers. When the server under test runs in that same loop (an ASGI app served by ``uvicorn.Server.serve()`` as a
task, say), a blocking call made from the test stalls the loop, the server never answers and the call hangs until its
timeout. Make every Selenium call from an async test through ``in_thread``::

    async def test_console(browser, console_url):
        await in_thread(browser.get, console_url)
        await in_thread(wait_text, browser, "Users")
        await in_thread(lambda: browser.find_element(By.NAME, "q").send_keys("ada"))

Sync tests, and async tests whose server runs in another thread or process, may call Selenium directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar

try:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webelement import WebElement
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as exc:  # pragma: no cover - a set-up error, said plainly
    raise ImportError(
        f"selenium is not installed ({exc}): `make test` installs the test extra (pip install -e '.[test]')"
    ) from exc

__all__ = [
    "CHROMEDRIVER", "CHROMIUM", "WINDOW_SIZE", "BrowserMissing", "asgi_server", "chromium", "chromium_args",
    "in_thread", "screenshot", "wait_for", "wait_text",
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW_SIZE = (1280, 900)  # the page's viewport (window.innerWidth x innerHeight), so a screenshot's size
PAGE_LOAD_TIMEOUT_S = 20.0
SCRIPT_TIMEOUT_S = 10.0
POLL_S = 0.1  # how often wait_for / wait_text look again

T = TypeVar("T")


class BrowserMissing(RuntimeError):
    """Debian's chromium or chromium-driver is not installed."""


def chromium_args(window_size: tuple[int, int] = WINDOW_SIZE) -> list[str]:
    """The command-line switches of every Chromium the harness starts."""
    width, height = window_size
    return [
        "--headless=new",
        "--no-sandbox",  # tests run as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",  # /dev/shm is small in containers: shared memory in /tmp instead
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--force-device-scale-factor=1",  # a screenshot is window-size pixels
        "--lang=en-US",
        # no traffic of its own: updates, sync, default apps, first-run tasks, phishing lists, translation
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-client-side-phishing-detection",
        "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
        "--disable-extensions",
        # only loopback resolves: a page naming any other host fails instead of reaching the network
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    ]


def _check_installed() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        raise BrowserMissing(
            f"{' and '.join(missing)} not found: the browser tests need Debian's chromium and chromium-driver "
            "packages, which the test set-up installs. Run `make deps` (scripts/deps.sh)."
        )


@contextlib.contextmanager
def chromium(*, window_size: tuple[int, int] = WINDOW_SIZE, extra_args: tuple[str, ...] = (),
             driver_log: str | Path | None = None,
             page_load_timeout: float = PAGE_LOAD_TIMEOUT_S) -> Iterator[webdriver.Chrome]:
    """A headless Chromium behind /usr/bin/chromedriver, quit on exit.

    Starting one (chromedriver, the browser, a session, about:blank) takes 0.7-0.9 s on the 2-core machines here
    (median 0.86 s; 1.2-2.4 s while other work loads the machine) and quitting 0.2 s: share one per module (the
    ``browser`` fixture) rather than one per test. ``driver_log``: a file for chromedriver's verbose log, to debug a
    start that fails."""
    _check_installed()
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager, should anything reach it, never downloads
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in [*chromium_args(window_size), *extra_args]:
        options.add_argument(arg)
    if driver_log is not None:
        service = Service(executable_path=str(CHROMEDRIVER), service_args=["--verbose"], log_output=str(driver_log))
    else:
        service = Service(executable_path=str(CHROMEDRIVER), log_output=subprocess.DEVNULL)
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.implicitly_wait(0)  # waits are explicit: wait_for / wait_text
        driver.set_page_load_timeout(page_load_timeout)
        driver.set_script_timeout(SCRIPT_TIMEOUT_S)
        _fit_viewport(driver, window_size)
        yield driver
    finally:
        try:
            driver.quit()
        finally:
            service.stop()  # a no-op after a clean quit; ends chromedriver if quit failed


def _fit_viewport(driver: webdriver.Chrome, size: tuple[int, int]) -> None:
    """Headless Chromium draws a browser frame inside --window-size (900 px tall gives a 757 px page): grow the
    window by the frame so the page itself, and so a screenshot, is exactly ``size``."""
    width, height = size
    inner_w, inner_h = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    if (inner_w, inner_h) != (width, height):
        outer = driver.get_window_size()
        driver.set_window_size(outer["width"] + width - inner_w, outer["height"] + height - inner_h)


def wait_for(driver: webdriver.Chrome, css: str, timeout: float = 10) -> WebElement:
    """The element matching the CSS selector, once it is present and visible."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=POLL_S).until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)))
    except TimeoutException:
        raise AssertionError(f"no visible element matches {css!r} after {timeout}s on {driver.current_url}") from None


_INNERMOST_WITH_TEXT = """
const text = arguments[0];
if (!document.body || !document.body.innerText.includes(text)) return null;
let found = document.body;
for (let more = true; more; ) {
  more = false;
  for (const child of found.children) {
    if (child.innerText && child.innerText.includes(text)) { found = child; more = true; break; }
  }
}
return found;
"""


def wait_text(driver: webdriver.Chrome, text: str, timeout: float = 10) -> WebElement:
    """The innermost element of the page whose visible text contains ``text``, once there is one."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=POLL_S).until(
            lambda d: d.execute_script(_INNERMOST_WITH_TEXT, text) or False)
    except TimeoutException:
        body = driver.execute_script("return document.body ? document.body.innerText : ''")
        raise AssertionError(
            f"{text!r} not on {driver.current_url} after {timeout}s; the page says: {body[:500]!r}") from None


def screenshot(driver: webdriver.Chrome, path: str | Path) -> Path:
    """A PNG of the whole window (the page's viewport: ``window_size`` pixels, 1280x900 by default) at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(driver.get_screenshot_as_png())
    return path


async def in_thread(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in a worker thread, so the event loop (and a server running in it) goes on meanwhile."""
    return await asyncio.to_thread(fn, *args)


@contextlib.contextmanager
def asgi_server(app: object, host: str = "127.0.0.1") -> Iterator[str]:
    """Serves an ASGI app with uvicorn in a thread (its own event loop) on a free port; yields its base URL.

    The socket is bound before the thread starts, so the port cannot be taken in between."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"asgi:{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the ASGI server on {host}:{port} did not start")
            time.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def start_time(runs: int = 3) -> list[float]:
    """Seconds from nothing to a session that has loaded about:blank, for each of ``runs`` starts (a measure)."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        with chromium() as driver:
            driver.get("about:blank")
            times.append(time.perf_counter() - t0)
    return times
