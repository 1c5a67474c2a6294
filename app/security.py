"""Access control for the whole server: trusted hosts, authentication, CSRF and security headers.

One model covers every route the Flask server answers (the dashboard's pages, Dash's callback
POSTs to ``/_dash-update-component``, the upload routes ``/api/upload/*`` and any later API):

- **Open on loopback.** With no credential configured the server answers only this machine:
  requests from another address get 403, and :func:`check_bind` refuses to listen on any
  non-loopback address (``main()`` and ``trailscope serve`` call it before listening).
- **A credential guards everything.** ``TRAILSCOPE_API_TOKEN`` and/or ``TRAILSCOPE_PASSWORD``
  switch authentication on for every request, reads included: the workspace holds people's
  locations and purchases, and Dash delivers every chart through POST callbacks, so a reader
  without credentials would see the data. Browsers log in on ``/login`` (either secret) and get
  a signed session cookie (HttpOnly, SameSite=Strict, 12 h); API clients send
  ``Authorization: Bearer <token>``. Secrets are compared in constant time; five wrong
  logins from one address within a minute lock it out for the rest of that minute (429).
- **Trusted hosts.** The ``Host`` header must name this server (``TRAILSCOPE_ALLOWED_HOSTS``,
  comma-separated; default localhost, 127.0.0.1, ::1 plus the bind address), so a DNS-rebound
  name gets 400. With no credential only loopback names are ever trusted.
- **CSRF.** Every response sets the signed cookie ``_csrf_token`` (but those to a request with
  the API token: API clients keep no cookies); dash-renderer sends it back as the
  ``X-CSRFToken`` header on its callback requests (``getCSRFHeader`` in
  dash_renderer.js) and assets/upload.js does the same, so a state-changing request from a
  browser must repeat it (double submit, the token signed so a planted cookie fails). Bearer
  clients are exempt (a browser never sends that header cross-site on its own), and so are
  non-browser clients of an open loopback server (no ``Origin``/``Sec-Fetch-Site``: nothing a
  web page can send). A present ``Origin`` must be this host; ``Sec-Fetch-Site: cross-site``
  is refused.
- **API writes need the API token.** A request that changes state under ``/api/v1/`` (events,
  imports, drops, trainings) needs ``Authorization: Bearer $TRAILSCOPE_API_TOKEN`` when a token
  is configured: a browser session (password login) is not enough (401). With no token
  configured, even where a password is, API writes come only from this machine: another
  address gets 403 with a message saying to set ``TRAILSCOPE_API_TOKEN``. API reads follow the
  rules above.
- **Headers.** A Content-Security-Policy that allows only this server's own scripts (plus the
  hashes of Dash's inline renderer and clientside callbacks), styles, images, workers and
  connections (and the basemap's tile server: the default street map's, or the configured
  one's; none with ``TRAILSCOPE_BASEMAP=blank``), ``X-Frame-Options:
  DENY``, ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin`` on every
  response.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import ipaddress
import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

import flask
from flask import Response, request
from itsdangerous import BadSignature, TimestampSigner

from .deckgl.deckmap import basemap_from_env

ENV_TOKEN = "TRAILSCOPE_API_TOKEN"
ENV_PASSWORD = "TRAILSCOPE_PASSWORD"
ENV_HOSTS = "TRAILSCOPE_ALLOWED_HOSTS"
ENV_SECURE = "TRAILSCOPE_SECURE_COOKIES"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")
MIN_SECRET_LEN = 12
SESSION_COOKIE = "trailscope_session"
SESSION_MAX_AGE_S = 12 * 3600
CSRF_COOKIE = "_csrf_token"  # the names dash-renderer uses by default
CSRF_HEADER = "X-CSRFToken"
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
API_PREFIX = "/api/v1/"  # the HTTP API (app/api): its writes need the API token
LOGIN_FAILURES = 5  # wrong secrets from one address within LOGIN_WINDOW_S lock it out ...
LOGIN_WINDOW_S = 60.0  # ... for the rest of the window

log = logging.getLogger(__name__)


class AccessError(ValueError):
    """A configuration the server refuses to start with; the message says how to fix it."""


# -- configuration -------------------------------------------------------------------------
def normalize_host(value: str) -> str | None:
    """``Host``-header or bind value -> lower-case name without port or brackets; None if odd."""
    value = (value or "").strip().lower()
    if value.startswith("["):  # [::1]:8050
        end = value.find("]")
        rest = value[end + 1:]
        if end < 0 or (rest and not rest.startswith(":")):
            return None
        name = value[1:end]
    elif value.count(":") == 1:
        name = value.split(":", 1)[0]
    else:
        name = value  # a bare name, or a bare IPv6 address (bind values)
    name = name.rstrip(".")
    if not name or any(c.isspace() or c in "/\\@?#" for c in name):
        return None
    return name


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (IPv4, IPv6, IPv4-mapped IPv6)."""
    name = normalize_host(host) if host else None
    if name is None:
        return False
    if name == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


