"""``/docs`` and ``/redoc`` load every asset from the service itself (no CDN, no web fonts)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ai_content_pipeline.service.docs import ASSETS_DIR
from tests.service.conftest import Service, make_service

_URLS = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'""")


def _references(html: str) -> list[str]:
    return [a or b for a, b in _URLS.findall(html)]


@pytest.mark.parametrize(("page", "script"), [("/docs", "/assets/swagger-ui/swagger-ui-bundle.js"),
                                              ("/redoc", "/assets/redoc/redoc.standalone.js")])
def test_the_docs_pages_reference_no_other_host_and_their_assets_answer(svc: Service, page: str,
                                                                        script: str) -> None:
    r = svc.client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "://" not in r.text and "fonts.googleapis" not in r.text and "cdn.jsdelivr" not in r.text
    urls = _references(r.text)
    assert script in urls and "/openapi.json" in urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        got = svc.client.get(url)
        assert got.status_code == 200 and got.content, url
    assert svc.client.get(script).headers["content-type"].split(";")[0] in ("text/javascript",
                                                                            "application/javascript")


def test_the_vendored_assets_keep_their_licences() -> None:
    for folder, names in (("swagger-ui", ("LICENSE", "NOTICE", "swagger-ui-bundle.js", "swagger-ui.css")),
                          ("redoc", ("LICENSE", "redoc.standalone.js"))):
        for name in names:
            assert (ASSETS_DIR / folder / name).stat().st_size > 0, (folder, name)
    assert "MIT" in (ASSETS_DIR / "redoc" / "LICENSE").read_text()
    assert "Apache License" in (ASSETS_DIR / "swagger-ui" / "LICENSE").read_text()


def test_with_a_token_the_pages_need_a_login_but_their_assets_do_not(tmp_path: Path) -> None:
    for s in make_service(tmp_path, None, token="s3cret"):
        assert s.client.get("/docs").status_code == 401
        assert s.client.get("/redoc").status_code == 401
        r = s.client.get("/docs", headers={"Accept": "text/html"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login?next=/docs"
        assert s.client.get("/assets/redoc/redoc.standalone.js").status_code == 200
        assert s.client.get("/assets/swagger-ui/swagger-ui.css").status_code == 200
        ok = {"Authorization": "Bearer s3cret"}
        assert s.client.get("/docs", headers=ok).status_code == 200
        assert s.client.get("/openapi.json", headers=ok).status_code == 200
