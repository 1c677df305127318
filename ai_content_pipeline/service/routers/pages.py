"""The review desk: server-rendered HTML pages over the job store (no JavaScript build step).

- ``GET /``: the jobs, newest first, with status and progress (kept live by ``desk.js``
  from each running job's event stream), and the form that submits a job;
- ``POST /jobs``: that form (records pasted or uploaded as JSON Lines, template, persona or
  dialogue hosts, voice on/off); it goes through the same request model and submit code as
  ``POST /api/v1/generate`` and answers ``303`` to the new job's page (or the form again
  with the problem, HTTP 422);
- ``GET /jobs/{id}``: one card per take of the job's output (``?show=unreviewed|failed|
  approved|rejected``): the song or topic, persona(s), script text, checks, an audio player
  on the file endpoint, and the review buttons; ``GET /jobs/{id}/takes/{index}`` is one card
  (what ``desk.js`` swaps in after an action).

Review actions (approve, reject, regenerate, edit) are the JSON API's endpoints, called by
``static/desk.js``; the pages only read. Templates live in ``service/templates/``, scripts and
the style sheet in ``service/static/`` (htmx with its licence, ``desk.js``, ``desk.css``).
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..auth import Login, authenticate, require_login, safe_next
from ..db import FINAL_STATUSES
from ..deps import (
    API,
    ApiError,
    ServiceSettings,
    get_models,
    get_names,
    get_settings,
    get_store,
    get_voices,
)
from ..redact import Redactor
from ..store import JobStore

HERE = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
#: the filters of a job page: ``?show=NAME``
FILTERS = {"all": "All takes", "unreviewed": "Unreviewed", "failed": "Failed checks",
           "approved": "Approved", "rejected": "Rejected"}
#: the most takes one job page shows
PAGE_TAKES = 1000
#: the pages load scripts, styles, audio and images from this server only, run no inline script,
#: post forms only here and are shown in no other site's frame
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")

router = APIRouter()


@lru_cache(maxsize=1)
def templates() -> Any:
    """The pages' Jinja2 environment (``starlette.templating.Jinja2Templates``), built once."""
    from starlette.templating import Jinja2Templates

    found = Jinja2Templates(directory=str(TEMPLATES_DIR))
    found.env.globals["API"] = API
    found.env.filters["when"] = _when
    return found


