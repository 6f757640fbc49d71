"""The browser harness itself (tests/harness/browser.py): a real headless Chromium loads a page from a server started
here, runs its JavaScript, submits its form, sends back the cookie the server set, and takes a screenshot."""

from __future__ import annotations

import asyncio
import secrets
import struct
from urllib.parse import parse_qs

import pytest
import uvicorn
from selenium.webdriver.common.by import By
from selenium.webdriver.common.selenium_manager import SeleniumManager
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.harness.browser import WINDOW_SIZE, asgi_server, chromium, in_thread, screenshot, wait_for, wait_text

pytestmark = pytest.mark.browser

FORM_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>harness smoke</title></head>
<body>
  <h1 id="status">loading</h1>
  <form id="greet" method="post" action="/greet">
    <label>Name <input id="name" name="name" autocomplete="off"></label>
    <button id="send" type="submit">Send</button>
  </form>
  <p id="preview"></p>
  <script>
    document.getElementById("status").textContent = "script ran";
    document.getElementById("name").addEventListener("input", (e) => {
      document.getElementById("preview").textContent = "Preview: " + e.target.value.toUpperCase();
    });
  </script>
</body></html>"""


def smoke_app() -> tuple[Starlette, str, list[str | None]]:
    """The page, the cookie value it sets, and the cookie each POST brought back."""
    token = secrets.token_hex(8)
    cookies_seen: list[str | None] = []

    async def form(request: Request) -> HTMLResponse:
        response = HTMLResponse(FORM_PAGE)
        response.set_cookie("smoke_session", token, httponly=True, samesite="lax", path="/")
        return response

    async def greet(request: Request) -> HTMLResponse:
        name = parse_qs((await request.body()).decode()).get("name", [""])[0]
        cookies_seen.append(request.cookies.get("smoke_session"))
        return HTMLResponse(f"<!doctype html><html><body><p id='result'>Hello, {name}!</p></body></html>")

    return Starlette(routes=[Route("/", form), Route("/greet", greet, methods=["POST"])]), token, cookies_seen


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_form_script_cookie_and_screenshot(tmp_path, monkeypatch):
    def no_manager(*args, **kwargs):
        raise AssertionError("Selenium Manager ran: the harness must give it the driver's path")

    monkeypatch.setattr(SeleniumManager, "binary_paths", no_manager)
    app, token, cookies_seen = smoke_app()
    with asgi_server(app) as url, chromium() as driver:
        driver.get(url + "/")
        wait_text(driver, "script ran")
        field = wait_for(driver, "input#name")
        field.send_keys("Ada")
        assert wait_text(driver, "Preview: ADA").get_attribute("id") == "preview"
        cookie = driver.get_cookie("smoke_session")
        assert cookie is not None and cookie["value"] == token and cookie["httpOnly"]

        driver.find_element(By.ID, "send").click()
        assert wait_text(driver, "Hello, Ada!").get_attribute("id") == "result"
        assert driver.current_url == url + "/greet"
        assert cookies_seen == [token]  # the browser sent back the cookie the first response set

        shot = screenshot(driver, tmp_path / "result.png")
        assert shot.stat().st_size > 1000
        assert png_size(shot.read_bytes()) == WINDOW_SIZE


async def test_in_thread_with_the_server_in_the_test_loop(browser):
    """The async pattern of the harness docstring: the app is served by the test's own event loop, so every Selenium
    call goes through in_thread (a direct call would block the loop that must answer it)."""
    app, token, cookies_seen = smoke_app()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not serving.done(), "the server did not start"
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        browser.delete_all_cookies()
        await in_thread(browser.get, url + "/")
        await in_thread(wait_text, browser, "script ran")
        await in_thread(lambda: wait_for(browser, "input#name").send_keys("Grace"))
        await in_thread(lambda: browser.find_element(By.ID, "send").click())
        await in_thread(wait_text, browser, "Hello, Grace!")
        assert cookies_seen == [token]
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
