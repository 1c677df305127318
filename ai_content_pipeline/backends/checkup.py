"""Helpers of the backends' ``aicp doctor`` checks: find a package without importing it, and
shape one check's result. No engine is imported here."""

from __future__ import annotations

import importlib.util
from importlib.metadata import PackageNotFoundError, version
from typing import Any


def installed(module: str, distribution: str) -> tuple[bool, str | None]:
    """Whether ``module`` can be imported (found with :func:`importlib.util.find_spec`, not
    imported) and the version of ``distribution`` from package metadata (``None`` if unknown)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    try:
        ver = version(distribution) if found else None
    except PackageNotFoundError:
        ver = None
    return found, ver


def result(ok: bool, hint: str, **details: Any) -> dict[str, Any]:
    """One check: ``{"ok": ok, **details}``, plus ``hint`` (how to fix it) when not ok."""
    out: dict[str, Any] = {"ok": ok, **details}
    if not ok:
        out["hint"] = hint
    return out
