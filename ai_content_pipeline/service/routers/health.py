"""``/api/v1/health`` (liveness, no token), ``/api/v1/health/detailed`` and ``/metrics``."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from ... import __version__
from ..deps import (
    API,
    ExactJSONRoute,
    ServiceSettings,
    get_names,
    get_settings,
    get_store,
    get_worker_process,
)
from ..metrics import metrics_response
from ..redact import Redactor, worker_label
from ..store import JobStore

router = APIRouter(route_class=ExactJSONRoute)


@router.get(f"{API}/health", tags=["health"], summary="Liveness (no dependencies, no token)")
def health() -> dict[str, Any]:
    """`{"status": "ok"}` while the process serves HTTP."""
    return {"status": "ok", "version": __version__}


@router.get(f"{API}/health/detailed", tags=["health"], summary="Database, backends, disk, queue, workers")
def health_detailed(settings: ServiceSettings = Depends(get_settings), store: JobStore = Depends(get_store),
                    names: dict[str, str] = Depends(get_names),
                    child: Any = Depends(get_worker_process)) -> JSONResponse:
    """Each part with `ok`; `status` is `degraded` when a part is not ok (no worker
    heartbeats, the server's worker process is down, the disk is below the floor...);
    the HTTP status is 503 when the database is unreachable. Nothing in it names the
    server's disk: a worker is the `w-...` label its jobs show (no host, no pid), and a
    path in a message is its last part."""
    from ...doctor import run_doctor

    out: dict[str, Any] = {"version": __version__}
    try:
        store.ping()
        out["database"] = {"ok": True, "dialect": store.dialect}
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        out["database"] = {"ok": False, "dialect": store.dialect, "error": f"{type(exc).__name__}: {exc}"}
    out["backends"] = run_doctor()
    from ...faults import free_bytes

    usage = shutil.disk_usage(Path(settings.data_dir) if Path(settings.data_dir).exists() else ".")
    free = free_bytes(settings.data_dir)
    free = usage.free if free is None else free
    out["disk"] = {"free_bytes": free,
                   "total_bytes": usage.total, "min_free_bytes": settings.min_free_bytes,
                   "ok": free >= settings.min_free_bytes}
    alive = 0
    if out["database"]["ok"]:
        counts = store.counts_by_status()
        out["queue"] = {"queued": counts.get("queued", 0), "running": counts.get("running", 0)}
        now = time.time()
        out["workers"] = [{"id": worker_label(w.id), "job": w.job_id, "stopped": w.stopped,
                           "heartbeat_age_seconds": round(now - w.heartbeat_at, 3),
                           "alive": not w.stopped and now - w.heartbeat_at < settings.stale_after}
                          for w in store.workers()]
        alive = sum(1 for w in out["workers"] if w["alive"])
    # jobs run only while some worker heartbeats (and the server's own worker process runs)
    worker_ok = alive > 0 and (child is None or child.running)
    out["worker"] = {"ok": worker_ok, "alive": alive,
                     "process": child.state() if child is not None else None}
    ok = out["database"]["ok"] and out["backends"]["ok"] and out["disk"]["ok"] and worker_ok
    out["status"] = "ok" if ok else "degraded"
    return JSONResponse(Redactor(None, names).value(out), status_code=200 if out["database"]["ok"] else 503)


@router.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=Response)
def metrics(store: JobStore = Depends(get_store)) -> Response:
    """Jobs by status, records, tokens, audio seconds, cost, job duration histogram."""
    body, content_type = metrics_response(store)
    return Response(body, media_type=content_type)


__all__ = ["router"]
