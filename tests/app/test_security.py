"""Access control (app/security.py) against the real server over real HTTP.

Each server is ``trailscope serve`` in a subprocess on a free loopback port
(``trailscope.app.localserver``, no ``TRAILSCOPE_*`` setting inherited); requests go through
``requests`` with no mocks. A configured token makes the server protected whatever it binds,
so loopback runs exercise the same checks a network deployment gets.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from trailscope.app import security
from trailscope.app.localserver import free_port, local_server
from trailscope.app.security import AccessConfig, AccessError, check_bind

from tests.conftest import ROOT

TOKEN = "test-token-0123456789abcdef"
PASSWORD = "correct horse battery staple"
UPLOAD = {"X-TrailScope-Upload": "1"}
NEW_UPLOAD = {"filename": "a.csv", "size": 10}
SECURITY_HEADERS = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options",
                    "Referrer-Policy")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAILSCOPE_")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def protected(tmp_path_factory) -> Iterator[str]:
    """A server with an API token and a password."""
    with local_server(tmp_path_factory.mktemp("protected"),
                      env={security.ENV_TOKEN: TOKEN, security.ENV_PASSWORD: PASSWORD}) as url:
        yield url


@pytest.fixture(scope="module")
def open_server(tmp_path_factory) -> Iterator[str]:
    """A loopback server with no credential (the default)."""
    with local_server(tmp_path_factory.mktemp("open")) as url:
        yield url


def _callback_payload(url: str, session: requests.Session) -> dict:
    """A real Dash callback request: the shell's nav-link callback, built from the app's
    own /_dash-dependencies."""
    deps = session.get(url + "/_dash-dependencies", timeout=30).json()
    cb = next(d for d in deps if any(i["property"] == "pathname" for i in d["inputs"])
              and d["output"].startswith(".."))
    outputs = [dict(zip(("id", "property"), part.rsplit(".", 1), strict=True))
               for part in cb["output"].strip(".").split("...")]
    inputs = [{"id": i["id"], "property": i["property"],
               "value": "/overview" if i["property"] == "pathname" else None}
              for i in cb["inputs"]]
    return {"output": cb["output"], "outputs": outputs, "inputs": inputs,
            "changedPropIds": ["url.pathname"], "state": []}


def _login(url: str, secret: str) -> tuple[requests.Session, requests.Response]:
    s = requests.Session()
    form = s.get(url + "/login?next=/data", timeout=30)
    assert form.status_code == 200 and 'name="csrf_token"' in form.text
    csrf = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    r = s.post(url + "/login", data={"secret": secret, "csrf_token": csrf, "next": "/data"},
               allow_redirects=False, timeout=30)
    return s, r


# -- starting ------------------------------------------------------------------------------
def _start(host: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trailscope.app.main", "--host", host,
         "--port", str(free_port())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("host", "extra", "says"), [
    ("0.0.0.0", {}, security.ENV_TOKEN),
    ("192.0.2.7", {}, security.ENV_TOKEN),
    ("0.0.0.0", {security.ENV_TOKEN: TOKEN}, security.ENV_HOSTS),
    ("127.0.0.1", {security.ENV_TOKEN: "short"}, "at least"),
])
def test_unsafe_bind_refused_with_one_line(tmp_path, host, extra, says):
    proc = _start(host, _clean_env(TRAILSCOPE_HOME=str(tmp_path), **extra))
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("trailscope: ") and says in lines[-1]
    assert "Traceback" not in proc.stderr and str(ROOT) not in lines[-1]


def test_check_bind_rules():
    open_cfg = AccessConfig()
    token_cfg = AccessConfig(token=TOKEN)
    for host in ("127.0.0.1", "localhost", "::1", "127.1.2.3"):
        check_bind(host, config=open_cfg)  # loopback: always fine
    for host in ("0.0.0.0", "::", "10.0.0.5", "example.org", ""):
        with pytest.raises(AccessError, match=security.ENV_TOKEN):
            check_bind(host, config=open_cfg)
    check_bind("10.0.0.5", config=token_cfg)
    with pytest.raises(AccessError, match=security.ENV_HOSTS):
        check_bind("0.0.0.0", config=token_cfg)
    check_bind("0.0.0.0", config=AccessConfig(token=TOKEN, hosts_configured=True))


def test_host_parsing_and_allowed_hosts():
    assert security.normalize_host("[::1]:8050") == "::1"
    assert security.normalize_host("LocalHost:80") == "localhost"
    assert security.normalize_host("a.example.") == "a.example"
    assert security.normalize_host("evil.example/x") is None
    assert security.normalize_host("[::1]x") is None
    assert security.is_loopback("::ffff:127.0.0.1") and not security.is_loopback("10.0.0.1")
    assert not security.is_loopback("localhost.evil.example")
    # Without a credential, non-loopback names in TRAILSCOPE_ALLOWED_HOSTS are ignored.
    cfg = AccessConfig.from_env({security.ENV_HOSTS: "trail.example, 127.0.0.1"})
    assert "trail.example" not in cfg.allowed_hosts
    cfg = AccessConfig.from_env({security.ENV_HOSTS: "trail.example",
                                 security.ENV_TOKEN: TOKEN})
    assert "trail.example" in cfg.allowed_hosts and cfg.hosts_configured


# -- a protected server --------------------------------------------------------------------
def test_protected_refuses_without_credentials(protected):
    r = requests.get(protected + "/data?dataset=a&x=%26", allow_redirects=False, timeout=30)
    assert r.status_code == 302 and r.headers["Location"].startswith("/login?")
    back = parse_qs(urlsplit(r.headers["Location"]).query)["next"]
    assert back == ["/data?dataset=a&x=%26"]  # the whole address survives the login
    r = requests.post(protected + "/api/upload/new", json=NEW_UPLOAD, headers=UPLOAD,
                      timeout=30)
    assert r.status_code == 401 and "log in" in r.json()["error"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = requests.post(protected + "/_dash-update-component", json={}, timeout=30)
    assert r.status_code == 401
    r = requests.get(protected + "/_dash-layout", timeout=30)  # reads need it too
    assert r.status_code == 401
    r = requests.post(protected + "/api/upload/new", json=NEW_UPLOAD,
                      headers={**UPLOAD, "Authorization": "Bearer " + TOKEN[:-1] + "x"},
                      timeout=30)
    assert r.status_code == 401 and "wrong API token" in r.json()["error"]
    # A password is for the login page, not a Bearer token.
    r = requests.post(protected + "/api/upload/new", json=NEW_UPLOAD,
                      headers={**UPLOAD, "Authorization": "Bearer " + PASSWORD}, timeout=30)
    assert r.status_code == 401


def test_protected_accepts_bearer(protected):
    auth = {"Authorization": "Bearer " + TOKEN}
    r = requests.post(protected + "/api/upload/new", json=NEW_UPLOAD, headers={**UPLOAD, **auth},
                      timeout=30)
    assert r.status_code == 201, r.text
    uid = r.json()["upload_id"]
    assert requests.delete(f"{protected}/api/upload/{uid}", headers={**UPLOAD, **auth},
                           timeout=30).status_code == 200
    s = requests.Session()
    s.headers.update(auth)
    r = s.post(protected + "/_dash-update-component", json=_callback_payload(protected, s),
               timeout=60)
    assert r.status_code == 200 and r.json()["multi"] is True
    # an API client keeps no cookies: no CSRF cookie minted for it; a browser still gets one
    assert security.CSRF_COOKIE not in r.cookies and security.CSRF_COOKIE not in s.cookies
    assert security.CSRF_COOKIE in requests.get(protected + "/login", timeout=30).cookies


def test_login_flow_session_and_csrf(protected):
    _, r = _login(protected, "wrong password, long enough")
    assert r.status_code == 401 and "Wrong token or password" in r.text
    assert security.SESSION_COOKIE not in r.cookies
    for secret in (PASSWORD, TOKEN):
        s, r = _login(protected, secret)
        assert r.status_code == 302 and r.headers["Location"] == "/data"
        cookie = next(c for c in r.raw.headers.getlist("Set-Cookie")
                      if c.startswith(security.SESSION_COOKIE + "="))
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert s.get(protected + "/data", timeout=30).status_code == 200
        # Logged in, a state change still needs the CSRF header (double submit).
        r = s.post(protected + "/api/upload/new", json=NEW_UPLOAD, headers=UPLOAD, timeout=30)
        assert r.status_code == 403 and security.CSRF_HEADER in r.json()["error"]
        csrf = {security.CSRF_HEADER: s.cookies[security.CSRF_COOKIE]}
        r = s.post(protected + "/api/upload/new", json=NEW_UPLOAD, headers={**UPLOAD, **csrf},
                   timeout=30)
        assert r.status_code == 201, r.text
        r = s.post(protected + "/_dash-update-component", headers=csrf,
                   json=_callback_payload(protected, s), timeout=60)
        assert r.status_code == 200
        # The same request from another site's page is refused.
        r = s.post(protected + "/api/upload/new", json=NEW_UPLOAD,
                   headers={**UPLOAD, **csrf, "Origin": "http://evil.example"}, timeout=30)
        assert r.status_code == 403 and "another site" in r.json()["error"]
        r = s.post(protected + "/logout", headers=csrf, allow_redirects=False, timeout=30)
        assert r.status_code == 302
        assert s.get(protected + "/data", allow_redirects=False, timeout=30).status_code == 302


def test_forged_cookies_refused(protected):
    s = requests.Session()
    host = protected.split("//", 1)[1].split(":", 1)[0]
    s.cookies.set(security.SESSION_COOKIE, "user.AAAAAA.forgedsignature", domain=host)
    assert s.get(protected + "/_dash-layout", timeout=30).status_code == 401
    # A planted (unsigned) CSRF cookie repeated in the header does not pass.
    good, _ = _login(protected, TOKEN)
    good.cookies.set(security.CSRF_COOKIE, "planted", domain=host)
    r = good.post(protected + "/api/upload/new", json=NEW_UPLOAD,
                  headers={**UPLOAD, security.CSRF_HEADER: "planted"}, timeout=30)
    assert r.status_code == 403


def test_login_redirect_stays_on_this_site(protected):
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        s = requests.Session()
        form = s.get(protected + "/login", timeout=30)
        csrf = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        r = s.post(protected + "/login", data={"secret": TOKEN, "csrf_token": csrf,
                                               "next": target},
                   allow_redirects=False, timeout=30)
        assert r.status_code == 302 and r.headers["Location"] == "/"


def test_login_without_form_token_refused(protected):
    r = requests.post(protected + "/login", data={"secret": TOKEN, "next": "/data"},
                      allow_redirects=False, timeout=30)
    assert r.status_code == 403 and security.SESSION_COOKIE not in r.cookies


# -- hosts and headers (both modes) --------------------------------------------------------
@pytest.mark.parametrize("server", ["open_server", "protected"])
def test_foreign_host_refused(request, server):
    url = request.getfixturevalue(server)
    port = url.rsplit(":", 1)[1]
    for host in ("evil.example", f"rebind.evil.example:{port}", "127.0.0.1.evil.example"):
        r = requests.get(url + "/data", headers={"Host": host}, timeout=30,
                         allow_redirects=False)
        assert r.status_code == 400 and "unknown host name" in r.text
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        r = requests.get(url + "/login", headers={"Host": host}, timeout=30,
                         allow_redirects=False)
        assert r.status_code in (200, 302)


@pytest.mark.parametrize(("server", "path"), [
    ("open_server", "/data"), ("open_server", "/no-such-page"),
    ("open_server", "/api/upload/" + "0" * 32 + "/finish"), ("protected", "/login"),
    ("protected", "/data"), ("protected", "/_dash-layout")])
def test_security_headers_everywhere(request, server, path):
    url = request.getfixturevalue(server)
    r = requests.request("POST" if "upload" in path else "GET", url + path, headers=UPLOAD,
                         allow_redirects=False, timeout=30)
    for name in SECURITY_HEADERS:
        assert name in r.headers, (path, r.status_code, name)
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    csp = r.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "unsafe-eval" not in csp
    assert "script-src 'self'" in csp or "default-src 'none'" in csp


# -- an open loopback server ---------------------------------------------------------------
def test_open_server_browser_requests_need_csrf(open_server):
    # A non-browser client on this machine (no Origin, no Sec-Fetch-Site): as before.
    r = requests.post(open_server + "/api/upload/new", json=NEW_UPLOAD, headers=UPLOAD,
                      timeout=30)
    assert r.status_code == 201
    # Another site's page in a browser on this machine.
    r = requests.post(open_server + "/api/upload/new", json=NEW_UPLOAD,
                      headers={**UPLOAD, "Origin": "http://evil.example"}, timeout=30)
    assert r.status_code == 403
    r = requests.post(open_server + "/_dash-update-component", json={},
                      headers={"Sec-Fetch-Site": "cross-site"}, timeout=30)
    assert r.status_code == 403
    # A same-origin browser request without the CSRF header.
    r = requests.post(open_server + "/api/upload/new", json=NEW_UPLOAD,
                      headers={**UPLOAD, "Origin": open_server}, timeout=30)
    assert r.status_code == 403 and security.CSRF_HEADER in r.json()["error"]
    s = requests.Session()
    s.get(open_server + "/data", timeout=30)
    csrf = s.cookies[security.CSRF_COOKIE]
    r = s.post(open_server + "/api/upload/new", json=NEW_UPLOAD,
               headers={**UPLOAD, "Origin": open_server, security.CSRF_HEADER: csrf},
               timeout=30)
    assert r.status_code == 201
    # The login page of an open server just sends the browser on.
    r = requests.get(open_server + "/login?next=/map", allow_redirects=False, timeout=30)
    assert r.status_code == 302 and r.headers["Location"] == "/map"


# -- guessing the password -----------------------------------------------------------------
def test_login_throttle_window():
    t = security.LoginThrottle(failures=3, window_s=60)
    for i in range(3):
        assert t.retry_after("a", now=100.0 + i) == 0
        t.failed("a", now=100.0 + i)
    assert t.retry_after("a", now=103.0) == 58  # until the first failure leaves the window
    assert t.retry_after("b", now=103.0) == 0  # other clients are not affected
    assert t.retry_after("a", now=160.5) == 0
    small = security.LoginThrottle(failures=1, window_s=60, max_clients=2)
    for client in ("x", "y", "z"):
        small.failed(client, now=1.0)
    assert small.retry_after("x", now=2.0) == 0 and small.retry_after("z", now=2.0) > 0


def test_password_guessing_locked_out(tmp_path):
    with local_server(tmp_path, env={security.ENV_PASSWORD: PASSWORD}) as url:
        for _ in range(security.LOGIN_FAILURES):
            _, r = _login(url, "a wrong guess of the password")
            assert r.status_code == 401
        _, r = _login(url, PASSWORD)  # even the right one waits now
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
        assert "Too many wrong attempts" in r.text and security.SESSION_COOKIE not in r.cookies
