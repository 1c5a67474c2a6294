"""The login flow in a real browser against a server with a password and an API token.

Headless chromium: the dashboard sends a browser without a session to /login; a wrong secret
is refused on the page; the right one lands on the page asked for, which draws under the
Content-Security-Policy with no console errors, and a chunked upload (assets/upload.js, CSRF
header from the cookie) goes through. The session cookie is invisible to page scripts.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from trailscope.app import security
from trailscope.app.views import ids

from tests.browser.conftest import serve
from tests.conftest import TAOBAO

PASSWORD = "correct horse battery staple"
TOKEN = "browser-token-0123456789abcdef"


@pytest.fixture(scope="module")
def protected_url(tmp_path_factory) -> Iterator[str]:
    with serve(tmp_path_factory.mktemp("login_home"),
               {security.ENV_PASSWORD: PASSWORD, security.ENV_TOKEN: TOKEN}) as url:
        yield url


def test_login_then_dashboard_and_upload(protected_url, page, tmp_path):
    page.goto(protected_url + "/data")
    page.wait_for_selector("#login-form")
    assert page.url.startswith(protected_url + "/login")
    page.fill("#login-secret", "not the password at all")
    page.click("#login-submit")
    page.wait_for_selector("text=Wrong token or password")
    # The refused login's 401 is the only console error (the login page's CSP holds).
    assert [e for e in page.console.errors if "401" not in e] == []
    page.console.errors.clear()
    page.fill("#login-secret", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector(f"#{ids.NAVBAR}")
    assert page.url == protected_url + "/data"
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies[security.SESSION_COOKIE]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert security.SESSION_COOKIE not in page.evaluate("() => document.cookie")
    # A chunked upload: upload.js repeats the CSRF cookie as a header.
    small = tmp_path / "taobao_head.csv"
    with open(TAOBAO, "rb") as src:
        small.write_bytes(b"".join(src.readline() for _ in range(200)))
    page.set_input_files(f"#{ids.UPLOAD_INPUT}", str(small))
    page.wait_for_function(f"() => document.getElementById('{ids.UPLOAD_STATUS}').innerText"
                           ".includes('Uploaded')")
    page.goto(protected_url + "/overview")
    page.wait_for_selector(f"#{ids.NAVBAR}")
    page.wait_for_load_state("networkidle")
    assert page.console.errors == [], page.console.errors