def _when(value: Any) -> str:
    """A Unix time or ISO string as ``YYYY-MM-DD HH:MM UTC`` (``""`` for none)."""
    if value in (None, ""):
        return ""
    if isinstance(value, (int, float)):
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(value))
    return str(value).replace("T", " ")[:16] + " UTC"


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    if "logout" not in context:  # a browser logged in with the cookie may log out
        login = authenticate(request.scope, request.app.state.settings.token)
        context["logout"] = login is not None and login.via == "cookie"
    response: HTMLResponse = templates().TemplateResponse(request, name, context, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# -- what a card shows ----------------------------------------------------------------------
def _subject(record: dict[str, Any]) -> str:
    """The song (``Artist – Title``) or topic of a record, else its id."""
    artist, title = record.get("artist"), record.get("title")
    if isinstance(artist, str) and isinstance(title, str):
        return f"{artist} – {title}"
    for key in ("title", "topic", "station", "id"):
        value = record.get(key)
        if isinstance(value, (str, int)) and str(value):
            return str(value)
    return "(untitled)"


def _checks(record: dict[str, Any]) -> dict[str, Any]:
    """The take's checks, script and audio together: ``{"known", "passed", "failed":
    [(name, detail text)]}`` (``known`` false when no stage checked the take)."""
    failed: list[tuple[str, str]] = []
    known, passed = False, True
    for field in ("script", "audio"):
        part = record.get(field)
        checks = part.get("checks") if isinstance(part, dict) else None
        if not isinstance(checks, dict):
            continue
        known = True
        passed = passed and bool(checks.get("passed"))
        details: dict[str, Any] = checks["details"] if isinstance(checks.get("details"), dict) else {}
        for name in checks.get("failed") or []:
            detail = details.get(name)
            failed.append((str(name), "" if detail is None else _detail_text(detail)))
    if isinstance(record.get("error"), dict):
        known, passed = True, False
        error = record["error"]
        failed.append((str(error.get("type") or "error"), str(error.get("message") or "")))
    return {"known": known, "passed": known and passed and not failed, "failed": failed}


def _detail_text(detail: Any) -> str:
    if isinstance(detail, list):
        return ", ".join(str(d) for d in detail)
    if isinstance(detail, dict):
        return ", ".join(f"{k}: {v}" for k, v in detail.items())
    return str(detail)


def _personas(record: dict[str, Any]) -> list[str]:
    script: dict[str, Any] = record["script"] if isinstance(record.get("script"), dict) else {}
    hosts = script.get("hosts")
    if isinstance(hosts, list) and hosts:
        return [str(h) for h in hosts]
    for value in (script.get("persona"), record.get("persona"), record.get("dj")):
        if isinstance(value, str) and value:
            return [value]
    return []


def _audio_url(record: dict[str, Any], job_id: str, files: set[str]) -> str | None:
    """The file endpoint's URL of the record's audio (``None``: no audio, or not a file of the job)."""
    audio = record.get("audio")
    path = audio.get("path") if isinstance(audio, dict) else None
    if not isinstance(path, str):
        return None
    name = path.rsplit("/", 1)[-1]
    return f"{API}/generate/{job_id}/files/{name}" if name in files else None


def _one_take(record: dict[str, Any], job_id: str, index: int, files: set[str], label: str) -> dict[str, Any]:
    """One take of a record: its text, checks, audio, review and where its review is sent."""
    script: dict[str, Any] = record["script"] if isinstance(record.get("script"), dict) else {}
    audio: dict[str, Any] = record["audio"] if isinstance(record.get("audio"), dict) else {}
    review: dict[str, Any] | None = record["review"] if isinstance(record.get("review"), dict) else None
    return {"label": label, "text": script.get("text") if isinstance(script.get("text"), str) else None,
            "checks": _checks(record), "audio_url": _audio_url(record, job_id, files),
            "seconds": audio.get("seconds"), "review": review, "decision": (review or {}).get("decision"),
            "edited": bool(script.get("edited")), "personas": _personas(record),
            "api": f"{API}/generate/{job_id}/records/{index}"}


def take_view(job_id: str, index: int, record: dict[str, Any], files: set[str]) -> dict[str, Any]:
    """What the card of record ``index`` shows (``record`` as ``GET /api/v1/generate/{id}``
    shows it, with ``review`` and ``retakes``): the newest take that has landed (a finished
    regenerate or edit, else the original) with its review and the review buttons' API URL
    (a new take is record 0 of its own job), the earlier takes under ``history``, and
    ``pending`` while a new take is on its way."""
    takes = [_one_take(record, job_id, index, files, "original take")]
    pending = False
    for number, retake in enumerate(record.get("retakes") or [], start=2):
        if not isinstance(retake, dict):
            continue
        status = retake.get("status")
        if status not in FINAL_STATUSES:
            pending = True
            continue
        landed = retake.get("record")
        if isinstance(landed, dict):
            kind = "edited" if retake.get("kind") == "edit" else "regenerated"
            names = {str(f.get("name")) for f in retake.get("files") or [] if isinstance(f, dict)}
            takes.append(_one_take(landed, str(retake.get("generation_id")), 0, names, f"take {number} ({kind})"))
        elif status != "cancelled":
            error: dict[str, Any] = retake["error"] if isinstance(retake.get("error"), dict) else {}
            takes.append({**_one_take({"error": {"type": error.get("type") or status,
                                                 "message": error.get("message") or "the new take made no record"}},
                                      str(retake.get("generation_id")), 0, set(), f"take {number}"),
                          "failed_take": True})
    current = next((t for t in reversed(takes) if not t.get("failed_take")), takes[0])
    # a new take asked for after the one shown that never landed: the card says why
    failed = next((t for t in reversed(takes) if t.get("failed_take")), None)
    latest_failed = failed if failed is not None and takes.index(failed) > takes.index(current) else None
    return {**current, "index": index, "id": record.get("id"), "subject": _subject(record),
            "count": len(takes), "history": [t for t in takes if t is not current], "pending": pending,
            "latest_failed": latest_failed}


def _shown(view: dict[str, Any], show: str) -> bool:
    if show == "unreviewed":
        return view["decision"] is None
    if show == "failed":
        return view["checks"]["known"] and not view["checks"]["passed"]
    if show in ("approved", "rejected"):
        return view["decision"] == show
    return True


def _job_or_404(store: JobStore, job_id: str) -> Any:
    job = store.get(job_id, inputs=False)
    if job is None:
        raise ApiError(404, "NotFound", f"no generation {job_id!r}", "the jobs list is at /")
    return job


def job_records(store: JobStore, job: Any, names: dict[str, str], offset: int = 0,
                limit: int | None = None) -> list[dict[str, Any]]:
    """The finished job's output records ``offset`` ... ``offset + limit - 1`` as
    ``GET /api/v1/generate/{id}`` shows them: redacted, each with its ``review`` and ``retakes``
    (``limit`` ``None``: :data:`PAGE_TAKES`)."""
    from .generate import _reviewed

    return _reviewed(store, job, offset, PAGE_TAKES if limit is None else limit, names)


def _job_view(job: Any, names: dict[str, str]) -> dict[str, Any]:
    from .generate import job_summary

    summary = job_summary(job, names)
    progress = summary["progress"]
    return {**summary, "final": job.status in FINAL_STATUSES, "percent": round(float(progress["percent"] or 0.0), 1),
            "template": _template_of(job.chain)}


def _template_of(chain: Any) -> str | None:
    for step in (chain or {}).get("steps", []) if isinstance(chain, dict) else []:
        params = step.get("params") if isinstance(step, dict) else None
        if isinstance(params, dict) and isinstance(params.get("template"), str):
            return str(params["template"]).rsplit("/", 1)[-1].removesuffix(".yaml")
    return None


# -- pages ----------------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def jobs_page(request: Request, store: JobStore = Depends(get_store),
              names: dict[str, str] = Depends(get_names), _: Login = Depends(require_login)) -> HTMLResponse:
    """The jobs list and the submit form."""
    return _jobs(request, store, names)


