"""The settings of the ``piper`` backend (:mod:`.piper`) as plain data, light enough for
``--help`` (see :mod:`.settings`)."""

from __future__ import annotations

from .settings import Setting

SETTINGS = (
    Setting("voice", "path", flag="--voice", metavar="PATH",
            help="a .onnx voice (default: bundled en_US-joe-medium)"),
    Setting("use_cuda", "bool", flag="", help="run the voice with onnxruntime's CUDA provider."),
)