@dataclass(frozen=True)
class AccessConfig:
    """What the environment configures; read once by :func:`install`."""

    token: str = ""
    password: str = ""
    #: Host names clients may use (normalised); "*" trusts any (only with a credential).
    allowed_hosts: frozenset[str] = frozenset(LOOPBACK_HOSTS)
    #: True when TRAILSCOPE_ALLOWED_HOSTS was set (a wildcard bind needs it).
    hosts_configured: bool = False
    secure_cookies: bool = False

    @property
    def protected(self) -> bool:
        """A credential is configured: every request needs it."""
        return bool(self.token or self.password)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AccessConfig:
        env = os.environ if env is None else env
        token = env.get(ENV_TOKEN, "").strip()
        password = env.get(ENV_PASSWORD, "")
        raw_hosts = [h for h in env.get(ENV_HOSTS, "").split(",") if h.strip()]
        hosts = set(LOOPBACK_HOSTS)
        for raw in raw_hosts:
            name = "*" if raw.strip() == "*" else normalize_host(raw)
            if name is None:
                log.warning("%s: ignoring %r (not a host name)", ENV_HOSTS, raw.strip())
            elif not (token or password) and not (name != "*" and is_loopback(name)):
                log.warning("%s: ignoring %r: without %s or %s only loopback names are "
                            "served", ENV_HOSTS, raw.strip(), ENV_TOKEN, ENV_PASSWORD)
            else:
                hosts.add(name)
        secure = env.get(ENV_SECURE, "").strip().lower() in ("1", "true", "yes")
        return cls(token=token, password=password, allowed_hosts=frozenset(hosts),
                   hosts_configured=bool(raw_hosts), secure_cookies=secure)


