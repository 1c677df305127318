"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) served from files in the package, so they
work without a network: the pages FastAPI's :func:`~fastapi.openapi.docs.get_swagger_ui_html`
and :func:`~fastapi.openapi.docs.get_redoc_html` write, pointed at ``/assets/swagger-ui/``
and ``/assets/redoc/`` (no CDN, no web fonts).

The assets are vendored from the npm registry in ``service/docs_assets/``, each beside its
licence: ``swagger-ui/`` from ``swagger-ui-dist`` 5.36.0 (Apache-2.0: ``LICENSE``,
``NOTICE``; 5.x renders the OpenAPI 3.1 documents FastAPI writes) and ``redoc/`` from
``redoc`` 2.5.4 (MIT: ``LICENSE``), its ``bundles/redoc.standalone.js``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

#: the vendored files (``swagger-ui/``, ``redoc/``)
ASSETS_DIR = Path(__file__).resolve().parent / "docs_assets"
#: where they are served (no token needed: see :data:`~.deps.PUBLIC_PREFIXES`)
ASSETS_URL = "/assets"
SWAGGER_JS = f"{ASSETS_URL}/swagger-ui/swagger-ui-bundle.js"
SWAGGER_CSS = f"{ASSETS_URL}/swagger-ui/swagger-ui.css"
FAVICON = f"{ASSETS_URL}/swagger-ui/favicon-32x32.png"
REDOC_JS = f"{ASSETS_URL}/redoc/redoc.standalone.js"
#: the docs pages load images and data from this server only: ReDoc's sidebar asks
#: cdn.redoc.ly for its logo, which the browser then never requests (the logo hides itself)
DOCS_CSP = "img-src 'self' data:; connect-src 'self'"


def add_offline_docs(app: FastAPI) -> None:
    """Serve ``/docs``, ``/docs/oauth2-redirect``, ``/redoc`` and the assets under
    ``/assets/`` from the package (``app`` is built with ``docs_url=None, redoc_url=None``)."""
    from fastapi.openapi.docs import (
        get_redoc_html,
        get_swagger_ui_html,
        get_swagger_ui_oauth2_redirect_html,
    )
    from fastapi.staticfiles import StaticFiles

    title = app.title
    openapi_url = app.openapi_url or "/openapi.json"
    redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(openapi_url=openapi_url, title=f"{title} - Swagger UI",
                                   swagger_js_url=SWAGGER_JS, swagger_css_url=SWAGGER_CSS,
                                   swagger_favicon_url=FAVICON, oauth2_redirect_url=redirect)
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page

    @app.get(redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(openapi_url=openapi_url, title=f"{title} - ReDoc", redoc_js_url=REDOC_JS,
                              redoc_favicon_url=FAVICON, with_google_fonts=False)
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page

    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")


__all__ = ["ASSETS_DIR", "ASSETS_URL", "add_offline_docs"]
