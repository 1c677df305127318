"""The settings of the ``llamacpp`` backend (:mod:`.llamacpp`) as plain data, light enough for
``--help`` (see :mod:`.settings`)."""

from __future__ import annotations

from ..limits import THREADS, Limit
from .settings import Setting

SETTINGS = (
    Setting("n_threads", "int", key="threads", flag="--threads", limit=THREADS, metavar="N",
            help="CPU threads [default: every CPU this process may run on]; give each of several runs "
                 "on one machine its share of the cores."),
    Setting("n_ctx", "int", limit=Limit(int, 256, 1_048_576), flag="",
            help="context window in tokens [default: 4096]."),
    Setting("n_gpu_layers", "int", limit=Limit(int, -1, 100_000), flag="",
            help="layers offloaded to the GPU (-1: all) [default: 0]."),
)
