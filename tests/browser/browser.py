"""What the browser tests share: Debian's Chromium driven by Playwright (no browser download),
the axe-core scan, and where screenshots go.

:func:`chromium_or_skip` is called at module level by each test module: without Chromium or
Playwright the whole module is reported as skipped with the reason, never passed.
"""

from __future__ import annotations

import os
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

VENDOR = Path(__file__).resolve().parent / "vendor"
#: where Debian's package (and most others) put the browser; AICP_CHROMIUM overrides
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str | None:
    """The Chromium executable: ``$AICP_CHROMIUM``, else the first of :data:`CANDIDATES` on PATH."""
    given = os.environ.get("AICP_CHROMIUM")
    if given:
        return given if os.access(given, os.X_OK) else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_or_skip() -> str:
    """The Chromium executable, or the calling module skipped with the reason."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("Playwright is not installed (pip install -e '.[dev]')", allow_module_level=True)
    path = chromium_path()
    if path is None:
        given = os.environ.get("AICP_CHROMIUM")
        pytest.skip(f"AICP_CHROMIUM={given} is not an executable file" if given else
                    "Chromium is not installed (apt-get install chromium; or set AICP_CHROMIUM)",
                    allow_module_level=True)
    return path


def launch(playwright: Any, executable: str) -> Any:
    """Headless Chromium that may play audio without a click (the tests press keys instead)."""
    return playwright.chromium.launch(executable_path=executable, headless=True,
                                      args=["--autoplay-policy=no-user-gesture-required", "--no-sandbox",
                                            "--disable-gpu", "--disable-dev-shm-usage"])


@lru_cache(maxsize=1)
def axe_source() -> str:
    """axe-core's script (vendored), ending by making sure ``window.axe`` is set."""
    return (VENDOR / "axe.min.js").read_text(encoding="utf-8") + "\n;window.axe = window.axe || axe;"


def axe_violations(page: Any, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict[str, Any]]:
    """axe-core's violations of ``impacts`` on the page as it is now: ``[{id, impact, help, nodes}]``
    (``nodes``: the first three offending elements' HTML)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        # evaluated through the browser's debugging protocol: the page's Content-Security-Policy
        # (no inline script) stays in force for the page's own scripts
        page.evaluate(axe_source())
    result = page.evaluate("async () => await window.axe.run(document, {resultTypes: ['violations']})")
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["html"][:200] for n in v["nodes"][:3]]}
            for v in result["violations"] if v["impact"] in impacts]


def screenshot(page: Any, folder: Path, name: str) -> Path:
    """A full-page PNG of ``page`` as ``folder/name.png`` (and a copy in ``$AICP_DESK_SCREENSHOTS``
    when set: how README's picture is made)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    extra = os.environ.get("AICP_DESK_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(extra) / path.name)
    return path