def _jobs(request: Request, store: JobStore, names: dict[str, str], status: int = 200,
          error: str | None = None, form: dict[str, Any] | None = None) -> HTMLResponse:
    from ...templates import list_personas, list_templates

    jobs, total = store.list_jobs(None, 100, 0)
    return _page(request, "jobs.html", status, jobs=[_job_view(j, names) for j in jobs], total=total,
                 template_names=[t["name"] for t in list_templates()],
                 personas=[{"name": p["name"], "display_name": p["display_name"]} for p in list_personas()],
                 error=error, form=form or {"template": "song-intro", "voice": True})


@router.post("/jobs", response_class=HTMLResponse, include_in_schema=False)
async def submit_form(request: Request, settings: ServiceSettings = Depends(get_settings),
                      store: JobStore = Depends(get_store), names: dict[str, str] = Depends(get_names),
                      models: dict[str, str] = Depends(get_models),
                      voices: dict[str, str] = Depends(get_voices), _: Login = Depends(require_login)) -> Response:
    """The submit form: the same request model and submit code as ``POST /api/v1/generate``."""
    from pydantic import ValidationError
    from starlette.concurrency import run_in_threadpool

    from ...errors import AicpError
    from ...jsonl import dumps as exact_dumps
    from ..body import parse_body
    from ..requests import GenerateRequest
    from .generate import submit

    async with request.form(max_files=1, max_fields=100) as data:
        upload = data.get("records_file")
        raw = b""
        if upload is not None and not isinstance(upload, str):
            raw = await upload.read(settings.max_body + 1)
        if not raw.strip():
            text = data.get("records")
            raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else b""
        form: dict[str, Any] = {"template": str(data.get("template") or ""), "persona": str(data.get("persona") or ""),
                "hosts": [str(h) for h in data.getlist("hosts")], "voice": data.get("voice") == "on",
                "name": str(data.get("name") or ""), "records": raw.decode("utf-8", "replace"),
                "max_tokens": str(data.get("max_tokens") or "").strip(), "seed": str(data.get("seed") or "").strip()}

    def problem(message: str) -> HTMLResponse:
        return _jobs(request, store, names, 422, message, form)

    records, problems = _records(raw)
    if problems:
        return problem("; ".join(problems[:3]))
    if not records:
        return problem("records: paste or upload at least one JSON object (one per line)")
    body: dict[str, Any] = {"template": form["template"] or None, "voice": form["voice"], "records": records}
    if form["hosts"]:
        body["personas"] = form["hosts"]
    elif form["persona"]:
        body["persona"] = form["persona"]
    if form["name"]:
        body["name"] = form["name"]
    for key in ("max_tokens", "seed"):
        if form[key]:
            if not form[key].isascii() or not form[key].isdigit():
                return problem(f"{key}: must be a whole number")
            body.setdefault("params", {})[key] = int(form[key])
    try:
        parsed = GenerateRequest.model_validate(parse_body(exact_dumps(body)))
        answer = await run_in_threadpool(submit, parsed, settings, store, names, models, voices)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return problem(f"{where + ': ' if where else ''}{first.get('msg')}")
    except ApiError as exc:
        return problem(exc.message + (f" ({exc.hint})" if exc.hint else ""))
    except AicpError as exc:
        shown = Redactor(None, names)
        return problem(shown.text(exc.message) + (f" ({shown.text(exc.hint)})" if exc.hint else ""))
    import orjson

    job_id = orjson.loads(answer.body)["generation_id"]
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


