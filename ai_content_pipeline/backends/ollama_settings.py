"""The settings of the ``ollama`` backend (:mod:`.ollama`) as plain data, light enough for
``--help`` (see :mod:`.settings`)."""

from __future__ import annotations

from ..limits import TIMEOUT
from .settings import Setting

SETTINGS = (
    Setting("host", "hosts", flag="--host", metavar="URL", operator=True,
            help="server URL; repeat it (or give a comma list) to spread requests over several hosts, "
                 "--jobs per host, failing over when one goes down "
                 "[default: $OLLAMA_HOSTS, else $OLLAMA_HOST, else http://127.0.0.1:11434]."),
    Setting("keep_alive", flag="--keep-alive", metavar="DURATION",
            help="keep the model loaded this long after the run (e.g. 10m) "
                 "[default: unload at the end and wait until /api/ps drops it]."),
    Setting("timeout", "float", flag="--timeout", limit=TIMEOUT, default=300.0, show_default=True,
            metavar="SECONDS",
            help="seconds to wait for the connection and for each read of a reply; a request silent "
                 "for longer fails its record (a transient error: --retries applies)."),
)
