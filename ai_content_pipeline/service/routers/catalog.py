"""``/api/v1/templates`` and ``/api/v1/personas``: what clients may name in a job."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ..deps import API, ApiError, ExactJSONRoute

router = APIRouter(route_class=ExactJSONRoute)


def _no_path(item: dict[str, Any]) -> dict[str, Any]:
    """A catalog item without its file ``path``: the server's folders are not a client's business."""
    return {k: v for k, v in item.items() if k != "path"}


@router.get(f"{API}/templates", tags=["catalog"], summary="Templates")
def templates() -> dict[str, Any]:
    """Name, version, description, target words, required fields, sections and source
    (``builtin``, or ``user``: the operator's user folder) of each template."""
    from ...templates import list_templates

    return {"items": [_no_path(t) for t in list_templates()]}


@router.get(f"{API}/templates/{{name}}", tags=["catalog"], summary="One template",
            responses={404: {"description": "no such template"}})
def template(name: str) -> dict[str, Any]:
    """The whole template: prompts, parameters, sections."""
    from ...templates import list_templates, load_template

    if name not in {t["name"] for t in list_templates()}:
        raise ApiError(404, "NotFound", f"no template {name!r}", "GET /api/v1/templates lists them")
    return load_template(name).model_dump(exclude={"source"})


@router.get(f"{API}/personas", tags=["catalog"], summary="Personas")
def personas() -> dict[str, Any]:
    """Name, display name, station, style and source of each persona."""
    from ...templates import list_personas

    return {"items": [_no_path(p) for p in list_personas()]}


__all__ = ["router"]