@dataclass
class Access:
    """The access state of one server: its configuration, bind hosts and signing keys."""

    config: AccessConfig
    bind_hosts: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        secret = "\0".join((self.config.token, self.config.password))
        # Sessions are signed with a key derived from the credentials, so changing them logs
        # every browser out; an open server signs its CSRF tokens with a per-process key.
        base = (hashlib.sha256(b"trailscope-access\0" + secret.encode()).digest()
                if self.config.protected else secrets.token_bytes(32))
        self._session = TimestampSigner(base, salt="trailscope-session")
        self._csrf = TimestampSigner(base, salt="trailscope-csrf")

    # hosts
    def host_allowed(self, host_header: str) -> bool:
        name = normalize_host(host_header)
        if name is None:
            return False
        if "*" in self.config.allowed_hosts:
            return True
        return name in self.config.allowed_hosts or name in self.bind_hosts

    # credentials
    def secret_matches(self, given: str) -> bool:
        """Constant-time comparison against every configured secret (no early exit)."""
        given_b = given.encode("utf-8", "surrogateescape")
        ok = False
        for secret in (self.config.token, self.config.password):
            if secret:
                ok |= hmac.compare_digest(given_b, secret.encode("utf-8", "surrogateescape"))
        return ok

    def bearer_ok(self) -> bool | None:
        """None: no Bearer header; else whether it carries the API token."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = self.config.token
        given = value.strip().encode("utf-8", "surrogateescape")
        return bool(token) and hmac.compare_digest(given, token.encode("utf-8"))

    def new_session(self) -> str:
        return self._session.sign("user").decode("ascii")

    def session_ok(self) -> bool:
        value = request.cookies.get(SESSION_COOKIE, "")
        if not value:
            return False
        try:
            return self._session.unsign(value, max_age=SESSION_MAX_AGE_S) == b"user"
        except BadSignature:
            return False

    # CSRF
    def new_csrf(self) -> str:
        return self._csrf.sign(secrets.token_urlsafe(24)).decode("ascii")

    def csrf_cookie_ok(self) -> bool:
        value = request.cookies.get(CSRF_COOKIE, "")
        try:
            return bool(value) and bool(self._csrf.unsign(value))
        except BadSignature:
            return False

    def csrf_matches(self, submitted: str | None) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not (cookie and submitted and self.csrf_cookie_ok()):
            return False
        return hmac.compare_digest(cookie.encode(), submitted.encode("utf-8", "replace"))


class LoginThrottle:
    """Failed logins per client address: ``LOGIN_FAILURES`` within ``LOGIN_WINDOW_S`` seconds
    lock that address out until the window has passed (bounded: at most ``max_clients``)."""

    def __init__(self, failures: int = LOGIN_FAILURES, window_s: float = LOGIN_WINDOW_S,
                 max_clients: int = 10_000) -> None:
        self.failures, self.window_s, self.max_clients = failures, window_s, max_clients
        self._seen: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> list[float]:
        times = [t for t in self._seen.get(client, []) if now - t < self.window_s]
        if times:
            self._seen[client] = times
        else:
            self._seen.pop(client, None)
        return times

    def retry_after(self, client: str, now: float | None = None) -> int:
        """Seconds until ``client`` may try again (0: now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._recent(client, now)
            if len(times) < self.failures:
                return 0
            return max(1, int(self.window_s - (now - times[0])) + 1)

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if client not in self._seen and len(self._seen) >= self.max_clients:
                self._seen.pop(next(iter(self._seen)))  # the oldest client
            self._seen[client] = [*self._recent(client, now), now][-self.failures:]


def _access(server: flask.Flask) -> Access:
    return server.extensions["trailscope_access"]


# -- starting ------------------------------------------------------------------------------
def check_bind(host: str, server: flask.Flask | None = None,
               config: AccessConfig | None = None) -> None:
    """Refuse to listen on ``host`` unless that is safe; raises AccessError (one line).

    Loopback binds are always allowed. Any other address needs a credential, and a wildcard
    bind (0.0.0.0, ::) also needs TRAILSCOPE_ALLOWED_HOSTS, the names clients will use. With
    ``server``, a named bind address is added to the hosts its ``Host`` check accepts.
    """
    if server is not None:
        config = _access(server).config
    config = config or AccessConfig.from_env()
    for name, secret in ((ENV_TOKEN, config.token), (ENV_PASSWORD, config.password)):
        if secret and len(secret) < MIN_SECRET_LEN:
            raise AccessError(f"{name} is {len(secret)} characters long: use at least "
                              f"{MIN_SECRET_LEN} (e.g. `python -c \"import secrets; "
                              f"print(secrets.token_urlsafe(32))\"`)")
    name = normalize_host(host) if host.strip() else ""
    if name is None:
        raise AccessError(f"--host {host!r} is not a host name or address")
    if is_loopback(name):
        return
    if not config.protected:
        raise AccessError(f"refusing to listen on {host!r} without a credential: anyone who "
                          f"reaches the port could change everything. Set {ENV_TOKEN} (or "
                          f"{ENV_PASSWORD}), or serve on 127.0.0.1")
    if name in WILDCARD_BINDS:
        if not config.hosts_configured:
            raise AccessError(f"listening on {host or 'every address'!r} needs {ENV_HOSTS}: "
                              "the comma-separated host names clients use "
                              "(e.g. trailscope.example.org,10.0.0.5)")
        return
    if server is not None:
        _access(server).bind_hosts.add(name)


# -- the request checks --------------------------------------------------------------------
def _refuse(status: int, message: str) -> Response:
    """A plain-text (or JSON for API/Dash clients) refusal that says what was wrong."""
    wants_json = (request.path.startswith(("/api/", "/_dash-"))
                  or request.accept_mimetypes.best == "application/json")
    if wants_json:
        resp = flask.jsonify({"error": message})
        resp.status_code = status
    else:
        resp = Response(message + "\n", status=status, mimetype="text/plain")
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="trailscope"'
    return resp


def _origin_refusal() -> Response | None:
    """Cross-site browser requests that change state are refused whatever their credentials."""
    origin = request.headers.get("Origin")
    if origin is not None:
        netloc = urlsplit(origin).netloc.lower() if origin != "null" else ""
        if netloc != request.host.lower():
            return _refuse(403, f"request from another site ({origin[:80]}) refused: "
                                "state-changing requests must come from this dashboard")
    site = request.headers.get("Sec-Fetch-Site", "").lower()
    if site in ("cross-site", "same-site"):
        return _refuse(403, "cross-site request refused: state-changing requests must come "
                            "from this dashboard")
    return None


def _api_write_refusal(access: Access) -> Response | None:
    """The API's write rule (module doc): the bearer token when one is configured, else a
    loopback client."""
    if access.config.token:
        if access.bearer_ok():
            return None
        return _refuse(401, f"API writes need 'Authorization: Bearer <token>' with the "
                            f"server's {ENV_TOKEN}")
    if not is_loopback(request.remote_addr or ""):
        return _refuse(403, f"API writes from another machine need an API token: set "
                            f"{ENV_TOKEN} on the server and send 'Authorization: Bearer "
                            "<token>'")
    return None


def _is_browser() -> bool:
    return "Origin" in request.headers or "Sec-Fetch-Site" in request.headers


def _safe_next(target: str | None) -> str:
    """A local path to return to after the login (never another site)."""
    if (not target or not target.startswith("/") or target.startswith(("//", "/\\"))
            or any(c in target for c in "\r\n\\")):
        return "/"
    return target


def _before(access: Access) -> Response | None:
    if not access.host_allowed(request.host):
        return _refuse(400, f"unknown host name {request.host[:100]!r}: this server answers "
                            f"only its configured names (set {ENV_HOSTS} to add one)")
    cfg = access.config
    if not cfg.protected and not is_loopback(request.remote_addr or ""):
        return _refuse(403, f"this server is open only to its own machine; set {ENV_TOKEN} "
                            "(or TRAILSCOPE_PASSWORD) to let other machines in")
    unsafe = request.method not in SAFE_METHODS
    if unsafe and (refusal := _origin_refusal()):
        return refusal
    if unsafe and request.path.startswith(API_PREFIX) and (refusal := _api_write_refusal(access)):
        return refusal
    if request.path in (LOGIN_PATH, LOGOUT_PATH):
        return None  # the login routes check their own form token
    if cfg.protected:
        bearer = access.bearer_ok()
        if bearer:
            return None
        if bearer is False:
            return _refuse(401, "wrong API token in the Authorization header")
        if not access.session_ok():
            if not unsafe and not request.path.startswith(("/api/", "/_dash-")):
                query = request.query_string.decode("latin-1")
                here = request.path + (f"?{query}" if query else "")
                return flask.redirect(f"{LOGIN_PATH}?{urlencode({'next': _safe_next(here)})}")
            return _refuse(401, "log in first: open /login in the browser, or send "
                                "'Authorization: Bearer <token>'")
    if unsafe and (cfg.protected or _is_browser()) and \
            not access.csrf_matches(request.headers.get(CSRF_HEADER)):
        return _refuse(403, f"missing or wrong {CSRF_HEADER} header: reload the page and "
                            "try again")
    return None


def content_security_policy(script_hashes: list[str]) -> str:
    """The CSP: this server's own resources, Dash's inline-script hashes, the basemap tiles."""
    tiles = ""
    try:
        basemap = basemap_from_env()
    except ValueError:
        basemap = None
    if basemap:
        parts = urlsplit(basemap["url"])
        tiles = f" {parts.scheme}://{parts.netloc}" if parts.netloc else ""
    directives = {
        "default-src": "'self'",
        "script-src": " ".join(["'self'", *script_hashes]),
        "style-src": "'self' 'unsafe-inline'",
        "img-src": "'self' data: blob:" + tiles,
        "font-src": "'self' data:",
        "connect-src": "'self'" + tiles,
        "worker-src": "'self' blob:",
        "object-src": "'none'",
        "base-uri": "'self'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{k} {v}" for k, v in directives.items())


def _after(access: Access, app: object, response: Response) -> Response:
    # Dash's inline scripts (the renderer, clientside callbacks) are hashed per HTML page: the
    # pages' callbacks only exist once Dash has set itself up, after the first request it
    # served (a login redirect may come first), and hashing a few KB costs microseconds.
    html_page = response.mimetype == "text/html"
    hashes = list(app.csp_hashes()) if html_page else []  # type: ignore[attr-defined]
    headers = response.headers
    headers.setdefault("Content-Security-Policy", content_security_policy(hashes))
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "same-origin"
    # an API client with the token keeps no cookies (and needs no CSRF token): minting a
    # signed cookie for each of its requests was a tenth of a single-event post's server time
    if access.bearer_ok() is not True and not access.csrf_cookie_ok() and not any(
            c.startswith(CSRF_COOKIE + "=") for c in headers.getlist("Set-Cookie")):
        response.set_cookie(CSRF_COOKIE, access.new_csrf(), samesite="Strict", path="/",
                            secure=access.config.secure_cookies, httponly=False)
    return response


# -- the login page ------------------------------------------------------------------------
_LOGIN_STYLE = (
    "body{font-family:system-ui,sans-serif;background:#f4f6f8;display:flex;"
    "justify-content:center;padding-top:12vh;margin:0}"
    "form{background:#fff;padding:2rem 2.5rem;border-radius:8px;"
    "box-shadow:0 2px 12px rgba(0,0,0,.1);min-width:18rem}"
    "h1{font-size:1.3rem;margin:0 0 1rem}label{display:block;margin-bottom:.4rem}"
    "input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;margin-bottom:1rem}"
    "button{padding:.5rem 1.2rem}.error{color:#b00020;margin:0 0 1rem}"
)
_LOGIN_STYLE_HASH = "'sha256-" + base64.b64encode(
    hashlib.sha256(_LOGIN_STYLE.encode()).digest()).decode() + "'"


def _login_page(access: Access, next_path: str, error: str = "", status: int = 200) -> Response:
    csrf = request.cookies.get(CSRF_COOKIE, "")
    if not access.csrf_cookie_ok():
        csrf = access.new_csrf()
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    body = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>TrailScope: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{_LOGIN_STYLE}</style></head>
<body><form method="post" action="{LOGIN_PATH}" id="login-form">
<h1>TrailScope</h1>{message}
<label for="login-secret">API token or password</label>
<input type="password" id="login-secret" name="secret" autocomplete="current-password" autofocus>
<input type="hidden" name="csrf_token" value="{html.escape(csrf)}">
<input type="hidden" name="next" value="{html.escape(next_path)}">
<button type="submit" id="login-submit">Log in</button>
</form></body></html>"""
    resp = Response(body, status=status, mimetype="text/html")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src {_LOGIN_STYLE_HASH}; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'")
    if csrf != request.cookies.get(CSRF_COOKIE, ""):
        resp.set_cookie(CSRF_COOKIE, csrf, samesite="Strict", path="/",
                        secure=access.config.secure_cookies, httponly=False)
    return resp


def _register_login(server: flask.Flask, access: Access) -> None:
    throttle = LoginThrottle()

    def login() -> Response:
        next_path = _safe_next(request.values.get("next"))
        if not access.config.protected:
            return flask.redirect(next_path)  # nothing to log in to on an open server
        if request.method == "GET":
            return _login_page(access, next_path)
        client = request.remote_addr or "?"
        if wait := throttle.retry_after(client):
            resp = _login_page(access, next_path, f"Too many wrong attempts: try again in "
                                                  f"{wait} s.", 429)
            resp.headers["Retry-After"] = str(wait)
            return resp
        if not access.csrf_matches(request.form.get("csrf_token")):
            return _login_page(access, next_path, "The form expired: try again.", 403)
        if not access.secret_matches(request.form.get("secret", "")):
            throttle.failed(client)
            log.warning("failed login from %s", client)
            return _login_page(access, next_path, "Wrong token or password.", 401)
        resp = flask.redirect(next_path)
        resp.set_cookie(SESSION_COOKIE, access.new_session(), max_age=SESSION_MAX_AGE_S,
                        httponly=True, samesite="Strict", path="/",
                        secure=access.config.secure_cookies)
        return resp

    def logout() -> Response:
        if not access.csrf_matches(request.form.get("csrf_token")
                                   or request.headers.get(CSRF_HEADER)):
            return _refuse(403, f"missing or wrong {CSRF_HEADER}: log out from the dashboard")
        resp = flask.redirect(LOGIN_PATH if access.config.protected else "/")
        resp.delete_cookie(SESSION_COOKIE, path="/", samesite="Strict", httponly=True,
                           secure=access.config.secure_cookies)
        return resp

    server.add_url_rule(LOGIN_PATH, "trailscope_login", login, methods=["GET", "POST"])
    server.add_url_rule(LOGOUT_PATH, "trailscope_logout", logout, methods=["POST"])


def install(app: object, config: AccessConfig | None = None) -> Access:
    """Put the access checks, the login routes and the security headers on a Dash app's server.

    The checks run before every other request hook (the root redirect, Dash's own set-up).
    """
    server: flask.Flask = app.server  # type: ignore[attr-defined]
    access = Access(config or AccessConfig.from_env())
    server.extensions["trailscope_access"] = access
    server.before_request_funcs.setdefault(None, []).insert(0, lambda: _before(access))
    server.after_request(lambda response: _after(access, app, response))
    _register_login(server, access)
    return access
