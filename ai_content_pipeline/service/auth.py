"""Who may use ``aicp serve``: the bearer token, the pages' login cookie, and cross-site refusal.

With ``--token`` every request but :data:`~.deps.PUBLIC_PATHS` (and the static files under
:data:`~.deps.PUBLIC_PREFIXES`) needs one of

- ``Authorization: Bearer TOKEN`` (API clients), or
- the login cookie :data:`COOKIE` that ``POST /login`` sets (form field ``token``):
  ``HttpOnly``, ``SameSite=Strict``, ``Path=/`` (``Secure`` on HTTPS). Its value is an HMAC
  of the token, never the token itself; changing ``--token`` logs every browser out.

A state-changing request (``POST``, ``PUT``, ``PATCH``, ``DELETE``) that a cookie
authenticates must come from the server's own pages: its ``Origin`` header (else its
``Referer``) must name this server (the ``Host`` the request was sent to); otherwise 403
``CrossSiteRequest``. With or without a token, a state-changing request whose ``Origin``
names another site is refused the same way (a page elsewhere cannot drive the API through
a browser on the operator's machine); clients that send no ``Origin`` (curl, scripts) are
not affected.

Without a token or cookie, an API request is answered 401 (``WWW-Authenticate: Bearer``); a
browser asking for a page (``GET``/``HEAD`` outside ``/api/`` that accepts ``text/html``) is
answered 303 to ``/login?next=PATH``. The token
never travels in a URL, and the access log shows paths only.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from .deps import API, PUBLIC_PATHS, PUBLIC_PREFIXES, json_error

#: the login cookie's name
COOKIE = "aicp_session"
#: the methods that change state (checked for their origin)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: the page that asks for the token (``GET``; the review desk renders it)
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"


def session_value(token: str) -> str:
    """The login cookie's value for ``token``: an HMAC-SHA256 of it (hex), so the cookie
    never holds the token itself."""
    return hmac.new(token.encode(), b"aicp serve login cookie v1", hashlib.sha256).hexdigest()


def safe_next(value: str | None) -> str:
    """Where to go after logging in: ``value`` when it is a path on this server
    (``/jobs/x``), else ``/`` (never another host: ``//evil``, ``https://...``, ``/\\evil``)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value \
            or any(ord(c) < 32 for c in value):
        return "/"
    return value


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope.get("headers") or []}


def same_origin(scope: Scope, *, required: bool) -> bool:
    """Whether the request comes from this server's own pages: its ``Origin`` (else its
    ``Referer``) names the host it was sent to (the ``Host`` header).

    :param required: a request with neither header counts as cross-site (``True``: it was
        authenticated by the cookie) or as a non-browser client (``False``).
    """
    headers = _headers(scope)
    host = headers.get(b"host", b"").decode("latin-1").strip().lower()
    for name in (b"origin", b"referer"):
        value = headers.get(name)
        if value is None:
            continue
        text = value.decode("latin-1").strip()
        if name == b"origin" and text.lower() == "null":
            return False
        try:
            parts = urlsplit(text)
        except ValueError:
            return False
        return bool(host) and parts.scheme in ("http", "https") and parts.netloc.lower() == host
    return not required


@dataclass(frozen=True)
class Login:
    """How a request was authenticated: ``via`` is ``"header"``, ``"cookie"`` or ``None``
    (no token is configured: nobody needs to log in); ``required`` whether the server has a
    token (a page then offers to log out)."""

    via: str | None
    required: bool


def authenticate(scope: Scope, token: str | None) -> Login | None:
    """The request's :class:`Login`, or ``None`` when the server has a token and the request
    carries neither a valid bearer header nor a valid login cookie."""
    if not token:
        return Login(None, False)
    headers = _headers(scope)
    scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
    if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), token.encode()):
        return Login("header", True)
    cookie = cookie_parser(headers.get(b"cookie", b"").decode("latin-1")).get(COOKIE, "")
    if cookie and hmac.compare_digest(cookie.encode("latin-1", "replace"), session_value(token).encode()):
        return Login("cookie", True)
    return None


def _cross_site() -> Any:
    return json_error(403, "CrossSiteRequest", "a state-changing request must come from this server's own pages",
                      "send it from the service's pages, or from a client with `Authorization: Bearer`")


