"""A client of `aicp serve` with httpx: submit records, follow the events, download the audio.

    .venv/bin/aicp serve &                      # in another terminal
    .venv/bin/python examples/service_client.py [--url http://127.0.0.1:8000] [--out aicp-out/service]

Reads examples/generate-songs.json (the same body as the README's curl command), prints one
line per finished record from the Server-Sent Events, then saves each audio file.
Set AICP_API_TOKEN when the server requires a token.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--body", default=str(HERE / "generate-songs.json"))
    ap.add_argument("--out", default="aicp-out/service")
    args = ap.parse_args()
    token = os.environ.get("AICP_API_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=args.url, headers=headers, timeout=httpx.Timeout(30, read=600)) as client:
        r = client.post("/api/v1/generate", json=json.loads(Path(args.body).read_text()))
        if r.status_code != 202:
            print(f"error {r.status_code}: {r.json()['error']['message']}", file=sys.stderr)
            return 1
        job_id = r.json()["generation_id"]
        print(f"job {job_id} queued")
        with client.stream("GET", f"/api/v1/generate/{job_id}/events") as events:
            for line in events.iter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                if event["event"] == "record_complete":
                    print(f"  {event['stage']}: {event['id']} done")
                elif event["event"] == "pipeline_complete":
                    print(f"finished: success={event['success']}, {event['total_time']} s")
        job = client.get(f"/api/v1/generate/{job_id}").json()
        out = Path(args.out) / job_id
        out.mkdir(parents=True, exist_ok=True)
        for f in job["files"]:
            (out / f["name"]).write_bytes(client.get(f["url"]).content)
            print(f"saved {out / f['name']}")
        for record in job["records"] or []:
            print(f"{record.get('id')}: {record.get('script', {}).get('text', '')[:80]}")
        return 0 if job["status"] == "completed" else 3


if __name__ == "__main__":
    sys.exit(main())