def _records(raw: bytes) -> tuple[list[dict[str, Any]], list[str]]:
    """JSON Lines text as records, and a message per bad line (blank lines are skipped)."""
    from ...jsonl import is_blank, parse_line

    records, problems = [], []
    for number, line in enumerate(raw.splitlines(), start=1):
        if is_blank(line):
            continue
        parsed = parse_line(line.rstrip(b"\r"), number, "records")
        if parsed.record is not None:
            records.append(parsed.record)
        else:
            problems.append(str((parsed.error or {}).get("message") or f"line {number} is not a JSON object"))
    return records, problems


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_page(request: Request, next: str = Query("/"), error: str | None = Query(None)) -> HTMLResponse:
    """The page that asks for the server's token once (``POST /login`` sets the cookie)."""
    if not request.app.state.settings.token:
        return RedirectResponse(safe_next(next), status_code=303)  # type: ignore[return-value]
    return _page(request, "login.html", 401 if error else 200, next=safe_next(next), error=bool(error),
                 logout=False)


@router.get("/jobs/{job_id}", response_class=HTMLResponse, include_in_schema=False)
def job_page(request: Request, job_id: str, show: str = Query("all"), store: JobStore = Depends(get_store),
             names: dict[str, str] = Depends(get_names), _: Login = Depends(require_login)) -> HTMLResponse:
    """One job: its status and one card per take (filtered by ``show``)."""
    if show not in FILTERS:
        show = "all"
    job = _job_or_404(store, job_id)
    view = _job_view(job, names)
    files = {f["name"] for f in job.files or []}
    takes = ([take_view(job_id, i, r, files) for i, r in enumerate(job_records(store, job, names))]
             if view["final"] else [])
    counts = {name: sum(1 for t in takes if _shown(t, name)) for name in FILTERS}
    return _page(request, "job.html", job=view, takes=[t for t in takes if _shown(t, show)], show=show,
                 filters=FILTERS, counts=counts, beyond=max(0, (job.records_total or 0) - PAGE_TAKES))


@router.get("/jobs/{job_id}/takes/{index}", response_class=HTMLResponse, include_in_schema=False)
def take_card(request: Request, job_id: str, index: int = 0, store: JobStore = Depends(get_store),
              names: dict[str, str] = Depends(get_names), _: Login = Depends(require_login)) -> HTMLResponse:
    """One take's card (the fragment ``desk.js`` swaps in after an action)."""
    job = _job_or_404(store, job_id)
    records = job_records(store, job, names, index, 1) if 0 <= index and job.status in FINAL_STATUSES else []
    if not records:
        raise ApiError(404, "NotFound", f"generation {job_id} has no take {index}")
    files = {f["name"] for f in job.files or []}
    return _page(request, "_take.html", take=take_view(job_id, index, records[0], files), job={"generation_id": job_id})


__all__ = ["FILTERS", "STATIC_DIR", "TEMPLATES_DIR", "job_records", "login_page", "router", "take_view", "templates"]