class BearerAuth:
    """ASGI middleware: authentication (bearer header or login cookie) and the cross-site
    refusal of :mod:`this module <ai_content_pipeline.service.auth>`.

    Plain ASGI, not ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware`` runs every
    request through an extra task and memory streams, which cost each status poll about
    a millisecond of CPU (see bench/service_overhead.py).

    :param token: the bearer token (``None``: no authentication, the origin rule only).
    """

    def __init__(self, app: ASGIApp, token: str | None, public: frozenset[str] = PUBLIC_PATHS,
                 public_prefixes: tuple[str, ...] = PUBLIC_PREFIXES) -> None:
        self.app, self.token, self.public, self.prefixes = app, token, public, public_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope.get("method", "GET"), scope.get("path", "")
        unsafe = method in UNSAFE_METHODS
        if unsafe and not same_origin(scope, required=False):  # a browser on another site
            await _cross_site()(scope, receive, send)
            return
        if path in self.public or path.startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        login = authenticate(scope, self.token)
        if login is None:
            if method in ("GET", "HEAD") and not path.startswith(f"{API}/") \
                    and b"text/html" in _headers(scope).get(b"accept", b""):
                target = f"{LOGIN_PATH}?next={quote(path, safe='/')}"
                await RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})(
                    scope, receive, send)
                return
            await json_error(401, "Unauthorized", "a valid bearer token is required",
                             "send `Authorization: Bearer $AICP_API_TOKEN`, or log in at /login",
                             headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        if unsafe and login.via == "cookie" and not same_origin(scope, required=True):
            await _cross_site()(scope, receive, send)
            return
        await self.app(scope, receive, send)


class LoginRequired(Exception):
    """Raised by :func:`require_login`: the page answers 303 to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def login_redirect(next_path: str) -> RedirectResponse:
    """303 to ``/login?next=PATH`` (``PATH`` made safe by :func:`safe_next`)."""
    return RedirectResponse(f"{LOGIN_PATH}?next={quote(safe_next(next_path), safe='/')}", status_code=303,
                            headers={"Cache-Control": "no-store"})


async def require_login(request: Request) -> Login:
    """Dependency for page routes: the request's :class:`Login` when it may see the page
    (no token configured, or a valid bearer header or login cookie); otherwise it raises
    :class:`LoginRequired`, which ``create_app`` answers with 303 to ``/login?next=PATH``.

    The middleware already sends a page request without a login to the login page; this
    makes a page route say so itself (and tells it whether to offer "log out")."""
    token = request.app.state.settings.token
    login = authenticate(request.scope, token)
    if login is None:
        raise LoginRequired(request.url.path)
    return login


router = APIRouter()


def _cookie_flags(request: Request) -> dict[str, Any]:
    return {"httponly": True, "samesite": "strict", "path": "/", "secure": request.url.scheme == "https"}


@router.post(LOGIN_PATH, tags=["pages"], summary="Log in (form field `token`): sets the login cookie",
             response_class=Response,
             responses={303: {"description": "to `next` (logged in) or back to /login?error=token"}})
async def login(request: Request) -> Response:
    """Form post (`application/x-www-form-urlencoded`) with `token` (and optional `next`, a
    path on this server). The right token sets the `HttpOnly`, `SameSite=Strict` login cookie
    and answers 303 to `next` (default `/`); a wrong one answers 303 to
    `/login?error=token` without a cookie. The API keeps taking `Authorization: Bearer`."""
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
    target = safe_next(form.get("next"))
    token = request.app.state.settings.token
    if not token:
        return RedirectResponse(target, status_code=303)
    given = form.get("token", "").strip()
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        return RedirectResponse(f"{LOGIN_PATH}?error=token&next={quote(target, safe='/')}", status_code=303,
                                headers={"Cache-Control": "no-store"})
    response = RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
    response.set_cookie(COOKIE, session_value(token), **_cookie_flags(request))
    return response


@router.post(LOGOUT_PATH, tags=["pages"], summary="Log out: clears the login cookie", response_class=Response,
             responses={303: {"description": "to /login"}})
async def logout(request: Request) -> Response:
    """Clear the login cookie and answer 303 to `/login`."""
    response = RedirectResponse(LOGIN_PATH, status_code=303, headers={"Cache-Control": "no-store"})
    response.delete_cookie(COOKIE, **_cookie_flags(request))
    return response


__all__ = ["COOKIE", "LOGIN_PATH", "LOGOUT_PATH", "BearerAuth", "Login", "LoginRequired", "authenticate",
           "login_redirect", "require_login", "router", "safe_next", "same_origin", "session_value"]
