"""Run the real ``aicp serve`` as a subprocess on a free loopback port, and talk to it with httpx."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.cli_helpers import BIN


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """``aicp serve`` on 127.0.0.1 with its own data dir; ``argv`` replaces the program
    (e.g. ``python -m tests.chain_doubles`` for backend doubles)."""

    def __init__(self, data_dir: Path, *extra: str, argv: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(data_dir.parent / f"serve-{self.port}.log", "wb")  # noqa: SIM115
        cmd = [*(argv or [os.path.join(BIN, "aicp")]), "serve", "--port", str(self.port),
               "--data-dir", str(data_dir), "--log-level", "warning", *extra]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})
        self.client = httpx.Client(base_url=self.base, timeout=30)
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.client.get("/api/v1/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"aicp serve did not start: {self.log_text()}")
            time.sleep(0.1)

    def log_text(self) -> str:
        """The server's output so far."""
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def submit(self, body: dict[str, Any]) -> str:
        r = self.client.post("/api/v1/generate", json=body)
        assert r.status_code == 202, r.text
        return str(r.json()["generation_id"])

    def events(self, job_id: str, last: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
        """Follow the job's SSE stream: ``(seq, event)`` until the server ends it."""
        headers = {"Last-Event-ID": str(last)} if last else {}
        with self.client.stream("GET", f"/api/v1/generate/{job_id}/events", headers=headers,
                                timeout=httpx.Timeout(30, read=300)) as r:
            assert r.status_code == 200
            seq = 0
            for line in r.iter_lines():
                if line.startswith("id: "):
                    seq = int(line[4:])
                elif line.startswith("data: "):
                    yield seq, orjson.loads(line[6:])

    def wait(self, job_id: str, timeout: float = 600) -> dict[str, Any]:
        """Poll until the job has finished; its body."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self.client.get(f"/api/v1/generate/{job_id}").json()
            if body["status"] in ("completed", "partial", "failed", "cancelled"):
                return dict(body)
            time.sleep(0.2)
        raise TimeoutError(f"job {job_id} did not finish: {self.log_text()}")

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.proc.kill()
        self.proc.wait(30)

    def stop(self) -> None:
        """SIGTERM and wait (the graceful path)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.client.close()
        self.log.close()
